#!/usr/bin/env bash
# Router benchmark (issue 4): the same 1 KB keep-alive backend measured
# directly, through the Dyno router, through nginx and through HAProxy (both
# from Debian's packages, installed here if missing), over HTTP keep-alive
# and HTTPS (one self-signed ECDSA P-256 certificate shared by the three
# proxies), with wrk: 1 thread, 32 connections, 4 s after a 1 s warm-up,
# five rounds (the paths take turns: dyno, nginx, HAProxy, dyno, ...), and
# the median of each figure reported: on this VM runs of the same process
# under the same load vary by up to 25 % (the same syscalls per request,
# each dearer), for nginx as for the Dyno router.
#
# The throughput goal is about the proxy, so the proxy must be the limit.
# CPU layout (PIN=1, the default, on a machine with 2+ CPUs): every proxy
# runs alone on CPU 1 (the Dyno router gets GOMAXPROCS=1 from its affinity,
# nginx one worker, HAProxy one thread); wrk and the backend share CPU 0.
# The backend (BACKEND=nginx, the default) is nginx itself answering the
# body from its configuration, one worker: with it every proxy keeps CPU 1
# 92-99% busy (the "cpu1" column), so req/s is bounded by the proxy's own
# CPU; CPU 0 runs near full too, so how cheaply a proxy's answers come to
# wrk and the backend still counts for a few percent. BACKEND=go is
# bench/router/backend, a Go net/http server, closer to a dyno but dearer
# per request than a proxy: with PIN=1 CPU 0 is then the limit, the
# proxies leave CPU 1 18-30% idle, and req/s says how a proxy's answers
# batch up for wrk and the backend more than how much the proxy can
# carry. PIN=0 lets everything float on all CPUs, as in reference/perf.md's
# measurement (BACKEND=go PIN=0 ROUTER_PROCS=1 is that layout).
#
# cpu/req is the CPU time (user + system) the serving process (the proxy,
# or the backend for the direct path) spent per request: on a shared,
# noisy machine it compares proxies better than req/s does. "load c/r"
# is what wrk and the backend spent per request.
#
# Moderate load: Debian has no wrk2, so there is no true fixed-rate run.
# Instead wrk paces itself: PACE_CONNS connections that each wait PACE_MS
# between responses (wrk's delay() hook), about 5k requests/s here, well
# below every proxy's capacity; the added p50/p99 over the direct path is
# reported from that run. A closed-loop run with LOW_CONNS=4 connections
# (the other usual "moderate" setting) is printed as well.
#
# Finally the Dyno router runs once more with -cpuprofile under the same
# HTTP load, and the top of the profile is printed.
#
# Run as root from anywhere: bash bench/router/run.sh (about 10 minutes;
# ROUNDS=1 DURATION=10 is one pass).
# (MODES="paced" ONLY="direct|dyno|nginx" PROFILE=0 narrows a run;
# EVLOOP=1 adds the event-loop measurement of bench/router/evloop;
# DYNOROUTER_BIN=path measures a prebuilt dynorouter instead of this tree's;
# DYNOROUTER_FLAGS adds flags to it, e.g. -busy-poll=50us to turn on busy
# polling (router.Config.BusyPoll);
# ROUTER_PROCS=1 gives the Dyno router GOMAXPROCS=1, the one worker
# nginx and HAProxy get here, when PIN=0 would let it use every CPU.)
# Only 127.0.0.1 is used; everything started is stopped on exit.
# Results (table, raw wrk output, CPU profile) stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root: the script installs packages and runs nginx and haproxy" >&2; exit 1; }

