#!/usr/bin/env bash
# trainyard seal (registry -> file) beside openssl enc -aes-256-cbc of the
# same bytes (the image's blobs, file to file), measured in the same run,
# round by round (interleaved). The image (four random layers, gzipped by
# crane push) sits in a `trainyard registry serve` on loopback.
# TRAINYARD_BENCH_SEAL_BYTES (default 268435456 = 256 MiB) sets the image
# size, ROUNDS (default 3) the rounds. BASELINE=<git revision> adds a row
# with trainyard built from that revision, for before/after figures in one
# run. Needs ~4x the bytes free in TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${TRAINYARD_BENCH_SEAL_BYTES:-268435456}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh

ggcr=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry)
echo "image: $BYTES bytes in 4 random layers; $(nproc) CPUs; $(openssl version); crane $ggcr"
bench_build
python3 bench/legacy_seed.py tar "$work" "$BYTES"
bench_port
fresh
img=$host/bench/seal:1
"$work/crane" push --insecure "$work/images.tar" "$img" >/dev/null 2>&1
rm -f "$work/images.tar"
# The same bytes for openssl: config and layers, as the registry holds them.
"$work/crane" manifest --insecure "$img" >"$work/manifest.json"
for d in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join([m["config"]["digest"]] + [l["digest"] for l in m["layers"]]))' "$work/manifest.json"); do
	"$work/crane" blob --insecure "$img@$d" >>"$work/blobs"
done
echo "blobs: $(stat -c %s "$work/blobs") bytes"
key=$(openssl rand -hex 32)
iv=$(openssl rand -hex 16)

seal() {
	rm -rf "$work/out" && mkdir "$work/out"
	tm "$1" seal --images "$img" --out "$work/out/x.sealed" --keys-dir "$work/out"
}
row() {
	awk -v r="$1" -v w="$2" -v t="$3" -v m="$4" -v c="$5" -v ty="$ty" -v tc="$tycpu" 'BEGIN {
		printf "%-5s %-28s %8.2f %8.2f %8s", r, w, t, c, m
		if (w != "trainyard") printf " %9.2fx %9.2fx", ty / t, tc / c
		printf "\n" }'
}

printf '\n%-5s %-28s %8s %8s %8s %10s %10s\n' round what "wall s" "CPU s" "RSS MiB" "ty/wall" "ty/CPU"
for r in $(seq 1 "$ROUNDS"); do
	read -r ty tyrss tycpu < <(seal "$work/trainyard")
	row "$r" trainyard "$ty" "$tyrss" "$tycpu"
	if [ -n "${BASELINE:-}" ]; then
		read -r bl blrss blcpu < <(seal "$work/base-trainyard")
		row "$r" "baseline $BASELINE" "$bl" "$blrss" "$blcpu"
	fi
	read -r os osrss oscpu < <(tm openssl enc -aes-256-cbc -K "$key" -iv "$iv" -in "$work/blobs" -out "$work/blobs.cbc")
	rm -f "$work/blobs.cbc"
	row "$r" "openssl enc -aes-256-cbc" "$os" "$osrss" "$oscpu"
done
rm -rf "$work/out"
echo
echo "ty/...: trainyard's time divided by that row's (goal: <= 1x openssl enc)."
echo "trainyard's CPU s leaves out the registry's (serving the blobs)."
