# crmd -- convenience wrapper around CMake and ctest.
#   make run    install what is missing, build, run the server on ./data
#   make demo   build, fill ./demo-data with `crmd demo` (100,000 contacts, about
#               1,000,000 orders; about 12 minutes), then: make demo-serve
#   make test   install what is missing, build (normal + ASan/UBSan), run every test
#               (also Node and the interop test's npm packages: interop-deps; Debian's
#               chromium and playwright-core for the dashboard's browser test: browser-deps)
#   make bench  build and run the benchmarks (never part of `make test`); bench_peers
#               installs PEER_PACKAGES first (CRM_BENCH_ONLY=peers CRM_BENCH_QUICK=1
#               make bench: a smoke run of crmd against its peers)
#   make soak   long crash runs (never part of `make test`)
#   make valgrind  the unit and e2e tests (and each crmd they start) under
#               valgrind memcheck in build-valgrind (slow; never part of `make test`)
#   make fuzz   each libFuzzer target for FUZZ_SECONDS (default 600); `make test`
#               runs fuzz-smoke (20 s each) after the two ctest runs

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
# Warnings are errors in the test builds (make test, test-fast: CI) and not in
# a user's or packager's build (make run, a plain cmake), where a newer or older
# compiler's new warning must not stop the build.
WERROR     ?= OFF
RELEASE_BUILD ?= build-release
DEB_PACKAGES = build-essential cmake pkg-config liblmdb-dev liblua5.4-dev \
               libwebsockets-dev libmsgpack-dev libjansson-dev libcmocka-dev libssl-dev lmdb-utils \
               libcurl4-openssl-dev libcsv-dev libinih-dev openssl strace
# The peer benchmark only (bench/run.sh installs them; never `make test`): the
# servers crmd is measured against, the client libraries its load generator
# links (hiredis, libpq; Tarantool is spoken over msgpack-c, already above) and
# gnuplot for the chart.
PEER_PACKAGES = redis-server postgresql-15 tarantool libhiredis-dev libpq-dev gnuplot-nox
INTEROP_DIR = tests/interop
# The dashboard's browser test (ctest browser_dashboard): Debian's Chromium,
# driven by playwright-core (tests/browser/package-lock.json).
BROWSER_PACKAGES = chromium
BROWSER_DIR = tests/browser
# the libFuzzer targets (fuzz/fuzz_<name>.c), built and run by fuzz-smoke and fuzz
FUZZ_TARGETS = json msgpack schema filter request luavalue
# The fuzz targets only (R9): Debian's clang and libFuzzer runtime.
FUZZ_PACKAGES = clang libfuzzer-14-dev
FUZZ_BUILD   ?= build-fuzz
# make valgrind (R22)
VALGRIND_PACKAGES = valgrind
VALGRIND_BUILD ?= build-valgrind
FUZZ_SECONDS ?= 600

.PHONY: deps node-deps interop-deps browser-deps fuzz-deps peer-packages build build-asan build-fuzz build-release run test test-fast bench soak \
        fuzz fuzz-smoke clean demo demo-serve valgrind lint

deps:
	@./tools/install-deps.sh $(DEB_PACKAGES)

# The interop test (ctest interop_node) runs Node with ws and @msgpack/msgpack.
# Node and npm: Debian's packages unless a node and npm are already on PATH
# (installing Debian's npm over another Node distribution would conflict).
# npm ci, pinned by package-lock.json: when node_modules is missing or older
# than the lock (npm writes node_modules/.package-lock.json last).
node-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || ./tools/install-deps.sh nodejs npm

interop-deps: node-deps
	@if [ ! -f $(INTEROP_DIR)/node_modules/.package-lock.json ] || \
	    [ $(INTEROP_DIR)/package-lock.json -nt $(INTEROP_DIR)/node_modules/.package-lock.json ]; then \
	  echo "npm ci in $(INTEROP_DIR)"; \
	  cd $(INTEROP_DIR) && npm ci --no-audit --no-fund; \
	fi

