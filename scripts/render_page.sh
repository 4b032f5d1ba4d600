#!/usr/bin/env bash
# Render a generated HTML report to a PNG with headless Chromium, offline (every host lookup refused),
# to look at it or attach it to a CI run:
#   scripts/render_page.sh [page=reports/evidence/index.html] [out=$TMPDIR/steward-page.png] [height=2000]
set -euo pipefail
page="${1:-reports/evidence/index.html}"
out="${2:-${TMPDIR:-/tmp}/steward-page.png}"
height="${3:-2000}"
browser="${CHROMIUM:-/usr/bin/chromium}"
[ -f "$page" ] || { echo "no such page: $page (run: python -m tasks.document.document)" >&2; exit 1; }
[ -x "$browser" ] || { echo "no Chromium at $browser (Debian: apt-get install -y chromium)" >&2; exit 1; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$profile" \
  --screenshot="$out" --window-size="1280,$height" "file://$(realpath "$page")" 2>/dev/null
echo "$out"
