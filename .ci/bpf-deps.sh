#!/usr/bin/env bash
# Installs what `make generate` needs: the pinned clang (Debian bookworm's
# clang-14) and llvm-strip-14, which bpf2go strips the object with. The
# headers (bpf/include) are committed; bpftool and libbpf-dev are only for
# bpf/include/update.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends clang-14 llvm-14
