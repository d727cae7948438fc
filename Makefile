# The two commands of the README:
#   make quickstart   build, run the embedded examples, then the gateway in front of a demo
#                     upstream (QUICKSTART_CHECK=1: check it and exit instead of staying up)
#   make test         install deps, build, and run the whole test suite (what CI runs)
SHELL := /bin/bash
JOBS ?= $(shell nproc)

.PHONY: all deps build quickstart test test-release test-asan test-tsan test-fuzz bench bench-proxy \
	profile-proxy format lint clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

BULWARK_BIN ?= $(CURDIR)/build/release/gateway/bulwark

quickstart: build
	./build/release/examples/embedded_sync
	./build/release/examples/embedded_asio
	BULWARK_BIN=$(BULWARK_BIN) bash scripts/quickstart.sh

test: deps
	bash scripts/test.sh all

test-release test-asan test-tsan test-fuzz: deps
	bash scripts/test.sh $(subst test-,,$@)

bench: build
	./build/release/bench/bulwark_bench --benchmark_min_time=0.2 --benchmark_repetitions=3 \
	  --benchmark_report_aggregates_only=true

# bulwark vs HAProxy vs nginx, one worker each, in one run (docs/BENCHMARKS.md). Env knobs:
# BENCH_DURATION, BENCH_CONNECTIONS (a list, default "32 256"), BENCH_SHAPES, BENCH_THREADS,
# BENCH_WARMUP, BENCH_ROUNDS, BENCH_RESULTS.
bench-proxy: build
	BULWARK_BIN=$(BULWARK_BIN) bash bench/proxy/run.sh

# Allocations, instructions and system calls per request of each proxy, with heaptrack, callgrind
# and strace (docs/BENCHMARKS.md, "Profiling the data path"). Env knobs: PROFILE_* in
# bench/proxy/profile.sh.
profile-proxy: build
	BULWARK_BIN=$(BULWARK_BIN) bash bench/proxy/profile.sh

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

lint:
	cmake --preset release >/dev/null
	git ls-files 'lib/src/*.cc' 'gateway/src/*.cc' | grep -v -e '_fuzz.cc' -e 'beast_impl.cc' \
		| xargs -P2 -n1 clang-tidy -p build/release --quiet

clean:
	rm -rf build
