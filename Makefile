# vigil: on-access malware scanning for Linux.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## write bin/vigil (pure Go: no clang, no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vigil ./cmd/vigil

.PHONY: deps
deps: ## install what a bare machine lacks to generate and test (root, Debian: .ci/deps.sh)
	@command -v $(GO) >/dev/null || { echo "Go is required" >&2; exit 1; }
	bash .ci/deps.sh
	$(GO) mod download

.PHONY: test
test: ## run every test; as root the fanotify end-to-end tests run too
	$(GO) test -race -count=1 ./...

.PHONY: test-root
test-root: ## run only the tests that need root (fanotify, end to end)
	$(GO) test -race -count=1 -run 'E2E|Block|Overwrite|Exec|FIFO|Kill|Status|Fanotify|Root' ./...

.PHONY: bench
bench: build ## run the benchmarks and print the figures as a table (root for the daemon figures)
	$(GO) run ./bench --vigil bin/vigil

.PHONY: fuzz
fuzz: ## fuzz the parsers for FUZZTIME each (default 30s)
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-30s} ./internal/policy
	$(GO) test -run '^$$' -fuzz FuzzParseHashDB -fuzztime $${FUZZTIME:-30s} ./internal/scan/clamav

# staticcheck, pinned, run from the module proxy: a tool of the build, not
# a dependency of vigil's (go.mod stays as it is).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: lint
lint: ## go vet, staticcheck and gofmt
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: fmt
fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## remove build output
	rm -rf bin

.PHONY: generate
generate: ## rebuild the eBPF object and its Go bindings (clang-14, llvm-14: make deps)
	$(GO) generate ./internal/dirtrace

.PHONY: check-generated
check-generated: generate ## regenerate and fail if the committed eBPF object or bindings differ
	git diff --exit-code -- internal/dirtrace bpf
	@out=$$(git status --porcelain -- internal/dirtrace bpf); \
		if [ -n "$$out" ]; then echo "untracked generated files:"; echo "$$out"; exit 1; fi

VMTEST_PKGS ?= ./internal/dirtrace ./internal/fandir ./internal/fanotify ./internal/features ./internal/inotify \
	./internal/watch ./internal/onaccess ./internal/testutil ./internal/scan/clamd ./cmd/vigil ./vmtest
VMTEST_RUN ?=
VMTEST_FLAGS ?=

.PHONY: vmtest-deps
vmtest-deps: ## install qemu and the kernels pinned in vmtest/kernels.txt (root, Debian)
	bash vmtest/deps.sh

.PHONY: vmtest
vmtest: vmtest-deps ## run the kernel-facing tests in each kernel of vmtest/kernels.txt under qemu (VMTEST_RUN=regexp)
	CGO_ENABLED=0 $(GO) build -o bin/vmtest ./vmtest
	bin/vmtest suite -kernels vmtest/kernels.txt -run '$(VMTEST_RUN)' $(VMTEST_FLAGS) $(VMTEST_PKGS)
