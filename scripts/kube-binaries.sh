#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd used by tests (internal/testenv/kubeapi)
# from the Go module proxy, via the tools module in tools/kube, into
# .cache/bin at the repository root. Needs only Go.
#
# Idempotent: it builds only when a binary is missing or when
# tools/kube/go.mod, go.sum or etcd/main.go changed since the last build
# (a stamp with their hash is kept beside the binaries). Concurrent callers
# (parallel test packages) wait on a lock instead of building twice.
#
# Usage: scripts/kube-binaries.sh [--force]
# Prints, on stdout, one line per binary:
#   KUBE_APISERVER=/abs/path/.cache/bin/kube-apiserver
#   ETCD=/abs/path/.cache/bin/etcd
# Progress and build output go to stderr.
#
# Environment:
#   SERVICEMAP_CACHE_DIR  cache root instead of <repo>/.cache
#   KUBE_BINARIES_FORCE=1 same as --force
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tools="$root/tools/kube"
cache="${SERVICEMAP_CACHE_DIR:-$root/.cache}"
bin="$cache/bin"
stamp="$bin/.kube-binaries.stamp"
force="${KUBE_BINARIES_FORCE:-0}"
if [[ "${1:-}" == "--force" ]]; then force=1; fi

log() { echo "kube-binaries: $*" >&2; }

tmp=""
cleanup() { if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

if ! command -v go >/dev/null 2>&1; then
  log "go is not on PATH; install Go (see tools/kube/go.mod for the minimum version)"
  exit 1
fi
for f in go.mod go.sum etcd/main.go; do
  if [[ ! -f "$tools/$f" ]]; then
    log "missing $tools/$f"
    exit 1
  fi
done

mkdir -p "$bin"

hash_inputs() {
  (cd "$tools" && cat go.mod go.sum etcd/main.go) | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [[ "$force" != 1 ]] &&
    [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -f "$stamp" ]] &&
    [[ "$(cat "$stamp")" == "$(hash_inputs)" ]]
}

build() {
  local want start
  want="$(hash_inputs)"
  tmp="$(mktemp -d "$cache/build.XXXXXX")"
  start=$(date +%s)
  log "building kube-apiserver and etcd into $bin (first build takes several minutes)"
  (
    cd "$tools"
    export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
    go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$tmp/etcd" ./etcd
    log "etcd built after $(( $(date +%s) - start ))s"
    go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv -f "$tmp/etcd" "$bin/etcd"
  mv -f "$tmp/kube-apiserver" "$bin/kube-apiserver"
  echo "$want" > "$stamp"
  log "built in $(( $(date +%s) - start ))s"
  force=0
}

if ! up_to_date; then
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$bin/.lock"
    flock 9
  fi
  # Another caller may have built while we waited for the lock.
  if ! up_to_date; then
    build
  fi
fi

echo "KUBE_APISERVER=$bin/kube-apiserver"
echo "ETCD=$bin/etcd"
