#!/usr/bin/env bash
# trainyard unseal --to oci:DIR and --to registry:// beside openssl enc -d
# of the archive (one decrypt pass, the issue's anchor), measured in the
# same run, round by round (interleaved). The archive is made by
# `trainyard seal` of a 4-layer random image from a loopback
# `trainyard registry serve`; every registry row gets a fresh, empty one.
# TRAINYARD_BENCH_UNSEAL_BYTES (default 268435456 = 256 MiB) sets the image
# size, ROUNDS (default 3) the rounds. BASELINE=<git revision> adds rows
# with trainyard built from that revision (before/after in one run). Needs
# ~5x the bytes free in TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${TRAINYARD_BENCH_UNSEAL_BYTES:-268435456}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh

echo "image: $BYTES bytes in 4 random layers; $(nproc) CPUs; $(openssl version)"
bench_build
python3 bench/legacy_seed.py tar "$work" "$BYTES"
bench_port

fresh
"$work/crane" push --insecure "$work/images.tar" "$host/bench/unseal:1" >/dev/null 2>&1
rm -f "$work/images.tar"
mkdir "$work/keys"
"$work/trainyard" seal --images "$host/bench/unseal:1" --out "$work/a.sealed" --keys-dir "$work/keys" >/dev/null
echo "archive: $(stat -c %s "$work/a.sealed") bytes"

unseal() { # BIN TO
	tm "$1" unseal --device-key "$work/keys/default.device-key.json" --fragment-file "$work/keys/default.fragment" --to "$2" "$work/a.sealed"
}
row() {
	awk -v r="$1" -v w="$2" -v t="$3" -v m="$4" -v c="$5" -v a="$os" 'BEGIN {
		printf "%-5s %-34s %8.2f %8.2f %8s", r, w, t, c, m
		if (w !~ /^openssl/) printf " %9.2fx", t / a
		printf "\n" }'
}
key=$(openssl rand -hex 32)
iv=$(openssl rand -hex 16)
openssl enc -aes-256-cbc -K "$key" -iv "$iv" -in "$work/a.sealed" -out "$work/a.cbc"

printf '\n%-5s %-34s %8s %8s %8s %10s\n' round what "wall s" "CPU s" "RSS MiB" "/openssl"
for r in $(seq 1 "$ROUNDS"); do
	read -r os osrss oscpu < <(tm openssl enc -d -aes-256-cbc -K "$key" -iv "$iv" -in "$work/a.cbc" -out /dev/null)
	row "$r" "openssl enc -d (1 pass)" "$os" "$osrss" "$oscpu"
	for bin in trainyard ${BASELINE:+base-trainyard}; do
		label=trainyard
		[ "$bin" = base-trainyard ] && label="baseline $BASELINE"
		rm -rf "$work/oci"
		read -r t m c < <(unseal "$work/$bin" "oci:$work/oci")
		row "$r" "$label --to oci:DIR" "$t" "$m" "$c"
		fresh
		read -r t m c < <(unseal "$work/$bin" "registry://$host")
		row "$r" "$label --to registry://" "$t" "$m" "$c"
	done
done
rm -rf "$work/oci"
echo
echo "/openssl: that row's time divided by openssl enc -d's (one AES-CBC decrypt pass of the same bytes)."
echo "CPU s is the command's own (the registry's is not counted)."
