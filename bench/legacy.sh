#!/usr/bin/env bash
# azaion-v1 unseal into a registry beside the seed's own way, measured in
# the same run, round by round (interleaved), each into a fresh
# `trainyard registry serve` on loopback:
#   trainyard   trainyard unseal --format azaion-v1 --to registry://HOST
#               (verify pass, then one load pass in tar order)
#   seed way    bench/legacy_seed.py: Python's cryptography AES-CBC to a
#               plaintext tar on disk, then `crane push` of that tar
#               (go-containerregistry at the go.mod version)
#   openssl     openssl enc -d -aes-256-cbc of the archive (one decrypt pass)
# Each row prints wall seconds, peak RSS and trainyard's ratio to it.
# TRAINYARD_BENCH_LEGACY_BYTES (default 268435456 = 256 MiB) sets the image
# size, ROUNDS (default 3) the rounds. BASELINE=<git revision> adds a row
# with trainyard built from that revision, for before/after figures in one
# run. Needs ~3x the bytes free in TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${TRAINYARD_BENCH_LEGACY_BYTES:-268435456}
ROUNDS=${ROUNDS:-3}
FRAG=bench-fragment-0123456789
. bench/lib.sh

ggcr=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry)
echo "image: $BYTES bytes in 4 uncompressed layers; $(nproc) CPUs; $(openssl version); crane $ggcr"
bench_build
python3 bench/legacy_seed.py gen "$work" "$BYTES" "$FRAG"
printf '%s' "$FRAG" >"$work/fragment"
bench_port

unseal() {
	tm "$1" unseal --format azaion-v1 --fragment-file "$work/fragment" --to "registry://$host" "$work/images.enc"
}
row() {
	awk -v r="$1" -v w="$2" -v t="$3" -v m="$4" -v ty="$ty" 'BEGIN {
		printf "%-5s %-28s %8.2f %8s", r, w, t, m
		if (w != "trainyard") printf " %9.2fx", ty / t
		printf "\n" }'
}

key=$(python3 -c "import hashlib; print(hashlib.sha256(b'$FRAG').hexdigest())")
iv=$(head -c 16 "$work/images.enc" | od -An -tx1 | tr -d ' \n')
printf '\n%-5s %-28s %8s %8s %10s\n' round what "wall s" "RSS MiB" "ty/it"
for r in $(seq 1 "$ROUNDS"); do
	fresh
	read -r ty tyrss _ < <(unseal "$work/trainyard")
	row "$r" trainyard "$ty" "$tyrss"
	if [ -n "${BASELINE:-}" ]; then
		fresh
		read -r bl blrss _ < <(unseal "$work/base-trainyard")
		row "$r" "baseline $BASELINE" "$bl" "$blrss"
	fi
	fresh
	sd=$(/usr/bin/time -o "$work/t2" -f '%M' python3 bench/legacy_seed.py run "$work" "$FRAG" "$host" "$work/crane")
	sdrss=$(awk '{ printf "%.0f", $1 / 1024 }' "$work/t2")
	row "$r" "seed way (python + crane)" "$sd" "${sdrss}*"
	read -r os osrss _ < <(tm sh -c "tail -c +17 '$work/images.enc' | openssl enc -d -aes-256-cbc -K $key -iv $iv >/dev/null")
	row "$r" "openssl enc -d (1 pass)" "$os" "$osrss"
done
echo
echo "ty/it: trainyard's time divided by that row's (goal: <= 0.5x the seed way)."
echo "* the seed way's RSS is the larger of Python's and crane's (its child)."
