#!/usr/bin/env bash
# Checks that need real programs. Installs what it needs from Debian when it
# is missing, and stops every process it started, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-real.sh

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== promtool check rules / test rules"
promtool check rules alerts.yml
promtool test rules alerts_test.yml

echo "== build"
go build -o "$tmp/fleetd" ./cmd/fleetd

echo "== promtool check metrics on a running fleetd demo"
port=$(free_port)
"$tmp/fleetd" demo --web.listen-address "127.0.0.1:$port" --log.level warn >"$tmp/demo.out" 2>"$tmp/demo.err" &
pids+=($!)
ok=
# Wait until the exposition is at its richest: remediation has given up on
# the demo's stubborn device (so every remediation family has series) while
# the faults remediation may not touch are still there.
for _ in $(seq 1 180); do
  if curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics" 2>/dev/null &&
     grep -q '^fleetd_remediation_exhausted{' "$tmp/metrics" &&
     grep -q '^fleetd_remediation_verified_total{fault="unhealthy",result="not_fixed"}' "$tmp/metrics" &&
     grep -q 'fleet_device_fault_since_timestamp_seconds{.*fault="dead"' "$tmp/metrics" &&
     grep -q 'copri_rental_fault_since_timestamp_seconds{' "$tmp/metrics"; then
    ok=1
    break
  fi
  sleep 1
done
if [ -z "$ok" ]; then
  echo "check-real: the demo's exposition did not fill within 180s" >&2
  cat "$tmp/demo.err" >&2
  exit 1
fi
echo "$(grep -vc '^#' "$tmp/metrics") series"
promtool check metrics <"$tmp/metrics"
echo "promtool check metrics: clean"
