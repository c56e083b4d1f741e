# SPDX-License-Identifier: MIT
# The two README commands, and the usual targets, over CMake.
#   make          build everything into build/
#   make run      install what is missing, build, start parleyd on 127.0.0.1
#   make check    build, run every test (normal, sanitizers, fuzzers)
#   make install PREFIX=/usr/local
#   make bench    build, run a short parley-bench suite against a fresh parleyd

PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=

.PHONY: all build run check deps install clean format bench

all: build

deps:
	@scripts/deps.sh

build:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPARLEY_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j$(JOBS)

run: deps build
	@mkdir -p var
	@echo "parleyd: data in ./var; connect with: build/parley --home /tmp/alice signup alice"
	@exec build/parleyd --config parleyd.conf --data ./var

check: deps
	@tests/harness/check.sh

bench: build
	@scripts/bench.sh

install: build
	@cmake --install build --prefix $(PREFIX)

format:
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/*.c' 'tests/*.h')

clean:
	rm -rf build build-asan build-fuzz
