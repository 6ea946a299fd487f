#!/usr/bin/env bash
# Install what `make run` / `make test` need on a fresh Debian machine, idempotently.
set -euo pipefail

need_apt=()
command -v kubectl >/dev/null || echo "warning: kubectl not found on PATH (tests need kubectl v1.32)" >&2
command -v gcc >/dev/null || need_apt+=(gcc)
command -v curl >/dev/null || need_apt+=(curl)
command -v make >/dev/null || need_apt+=(make)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# The virtual node: an OCI runtime, CNI plugins, namespaces and packet filtering;
# busybox-static builds the test images; skopeo pushes them for pull tests to
# docker-registry run on 127.0.0.1.
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nft >/dev/null || need_apt+=(nftables)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
# Tests: `script` gives kubectl a terminal (exec -it), openssl serves HTTPS probes.
command -v script >/dev/null || need_apt+=(bsdutils)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -c 'import kubernetes' 2>/dev/null; then
  python3 -m pip install --quiet 'kubernetes>=31,<33' || python3 -m pip install --quiet --break-system-packages 'kubernetes>=31,<33'
fi
