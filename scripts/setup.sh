#!/usr/bin/env bash
# Installs what the build, the demo and the tests need on a fresh machine:
# Debian packages when running as root (PostgreSQL server, iproute2, iptables,
# procps), the mage build tool, the npm packages, and the cached real
# kube-apiserver + etcd. Idempotent: it only installs what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_pkgs=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
[[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light) # gateway access-log tests (internal/testenv/nginx)
if ((${#need_pkgs[@]} > 0)); then
  if [[ "$(id -u)" == 0 ]]; then
    echo "setup: installing ${need_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: missing ${need_pkgs[*]} (run as root to install them)" >&2
  fi
fi

command -v go >/dev/null || { echo "setup: Go is required (https://go.dev/dl)" >&2; exit 1; }
export PATH="$(go env GOPATH)/bin:$PATH"
command -v mage >/dev/null 2>&1 || go install github.com/magefile/mage@v1.17.2

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [[ "${SKIP_KUBE_BINARIES:-0}" != 1 ]]; then
  scripts/kube-binaries.sh >/dev/null
fi
