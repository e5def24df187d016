#!/usr/bin/env bash
# Installs the system packages trainyard's tests and demo need, once:
# runc (trains run with it), e2fsprogs (mkfs.ext4 for each run's capped
# results filesystem), openssl (legacy-format tests), faketime (the TUF
# client's faked clock), python3-cryptography (the Python side of the PHT
# interop tests), docker.io (Docker backend tests), chromium (the console's
# browser tests).
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
# faketime: the TUF conformance contract's clock (FAKETIME) checked for real.
command -v faketime >/dev/null 2>&1 || need+=(faketime)
# The interop tests run python3 (the first on PATH, else /usr/bin/python3)
# with the cryptography package.
if ! python3 -c 'import cryptography' >/dev/null 2>&1 && ! /usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1; then
	need+=(python3-cryptography)
fi
# chromium: the station console's browser tests drive a real headless
# Chromium (chromedp).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# dockerd: the Docker Engine API backend's tests start their own daemon
# (paths under /tmp) and skip without it. TRAINYARD_NO_DOCKER=1 skips it.
if [ -z "${TRAINYARD_NO_DOCKER:-}" ]; then
	command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "scripts/deps.sh: need root to install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
