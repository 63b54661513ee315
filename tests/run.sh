#!/usr/bin/env bash
# The whole test suite: installs the real peers the tests need (a registry, helm,
# schema validators...) when they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
for setup in tests/setup.d/*.sh; do
  [ -e "$setup" ] || continue
  echo "== $(basename "$setup")"
  bash "$setup"
done
export PATH="$PWD/.tools/bin:$PATH"
cargo test --all-targets --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