DURATION=${DURATION:-4}      # seconds per measured run
WARMUP=${WARMUP:-1}          # seconds of warm-up before each measured run
CONNS=${CONNS:-32}           # connections of the throughput runs
LOW_CONNS=${LOW_CONNS:-4}    # connections of the closed-loop low-concurrency runs
PACE_CONNS=${PACE_CONNS:-16} # connections of the paced (moderate load) runs
PACE_MS=${PACE_MS:-3}        # pause of each paced connection between requests
PIN=${PIN:-1}
PROFILE=${PROFILE:-1}
MODES=${MODES:-peak paced low} # which of the three runs to make
ROUNDS=${ROUNDS:-5}          # runs of each path; the report shows medians
BACKEND=${BACKEND:-nginx}    # nginx: nginx answering from its configuration; go: bench/router/backend
ONLY=${ONLY:-}               # a regexp: measure only the paths whose name matches (e.g. 'dyno|nginx')
OUT=${OUT:-/tmp/dyno-bench-router-$(date +%Y%m%d-%H%M%S)}
HOSTHDR="Host: benchapp.localhost"
case "$BACKEND" in nginx | go) ;; *) echo "BACKEND=$BACKEND: use nginx or go" >&2; exit 2 ;; esac

TMP=$(mktemp -d /tmp/dyno-bench-router.XXXXXX)
mkdir -p "$OUT"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages..."
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
command -v wrk2 >/dev/null && echo "note: wrk2 is installed but this script uses wrk's paced mode for the moderate-load runs"
go build -o "$TMP/backend" ./bench/router/backend
if [ -n "${DYNOROUTER_BIN:-}" ]; then # a prebuilt router, to compare two builds
  cp "$DYNOROUTER_BIN" "$TMP/dynorouter"
else
  go build -o "$TMP/dynorouter" ./bench/router/dynorouter
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=benchapp.localhost" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" > "$TMP/combined.pem"

# --- ports and CPUs ----------------------------------------------------------
TAKEN=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    case "$TAKEN" in *" $p "*) continue ;; esac
    if ! ss -Htan "sport = :$p" | grep -q .; then TAKEN="$TAKEN$p "; echo "$p"; return; fi
  done
}
BACK=$(free_port); DR_HTTP=$(free_port); DR_HTTPS=$(free_port); DR_PROF=$(free_port)
NGX_HTTP=$(free_port); NGX_HTTPS=$(free_port); HAP_HTTP=$(free_port); HAP_HTTPS=$(free_port)

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
  # Command prefixes, not functions: a backgrounded function would be a
  # subshell, and $! its PID rather than the program's.
  LOAD=(taskset -c 0); BACKEND_CPU=(taskset -c 0); PROXY=(taskset -c 1)
  LAYOUT="wrk + backend on CPU 0, proxy alone on CPU 1"
else
  LOAD=(); BACKEND_CPU=(); PROXY=()
  LAYOUT="no pinning: wrk, backend and proxy share all $NCPU CPUs"
fi

wait_http() { # url [curl args...]: wait until it answers 200, at most 10 s
  local url=$1; shift
  for _ in $(seq 1 100); do
    [ "$(curl -s -k -o /dev/null -w '%{http_code}' -H "$HOSTHDR" "$@" "$url" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "no 200 from $url after 10 s" >&2; return 1
}

# --- backend and proxies -----------------------------------------------------
case "$BACKEND" in
go)
  "${BACKEND_CPU[@]}" "$TMP/backend" -listen "127.0.0.1:$BACK" > "$TMP/backend.log" 2>&1 &
  ;;
nginx)
  # The body bench/router/backend answers: 1 KB of a-z, as text/plain.
  BODY=$(awk 'BEGIN { for (i = 0; i < 1024; i++) printf "%c", 97 + i % 26 }')
  mkdir -p "$TMP/backend-nginx"
  cat > "$TMP/backend-nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $TMP/backend-nginx/nginx.pid;
error_log $TMP/backend-nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/backend-nginx/body;
  proxy_temp_path $TMP/backend-nginx/proxy;
  fastcgi_temp_path $TMP/backend-nginx/fastcgi;
  uwsgi_temp_path $TMP/backend-nginx/uwsgi;
  scgi_temp_path $TMP/backend-nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  default_type text/plain;
  server {
    listen 127.0.0.1:$BACK;
    location / { return 200 "$BODY"; }
  }
}
EOF
  "${BACKEND_CPU[@]}" nginx -p "$TMP/backend-nginx/" -c "$TMP/backend-nginx/nginx.conf" > "$TMP/backend.log" 2>&1 &
  ;;
esac
PIDS+=($!)
BACKEND_PID=$! # nginx's master: proc_ticks adds its worker
wait_http "http://127.0.0.1:$BACK/"

