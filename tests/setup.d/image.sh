#!/usr/bin/env bash
# Installs what tests/container.rs needs to build and run the image, only when missing:
# podman (builds it and runs it with the chart's pod spec), runc (the runtime podman is
# pointed at), skopeo (pushes it to the test registry and reads it back by digest),
# binutils (objcopy strips the staged binary), ca-certificates (the image's CA bundle).
set -euo pipefail
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
[ -d /usr/share/ca-certificates/mozilla ] || missing+=(ca-certificates)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
