#!/usr/bin/env bash
# Scale benchmark: time from `ps:scale web=N` to N web dynos up (ps:wait), for N = 1, 10, 50,
# and the server's memory (RSS) at idle and with 50 dynos. Run as root from the project's root:
#   bash bench/scale.sh
# Bounded: every wait has a timeout; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: dynos are containers" >&2; exit 1; }
TMP=$(mktemp -d /tmp/dyno-bench.XXXXXX)
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; for _ in $(seq 1 90); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.5; done; kill -KILL "$SERVER" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
TAGS=$(pkg-config --exists libseccomp 2>/dev/null && echo seccomp || true)
CGO_ENABLED=1 go build -tags "$TAGS" -o "$TMP/dyno" ./cmd/dyno
BASE=${BASE:-17100}
# 50 dynos of 512 MB reserve 25 GB: more than this 24 GB machine offers by default.
"$TMP/dyno" server --host-memory 32768 --data-dir "$TMP/data" --api 127.0.0.1:$BASE --http 127.0.0.1:$((BASE+1)) --nats-listen 127.0.0.1:$((BASE+3)) > "$TMP/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do [ -s "$TMP/data/admin-api-key" ] && curl -fs -o /dev/null -H "Authorization: Bearer $(cat "$TMP/data/admin-api-key")" http://127.0.0.1:$BASE/apps && break; sleep 0.2; done
export DYNO_API_URL=http://127.0.0.1:$BASE DYNO_API_KEY=$(cat "$TMP/data/admin-api-key")
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$SERVER/status; }
mkdir -p "$TMP/app"
echo 'web: python3 -m http.server $PORT' > "$TMP/app/Procfile"
"$TMP/dyno" apps:create benchapp > /dev/null
"$TMP/dyno" deploy "$TMP/app" -a benchapp > /dev/null
timeout 120 "$TMP/dyno" ps:wait -a benchapp > /dev/null 2>&1
"$TMP/dyno" ps:scale web=0 -a benchapp > /dev/null
sleep 3
echo "server RSS at idle (app deployed, 0 dynos): $(rss)"
for n in 1 10 50; do
  t0=$(date +%s.%N)
  "$TMP/dyno" ps:scale web=$n -a benchapp > /dev/null
  timeout 300 "$TMP/dyno" ps:wait -a benchapp --wait-interval 50ms > /dev/null 2>&1
  t1=$(date +%s.%N)
  printf 'ps:scale web=%d -> %d dynos up: %.2f s\n' "$n" "$n" "$(awk "BEGIN{print $t1 - $t0}")"
  if [ "$n" = 50 ]; then echo "server RSS with 50 dynos: $(rss)"; fi
  "$TMP/dyno" ps:scale web=0 -a benchapp > /dev/null
  for _ in $(seq 1 120); do [ "$("$TMP/dyno" ps -a benchapp --json | grep -c '"name"' || true)" = 0 ] && break; sleep 0.5; done
done