start_router() { # http https logfile [extra flags...]
  local http=$1 https=$2 log=$3; shift 3
  "${PROXY[@]}" env ${ROUTER_PROCS:+GOMAXPROCS=$ROUTER_PROCS} "$TMP/dynorouter" -backend "127.0.0.1:$BACK" -http "127.0.0.1:$http" \
    -https "127.0.0.1:$https" -cert "$TMP/cert.pem" -key "$TMP/key.pem" "$@" > "$log" 2>&1 &
  PIDS+=($!)
  ROUTER_PID=$!
  for _ in $(seq 1 150); do grep -q '^ready' "$log" && return 0; kill -0 "$ROUTER_PID" 2>/dev/null || break; sleep 0.1; done
  echo "the Dyno router did not start:" >&2; cat "$log" >&2; return 1
}
start_router "$DR_HTTP" "$DR_HTTPS" "$TMP/dynorouter.log" ${DYNOROUTER_FLAGS:-}

mkdir -p "$TMP/nginx"
cat > "$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream dyno {
    server 127.0.0.1:$BACK;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_HTTP;
    listen 127.0.0.1:$NGX_HTTPS ssl;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    # The Dyno router's TLS (Go's): 1.3 with AES-128-GCM; nginx 1.22 would
    # stop at TLS 1.2 and, like HAProxy, take wrk's first choice, AES-256.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    location / {
      proxy_pass http://dyno;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      # The headers the Dyno router adds, to the request and to the
      # response, so that every proxy does the same work.
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_set_header X-Request-Id \$request_id;
      proxy_set_header X-Request-Start \$msec;
      proxy_set_header Via "1.1 dyno";
      add_header X-Request-Id \$request_id always;
    }
  }
}
EOF
"${PROXY[@]}" nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" > "$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!

cat > "$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 120s
  http-reuse always
  option forwardfor
frontend web
  bind 127.0.0.1:$HAP_HTTP
  bind 127.0.0.1:$HAP_HTTPS ssl crt $TMP/combined.pem ciphersuites TLS_AES_128_GCM_SHA256
  # The headers the Dyno router adds, to the request and to the response,
  # so that every proxy does the same work.
  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
  http-request set-header X-Request-Id %[unique-id]
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Request-Start t=%Ts
  http-request set-header Via "1.1 dyno"
  http-response set-header X-Request-Id %[unique-id]
  default_backend dyno
backend dyno
  server web1 127.0.0.1:$BACK maxconn 1000
EOF
"${PROXY[@]}" haproxy -db -f "$TMP/haproxy.cfg" > "$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

# EVLOOP=1 adds bench/router/evloop, a measurement of an event-loop design
# (not a router: see its doc comment), as the path "evloop-http".
EVLOOP_PID=
if [ "${EVLOOP:-0}" = 1 ]; then
  EV_HTTP=$(free_port)
  go build -o "$TMP/evloop" ./bench/router/evloop
  "${PROXY[@]}" "$TMP/evloop" -listen "127.0.0.1:$EV_HTTP" -backend "127.0.0.1:$BACK" > "$TMP/evloop.log" 2>&1 &
  PIDS+=($!)
  EVLOOP_PID=$!
  wait_http "http://127.0.0.1:$EV_HTTP/"
fi

for url in "http://127.0.0.1:$NGX_HTTP/" "https://127.0.0.1:$NGX_HTTPS/" "http://127.0.0.1:$HAP_HTTP/" \
  "https://127.0.0.1:$HAP_HTTPS/" "http://127.0.0.1:$DR_HTTP/" "https://127.0.0.1:$DR_HTTPS/"; do
  wait_http "$url" || { cat "$TMP/nginx/error.log" "$TMP/haproxy.log" >&2 2>/dev/null; exit 1; }
done

# What each proxy's TLS is (wrk's OpenSSL makes the same choices as s_client).
TLSINFO=""
for p in "dyno $DR_HTTPS" "nginx $NGX_HTTPS" "haproxy $HAP_HTTPS"; do
  set -- $p
  TLSINFO="$TLSINFO $1 $(openssl s_client -connect "127.0.0.1:$2" </dev/null 2>/dev/null | awk '/^New,/ {sub(",", "", $2); print $2 "/" $NF}')"
