#!/usr/bin/env bash
# Build the release server and the API benchmark, then run it once.
# The report is printed and also written to target/bench/api.md; copy it into
# docs/benchmarks.md when recording a run. Extra arguments go to the benchmark
# (see `target/release/api --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin skiff -p skiff
cargo build --release --bin api -p skiff-bench

# Bounded: every run inside the benchmark also has its own cap.
timeout 600 ./target/release/api --skiff target/release/skiff --out target/bench/api.md "$@"
