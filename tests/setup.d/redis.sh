#!/usr/bin/env bash
# Installs what the shared-cache tests run against: a real redis-server (Debian's is
# built with TLS) and redis-cli (to write forged entries), only when missing.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
# The package starts a system-wide server; the tests start their own on free ports.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || $SUDO service redis-server stop >/dev/null 2>&1 || true
echo "installed: redis-server redis-tools"
