#!/usr/bin/env bash
# scripts/check_report_html.sh — renders a compare report.html in headless Chromium and checks
# that it rendered: the page loads offline, its SVG plots are in the rendered DOM, and a
# screenshot is written (look at it: the table and the plots must be readable).
#
#   scripts/check_report_html.sh [REPORT_HTML] [SCREENSHOT_PNG]
#     defaults: out/demo/report.html and the same path with .png
# Installs Debian's chromium when missing and running as root (apt-get install -y chromium).
# Exit status: 0 rendered, 1 not.
set -euo pipefail

html="${1:-out/demo/report.html}"
png="${2:-${html%.html}.png}"
die() {
    printf 'check_report_html: error: %s\n' "$*" >&2
    exit 1
}
[ -f "$html" ] || die "no $html (run scripts/demo.sh or text_classifier compare first)"
abs="$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"

browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    [ "$(id -u)" -eq 0 ] || die "chromium is not installed (Debian: apt-get install -y chromium)"
    echo "check_report_html: installing chromium (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    browser="$(command -v chromium)"
fi

# The rendered DOM: every plot is an <svg> with lines in it, and the table has its rows.
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-extensions)
dom="$("$browser" "${flags[@]}" --dump-dom "file://$abs" 2>/dev/null)"
svgs=$(grep -o '<svg' <<<"$dom" | wc -l)
lines=$(grep -o '<polyline' <<<"$dom" | wc -l)
rows=$(grep -o '<tr>' <<<"$dom" | wc -l)
echo "check_report_html: rendered DOM has $svgs plots, $lines plotted series, $rows table rows"
[ "$svgs" -ge 3 ] || die "expected at least 3 SVG plots in the rendered page, found $svgs"
[ "$lines" -ge 3 ] || die "expected plotted series, found $lines"
[ "$rows" -ge 2 ] || die "expected the comparison table, found $rows rows"

rm -f "$png"
"$browser" "${flags[@]}" --hide-scrollbars --window-size=1500,1400 --screenshot="$png" \
    "file://$abs" >/dev/null 2>&1 || true
[ -s "$png" ] || die "chromium wrote no screenshot"
# A blank page compresses to a few KB; a table and four plots do not.
size=$(stat -c %s "$png")
[ "$size" -gt 30000 ] || die "the screenshot is only $size bytes: the page looks blank"
echo "check_report_html: screenshot $png ($size bytes)"
