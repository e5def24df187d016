#!/usr/bin/env bash
# Installs the system packages trainyard's tests and demo need, once.
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "scripts/deps.sh: need root to install: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
