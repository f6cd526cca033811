# cts: the two set-up commands of the README are `make demo` and `make test`.
# Both install the Debian packages cts needs (scripts/install-deps, idempotent), configure
# and build with CMake + Ninja (ccache and a precompiled torch header keep rebuilds fast).
BUILD ?= build
CMAKE_FLAGS ?=
CTEST_JOBS ?= 2

.PHONY: all deps configure build demo test test-slow test-all bench docs clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@if [ ! -f $(BUILD)/build.ninja ]; then cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS); fi

build: configure
	cmake --build $(BUILD)

# Runs the quickstart experiment (configs/quickstart.yaml) and prints its summary.
demo: build
	rm -rf runs/quickstart
	$(BUILD)/cts run configs/quickstart.yaml --out runs/quickstart

# The CI suite: unit tests, the independent Python references and the quickstart
# acceptance run (labels unit, python, e2e).
test: build
	cd $(BUILD) && ctest -L "unit|python|e2e" -j $(CTEST_JOBS) --output-on-failure

# End-to-end runs on Fashion-MNIST (label slow): the quickstart acceptance check.
test-slow: build
	cd $(BUILD) && ctest -L slow --output-on-failure

test-all: test test-slow

bench: build
	$(BUILD)/bench/cts_bench

docs: build
	$(BUILD)/cts config keys --markdown > docs/config.md

clean:
	rm -rf $(BUILD)
