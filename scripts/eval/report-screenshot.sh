#!/usr/bin/env bash
# Renders an `anvil compare --format html` report in headless Chromium and checks the
# screenshot: the PNG must exist, decode, and not be one flat colour (a blank page, an error
# page of one colour, or a crashed renderer all fail). Installs Debian's `chromium` with apt-get
# when it is missing.
# usage: scripts/eval/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HTML="${1:?usage: report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]}"
PNG="${2:?usage: report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]}"
SIZE="${3:-1280,1800}"
[[ -f "$HTML" ]] || { echo "report-screenshot: $HTML: no such file" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "report-screenshot: installing chromium (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
fi
rm -f "$PNG"
mkdir -p "$(dirname "$PNG")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: we run as root in a container; the page is our own self-contained file.
timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --window-size="$SIZE" --screenshot="$(realpath -m "$PNG")" \
  "file://$(realpath "$HTML")" >"$profile/log" 2>&1 || {
  echo "report-screenshot: chromium failed:" >&2; tail -20 "$profile/log" >&2; exit 1; }
python3 "$ROOT/scripts/eval/png_check.py" "$PNG"
