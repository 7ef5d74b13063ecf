#!/usr/bin/env bash
# Checks that need real programs (promtool, Prometheus, Alertmanager, Chromium).
# Each check installs what it needs from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "check-real: no real-program checks yet"
