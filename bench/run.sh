#!/usr/bin/env bash
# Build the release server and the benchmarks (API, scale, node), then run each once.
# The report is printed and also written to target/bench/api.md; copy it into
# docs/benchmarks.md when recording a run. Extra arguments go to the benchmark
# (see `target/release/api --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin skiff -p skiff
cargo build --release --bin api -p skiff-bench
cargo build --release --bin scale -p skiff-bench
cargo build --release --bin node -p skiff-bench

# The node benchmark's peer: podman (only the benchmark needs it, not `make test`).
if [ "$(id -u)" = 0 ] && ! command -v podman >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman
fi

# Bounded: every run inside the benchmark also has its own cap.
timeout 600 ./target/release/api --skiff target/release/skiff --out target/bench/api.md "$@"
# The scale benchmark (fake nodes): Deployment to 1k and 10k pods, a 1k rollout.
timeout 900 ./target/release/scale --skiff target/release/skiff --out target/bench/scale.md
# The node benchmark (real pods: needs root): pod start vs raw runc and podman,
# 100 pods at once, a 500-replica Deployment, agent RSS per pod.
if [ "$(id -u)" = 0 ]; then
  timeout 600 ./target/release/node --skiff target/release/skiff --out target/bench/node.md
else
  echo "node benchmark skipped: needs root" >&2
fi
