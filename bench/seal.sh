#!/usr/bin/env bash
# Sealed-archive throughput beside the seed's tools on the same machine:
#   trainyard seal / unseal (Go benchmarks: seal = tar + SHA-256 of every
#   layer + AES-256-GCM chunks; unseal = two full passes, every chunk
#   authenticated and every blob digest checked, into a discarding target),
#   openssl enc -aes-256-cbc (the azaion-v1 format), sha256sum, and
#   openssl speed -evp aes-256-gcm as the raw-cipher ceiling.
# SEAL_BENCH_MIB=<MiB> sets the data size (default 1024; needs ~3x on disk
# in $TMPDIR). All rates in MB/s (10^6 bytes per second).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${SEAL_BENCH_MIB:-1024}
BYTES=$((MIB * 1048576))
. bench/lib.sh

now() { date +%s.%N; }
rate() { awk -v b="$BYTES" -v s="$1" -v e="$2" 'BEGIN { printf "%.0f", b / (e - s) / 1e6 }'; }

echo "data: $MIB MiB in $work; $(nproc) CPUs; $(openssl version)"
# Random-looking data without /dev/urandom's cost: AES-CTR of zeros.
(openssl enc -aes-256-ctr -pass pass:trainyard -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$BYTES" >"$work/data"
sync

key=$(openssl rand -hex 32)
iv=$(openssl rand -hex 16)
s=$(now); openssl enc -aes-256-cbc -K "$key" -iv "$iv" -in "$work/data" -out "$work/data.cbc"; e=$(now)
cbc_enc=$(rate "$s" "$e")
s=$(now); openssl enc -d -aes-256-cbc -K "$key" -iv "$iv" -in "$work/data.cbc" -out /dev/null; e=$(now)
cbc_dec=$(rate "$s" "$e")
s=$(now); sha256sum "$work/data" >/dev/null; e=$(now)
sha=$(rate "$s" "$e")
rm -f "$work/data.cbc" "$work/data"
gcm=$(openssl speed -evp aes-256-gcm -seconds 2 -bytes 1048576 2>/dev/null | awk '/^AES-256-GCM|^aes-256-gcm/ { v=$NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }')

gobench=$(TMPDIR="$work" TRAINYARD_BENCH_MIB="$MIB" go test ./seal/ -run '^$' -bench '^Benchmark(Seal|Unseal)$' -benchtime 1x -timeout 60m)
seal=$(awk '/^BenchmarkSeal/ { for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i }' <<<"$gobench")
unseal=$(awk '/^BenchmarkUnseal/ { for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i }' <<<"$gobench")

printf '\n%-48s %10s\n' "operation ($MIB MiB)" "MB/s"
printf '%-48s %10s\n' "trainyard seal (AES-256-GCM chunks + SHA-256)" "$seal"
printf '%-48s %10s\n' "trainyard unseal (2 passes, verify all)" "$unseal"
printf '%-48s %10s\n' "openssl enc -aes-256-cbc (encrypt)" "$cbc_enc"
printf '%-48s %10s\n' "openssl enc -d -aes-256-cbc (decrypt)" "$cbc_dec"
printf '%-48s %10s\n' "sha256sum" "$sha"
printf '%-48s %10s\n' "openssl speed -evp aes-256-gcm (1 MiB, ceiling)" "$gcm"
