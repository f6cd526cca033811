# cts: the two set-up commands of the README are `make demo` and `make test`.
# Both install the Debian packages cts needs (scripts/install-deps, idempotent), configure
# and build with CMake + Ninja (ccache and a precompiled torch header keep rebuilds fast).
BUILD ?= build
CMAKE_FLAGS ?=
CTEST_JOBS ?= 2

.PHONY: all deps configure build demo test test-asan bench docs fuzz fuzz-build fuzz-seeds clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@if [ ! -f $(BUILD)/build.ninja ]; then cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS); fi

build: configure
	cmake --build $(BUILD)

# Runs the quickstart experiment (configs/quickstart.yaml) and prints its summary. Builds only
# what the demo needs (the library and the cts command, not the tests and benchmarks).
demo: configure
	cmake --build $(BUILD) --target cts
	rm -rf runs/quickstart
	$(BUILD)/cts run configs/quickstart.yaml --out runs/quickstart

# The CI suite: unit tests, the independent Python references and the quickstart
# acceptance run (labels unit, python, e2e): every test there is.
test: build
	cd $(BUILD) && ctest -L "unit|python|e2e" -j $(CTEST_JOBS) --output-on-failure

# The unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (GCC, CTS_SANITIZE) in
# their own build folder; CI runs it after `make test`. tools/sanitizers/ holds the
# suppressions for libtorch (see docs/reliability.md). Compiled -O1 -g1 (line tables: reports
# keep file:line): a torch TU compiles in about half the time of -O2 -g (loop.cpp: 91 vs 185 s
# on the 2-core VM), and the sanitized build is most of CI's time.
ASAN_BUILD ?= build-asan
SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=1:detect_odr_violation=0:strict_string_checks=1:detect_stack_use_after_return=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/sanitizers/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=suppressions=$(CURDIR)/tools/sanitizers/ubsan.supp:print_stacktrace=1:halt_on_error=1
test-asan: deps
	@if [ ! -f $(ASAN_BUILD)/build.ninja ]; then cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCTS_SANITIZE=ON -DCTS_BUILD_BENCH=OFF; fi
	cmake --build $(ASAN_BUILD)
	cd $(ASAN_BUILD) && $(SANITIZER_ENV) ctest -L unit -j $(CTEST_JOBS) --output-on-failure

# libFuzzer targets (fuzz/, clang) in build-fuzz/: each runs FUZZ_SECONDS (default 60), one
# after the other at nice 19, from the seeds in fuzz/corpus/; findings go to build-fuzz/findings/.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz-build: deps
	@if [ ! -f $(FUZZ_BUILD)/build.ninja ]; then cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
		-DCTS_FUZZ=ON -DCTS_BUILD_TESTS=OFF -DCTS_BUILD_BENCH=OFF; fi
	cmake --build $(FUZZ_BUILD) --target cts_fuzz_targets make_seeds

fuzz: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz

# Rewrites the committed seed corpus fuzz/corpus/<target>/.
fuzz-seeds: fuzz-build
	rm -rf fuzz/corpus
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_BUILD)/fuzz/make_seeds fuzz/corpus .

bench: build
	$(BUILD)/bench/cts_bench

docs: build
	$(BUILD)/cts config keys --markdown > docs/config.md

clean:
	rm -rf $(BUILD)
