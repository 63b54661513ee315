#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh TARGET|all SECONDS
#
# Builds fuzz/ (libFuzzer through libfuzzer-sys) in release mode with coverage
# instrumentation on vulngate's own crates (fuzz/rustc-wrapper.sh; stable Rust, no
# cargo-fuzz needed), seeds each corpus from the shared fixtures and the embedded
# examples (generated here, never committed), and runs each target for SECONDS with
# debug assertions and overflow checks on. Any panic is a crash: its input is written
# to fuzz/artifacts/TARGET/ and the script exits 1. The last lines of each run are in
# fuzz/logs/TARGET.log.
#
# Environment: FUZZ_TARGET_DIR (default fuzz/target), FUZZ_JOBS (parallel workers, 1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
fixtures="${FIXTURES:-$root/../shared/fixtures}"
cd "$here"

targets_all=(admission image_ref namespace_policy scan_file config apiserver_timeout scanner_responses)
target="${1:?usage: fuzz/run.sh TARGET|all SECONDS}"
seconds="${2:-60}"
if [ "$target" = all ]; then targets=("${targets_all[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
  case " ${targets_all[*]} " in *" $t "*) ;; *) echo "unknown fuzz target $t (one of: ${targets_all[*]})" >&2; exit 2 ;; esac
done
if [ ! -d "$fixtures/admission" ]; then
  echo "fuzz/run.sh: the seed fixtures are missing: $fixtures/admission (clone ../shared beside the project)" >&2
  exit 2
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz/run.sh: libfuzzer-sys compiles libFuzzer with a C++ compiler: apt-get install g++" >&2
  exit 2
fi

target_dir="${FUZZ_TARGET_DIR:-$here/target}"
echo "== building fuzz targets (release, coverage on vulngate's crates) into $target_dir"
build_started=$(date +%s)
RUSTC_WRAPPER="$here/rustc-wrapper.sh" cargo build --release --locked --bins --target-dir "$target_dir"
echo "   built in $(( $(date +%s) - build_started ))s"

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
if target == "admission":
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
elif target == "scanner_responses":
    d = "sha256:" + "ab12" * 16
    seeds = [
        (0, {"HighSeverity": "3", "MediumSeverity": 1, "LowSeverity": 0, "UnknownSeverity": 2, "TotalSeverity": 6}),
        (1, {"TotalCount": 2, "Vulnerabilities": [
            {"CveName": "CVE-2024-0001", "Severity": "High", "VersionFixed": "1.2", "FixCmd": ""},
            {"AliasName": "ALINUX2-SA-1", "Severity": "Low", "VersionFixed": ""}]}),
        (2, {"Task": [{"Target": d, "Status": "SUCCESS", "FinishTime": 1700000000000}],
             "Data": {"ImageScaVulCount": 2, "ImageMaliciousFileCount": 0, "ImageBaselineCount": 1}}),
        (3, {"digest": d, "scan_overview": {
            "application/vnd.security.vulnerability.report; version=1.1": {
                "scan_status": "Success", "end_time": "2026-11-01T10:00:00Z",
                "summary": {"total": 3, "fixable": 1, "summary": {"High": 2, "Low": 1}}}}}),
        (4, {"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": [
            {"id": "CVE-2024-0001", "severity": "High", "fix_version": "1.2"},
            {"id": "CVE-2024-0002", "severity": "Low", "fix_version": ""}]}}),
    ]
    for which, body in seeds:
        put(bytes([which]) + json.dumps(body).encode())
    put(bytes([5]) + b"success")
    put(bytes([5]) + bytes(range(32)))
elif target == "apiserver_timeout":
    for q in ["timeout=10s", "a=b&timeout=2s", "timeout=1h30m", "timeout=0s", "timeout="]:
        put(q)
PY
}

mkdir -p logs
status=0
for t in "${targets[@]}"; do
  seed "$t"
  mkdir -p "artifacts/$t"
  echo "== $t: ${seconds}s"
  jobs=()
  if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
  set +e
  "$target_dir/release/$t" "$here/corpus/$t" \
    -artifact_prefix="$here/artifacts/$t/" -max_total_time="$seconds" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${jobs[@]}" \
    >"logs/$t.log" 2>&1
  rc=$?
  set -e
  runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -Eo '[0-9]+$' | tail -n 1 || true)"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "logs/$t.log" | tail -n 1 || true)"
  if [ "$rc" -eq 0 ]; then
    echo "   $t: ${runs:-?} runs | ${cov:-} | no crash"
  else
    status=1
    echo "   $t: FAILED (exit $rc) after ${runs:-?} runs | see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    tail -n 30 "logs/$t.log"
  fi
done
exit "$status"
