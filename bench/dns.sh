#!/usr/bin/env bash
# Benchmark 2: DNS. dnsperf against our resolver (under `harden-runner run`,
# block mode, queries redirected by nftables as in production) and against
# dnsmasq as a forwarding cache to the same upstream, in the same run.
# Cached-answer throughput and latency percentiles.
source "$(dirname "$0")/lib.sh"
need dnsperf dnsmasq
build
SECS=${SECS:-10}
NAMES=${NAMES:-1000}
netns_up 198.18.0.53/32 198.18.0.54/32

# Upstream: authoritative for *.bench.test, no cache, no logging.
in_ns dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=198.18.0.53 \
  --address=/bench.test/198.18.1.1 --address=/#/ --cache-size=0 --local-ttl=300 --user=root --pid-file= &
PIDS+=($!)
# Baseline: dnsmasq forwarding with a cache, what a user would put in front.
in_ns dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=198.18.0.54 \
  --server=198.18.0.53 --cache-size=10000 --user=root --pid-file= &
PIDS+=($!)
sleep 0.5

Q=$OUT/dns-queries.txt
for i in $(seq 0 $((NAMES-1))); do echo "n$i.bench.test A"; done >"$Q"

# perf SERVER LABEL: warm the cache, then measure throughput and latency.
perf() {
  local server=$1 label=$2
  in_ns dnsperf -s "$server" -d "$Q" -n 1 >/dev/null 2>&1
  in_ns dnsperf -s "$server" -d "$Q" -l "$SECS" -c 4 -q 200 >"$OUT/dnsperf-$label.txt" 2>&1
  local qps; qps=$(awk '/Queries per second/ {print $4}' "$OUT/dnsperf-$label.txt")
  # Latency at a moderate fixed rate, every query's time from -v.
  in_ns dnsperf -s "$server" -d "$Q" -l 5 -Q 5000 -v 2>/dev/null | awk '$2=="NOERROR" {print $NF*1000}' >"$OUT/lat-$label.txt"
  local p50 p99; p50=$(percentile 50 <"$OUT/lat-$label.txt"); p99=$(percentile 99 <"$OUT/lat-$label.txt")
  echo "$label $qps $p50 $p99"
}

# Ours: the same dnsperf, run under the agent; it asks 198.18.0.54:53 and
# nftables redirects the query to our resolver (dnsmasq never sees it).
# REPS rounds, each dnsmasq then ours, so that the machine's drift (this
# VM's neighbours move throughput by ±20 %) hits both alike; medians.
export -f perf percentile
REPS=${REPS:-3}
: >"$OUT/dns-rounds.txt"
for i in $(seq "$REPS"); do
  base=$(perf 198.18.0.54 dnsmasq)
  ours=$(in_ns env OUT="$OUT" Q="$Q" SECS="$SECS" "$BIN" run --egress-policy block --allowed-endpoints '*.bench.test:443' \
    --upstream 198.18.0.53 --report-dir "$OUT/dns-report" --disable-file-monitoring -- \
    bash -c 'in_ns() { "$@"; }; export -f in_ns; perf 198.18.0.54 harden-runner')
  echo "$base $ours" >>"$OUT/dns-rounds.txt"
done

echo "machine: $(machine)"
printf '%-5s %-14s %12s %10s %10s %-14s %12s %10s %10s %6s\n' round server qps p50_ms p99_ms server qps p50_ms p99_ms ratio
awk '{printf "%-5d %-14s %12.0f %10s %10s %-14s %12.0f %10s %10s %6.2f\n", NR, $1, $2, $3, $4, $5, $6, $7, $8, $6/$2}' "$OUT/dns-rounds.txt"
col() { awk -v c="$1" '{print $c}' "$OUT/dns-rounds.txt" | median; }
printf 'median: dnsmasq %.0f q/s (p99 %s ms), harden-runner %.0f q/s (p50 %s ms, p99 %s ms); ratio of medians %.2f\n' \
  "$(col 2)" "$(col 4)" "$(col 6)" "$(col 7)" "$(col 8)" "$(awk -v a="$(col 6)" -v b="$(col 2)" 'BEGIN {print a/b}')"
