#!/usr/bin/env bash
# Rewrites the Values table of charts/vulngate/README.md from the `# --` comments of
# charts/vulngate/values.yaml (the same code tests/chart/readme.rs uses to check it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
VULNGATE_UPDATE_README=1 cargo test --locked --test chart readme_documents_every_value -- --quiet >/dev/null 2>&1 || true
cargo test --locked --test chart readme_documents_every_value -- --quiet
