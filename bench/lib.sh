# Shared set-up of the bench/*.sh scripts; sourced (not run) from the
# repository root after `set -euo pipefail`. It gives:
#   $work            a temp dir, removed on exit with any registry started
#   bench_build      bin/trainyard and crane into $work; with BASELINE=<git
#                    revision> also $work/base-trainyard built from it
#   $host            127.0.0.1:<free port> (after bench_port)
#   fresh            (re)starts an empty `trainyard registry serve` on $host;
#                    call it in the main shell, which keeps its pid
#   tm CMD...        "wall-s RSS-MiB CPU-s" of one command, its stdout dropped

work=$(mktemp -d)
regpid=
cleanup() {
	[ -n "$regpid" ] && kill "$regpid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

bench_build() {
	go build -o "$work/trainyard" ./cmd/trainyard
	go build -o "$work/crane" github.com/google/go-containerregistry/cmd/crane
	if [ -n "${BASELINE:-}" ]; then
		mkdir "$work/base"
		git archive "$BASELINE" | tar -x -C "$work/base"
		(cd "$work/base" && go build -o "$work/base-trainyard" ./cmd/trainyard)
	fi
}

bench_port() {
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	host=127.0.0.1:$port
}

# fresh: a new, empty registry (blobs already there would skip uploads).
fresh() {
	if [ -n "$regpid" ]; then
		kill "$regpid" 2>/dev/null || echo "(the registry had exited: $(tail -n 3 "$work/reg.log"))" >&2
		wait "$regpid" 2>/dev/null || true
	fi
	rm -rf "$work/reg"
	"$work/trainyard" registry serve --addr "$host" --data "$work/reg" >"$work/reg.log" 2>&1 &
	regpid=$!
	for _ in $(seq 50); do
		curl -fs "http://$host/v2/" >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "registry did not start: $(tail -n 3 "$work/reg.log")" >&2
	exit 1
}

tm() {
	/usr/bin/time -o "$work/t" -f '%e %M %U %S' "$@" >/dev/null
	awk '{ printf "%.2f %.0f %.2f\n", $1, $2 / 1024, $3 + $4 }' "$work/t"
}
