#!/usr/bin/env bash
# The whole test suite: set-up, frontend (typecheck, lint, jest), Go vet and
# every Go test against real parts (PostgreSQL, kube-apiserver + etcd, network
# namespaces). Run it as root on Linux so the network-namespace tests can run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh

echo "== frontend: typecheck, lint, jest"
npm run --silent typecheck
npm run --silent lint
npm run --silent test:ci

echo "== backend: go vet, go test"
# node_modules/flatted ships a Go package of its own; it is not ours to test
mapfile -t pkgs < <(go list ./... | grep -v /node_modules/)
go vet "${pkgs[@]}"
# As root every real part can be started, so a test that would skip for lack
# of one fails instead: a skip must never pass for a test that ran.
if [[ "$(id -u)" == 0 ]]; then export SERVICEMAP_REQUIRE_REAL_PARTS=1; fi
# one package at a time: the suites start servers and namespaces, and CI has 2 cores
go test -p 1 -count=1 -timeout 45m "${pkgs[@]}"