done
echo "TLS:$TLSINFO"

# --- measuring ---------------------------------------------------------------
cat > "$TMP/report.lua" <<'EOF'
local pace = tonumber(os.getenv("WRK_PACE_MS") or "0")
if pace > 0 then
  function delay() return pace end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.3f %.3f %.3f %d %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF

cpu_busy() { # prints "busy total" jiffies for each CPU, one per line
  awk '/^cpu[0-9]/ {busy=$2+$3+$4+$7+$8; print busy, busy+$5+$6}' /proc/stat
}
cpu_pct() { # before after: "cpu0% cpu1% ..."
  paste -d' ' <(echo "$1") <(echo "$2") | awk '{ if ($4 > $2) printf "%d%% ", 100*($3-$1)/($4-$2); else printf "-%% " }'
}

RESULTS="$OUT/results.txt"
: > "$RESULTS"
proc_ticks() { # pid: user+system clock ticks of the process and its children's threads
  local t=0 q
  for q in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$q/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
children_ms() { # file with bash's `times`: the CPU of the shell's waited-for children, in ms
  awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60000 + a[2] * 1000 } printf "%d", t }' "$1"
}
serving_pid() { # name: the process whose CPU a path's requests cost (the proxy; the backend when direct)
  case "$1" in
    direct-*) echo "$BACKEND_PID" ;; dyno-*) echo "$ROUTER_PID" ;;
    nginx-*) echo "$NGINX_PID" ;; haproxy-*) echo "$HAPROXY_PID" ;; evloop-*) echo "$EVLOOP_PID" ;;
  esac
}
measure() { # round mode(peak|low|paced) name url
  local round=$1 mode=$2 name=$3 url=$4 conns=$CONNS pace=0 raw
  case "$mode" in low) conns=$LOW_CONNS ;; paced) conns=$PACE_CONNS; pace=$PACE_MS ;; esac
  "${LOAD[@]}" env WRK_PACE_MS="$pace" wrk -t1 -c"$conns" -d"${WARMUP}s" -H "$HOSTHDR" -s "$TMP/report.lua" "$url" > /dev/null
  local before after pid t0 t1 b0 b1 w0 w1
  pid=$(serving_pid "$name")
  before=$(cpu_busy)
  t0=$(proc_ticks "$pid")
  b0=$(proc_ticks "$BACKEND_PID")
  times > "$TMP/times" # this shell's children's CPU so far: wrk's comes next
  w0=$(children_ms "$TMP/times")
  raw="$OUT/wrk-$mode-$name.txt"
  [ "$ROUNDS" -gt 1 ] && raw="$OUT/wrk-$mode-$name-r$round.txt"
  "${LOAD[@]}" env WRK_PACE_MS="$pace" wrk -t1 -c"$conns" -d"${DURATION}s" -H "$HOSTHDR" -s "$TMP/report.lua" "$url" > "$raw"
  times > "$TMP/times"
  w1=$(children_ms "$TMP/times")
  b1=$(proc_ticks "$BACKEND_PID")
  t1=$(proc_ticks "$pid")
  after=$(cpu_busy)
  local line us load hz
  hz=$(getconf CLK_TCK)
  line=$(grep '^RESULT' "$raw" | cut -d' ' -f2-)
  # CPU time the serving process spent per request, in µs: unlike req/s,
  # it hardly depends on what else the machine runs.
  us=$(echo "$line" | awk -v d=$((t1 - t0)) -v hz="$hz" '{ if ($5 > 0) printf "%.1f", d * 1e6 / hz / $5; else print "-" }')
  # And what the load side (wrk and the backend) spent per request: with
  # PIN=1 their CPU, not the proxy's, is the limit, and a proxy changes it
  # (how its answers batch up decides how often wrk and the backend sleep).
  load=$(echo "$line" | awk -v b=$((b1 - b0)) -v w=$((w1 - w0)) -v hz="$hz" '{ if ($5 > 0) printf "%.1f", (b * 1e6 / hz + w * 1e3) / $5; else print "-" }')
  echo "$mode $name $line $us $load $(cpu_pct "$before" "$after")" >> "$RESULTS"
  echo "  $mode $name: $line $us $load" | awk '{printf "  %-6s %-14s %8s rps  p50 %s ms  p99 %s ms  errors %s non2xx %s  cpu/req %s us  load cpu/req %s us\n", $1, $2, $3, $4, $5, $8, $9, $10, $11}'
}

