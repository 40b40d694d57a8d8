# herd — make targets. `make test` installs what it needs (Debian packages,
# Go modules) and runs every test level that exists so far.
GO       ?= go
BIN      := bin
PKGS     := ./...
FUZZTIME ?= 3s
# Debian packages the tests use: real compress(1), xz, zstd, cpio to
# cross-check the cooking decoders; util-linux for loop devices; iproute2
# for network namespaces; a kernel, kmod (depmod), the plans' tools
# (fdisk, extlinux) and QEMU for the initramfs and its boot test;
# syslinux and mtools build golden images without root; busybox is the
# shell golden root tarballs carry for %post; systemd for
# systemd-socket-activate (dolly -d against openSUSE's dolly.socket);
# openipmi's ipmi_sim is a real BMC for the power tests, ipmitool checks it;
# prometheus scrapes herd serve in pxetest (promtool lints /metrics);
# chromium is the real browser the dashboard test drives (chromedp); rpm
# reads back the .rpm that make packages writes.
DEB_PKGS := ncompress xz-utils zstd cpio util-linux iproute2 e2fsprogs dosfstools xfsprogs btrfs-progs ipxe pxelinux syslinux-common tftp-hpa atftp curl \
	linux-image-amd64 kmod fdisk extlinux qemu-system-x86 ipxe-qemu syslinux mtools busybox mmdebstrap grub-pc-bin grub-efi-amd64-bin ovmf openssh-client systemd openipmi ipmitool prometheus chromium rpm

.PHONY: all build docs packages deps test unit fuzz ring-test net-test chaos boot-test qemu-test lint bench bench-quick bench-go demo clean

all: build

# build: herd carries u-root's init and rescue commands (a busybox made by
# initramfs/internal/mkbb, rebuilt when its inputs change) and is static
# and stripped (it is the agent every node downloads in the initramfs),
# so that `herd build boot` needs no Go toolchain and no source tree.
PREBUILT_BB := initramfs/prebuilt/bb.zst
# herd version's commit and build date (its version is the code's, or
# VERSION=X.Y.Z on make's command line); the packages carry that version.
CLI         := github.com/herdproject/herd/cmd/internal/cli
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
BUILD_DATE  ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS     ?= -s -w -X $(CLI).Commit=$(COMMIT) -X $(CLI).BuildDate=$(BUILD_DATE) $(if $(VERSION),-X $(CLI).Version=$(VERSION))
build: $(PREBUILT_BB)
	CGO_ENABLED=0 $(GO) build -tags herd_embed -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

$(PREBUILT_BB): go.mod go.sum $(filter-out %_test.go,$(wildcard initramfs/*.go initramfs/internal/mkbb/*.go))
	$(GO) run ./initramfs/internal/mkbb -o $(@D)

# Man pages (bin/man/NAME.SECTION) and bash and zsh completions
# (bin/completion/herd.bash, _herd), made from the commands' --help.
docs:
	$(GO) run ./cmd/herd-docs --man $(BIN)/man --completion $(BIN)/completion

# Packages (nfpm, cmd/herd-package) in bin/packages: a .deb and an .rpm of
# make build's herd with its dolly links, make docs' man pages and
# completions, the systemd units and example inventory of packaging/, and
# docs/herd.conf.example as /etc/herd/herd.conf; version: herd version's.
packages: build docs
	rm -rf $(BIN)/packages
	$(BIN)/herd-package --herd $(BIN)/herd --version "$$($(BIN)/herd version | awk '{print $$2}')" \
		--man $(BIN)/man --bash-completion $(BIN)/completion/herd.bash --zsh-completion $(BIN)/completion/_herd \
		--out $(BIN)/packages

# deps installs the system packages once (skipped when all are present).
deps:
	@scripts/install-deps.sh $(DEB_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 $(PKGS)

# Every fuzz target runs for FUZZTIME.
fuzz:
	@scripts/fuzz-all.sh $(FUZZTIME)

# Ring tests: real herd processes on 127.0.0.x.
ring-test: build
	$(GO) test -count=1 -tags ringtest -timeout 20m ./ring/ringtest/

# Boot-service and ring fault tests in network namespaces the tests create
# (root).
net-test:
	$(GO) test -count=1 -tags nettest -timeout 15m ./pxe/pxetest/ ./ring/faulttest/ ./bench/

# Chaos, measured (issue 16): 24 nodes behind impaired 100 Mbit/s ports, a
# clean session and 20 seeded ones with 2-4 concurrent faults each (kill,
# freeze, link down, disk full, slow disk); writes docs/chaos.md even when
# a run fails (root; half an hour or more). net-test runs a short version
# (8 nodes, 3 runs). CHAOS_SEED=S CHAOS_RUNS=1 replays one run.
CHAOS_NODES ?= 24
CHAOS_RUNS  ?= 20
CHAOS_SEED  ?= 1
chaos:
	HERD_CHAOS_NODES=$(CHAOS_NODES) HERD_CHAOS_RUNS=$(CHAOS_RUNS) HERD_CHAOS_SEED=$(CHAOS_SEED) \
	HERD_CHAOS_TABLE=$(CURDIR)/docs/chaos.md HERD_CHAOS_REV="$$(git describe --always --dirty 2>/dev/null)" \
	$(GO) test -count=1 -tags nettest -run '^TestChaos$$' -v -timeout 120m ./ring/faulttest/

# The initramfs boots in QEMU (TCG): u-root's init, the herd agent,
# virtio_net loaded from the initramfs's modules.
boot-test:
	$(GO) test -count=1 -tags qemu -timeout 45m -run '^TestQEMU' ./initramfs/ ./imagebuilder/golden/ ./imagebuilder/debimage/

# The cluster scenarios: QEMU nodes PXE-boot through herd's own servers on
# a bridge in a network namespace of the test's (see qemu-tests/).
qemu-test:
	$(GO) test -count=1 -tags qemu -timeout 60m -v ./qemu-tests/

test: deps lint unit fuzz ring-test net-test boot-test packages qemu-test

# The ring against a star on a lab network of namespaces (root): writes
# docs/bench/ (CSV, markdown, SVG). About 45 minutes; BENCH_ARGS=--quick
# is a smoke test of a few minutes, --only REGEXP picks suites.
BENCH_ARGS ?=
bench: deps build
	$(BIN)/herd-bench $(BENCH_ARGS)

bench-quick: deps build
	$(BIN)/herd-bench --quick --reps 1 --out $${TMPDIR:-/tmp}/herd-bench-quick

# Go micro-benchmarks: the ring on loopback, the bypass of a dead node.
bench-go: build
	$(GO) test -count=1 -tags ringtest -run '^$$' -bench . -benchtime 1x -timeout 30m ./ring/ringtest/
	$(GO) test -count=1 -tags nettest -run '^$$' -bench . -benchtime 1x -timeout 30m ./ring/faulttest/

# The demo (qemu-tests/demo, root): three QEMU nodes PXE-boot, receive a
# golden disk image through the ring and boot it, shown as an
# administrator sees it; logs in demo-logs/ (HERD_DEMO_LOGS overrides).
demo: deps build
	@scripts/demo.sh

clean:
	rm -rf $(BIN) initramfs/prebuilt
