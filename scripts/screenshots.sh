#!/bin/sh
# Refreshes docs/status-page.png (1400 px wide) and docs/status-page-800.png
# (800 px) from a running `fleetd demo`, in headless Chromium found through
# PATH. It waits until the demo's stubborn device has exhausted its attempts
# and a fault has ended, so the pictures show every state the page can tell.
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
	echo "screenshots: neither chromium nor chromium-browser is in PATH (make real-deps installs it)" >&2
	exit 1
fi
command -v curl >/dev/null || { echo "screenshots: curl is not in PATH" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$GO" build -o "$tmp/fleetd" ./cmd/fleetd
"$tmp/fleetd" demo --web.listen-address=127.0.0.1:0 --demo.ledger-dir="$tmp" >"$tmp/out" 2>"$tmp/log" &
pid=$!

url=
i=0
while [ -z "$url" ]; do
	i=$((i + 1))
	if [ "$i" -gt 150 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "screenshots: the demo did not start:" >&2
		cat "$tmp/log" >&2
		exit 1
	fi
	sleep 0.2
	url=$(sed -n 's/^ *status: *\(http[^ ]*\)$/\1/p' "$tmp/out")
done
echo "screenshots: demo at $url; waiting for an exhausted and an ended fault"

i=0
until curl -fsS "$url" >"$tmp/page.html" 2>/dev/null &&
	grep -q 'exhausted after' "$tmp/page.html" &&
	grep -q 'class="cleared"' "$tmp/page.html"; do
	i=$((i + 1))
	if [ "$i" -gt 120 ]; then
		echo "screenshots: the demo did not reach an exhausted and an ended fault within 4 minutes" >&2
		exit 1
	fi
	sleep 2
done

shoot() { # width height file
	timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$tmp/profile-$1" --hide-scrollbars --window-size="$1,$2" \
		--screenshot="$PWD/$3" "$url" >/dev/null 2>"$tmp/chromium-$1.log" || {
		echo "screenshots: chromium failed:" >&2
		cat "$tmp/chromium-$1.log" >&2
		exit 1
	}
	echo "screenshots: wrote $3 ($1×$2)"
}
shoot 1400 2400 docs/status-page.png
shoot 800 4200 docs/status-page-800.png