TARGETS=(
  "direct-http http://127.0.0.1:$BACK/"
  "dyno-http http://127.0.0.1:$DR_HTTP/"
  "nginx-http http://127.0.0.1:$NGX_HTTP/"
  "haproxy-http http://127.0.0.1:$HAP_HTTP/"
  "dyno-https https://127.0.0.1:$DR_HTTPS/"
  "nginx-https https://127.0.0.1:$NGX_HTTPS/"
  "haproxy-https https://127.0.0.1:$HAP_HTTPS/"
)
if [ -n "$EVLOOP_PID" ]; then TARGETS+=("evloop-http http://127.0.0.1:$EV_HTTP/"); fi
echo "layout: $LAYOUT; backend: $BACKEND; wrk -t1: $CONNS conns (peak), $PACE_CONNS conns paced ${PACE_MS} ms (moderate), $LOW_CONNS conns (low); ${WARMUP}s warm-up + ${DURATION}s each"
for mode in $MODES; do
  for round in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      if [ -n "$ONLY" ] && ! [[ ${t%% *} =~ $ONLY ]]; then continue; fi
      measure "$round" "$mode" $t
    done
  done
done

# --- report ------------------------------------------------------------------
{
  echo
  echo "Router benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, $LAYOUT"
  echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), HAProxy $(haproxy -v | head -1 | awk '{print $3}'), $(go version | awk '{print $3}'), 1 KB body, HTTP/1.1 keep-alive, backend: $BACKEND"
  echo "TLS (ECDSA P-256 certificate):$TLSINFO"
  [ "$ROUNDS" -gt 1 ] && echo "Each figure is the median of $ROUNDS runs (errors: their sum; cpu0 cpu1: the last run's)."
  echo
  awk -v conns="$CONNS" -v pconns="$PACE_CONNS" -v pms="$PACE_MS" -v lconns="$LOW_CONNS" '
    { mode=$1; name=$2; has[mode]=1; k=mode SUBSEP name; c=++runs[k]
      vrps[k,c]=$3; vp50[k,c]=$4; vp99[k,c]=$5; err[mode,name]+=$8+$9; vus[k,c]=$10; vload[k,c]=$11
      cpu[mode,name]=""; for (i=12; i<=NF; i++) cpu[mode,name]=cpu[mode,name] " " $i
      if (!(name in seen)) { seen[name]=1; order[++n]=name } }
    # med is the median of the runs of k in v ("-" when a run has none).
    function med(v, k,   m, i, j, t, a) {
      m = runs[k]
      for (i = 1; i <= m; i++) { if (v[k,i] == "-") return "-"; a[i] = v[k,i] + 0 }
      for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return (m % 2) ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
    }
    function row(mode, name) {
      printf "| %-13s | %9s | %7.3f | %7.3f | %6d | %7s | %8s | %-10s |\n", name, rps[mode,name], p50[mode,name], p99[mode,name], err[mode,name], us[mode,name], load[mode,name], cpu[mode,name]
    }
    function table(mode, title) {
      if (!(mode in has)) return
      print title
      print "| path          | req/s     | p50 ms  | p99 ms  | errors | cpu/req | load c/r | cpu0 cpu1  |"
      print "|---------------|-----------|---------|---------|--------|---------|----------|------------|"
      for (i=1; i<=n; i++) row(mode, order[i])
      print ""
    }
    function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a/b) : "-" }
    END {
      for (k in runs) { rps[k] = sprintf("%.0f", med(vrps, k)); p50[k] = med(vp50, k); p99[k] = med(vp99, k)
        us[k] = med(vus, k); if (us[k] != "-") us[k] = sprintf("%.1f", us[k])
        load[k] = med(vload, k); if (load[k] != "-") load[k] = sprintf("%.1f", load[k]) }
      table("peak", "Throughput: wrk -t1 -c" conns)
      table("paced", "Moderate load: wrk -t1 -c" pconns " paced " pms " ms between requests per connection (no wrk2 in Debian)")
      table("low", "Low concurrency: wrk -t1 -c" lconns " closed loop")
      print "Ratios of requests/s (throughput run):"
      printf "  HTTP : router/nginx %s, router/HAProxy %s, router/direct %s\n", ratio(rps["peak","dyno-http"], rps["peak","nginx-http"]), ratio(rps["peak","dyno-http"], rps["peak","haproxy-http"]), ratio(rps["peak","dyno-http"], rps["peak","direct-http"])
      printf "  HTTPS: router/nginx %s, router/HAProxy %s\n", ratio(rps["peak","dyno-https"], rps["peak","nginx-https"]), ratio(rps["peak","dyno-https"], rps["peak","haproxy-https"])
      print "CPU time per request of the proxy process (cpu/req, µs; lower is better), throughput run:"
      printf "  HTTP : nginx/router %s, HAProxy/router %s\n", ratio(us["peak","nginx-http"], us["peak","dyno-http"]), ratio(us["peak","haproxy-http"], us["peak","dyno-http"])
      printf "  HTTPS: nginx/router %s, HAProxy/router %s\n", ratio(us["peak","nginx-https"], us["peak","dyno-https"]), ratio(us["peak","haproxy-https"], us["peak","dyno-https"])
      print "CPU time per request of the load side (load c/r: wrk + backend, µs), throughput run:"
      printf "  HTTP : nginx/router %s, HTTPS: nginx/router %s\n", ratio(load["peak","nginx-http"], load["peak","dyno-http"]), ratio(load["peak","nginx-https"], load["peak","dyno-https"])
      print ""
      print "Added latency over the direct path (HTTP direct as the base for HTTPS too), ms:"
      print "| proxy         | paced +p50 | paced +p99 | c" lconns " +p50 | c" lconns " +p99 |"
      print "|---------------|------------|------------|--------|--------|"
      for (i=1; i<=n; i++) { name=order[i]; if (name == "direct-http") continue
        printf "| %-13s | %10.3f | %10.3f | %6.3f | %6.3f |\n", name, p50["paced",name]-p50["paced","direct-http"], p99["paced",name]-p99["paced","direct-http"], p50["low",name]-p50["low","direct-http"], p99["low",name]-p99["low","direct-http"] }
    }' "$RESULTS"
} | tee "$OUT/table.md"

