#!/usr/bin/env bash
# TUF over OCI benchmarks, each beside its anchor in the same run:
#   pull-target   BenchmarkPullTargetBesideCraneBlob: -o FILE, to stdout
#                 (into a file), and `crane blob REPO@DIGEST > file` of the
#                 same blob (crane at the go.mod version), one after the
#                 other in each round, with their ratios
#   pull-metadata BenchmarkPullMetadata10000Targets (peak heap) beside
#                 fetching the same files unverified and a Python client's
#                 floor over them (bench/tuf_metadata_seed.py: parse,
#                 canonical JSON, ed25519), round by round
# TRAINYARD_TUF_BENCH_SIZE=<bytes> sets the target size (default 256 MiB;
# needs ~3x free disk), ROUNDS (default 3) the rounds. BASELINE=<git
# revision> adds a row per round with the same benchmark run over the code
# of that revision (git archive into the temp dir), for before/after
# figures in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
export TRAINYARD_TUF_BENCH_SIZE=${TRAINYARD_TUF_BENCH_SIZE:-268435456}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/crane" github.com/google/go-containerregistry/cmd/crane
export TRAINYARD_CRANE=$work/crane
go test -c -o "$work/client.test" ./tuf/client/
if [ -n "${BASELINE:-}" ]; then
	mkdir "$work/base"
	git archive "$BASELINE" | tar -x -C "$work/base"
	cp tuf/client/bench_test.go "$work/base/tuf/client/"
	(cd "$work/base" && go test -c -o "$work/base.test" ./tuf/client/)
fi
echo "target: $TRAINYARD_TUF_BENCH_SIZE bytes; $(nproc) CPUs; crane $(go list -m -f '{{.Version}}' github.com/google/go-containerregistry)"

# bench BIN DIR: one op; prints download, stdout and crane seconds.
bench() {
	(cd "$2" && TMPDIR="$work" "$1" -test.run '^$' -test.bench '^BenchmarkPullTargetBesideCraneBlob$' -test.benchtime 1x) |
		awk '/^BenchmarkPullTargetBesideCraneBlob/ { for (i=1;i<=NF;i++) { if ($(i+1)=="download-s/op") d=$i; if ($(i+1)=="stdout-s/op") s=$i; if ($(i+1)=="crane-blob-s/op") c=$i }; printf "%.2f %.2f %.2f\n", d, s, c }'
}
row() {
	awk -v r="$1" -v w="$2" -v d="$3" -v s="$4" -v c="$5" 'BEGIN {
		printf "%-5s %-18s %10.2f %10.2f %10.2f %9.2fx %9.2fx\n", r, w, d, s, c, d / c, s / c }'
}
printf '\n%-5s %-18s %10s %10s %10s %10s %10s\n' round code "-o FILE s" "stdout s" "crane s" "-o/crane" "out/crane"
for r in $(seq 1 "$ROUNDS"); do
	read -r d s c < <(bench "$work/client.test" tuf/client)
	row "$r" trainyard "$d" "$s" "$c"
	if [ -n "${BASELINE:-}" ]; then
		read -r d s c < <(bench "$work/base.test" "$work/base/tuf/client")
		row "$r" "$BASELINE" "$d" "$s" "$c"
	fi
done
echo
echo "goal: -o FILE <= 1.05x crane blob > file. To stdout the target is staged in a"
echo "temp file and verified before its first byte is written (docs/performance.md)."
echo
mkdir "$work/dump"
echo "pull-metadata, 10,000 targets: trainyard (fetch, verify, store) beside fetching the same"
echo "files alone and a Python client's floor (parse, canonical JSON, ed25519; bench/tuf_metadata_seed.py)"
printf '%-5s %12s %10s %12s %10s %10s\n' round "trainyard s" "fetch s" "python s" "/python" "heap MiB"
for r in $(seq 1 "$ROUNDS"); do
	out=$(cd tuf/client && TMPDIR="$work" TRAINYARD_TUF_BENCH_DUMP="$work/dump" "$work/client.test" -test.run '^$' \
		-test.bench '^BenchmarkPullMetadata10000Targets$' -test.benchtime 3x | grep '^BenchmarkPullMetadata')
	py=$(python3 bench/tuf_metadata_seed.py "$work/dump")
	echo "$out" | awk -v r="$r" -v py="$py" '{ for (i=1;i<=NF;i++) { if ($(i+1)=="ns/op") t=$i/1e9; if ($(i+1)=="fetch-s") f=$i; if ($(i+1)=="peak-heap-MiB") h=$i }
		printf "%-5s %12.3f %10.3f %12.3f %9.2fx %10.1f\n", r, t, f, py, t / py, h }'
done
