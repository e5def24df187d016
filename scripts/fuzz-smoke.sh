#!/usr/bin/env bash
# Runs every fuzz target briefly (FUZZTIME, default 3s) beyond its seed
# corpus, which `go test` already runs as ordinary tests.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-3s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "${f#./}")
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
		echo "fuzz $pkg $fn ($t)"
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz-$fn.log 2>&1 || { cat /tmp/fuzz-$fn.log; exit 1; }
	done
done
echo "fuzz smoke: all targets passed"
