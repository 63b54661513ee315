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
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# Guard rails: formatting and clippy are part of the suite; each counts as one test.
guard() {
  local name="$1"
  shift
  if "$@" 2>&1 | tee -a "$log"; then
    echo "   $name: passed" | tee -a "$log"
  else
    status=1
    echo "   $name: FAILED" | tee -a "$log"
  fi
}
echo "== fmt and clippy"
guard fmt cargo fmt --all --check
guard clippy cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee -a "$log" || status=$?
# Fuzz smoke: every target for a few seconds (fuzz/run.sh; a crash fails the suite).
echo "== fuzz smoke"
bash fuzz/run.sh all "${FUZZ_SMOKE_SECONDS:-10}" 2>&1 | tee -a "$log" || status=$?
# One closing line for the whole suite, summed over fmt, clippy, every test binary and
# fuzz target.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^   [a-z_]+: .*no crash$/ || /^   [a-z_]+: passed$/ { p++ } /^   [a-z_]+: FAILED/ { f++ }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
