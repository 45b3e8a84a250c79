# The two commands of the Quick start, wrapping CMake (in the manner of
# Neovim's top-level Makefile). Both install missing Debian packages first.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build run test clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DARTIFACT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

# nginx + artifact-token on 127.0.0.1:8080 (ARTIFACT_LISTEN), state in ./run
# (ARTIFACT_STATE_DIR), in the foreground until Ctrl-C.
run: build
	ARTIFACT_BIN=$(abspath $(BUILD_DIR))/artifact-token scripts/run.sh

# Every test: unit tests and integration tests on real nginx + spawn-fcgi.
test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 600 -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)
