#!/usr/bin/env bash
# Rebuild the dashboard's committed static assets from the npm devDependencies:
# self-hosted fonts (woff2 + licence) and static/css/app.css.
# Running the app never needs node; run this after changing templates or the CSS entry.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund

FS=node_modules/@fontsource
mkdir -p static/fonts static/css
for w in 400 500 600 700 800; do
  cp "$FS/plus-jakarta-sans/files/plus-jakarta-sans-latin-$w-normal.woff2" static/fonts/
done
for w in 400 500 600; do
  cp "$FS/jetbrains-mono/files/jetbrains-mono-latin-$w-normal.woff2" static/fonts/
done
cp "$FS/plus-jakarta-sans/LICENSE" static/fonts/LICENSE-plus-jakarta-sans.txt
cp "$FS/jetbrains-mono/LICENSE" static/fonts/LICENSE-jetbrains-mono.txt

npx --no-install @tailwindcss/cli -i dashboard/assets/app.css -o static/css/app.css --minify
