#!/usr/bin/env bash
# tuf push-target and push-metadata into a loopback `trainyard registry
# serve` (a fresh registry and repository every round), with wall time and
# peak RSS, beside the floor of any blob push in the same round: `openssl
# dgst -sha256` of the file, then one monolithic upload of it with curl
# (POST, then PUT ?digest=) into a fresh registry. Memory must not grow
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
printf '\n%-5s %-16s %9s %10s %8s %9s %8s\n' round code "target s" "/floor" "MiB" "meta s" "MiB"
# floor: seconds to hash the file and upload it in one PUT, fresh registry.
floor() {
	fresh
	local t0 t1 sum loc
	t0=$(date +%s.%N)
	sum=$(openssl dgst -sha256 -r "$work/target.bin" | cut -d' ' -f1)
	loc=$(curl -fsS -X POST -D - -o /dev/null "http://$host/v2/bench/floor/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location" { print $2 }')
	case $loc in http*) ;; *) loc=http://$host$loc ;; esac
	case $loc in *\?*) loc="$loc&digest=sha256:$sum" ;; *) loc="$loc?digest=sha256:$sum" ;; esac
	curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T "$work/target.bin" "$loc" -o /dev/null
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}
for r in $(seq 1 "$ROUNDS"); do
	dg=$(floor)
	row "$r" trainyard $(pushes "$work/trainyard")
	if [ -n "${BASELINE:-}" ]; then
		row "$r" "$BASELINE" $(pushes "$work/base-trainyard")
	fi
	echo "$r     floor (openssl dgst + one curl PUT): $dg s"
done
