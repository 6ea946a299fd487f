#!/usr/bin/env bash
# Install what `make run` / `make test` need on a fresh Debian machine, idempotently.
set -euo pipefail

need_apt=()
command -v kubectl >/dev/null || echo "warning: kubectl not found on PATH (tests need kubectl v1.32)" >&2
command -v gcc >/dev/null || need_apt+=(gcc)
command -v curl >/dev/null || need_apt+=(curl)
command -v make >/dev/null || need_apt+=(make)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -c 'import kubernetes' 2>/dev/null; then
  python3 -m pip install --quiet 'kubernetes>=31,<33' || python3 -m pip install --quiet --break-system-packages 'kubernetes>=31,<33'
fi
