#!/usr/bin/env bash
# Runs the core benchmarks (service map, alert frames, ingest, memory) and
# keeps the raw output under .cache/bench/. Needs PostgreSQL server binaries
# (/usr/lib/postgresql/*/bin; installed on demand when run as root).
# Heavy: about 10 minutes for the in-memory day (432M calls built once per
# binary), a few minutes per 10M-row PostgreSQL load.
#   BENCH_SPAN_ROWS=10000000 scripts/bench.sh   # full-scale spans ingest
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/bench/core-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p .cache/bench
{
  echo "# $(date -u +%FT%TZ) nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')\" $(go version)"
  echo "# load: $(cat /proc/loadavg)"
  set -x
  go test ./pkg/store -run '^$' -bench 'ServiceMapDirect$|EdgeMetricsNumeric|Memory24h' -benchtime 20x -benchmem -timeout 60m
  go test ./pkg/plugin -run '^$' -bench 'SQLAlternative' -benchtime 10x -timeout 60m | grep -v '^{"@level"'
  go test ./pkg/source/traces -run '^$' -bench 'IngestSpans' -benchtime 3x -timeout 60m
} 2>&1 | tee "$out"
echo "raw output: $out"
