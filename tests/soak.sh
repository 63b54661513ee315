#!/usr/bin/env bash
# Soak: runs the real binary under a mixed load of reviews for SECONDS (default 600)
# and samples its resident memory and open file descriptors every 10 s.
#
#   tests/soak.sh [SECONDS]        (results in $SOAK_DIR, default target/soak)
#
# The mix, on keep-alive connections from 4 parallel clients (curl, 40 requests a
# connection): allowed, denied (over the limits), unscanned (denied; warned in the
# `shop` namespace), invalid image references, undecodable bodies (400) and a wrong
# Content-Type (415). Fails when a request gets no HTTP answer or an unexpected
# status, or when fds or memory keep growing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
out="${SOAK_DIR:-${CARGO_TARGET_DIR:-target}/soak}"
rm -rf "$out"; mkdir -p "$out/bodies"

# VULNGATE_BIN: a binary already built (otherwise it is built here).
bin="${VULNGATE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --bin vulngate --locked --quiet
  bin="${CARGO_TARGET_DIR:-target}/debug/vulngate"
fi

embedded="$PWD/src/embedded"
cat >"$out/config.yaml" <<YAML
listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {generateDir: $out/tls}
namespacesFile: $embedded/namespaces.yaml
policy:
  defaults: {mode: enforce, limits: {critical: 0, high: 0}, unscanned: deny, onError: deny}
registries:
  - match: "*"
    scanner: {file: {path: $embedded/scans}}
    registry: {resolve: false}
log: {format: json, level: warn}
YAML

review() { # uid namespace image...
  local uid="$1" ns="$2"; shift 2
  local containers="" i=0
  for image in "$@"; do
    containers+="${containers:+,}{\"name\":\"c$i\",\"image\":\"$image\"}"; i=$((i + 1))
  done
  printf '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"%s","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"%s","operation":"CREATE","object":{"metadata":{"name":"p"},"spec":{"containers":[%s]}}}}' "$uid" "$ns" "$containers"
}
review allowed default nginx:1.27-alpine >"$out/bodies/allowed.json"
review denied default nginx:1.25 redis:7.2 >"$out/bodies/denied.json"
review unscanned default registry.example.com/never/scanned:1 >"$out/bodies/unscanned.json"
review unscanned-warn shop registry.example.com/never/scanned:2 >"$out/bodies/unscanned-warn.json"
review invalid default 'UPPER/Case:1' >"$out/bodies/invalid.json"
printf '{"apiVersion":"admission.k8s.io/v1","request":' >"$out/bodies/truncated.json"

"$bin" serve --config "$out/config.yaml" --state-dir "$out/state" >"$out/server.out" 2>"$out/server.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q 'webhook on https://' "$out/server.out" && break
  sleep 0.1
done
webhook="$(sed -n 's#.*webhook on https://\([^/]*\)/validate.*#\1#p' "$out/server.out")"
ops="$(sed -n 's#.*metrics on http://\(.*\)$#\1#p' "$out/server.out")"
[ -n "$webhook" ] || { echo "server did not start"; cat "$out/server.err"; exit 1; }
echo "soak: pid $pid, webhook $webhook, ops $ops, ${seconds}s"

sample() {
  local rss fds threads
  rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
  threads="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
  fds="$(ls "/proc/$pid/fd" | wc -l)"
  echo "$(( $(date +%s) - start )),$rss,$fds,$threads"
}

client() { # worker id: loops until the deadline, one keep-alive connection per batch
  local w="$1" args=() kinds=(allowed denied unscanned unscanned-warn invalid truncated allowed denied)
  for i in $(seq 0 39); do
    local kind="${kinds[$(( (i + w) % ${#kinds[@]} ))]}" ct="application/json"
    [ $((i % 13)) -eq 12 ] && ct="text/plain"
    [ ${#args[@]} -gt 0 ] && args+=(--next)
    args+=(--cacert "$out/tls/ca.crt" -s -o /dev/null -w '%{http_code}\n' -H "Content-Type: $ct"
      --data-binary "@$out/bodies/$kind.json" "https://$webhook/validate?timeout=10s")
  done
  while [ "$(date +%s)" -lt "$end" ]; do
    curl "${args[@]}" >>"$out/codes-$w.log" 2>>"$out/curl-$w.log" || echo "curl-exit-$?" >>"$out/codes-$w.log"
  done
}

start="$(date +%s)"; end=$((start + seconds))
echo "seconds,rss_kib,fds,threads" >"$out/samples.csv"
sample >>"$out/samples.csv"
for w in 1 2 3 4; do client "$w" & done
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 10
  sample >>"$out/samples.csv"
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
sleep 2
sample >>"$out/samples.csv"
curl -s "http://$ops/metrics" >"$out/metrics.txt" || true

cat "$out"/codes-*.log | sort | uniq -c | sort -rn >"$out/codes.txt"
total="$(cat "$out"/codes-*.log | wc -l)"
bad="$(cat "$out"/codes-*.log | grep -cvE '^(200|400|415)$' || true)"
python3 - "$out/samples.csv" "$total" "$bad" "$seconds" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
total, bad, seconds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rss = [int(r["rss_kib"]) for r in rows]; fds = [int(r["fds"]) for r in rows]
warm = rows[len(rows) // 10] if len(rows) > 10 else rows[0]
print(f"requests: {total} in {seconds}s ({total / max(seconds, 1):.0f}/s), unexpected answers: {bad}")
print(f"rss KiB: start {rss[0]}, after warm-up {warm['rss_kib']}, max {max(rss)}, end {rss[-1]}")
print(f"open fds: start {fds[0]}, max {max(fds)}, end {fds[-1]}")
problems = []
if bad: problems.append(f"{bad} requests without an expected answer")
if fds[-1] > fds[0] + 16: problems.append("open fds grew")
if rss[-1] > 2 * int(warm["rss_kib"]) + 32 * 1024: problems.append("memory kept growing")
print("soak: " + ("FAILED: " + "; ".join(problems) if problems else "ok"))
sys.exit(1 if problems else 0)
PY
echo "status codes:"; cat "$out/codes.txt"
