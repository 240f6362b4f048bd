#!/usr/bin/env bash
# Refreshes the headers dirwatch.bpf.c compiles against: vmlinux.h from the
# running kernel's BTF (bpftool), and libbpf's BPF-side headers from Debian's
# libbpf-dev. Both are committed so that `make generate` is reproducible on
# any machine; run this only to move to a newer kernel or libbpf, and record
# what was used in SOURCES.
set -euo pipefail
cd "$(dirname "$0")"

btf=${BTF:-/sys/kernel/btf/vmlinux}
libbpf=${LIBBPF_INCLUDE:-/usr/include/bpf}

command -v bpftool >/dev/null || PATH=$PATH:/usr/sbin
bpftool btf dump file "$btf" format c > vmlinux.h.new
mv vmlinux.h.new vmlinux.h

for h in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h bpf_endian.h; do
	install -m 0644 "$libbpf/$h" "bpf/$h"
done

{
	echo "vmlinux.h: BTF of Linux $(uname -r) ($btf), bpftool $(dpkg-query -W -f '${Version}' bpftool 2>/dev/null || echo unknown)"
	echo "bpf/*.h:   libbpf-dev $(dpkg-query -W -f '${Version}' libbpf-dev 2>/dev/null || echo unknown)"
} > SOURCES
