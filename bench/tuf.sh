#!/usr/bin/env bash
# TUF over OCI benchmarks: pull-metadata of 10,000 targets and pull-target
# of a 1 GiB target (generated on the fly), with peak heap in MiB.
# TRAINYARD_TUF_BENCH_SIZE=<bytes> changes the target size (needs ~3x disk).
set -euo pipefail
cd "$(dirname "$0")/.."
go test ./tuf/client/ -run '^$' -bench 'BenchmarkPull' -benchtime 1x -timeout 30m "$@"
