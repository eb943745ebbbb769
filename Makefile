# prime-server: `make run` starts the server, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
# Extra flags for `make run`, e.g. make run ARGS='--log-level debug'
ARGS ?=

.PHONY: all build run test lint fmt deps clean soak fuzz bench mutants deb test-package differential-long

all: build

## deps: install the build tools cargo cannot (m4, for GMP)
deps:
	@scripts/ensure-tools.sh m4

## build: release binaries of the whole workspace (server and bench) in target/release
build: deps
	$(CARGO) build --release --workspace --bins

## run: the server on 127.0.0.1:8809, audit log in logs/prime_server.log
run: deps
	$(CARGO) run --release --bin prime-server -- $(ARGS)

## test: unit, integration and doc tests of the workspace (the bench's smoke
## run and test-support's own unit tests included), criterion once per
## case, the primality differential test against GMP in an optimised build
## (10^6 numbers below 2^128 and 10^5 up to 1000 bits: about half a minute
## optimised; a debug build runs a hundredth of it), then a short run of
## each fuzz target (FUZZ_TEST_SECONDS each). On CI (CI=true) every tool a test needs
## is installed or the run fails, so no test can skip there; locally a
## missing tool makes its tests skip, loudly.
FUZZ_TEST_SECONDS ?= 20
test: deps
	@scripts/ensure-tools.sh --optional python3 logrotate haproxy socat strace fiu-run fiu-ctrl lintian systemd-analyze prometheus promtool rsyslogd
	@scripts/bench-venv.sh
	$(CARGO) test --workspace
	$(CARGO) test --workspace --benches
	$(CARGO) test --release --test primality_differential
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) FUZZ_OPTIONAL=$(if $(filter-out 0 false,$(CI)),,1)

## deb: the Debian package, target/debian/prime-server_<version>-1_<arch>.deb
## (debug symbols in prime-server-dbgsym_*.ddeb beside it), built with
## cargo-deb (installed with cargo install when missing, pinned to
## CARGO_DEB_VERSION); the man pages are written from the binaries' --help
## with help2man. Install it with `sudo apt install ./target/debian/prime-server_*.deb`.
## tests/package.rs tests the package `make deb` built last (CI builds it
## before `make test`); see docs/packaging.md.
CARGO_DEB_VERSION ?= 3.8.0
deb: deps
	@scripts/ensure-tools.sh help2man
	@command -v cargo-deb >/dev/null 2>&1 || { echo "make deb: installing cargo-deb $(CARGO_DEB_VERSION) with cargo install"; $(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked; }
	$(CARGO) build --release -p prime-server --bins
	scripts/man-pages.sh target/release target/man
	$(CARGO) deb --no-build

## test-package: `make deb`, then only the package's tests (tests/package.rs;
## installing it needs root and dpkg, and leaves the machine as it was)
test-package: deb
	@scripts/ensure-tools.sh --optional lintian systemd-analyze
	$(CARGO) test --test package

## bench: prime-server beside the floor and the Python references (not in CI);
## writes bench/results/latest.md and latency.svg (BENCH_ARGS='--rounds 5' etc.)
BENCH_ARGS ?=
bench: build
	@scripts/ensure-tools.sh --optional perf
	@scripts/bench-venv.sh
	target/release/prime-bench compare $(BENCH_ARGS)
	$(CARGO) bench -p prime-server --bench primality

## lint: formatting, clippy and the API docs, warnings are errors
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --workspace --no-deps

## soak: a longer bounded load-plus-faults session (not in CI); prints figures
## (SOAK_CONNECTIONS=10000 SOAK_THREADS=64 SOAK_SECONDS=120 to change it)
soak: deps
	$(CARGO) test --release --test soak -- --ignored --nocapture

## differential-long: our Baillie-PSW against GMP at every bit length up to
## 14,300 (not in CI: about 16 minutes on two cores); PRIME_DIFF_SEED=<n>
## replays a run, PRIME_DIFF_SCALE=<x> scales the short tests' counts.
differential-long: deps
	$(CARGO) test --release --test primality_differential -- --include-ignored --nocapture

## fuzz: fuzz each target (the line parser, the PROXY header parser, the
## connection's line framing, our Baillie-PSW against GMP's) for FUZZ_SECONDS (installs cargo-fuzz if
## missing); FUZZ_TARGETS=conn_framing for one. With FUZZ_OPTIONAL=1 (what
## `make test` passes off CI) a cargo-fuzz that cannot be installed skips
## the fuzzing with a message instead of failing. cargo-fuzz needs nightly
## flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= parse_line proxy_header conn_framing prime_wide
FUZZ_OPTIONAL ?=
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "make fuzz: installing cargo-fuzz with cargo install"; $(CARGO) install cargo-fuzz --locked; } \
		|| { [ -n "$(FUZZ_OPTIONAL)" ] && echo "make fuzz: SKIPPED: cargo-fuzz is missing and could not be installed" && exit 0; exit 1; }
	@command -v cargo-fuzz >/dev/null 2>&1 || exit 0; \
	cd fuzz && $(CARGO) metadata --locked --format-version 1 >/dev/null && \
	for t in $(FUZZ_TARGETS); do \
		echo "make fuzz: $$t for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## mutants: mutation testing of the core modules with their unit tests (not in
## CI: about 770 mutants, see CONTRIBUTING.md#mutation-testing for the time;
## installs cargo-mutants if missing). Fails when a mutant survives
## (equivalent ones are listed in .cargo/mutants.toml), judged by
## missed.txt: cargo-mutants exits 3 when any mutant timed out even if
## others were missed. A mutant that makes a test hang is caught by the
## timeout. The report is in target/mutants/mutants.out
## (missed.txt, caught.txt, timeout.txt, ...). Narrow it with
## MUTANTS_FILES='src/prime/parse.rs'.
MUTANTS_FILES ?= src/prime/parse.rs src/escape.rs src/prime/verdict.rs src/prime/primality.rs src/prime/primality/small.rs src/prime/primality/wide.rs src/prime/primality/bpsw.rs src/audit/log.rs src/net/connection.rs src/net/framing.rs src/net/ready_queue.rs src/lock.rs
mutants: deps
	@command -v cargo-mutants >/dev/null 2>&1 || { echo "make mutants: installing cargo-mutants with cargo install"; $(CARGO) install cargo-mutants --locked; }
	@$(CARGO) mutants $(addprefix --file ,$(MUTANTS_FILES)) --output target/mutants --cargo-arg=--lib; \
		status=$$?; \
		missed=target/mutants/mutants.out/missed.txt; \
		if [ -s $$missed ]; then echo "make mutants: $$(wc -l < $$missed) survived:"; cat $$missed; exit 1; fi; \
		if [ $$status -eq 3 ]; then echo "make mutants: no survivor (some caught by the timeout: they made a test hang)"; exit 0; fi; \
		exit $$status

## fmt: format the code
fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