# --- profile -----------------------------------------------------------------
if [ "$PROFILE" = 1 ]; then
  echo
  echo "CPU profile of the Dyno router under wrk -t1 -c$CONNS over HTTP (${DURATION}s):"
  kill -TERM "$ROUTER_PID"; wait "$ROUTER_PID" 2>/dev/null || true
  PROF_HTTPS=$(free_port)
  start_router "$DR_PROF" "$PROF_HTTPS" "$TMP/dynorouter-prof.log" -cpuprofile "$OUT/router.cpu.pprof" ${DYNOROUTER_FLAGS:-}
  "${LOAD[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "$HOSTHDR" "http://127.0.0.1:$DR_PROF/" > /dev/null
  "${LOAD[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$HOSTHDR" "http://127.0.0.1:$DR_PROF/" > "$OUT/wrk-profiled.txt"
  echo "  (with the profiler on: $(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-profiled.txt") req/s)"
  kill -TERM "$ROUTER_PID"; wait "$ROUTER_PID" 2>/dev/null || true
  cp "$TMP/dynorouter" "$OUT/dynorouter"
  go tool pprof -top -nodecount=35 "$OUT/dynorouter" "$OUT/router.cpu.pprof" 2>/dev/null | tee "$OUT/profile-top.txt" | sed -n '1,45p'
  go tool pprof -top -cum -nodecount=45 "$OUT/dynorouter" "$OUT/router.cpu.pprof" > "$OUT/profile-cum.txt" 2>/dev/null || true
  echo "  cumulative view: $OUT/profile-cum.txt; explore: go tool pprof -http=127.0.0.1:0 $OUT/dynorouter $OUT/router.cpu.pprof"
fi
echo
echo "results in $OUT"
