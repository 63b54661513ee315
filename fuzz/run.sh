#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh TARGET|all SECONDS
#
# Installs cargo-fuzz when missing, seeds each corpus from the shared admission
# fixtures and the embedded examples (generated here, never committed), and runs
# each target for SECONDS. cargo-fuzz needs nightly-only flags (-Zsanitizer);
# RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain accept them.
#
# Environment: FUZZ_SANITIZER (address, default; `none` is faster), FUZZ_JOBS (1),
# FUZZ_CODEGEN_UNITS (16: quicker builds on small machines, 1: faster fuzzing),
# FUZZ_TARGET_DIR (a target directory of its own, so fuzz builds never wait on
# the main build's lock; default fuzz/target).
# Crashes are written to fuzz/artifacts/TARGET/; the last lines of each run are
# in fuzz/logs/TARGET.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
fixtures="${FIXTURES:-$root/../shared/fixtures}"
cd "$here"

# admission_core is the admission target built from src/admission.rs alone (fuzz/core/):
# its build takes a minute where the others need the whole dependency graph.
targets_all=(admission_core admission image_ref namespace_policy scan_file config apiserver_timeout)
target="${1:?usage: fuzz/run.sh TARGET|all SECONDS}"
seconds="${2:-60}"
if [ "$target" = all ]; then targets=("${targets_all[@]}"); else targets=("$target"); fi

export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
sanitizer="${FUZZ_SANITIZER:-address}"

seed() {
  local t="$1" dir="corpus/$1"
  mkdir -p "$dir"
  python3 - "$t" "$dir" "$fixtures" "$root" <<'PY'
import hashlib, json, os, sys, glob
target, out, fixtures, root = sys.argv[1:5]
def put(data):
    if isinstance(data, str):
        data = data.encode()
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
def reviews():
    for p in sorted(glob.glob(os.path.join(fixtures, "admission", "*.json"))):
        yield open(p, "rb").read()
    for p in sorted(glob.glob(os.path.join(fixtures, "admission-requests", "*.json"))):
        req = open(p, "rb").read().decode()
        yield ('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":%s}' % req).encode()
    yield open(os.path.join(root, "src/embedded/example-review.json"), "rb").read()
def images(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "image" and isinstance(v, str):
                yield v
            else:
                yield from images(v)
    elif isinstance(value, list):
        for v in value:
            yield from images(v)
if target in ("admission", "admission_core"):
    for r in reviews():
        put(r)
elif target == "image_ref":
    seen = set()
    for r in reviews():
        try:
            seen.update(images(json.loads(r)))
        except ValueError:
            pass
    seen.update(["localhost:5000/app:1", "nginx", "registry.k8s.io/*\nregistry.k8s.io/pause:3.9",
                 "docker.io/library/*\nnginx:1.25", "quay.io/a/b:c@sha256:" + "a" * 64])
    for i in seen:
        put(i)
elif target == "namespace_policy":
    put("\x01 3\n\x00 0\n\x09 warn\n\x0a allow\n\x0b registry.k8s.io/*, docker.io/library/nginx\n")
    put("\x05 -1\n\x09audit\nfoo=bar\n")
    put("vulngate.io/max-high=2\nvulngate.io/unscanned=warn\n")
elif target == "scan_file":
    for p in sorted(glob.glob(os.path.join(root, "src/embedded/scans/*"))):
        put(open(p, "rb").read())
elif target == "config":
    put(open(os.path.join(root, "src/embedded/config.yaml"), "rb").read())
    put('registries: [{match: "*", scanner: {file: {path: s}}}]\nshutdown: {drainDelay: 5s, grace: 20s}\n')
elif target == "apiserver_timeout":
    for q in ["timeout=10s", "a=b&timeout=2s", "timeout=1h30m", "timeout=0s", "timeout="]:
        put(q)
PY
}

mkdir -p logs
status=0
for t in "${targets[@]}"; do
  seed "$t"
  echo "== $t: ${seconds}s (sanitizer $sanitizer)"
  jobs=()
  if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
  set +e
  fuzz_dir=(--fuzz-dir "$here")
  case "$t" in *_core) fuzz_dir=(--fuzz-dir "$here/core") ;; esac
  cargo fuzz run "${fuzz_dir[@]}" --sanitizer "$sanitizer" --codegen-units "${FUZZ_CODEGEN_UNITS:-16}" --target-dir "$target_dir" "$t" "$here/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "${jobs[@]}" \
    >"logs/$t.log" 2>&1
  rc=$?
  set -e
  runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "logs/$t.log" | tail -n 1 || true)"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "logs/$t.log" | tail -n 1 || true)"
  if [ "$rc" -eq 0 ]; then
    echo "   $t: ${runs:-no run count} | ${cov:-} | no crash"
  else
    status=1
    echo "   $t: FAILED (exit $rc) ${runs:-} | see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    tail -n 30 "logs/$t.log"
  fi
done
exit "$status"
