#!/usr/bin/env bash
# tuf push-target and push-metadata into a loopback `trainyard registry
# serve` (a fresh registry and repository every round), with wall time and
# peak RSS, beside `openssl dgst -sha256` of the same file (the hashing
# floor every push-target pays) in the same round. Memory must not grow
# with the target: push-metadata never opens a target file, and its RSS is
# the scrypt scratch of the role keys it unlocks, one at a time.
# TRAINYARD_BENCH_TUF_PUSH_BYTES (default 268435456 = 256 MiB) sets the
# target size, ROUNDS (default 3) the rounds. BASELINE=<git revision> adds
# rows with trainyard built from that revision (before/after in one run).
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${TRAINYARD_BENCH_TUF_PUSH_BYTES:-268435456}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh

echo "target: $BYTES bytes; $(nproc) CPUs; $(openssl version)"
bench_build
bench_port
head -c "$BYTES" /dev/urandom >"$work/target.bin"
export TRAINYARD_TUF_INSECURE=1 TRAINYARD_TUF_ROOT_KEY_PASSWORD=bench TRAINYARD_TUF_TARGETS_KEY_PASSWORD=bench \
	TRAINYARD_TUF_SNAPSHOT_KEY_PASSWORD=bench TRAINYARD_TUF_TIMESTAMP_KEY_PASSWORD=bench

# pushes BIN: "target-wall target-RSS metadata-wall metadata-RSS" into a
# fresh registry and repository.
pushes() {
	fresh
	local repo=$host/bench/tuf root=$work/repos-$RANDOM
	export TRAINYARD_TUF_REPOSITORIES_ROOT=$root
	"$1" tuf create-root-key "$repo" >/dev/null
	"$1" tuf create-metadata-keys "$repo" >/dev/null
	"$1" tuf create-metadata "$repo" >/dev/null
	local t m
	t=$(tm "$1" tuf push-target "$repo" target.bin "$work/target.bin")
	m=$(tm "$1" tuf push-metadata "$repo")
	rm -rf "$root"
	echo "$t $m" | awk '{ print $1, $2, $4, $5 }'
}
row() {
	awk -v r="$1" -v w="$2" -v tw="$3" -v tr="$4" -v mw="$5" -v mr="$6" -v a="$dg" 'BEGIN {
		printf "%-5s %-16s %9.2f %9.2fx %8s %9.2f %8s\n", r, w, tw, tw / a, tr, mw, mr }'
}
printf '\n%-5s %-16s %9s %10s %8s %9s %8s\n' round code "target s" "/openssl" "MiB" "meta s" "MiB"
for r in $(seq 1 "$ROUNDS"); do
	dg=$(tm openssl dgst -sha256 "$work/target.bin" | awk '{ print $1 }')
	row "$r" trainyard $(pushes "$work/trainyard")
	if [ -n "${BASELINE:-}" ]; then
		row "$r" "$BASELINE" $(pushes "$work/base-trainyard")
	fi
	echo "$r     openssl dgst: $dg s"
done
