#!/usr/bin/env bash
# Lighthouse (mobile, simulated throttling) over every console page, as docs/performance.md
# reports it. Needs /usr/bin/chromium; lighthouse comes from the npm registry through npx
# (LH= names another lighthouse binary).
# Serves the console with DEBUG off (whitenoise, manifest static files, gzip) on a fresh
# SQLite database seeded with the browser suite's cast; logged-in pages get the admin's
# session cookie. LH_ARGS passes more flags (e.g. --throttling.cpuSlowdownMultiplier=1).
# Each line ends with Lighthouse's CPU benchmark and the host's 1-minute load average:
# on a shared machine both say how much of Total Blocking Time is the page's own.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LH=${LH:-npx --yes lighthouse@12.8.2}
WORK=${WORK:-$(mktemp -d)}; mkdir -p "$WORK"
PORT=${PORT:-18519}
OUT=${OUT:-$WORK/out}
export DEBUG=0 SECRET_KEY=lighthouse-local-only-secret-key-0123456789abcdef
export DATABASE_URL=sqlite:///$WORK/db.sqlite3 STATIC_ROOT=$WORK/static LOCALNODE_ENABLED=0
export SECURE_SSL_REDIRECT=0 SESSION_COOKIE_SECURE=0 CSRF_COOKIE_SECURE=0 SECURE_HSTS_SECONDS=0
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
COOKIE=$(.venv/bin/python manage.py shell -v 0 -c '
from django.test import Client
from tests.e2e.test_dashboard_browser import _seed
c = Client(); c.force_login(_seed()["admin"]); print(c.cookies["sessionid"].value)' | tail -1)
.venv/bin/gunicorn mission_control.wsgi -b 127.0.0.1:$PORT -w 2 --access-logfile /dev/null &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 3
mkdir -p "$OUT"; : > "$OUT/scores.tsv"
PAGES=${PAGES:-"login=/login/ visao-geral=/ missoes=/missoes/ missao-nova=/missoes/nova/ missao-detalhe=/missoes/1/ item=/missoes/1/itens/1/ execucao=/execucao/ recursos-workers=/recursos/workers/ recursos-writers=/recursos/writers/ recursos-proxies=/recursos/proxies/ estrategias=/estrategias/ webhooks=/webhooks/ recorrentes=/recorrentes/ configuracoes=/configuracoes/"}
lighthouse() {  # page path run: one run, its JSON in $OUT/$run.json
  headers='{}'; [ "$1" != login ] && headers="{\"Cookie\":\"sessionid=$COOKIE\"}"
  # shellcheck disable=SC2086
  CHROME_PATH=/usr/bin/chromium $LH "http://127.0.0.1:$PORT$2" \
    --only-categories=performance --quiet ${LH_ARGS:-} --output=json --output-path="$OUT/$3.json" \
    --extra-headers="$headers" --chrome-flags="--headless=new --no-sandbox --disable-dev-shm-usage" \
    > /dev/null 2> "$OUT/$3.err" || true
}
score() {  # run page: the scores line; fails when Lighthouse gave no score
  python3 - "$OUT/$1.json" "$2" <<'P'
import json, sys
r = json.load(open(sys.argv[1])); a = r["audits"]
def v(k): return a[k].get("numericValue", 0)
print("\t".join([sys.argv[2], str(round(r["categories"]["performance"]["score"] * 100)),
  f"FCP {v('first-contentful-paint')/1000:.1f}s", f"LCP {v('largest-contentful-paint')/1000:.1f}s",
  f"TBT {v('total-blocking-time'):.0f}ms", f"CLS {v('cumulative-layout-shift'):.3f}",
  f"benchmarkIndex {r['environment']['benchmarkIndex']:.0f}",
  "load " + open("/proc/loadavg").read().split()[0]]))
P
}
# RUNS=n runs each page n times (Lighthouse's advice for a noisy host: take the median);
# every run's line goes to runs.tsv, the median-score run's line to scores.tsv with all
# n scores. A run that breaks (NO_NAVSTART: the trace lost on a loaded host) is run once more.
: > "$OUT/runs.tsv"
for entry in $PAGES; do
  name=${entry%%=*}; path=${entry#*=}
  lines=""
  for i in $(seq "${RUNS:-1}"); do
    lighthouse "$name" "$path" "$name-$i"
    if ! line=$(score "$name-$i" "$name" 2> /dev/null); then
      lighthouse "$name" "$path" "$name-$i"
      line=$(score "$name-$i" "$name" 2> /dev/null) || { echo "$name-$i	no score: $(tail -1 "$OUT/$name-$i.err")" >> "$OUT/runs.tsv"; continue; }
    fi
    echo "$line" >> "$OUT/runs.tsv"; lines+="$line"$'\n'
  done
  [ -n "$lines" ] || { echo "$name	no score" >> "$OUT/scores.tsv"; continue; }
  printf '%s' "$lines" | python3 -c '
import sys
rows = sorted((l.split("\t") for l in sys.stdin.read().splitlines()), key=lambda r: int(r[1]))
print("\t".join(rows[(len(rows) - 1) // 2] + ["scores " + "/".join(r[1] for r in rows)]))' >> "$OUT/scores.tsv"
done
cat "$OUT/scores.tsv"
