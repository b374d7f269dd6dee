# crmd -- convenience wrapper around CMake and ctest.
#   make run    install what is missing, build, run the server on ./data
#   make test   install what is missing, build (normal + ASan/UBSan), run every test
#   make bench  build and run the benchmarks (never part of `make test`)
#   make soak   long crash runs (never part of `make test`)

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEB_PACKAGES = build-essential cmake pkg-config liblmdb-dev liblua5.4-dev \
               libwebsockets-dev libmsgpack-dev libjansson-dev libcmocka-dev libssl-dev lmdb-utils

.PHONY: deps build build-asan run test test-fast bench soak clean

deps:
	@./tools/install-deps.sh $(DEB_PACKAGES)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCRM_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

run: build
	$(BUILD)/crmd serve --data ./data --schemas ./schemas --scripts ./scripts --plugins ./plugins

# The whole suite twice: an optimised build, then under ASan + UBSan.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	./bench/run.sh $(BUILD)

soak: build
	CRM_CRASH_CYCLES=1000 $(BUILD)/tests/crash_store

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
