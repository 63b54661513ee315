#!/usr/bin/env bash
# Renders charts/vulngate with its default values (cert-manager TLS) into
# manifests/vulngate.yaml for `kubectl apply -f manifests/`.
# Usage: manifests/render.sh [OUTPUT_DIR]   (default: manifests)
# tests/chart.rs fails when manifests/ differs from what this script writes.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-manifests}"
helm="$(command -v helm || echo .tools/bin/helm)"
[ -x "$helm" ] || { echo "helm not found: run tests/setup.d/helm.sh" >&2; exit 1; }
mkdir -p "$out"
{
  cat <<'HEAD'
# vulngate, rendered from charts/vulngate with default values by manifests/render.sh.
# Do not edit: change the chart and run the script again.
# Needs cert-manager in the cluster (it issues the webhook's certificate and injects its CA).
# Install:  kubectl apply -f manifests/vulngate.yaml
# Then set limits on a namespace as manifests/example-namespace.yaml shows.
---
apiVersion: v1
kind: Namespace
metadata:
  name: vulngate
  labels:
    # The webhook never checks its own namespace (see the namespaceSelector below).
    vulngate.io/ignore: "true"
    # vulngate's Pods meet the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
HEAD
  "$helm" template vulngate charts/vulngate --namespace vulngate --skip-tests
} >"$out/vulngate.yaml"
