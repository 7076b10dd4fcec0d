#!/usr/bin/env bash
# The main job: build the plugin (backend with mage, frontend with webpack),
# load a sample shop's traces into a throwaway PostgreSQL and print the
# service map the plugin serves over the real plugin protocol.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SKIP_KUBE_BINARIES=1 scripts/setup.sh
export PATH="$(go env GOPATH)/bin:$PATH"
echo "== building the plugin into dist/"
mage -v >/dev/null
npm run --silent build >/dev/null
ls dist/gpx_servicemap_linux_amd64 dist/module.js dist/plugin.json dist/go_plugin_build_manifest
echo "== serving a sample service map"
go run ./cmd/servicemap-demo
