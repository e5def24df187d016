#!/usr/bin/env bash
# pht-v2 post-run at one station + pre-run at the next, beside its anchors
# measured in the same run, round by round (interleaved):
#   trainyard      BenchmarkPostRunPreRun (protocol/phtv2), one op
#   seed way       bench/pht_seed.py: the PHT library's own computation with
#                  Debian's python3-cryptography, tar in memory (no Docker)
#   format limit   what SHA-512 + AES-256-CBC cost on the same bytes with
#                  openssl: dgst -sha512 twice, enc -aes-256-cbc, enc -d
# Each row prints seconds, the ratio to each anchor and peak RSS.
# TRAINYARD_BENCH_PHT_BYTES (default 268435456 = 256 MiB) and
# TRAINYARD_BENCH_PHT_FILES (default 1000) set the results; ROUNDS
# (default 3) the rounds. BASELINE=<git revision> adds a column with the
# same benchmark built from that revision (git archive into the temp dir),
# for before/after figures in one run. Needs ~4x the bytes free in TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${TRAINYARD_BENCH_PHT_BYTES:-268435456}
FILES=${TRAINYARD_BENCH_PHT_FILES:-1000}
ROUNDS=${ROUNDS:-3}
export TRAINYARD_BENCH_PHT_BYTES=$BYTES TRAINYARD_BENCH_PHT_FILES=$FILES
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "results: $BYTES bytes in $FILES files; $(nproc) CPUs; $(openssl version); python3 $(python3 -c 'import cryptography; print("cryptography", cryptography.__version__)')"
python3 bench/pht_seed.py gen "$work" "$BYTES" "$FILES"
head -c "$BYTES" "$work/results.tar" >"$work/data"
key=$(openssl rand -hex 32)
iv=$(openssl rand -hex 16)
go test -c -o "$work/phtv2.test" ./protocol/phtv2/
if [ -n "${BASELINE:-}" ]; then
	mkdir "$work/base"
	git archive "$BASELINE" | tar -x -C "$work/base"
	# The current benchmark (it reports CPU time) over the old code.
	cp protocol/phtv2/bench_test.go "$work/base/protocol/phtv2/"
	(cd "$work/base" && go test -c -o "$work/base.test" ./protocol/phtv2/)
fi

# bench BIN DIR: one op of the benchmark; prints wall s, peak RSS MiB, CPU s.
bench() {
	(cd "$2" && TMPDIR="$work" "$1" -test.run '^$' -test.bench '^BenchmarkPostRunPreRun$' -test.benchtime 1x) |
		awk '/^BenchmarkPostRunPreRun/ { for (i=1;i<=NF;i++) { if ($(i+1)=="ns/op") t=$i/1e9; if ($(i+1)=="peak-rss-MiB") m=$i; if ($(i+1)=="cpu-s/op") c=$i }; printf "%.2f %.0f %.2f\n", t, m, c }'
}
# row ROUND WHAT WALL CPU RSS: one line, with trainyard's ratio to it.
row() {
	awk -v r="$1" -v w="$2" -v t="$3" -v c="$4" -v m="$5" -v tt="$ty" -v tc="$tycpu" 'BEGIN {
		printf "%-5s %-22s %8.2f %8.2f %8s", r, w, t, c, m
		if (w != "trainyard") printf " %9.2fx %9.2fx", tt / t, tc / c
		printf "\n" }'
}

printf '\n%-5s %-22s %8s %8s %8s %10s %10s\n' round what "wall s" "CPU s" "RSS MiB" "ty/wall" "ty/CPU"
for r in $(seq 1 "$ROUNDS"); do
	read -r ty tyrss tycpu < <(bench "$work/phtv2.test" protocol/phtv2)
	row "$r" trainyard "$ty" "$tycpu" "$tyrss"
	if [ -n "${BASELINE:-}" ]; then
		read -r bl blrss blcpu < <(bench "$work/base.test" "$work/base/protocol/phtv2")
		row "$r" "baseline $BASELINE" "$bl" "$blcpu" "$blrss"
	fi
	read -r py pyrss pycpu < <(python3 bench/pht_seed.py run "$work")
	row "$r" "seed way (python)" "$py" "$pycpu" "$pyrss"
	: >"$work/t"
	tm() { /usr/bin/time -a -o "$work/t" -f '%e %U %S' "$@"; }
	tm openssl dgst -sha512 -out /dev/null "$work/data"
	tm openssl enc -aes-256-cbc -K "$key" -iv "$iv" -in "$work/data" -out "$work/data.cbc"
	tm openssl enc -d -aes-256-cbc -K "$key" -iv "$iv" -in "$work/data.cbc" -out /dev/null
	tm openssl dgst -sha512 -out /dev/null "$work/data"
	rm -f "$work/data.cbc"
	read -r lw lc < <(awk '{ w += $1; c += $2 + $3 } END { print w, c }' "$work/t")
	row "$r" "format limit (openssl)" "$lw" "$lc" -
done
echo
echo "ty/...: trainyard's time divided by that row's (goal: <= 0.25x the seed way; the format limit is 1x)."
echo "CPU s is user + system of the measured part; on a shared machine it varies less than wall time."
