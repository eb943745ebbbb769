# prime-server: `make run` starts the server, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
# Extra flags for `make run`, e.g. make run ARGS='--log-level debug'
ARGS ?=

.PHONY: all build run test lint fmt deps clean

all: build

## deps: install the build tools cargo cannot (m4, for GMP)
deps:
	@scripts/ensure-tools.sh m4

## build: release binaries in target/release
build: deps
	$(CARGO) build --release --bins

## run: the server on 127.0.0.1:8809, audit log in logs/prime_server.log
run: deps
	$(CARGO) run --release --bin prime-server -- $(ARGS)

## test: unit, integration and doc tests
test: deps
	$(CARGO) test

## lint: formatting and clippy, warnings are errors
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