# chromium from Debian (playwright-core downloads no browser of its own),
# then npm ci in tests/browser on the same rule as interop-deps.
browser-deps: node-deps
	@./tools/install-deps.sh $(BROWSER_PACKAGES)
	@if [ ! -f $(BROWSER_DIR)/node_modules/.package-lock.json ] || \
	    [ $(BROWSER_DIR)/package-lock.json -nt $(BROWSER_DIR)/node_modules/.package-lock.json ]; then \
	  echo "npm ci in $(BROWSER_DIR)"; \
	  cd $(BROWSER_DIR) && npm ci --no-audit --no-fund; \
	fi

fuzz-deps:
	@./tools/install-deps.sh $(FUZZ_PACKAGES)

# Static analysis (R22): Debian's cppcheck over the kernel and the bundled
# plugins; any warning fails.  An inline `cppcheck-suppress` says why where
# cppcheck cannot follow the code.
lint:
	@./tools/install-deps.sh cppcheck
	cppcheck --quiet --enable=warning,portability --inline-suppr --std=c11 -I kernel -I include \
	  --suppress=missingIncludeSystem --error-exitcode=1 kernel/ plugins/

# bench/run.sh asks for the list here, so that it lives in one place.
peer-packages:
	@echo $(PEER_PACKAGES)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRM_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCRM_SANITIZE=ON -DCRM_WERROR=$(WERROR) >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# libFuzzer binaries (fuzz/), the kernel instrumented for them (CRM_FUZZ).
build-fuzz: deps fuzz-deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRM_FUZZ=ON -DCRM_WERROR=$(WERROR) >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

run: build
	$(BUILD)/crmd serve --data ./data --schemas ./schemas --scripts ./scripts --plugins $(BUILD)/plugins

# Synthetic CRM data through every feature's hooks (docs/features/demo.md).
# DEMO_ARGS adds flags, e.g. make demo DEMO_ARGS="--contacts 10000 --seed 2".
DEMO_DATA ?= ./demo-data
demo: build
	$(BUILD)/crmd demo --data $(DEMO_DATA) --schemas ./schemas --scripts ./scripts \
	  --plugins $(BUILD)/plugins $(DEMO_ARGS)

demo-serve: build
	$(BUILD)/crmd serve --data $(DEMO_DATA) --schemas ./schemas --scripts ./scripts --plugins $(BUILD)/plugins

# Everything as a packager builds it (Release: -O3,
# where gcc finds warnings -O2 does not), warnings as errors: part of make test.
build-release: deps
	cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release -DCRM_WERROR=ON >/dev/null
	cmake --build $(RELEASE_BUILD) -j$(JOBS)

# The whole suite twice: an optimised build, then under ASan + UBSan.
test test-fast: WERROR = ON
test: build build-asan build-release interop-deps browser-deps
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)
	$(MAKE) fuzz-smoke WERROR=ON
	$(MAKE) lint

test-fast: build interop-deps browser-deps
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	./bench/run.sh $(BUILD)

# R9: every fuzz target 20 s from its corpus; fails on a crash, leak or timeout.
fuzz-smoke: build-fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) ./fuzz/run.sh 20 $(FUZZ_TARGETS)

# R9, long: every target FUZZ_SECONDS; prints executions and coverage.
fuzz: build-fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) ./fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# R22: unit + e2e under valgrind memcheck; fails on any error or leak.
valgrind: deps
	@./tools/install-deps.sh $(VALGRIND_PACKAGES)
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRM_VALGRIND=ON >/dev/null
	cmake --build $(VALGRIND_BUILD) -j$(JOBS)
	./tools/valgrind-suite.sh $(VALGRIND_BUILD) -j$(JOBS)

soak: build
	CRM_CRASH_CYCLES=1000 $(BUILD)/tests/crash_store
	cd $(BUILD)/tests && CRM_CRASH_CYCLES=200 ctest -R crash_hooks --output-on-failure
	cd $(BUILD)/tests && CRM_ACK_WRITES=20000 CRM_OOM_FULL=1 CRM_POWER_CYCLES=50 ctest -L fault --output-on-failure

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(VALGRIND_BUILD) $(RELEASE_BUILD)
