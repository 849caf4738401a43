#!/usr/bin/env bash
# Render the HTML report of the bundled example to a PNG with headless Chromium, so a person
# can see how it looks without opening a browser.
#
#   scripts/render-report.sh [OUT.png]        (default: docs/report.png)
#
# Builds idx (release; IDX_BIN=path uses that binary instead), ingests examples/data into a temporary index, writes
# `idx verify --html`, and screenshots it. Chromium comes from the system packages: it is
# installed with apt-get when missing (Debian/Ubuntu; run as root or install it yourself).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/report.png}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    if command -v apt-get >/dev/null; then
        apt-get install -y -q chromium >/dev/null
        browser="$(command -v chromium)"
    else
        echo "render-report: no Chromium found; install chromium from your system packages" >&2
        exit 1
    fi
fi
# IDX_BIN: an idx binary to use instead of building one.
bin="${IDX_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -q
    bin=./target/release/idx
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" --data-dir "$work/idx" ingest examples/data >/dev/null
"$bin" --data-dir "$work/idx" verify --html "$work/report.html" >/dev/null || true
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1200,3400 --screenshot="$work/report.png" "file://$work/report.html" >/dev/null 2>&1
mkdir -p "$(dirname "$out")"
cp "$work/report.png" "$out"
echo "render-report: $out"
