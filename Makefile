# The two commands of the Quick start, wrapping CMake (in the manner of
# Neovim's top-level Makefile). Both install missing Debian packages first.
#
#   make run                 nginx + artifact-token on 127.0.0.1:8080, in the foreground
#                            (builds only artifact-token: about 1.5 min the first time on 2 cores)
#   make test                every test: unit, integration (real nginx + spawn-fcgi), short fuzz runs,
#                            the package in a booted systemd and the Docker image (root)
#   make test SANITIZE=1     the unit and integration tests built with ASan + UBSan
#   make fuzz                each fuzzer for FUZZ_SECONDS (default 300)
#   make install             binary, systemd units, nginx site, config (DESTDIR honoured)
#   make test-image          the Docker image, built and run with podman (root)
#   make deb                 the Debian package, into build/deb (lintian-checked)
#   make test-systemd        the package installed and driven in a booted Debian 12 (root)
#   make test-gluster        three nodes on a GlusterFS replica-3 volume, with faults (root)
#   make bench               benchmarks into bench/RESULTS.md (make bench-quick: under two minutes)
SHELL := /bin/bash
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 300
FUZZ_DIR ?= build-fuzz
PREFIX ?= /usr

ifeq ($(SANITIZE),1)
BUILD_DIR ?= build-asan
SANITIZE_FLAGS = -DARTIFACT_SANITIZE=ON
else
BUILD_DIR ?= build
SANITIZE_FLAGS =
endif

.PHONY: all deps test-deps configure build run run-note test test-fuzz fuzz test-image deb test-systemd test-gluster bench bench-quick bench-buildbot install clean

all: build

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_INSTALL_PREFIX=$(PREFIX) \
	  -DARTIFACT_WERROR=ON $(SANITIZE_FLAGS) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# nginx + artifact-token on 127.0.0.1:8080 (ARTIFACT_LISTEN), state in ./run
# (ARTIFACT_STATE_DIR), in the foreground until Ctrl-C (run.sh then exits 0;
# make itself re-raises the SIGINT, so the shell sees 130 and no error line).
# Builds the app only, not the tests: 72 s from scratch on a 2-core VM at -j1,
# against 270 s for everything. The recipe's last line is what
# tests/deploy/doc_test.sh runs (it takes it from `make -n run`).
run: run-note configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target artifact-token
	ARTIFACT_BIN=$(abspath $(BUILD_DIR))/artifact-token scripts/run.sh

# Everything: CTest (unit, integration, deploy, buildbot, multinode), the
# fuzzers for 10 s each, then the deployments for real (root): the Debian
# package in a booted systemd, the Docker image with podman, three nodes on
# GlusterFS. SANITIZE=1 runs the CTest part only, built with ASan + UBSan.
test: test-deps build
	@start=$$(date +%s); ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 600 -j $(JOBS); rc=$$?; \
	  echo "make test: ctest took $$(( $$(date +%s) - start )) s"; exit $$rc
ifneq ($(SANITIZE),1)
	$(MAKE) --no-print-directory test-fuzz FUZZ_SECONDS=10
	$(MAKE) --no-print-directory test-systemd
	$(MAKE) --no-print-directory test-image
	$(MAKE) --no-print-directory test-gluster
endif

# Said before anything else happens, as the first run takes a while.
run-note:
	@[ -x $(BUILD_DIR)/artifact-token ] || echo "make run: first run: installing what is missing and building" \
	  "artifact-token (about 1.5 minutes on 2 cores, plus any package downloads); later runs start in seconds"

# The libFuzzer harnesses (clang), each run from the seed corpus in fuzz/corpus.
test-fuzz fuzz: test-deps
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DARTIFACT_FUZZ=ON -DARTIFACT_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_DIR) -j $(JOBS)
	ctest --test-dir $(FUZZ_DIR) --output-on-failure -V -j $(JOBS) | grep -E 'FIGURE|tests passed|Failed|ERROR' ; \
	  exit $${PIPESTATUS[0]}

# The container image (docker/Dockerfile) built with podman from a base image
# made with debootstrap, and driven with curl and docker-compose. Root; slow
# the first time (about 3 minutes), cached after.
test-image:
	@scripts/install-deps.sh image
	docker/test-image.sh

# The Debian package (debian/), built from the working tree in a staging
# copy; prints the .deb's path last.
deb:
	@scripts/install-deps.sh deb
	scripts/make-deb.sh

# The package installed with apt in a Debian 12 booted with systemd as PID 1
# (systemd-nspawn), driven through nginx. Root; the first run debootstraps
# (about a minute), later runs reuse it.
test-systemd:
	@scripts/install-deps.sh systemd
	set -o pipefail; deb=$$(scripts/make-deb.sh | tail -n 1) && tests/deploy/test_systemd.sh "$$deb"

# Three nodes (nginx + app each) on a GlusterFS replica-3 volume that the test
# builds in network namespaces (one glusterd per storage host): the multi-node
# scenarios, then a brick killed and restarted, concurrent issues on one
# builder, a host's link cut and restored. Root; about 4 minutes.
test-gluster: build
	@scripts/install-deps.sh test
	@scripts/install-deps.sh gluster
	tests/gluster/test_gluster.sh $(abspath $(BUILD_DIR))/artifact-token

# Benchmarks: own servers on 127.0.0.1, every figure a ratio against a
# baseline measured in the same run; writes bench/RESULTS.md.
bench: test-deps
	bench/run.sh
bench-quick: test-deps
	bench/run.sh --quick
# Uploads from a real buildbot worker: our upload step vs FileUpload/DirectoryUpload.
bench-buildbot: test-deps build
	/usr/bin/python3 bench/buildbot_compare.py $(abspath $(BUILD_DIR))/artifact-token

# The binary, systemd units, nginx site and default config where Debian
# expects them (PREFIX=/usr: /usr/bin, /usr/lib/systemd/system, /etc/...).
# DESTDIR=/some/root stages them for packaging or tests.
install: build
	cmake --install $(BUILD_DIR)

clean:
	rm -rf build build-asan $(FUZZ_DIR)
