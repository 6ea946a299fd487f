# skiff: `make run` starts the server, `make test` runs every check.
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= $(HOME)/.skiff
LISTEN ?= 127.0.0.1:6443
export CARGO_TERM_COLOR ?= never

.PHONY: run build release deps test test-unit test-e2e lint fmt bench clean

## Install what is missing, build, and start `skiff server` in the foreground.
run: deps release
	@echo "starting skiff server on $(LISTEN), data in $(DATA_DIR)"
	@echo "then, in another shell:  export KUBECONFIG=$(DATA_DIR)/admin.kubeconfig; kubectl get ns"
	./target/release/skiff server --listen $(LISTEN) --data-dir $(DATA_DIR)

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --bin skiff

## System packages and Python test dependencies (idempotent).
deps:
	@./scripts/deps.sh

## Everything CI runs: format, lint, unit and end-to-end tests.
test: deps lint test-unit test-e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit and crate-level tests of every library crate.
test-unit:
	$(CARGO) test --workspace --exclude skiff

# End-to-end: real servers driven by kubectl, Python and kube-rs.
test-e2e:
	$(CARGO) test -p skiff -- --test-threads=4

fmt:
	$(CARGO) fmt --all

bench: deps release
	./bench/run.sh

clean:
	$(CARGO) clean
