#!/usr/bin/env bash
# Balancing benchmark (issue 4): 8 web dynos that serve one request at a
# time (the rest queue inside the dyno) with heavy-tailed service times
# (lognormal, mean 10 ms, sigma 1: p99 ≈ 6x the mean), open-loop Poisson
# arrivals at 70% of total capacity (560 req/s) for 60 s, through the Dyno
# router; once with the app's DYNO_ROUTING_POLICY=random, once with the
# policy unset (the router's default, least outstanding requests over two
# random choices), and once with round-robin for reference. The same seed
# gives every run the same arrivals and service times. Prints mean, p50 and
# p99 of each and the ratios. Everything runs in one Go process on
# 127.0.0.1 and stops by itself (about 3.5 min in all). 60 s, not less:
# a p99 is then one of ~34k latencies, and with 20 s (~11k) random's p99
# moved by 25% between runs of the same seed.
#
#   bash bench/balance/run.sh            # defaults
#   LOAD=0.9 DIST=pareto SHAPE=2.5 bash bench/balance/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LOAD=${LOAD:-0.7}
DURATION=${DURATION:-60s}
DIST=${DIST:-lognormal}
SHAPE=${SHAPE:-1.0}
SEED=${SEED:-1}
POLICIES=${POLICIES:-"random default round-robin"}
TMP=$(mktemp -d /tmp/dyno-bench-balance.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
go build -o "$TMP/balance" ./bench/balance

for p in $POLICIES; do
  flag=$p; [ "$p" = default ] && flag=
  timeout 180 "$TMP/balance" -policy "$flag" -load "$LOAD" -duration "$DURATION" -dist "$DIST" -shape "$SHAPE" \
    -seed "$SEED" | tee -a "$TMP/out.txt"
done

echo
echo "Balancing at ${LOAD} load, $DIST (shape $SHAPE) service times, mean 10 ms, 8 one-at-a-time dynos, $DURATION, seed $SEED:"
awk '/^RESULT/ { mean[$2]=$3; p50[$2]=$4; p99[$2]=$5; p999[$2]=$6; fail[$2]=$7; order[++n]=$2 }
  END {
    print "| policy      | mean ms | p50 ms | p99 ms | p99.9 ms | failed |"
    print "|-------------|---------|--------|--------|----------|--------|"
    for (i=1; i<=n; i++) { p=order[i]; printf "| %-11s | %7.2f | %6.2f | %6.2f | %8.2f | %6d |\n", p, mean[p], p50[p], p99[p], p999[p], fail[p] }
    if (("random" in p99) && ("default" in p99) && p99["default"] > 0)
      printf "random/default: p99 %.2fx, p50 %.2fx, mean %.2fx (goal: p99 >= 2x)\n", p99["random"]/p99["default"], p50["random"]/p50["default"], mean["random"]/mean["default"]
  }' "$TMP/out.txt"
