#!/usr/bin/env bash
# Installs the real programs the full test run uses, from Debian, when they
# are missing: Prometheus and promtool, Alertmanager and amtool, Chromium,
# curl, and PostgreSQL (a throwaway cluster per test run). `go test ./...` alone needs none of them (those tests skip); the
# README's full test command sets FLEETD_REQUIRE_REAL=1, so there a missing
# program is a failure, not a skip.
set -euo pipefail

need=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
# Debian keeps initdb and pg_ctl out of PATH, under /usr/lib/postgresql/<major>/bin.
command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-real: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "install-real: apt-get install ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
