#!/bin/sh
# Benchmark of the legacy PHT protocol: post-run + pre-run on a train with
# 1,000 result files and 1 GiB of results (scale with
# TRAINYARD_BENCH_PHT_BYTES / TRAINYARD_BENCH_PHT_FILES). Reports time,
# throughput, peak Go heap and peak RSS; needs ~6 GiB of free space in
# TMPDIR for spooled files and layers.
set -eu
cd "$(dirname "$0")/.."
exec go test ./protocol/phtv2/ -run '^$' -bench '^BenchmarkPostRunPreRun$' -benchtime 1x -timeout 60m "$@"
