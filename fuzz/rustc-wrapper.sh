#!/usr/bin/env bash
# RUSTC_WRAPPER for fuzz builds: adds libFuzzer's coverage instrumentation (the same
# sanitizer-coverage passes cargo-fuzz uses) to vulngate's own crates only. Their
# dependencies build as in any release build, which keeps the first build close to
# the time of `cargo build --release`; the parsers under test are vulngate's code and
# the serde code monomorphized into it, so that is where coverage is needed.
rustc="$1"
shift
# A build script (src/build.rs) runs at build time, not under libFuzzer: it links
# without the fuzzer's runtime, so it must not be instrumented.
crate=""
prev=""
for arg in "$@"; do
  [ "$prev" = "--crate-name" ] && crate="$arg"
  prev="$arg"
done
[ "$crate" = "build_script_build" ] && exec "$rustc" "$@"
case "${CARGO_PKG_NAME:-}" in
  vulngate | vulngate-fuzz)
    exec "$rustc" "$@" \
      -Cpasses=sancov-module \
      -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares \
      --cfg fuzzing \
      -Cdebug-assertions \
      -Coverflow-checks
    ;;
  *) exec "$rustc" "$@" ;;
esac
