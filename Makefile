# The two commands of the README:
#   make quickstart   build and run the embedded example (a retried, breaker-guarded call)
#   make test         install deps, build, and run the whole test suite (what CI runs)
SHELL := /bin/bash
JOBS ?= $(shell nproc)

.PHONY: all deps build quickstart test test-release test-asan test-tsan test-fuzz bench format lint clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

quickstart: build
	./build/release/examples/embedded_sync
	./build/release/examples/embedded_asio

test: deps
	bash scripts/test.sh all

test-release test-asan test-tsan test-fuzz: deps
	bash scripts/test.sh $(subst test-,,$@)

bench: build
	./build/release/bench/bulwark_bench --benchmark_min_time=0.2 --benchmark_repetitions=3 \
	  --benchmark_report_aggregates_only=true

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

lint:
	cmake --preset release >/dev/null
	git ls-files 'lib/src/*.cc' | grep -v '_fuzz.cc' | xargs clang-tidy -p build/release --quiet

clean:
	rm -rf build
