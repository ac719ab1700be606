#!/usr/bin/env bash
# Benchmark 1: wall time of `harden-runner run -- true` in block mode with 50
# allowed endpoints (to enforcing and back: install, run, remove, report),
# against plain `true`, in a fresh namespace. Median of RUNS.
source "$(dirname "$0")/lib.sh"
build
RUNS=${RUNS:-30}
netns_up 198.18.0.53/32
EPS=$(for i in $(seq 1 45); do printf 'host%d.example.com:443 ' "$i"; done; echo '*.githubusercontent.com:443 203.0.113.0/24:443 [2001:db8::/48]:443 198.51.100.7:22 github.com:443')
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
for _ in $(seq "$RUNS"); do
  ms in_ns "$BIN" run --egress-policy block --allowed-endpoints "$EPS" --upstream 198.18.0.53 \
    --report-dir "$OUT/startup-report" --disable-file-monitoring -- true
done >"$OUT/startup-us.txt"
for _ in $(seq "$RUNS"); do ms in_ns true; done >"$OUT/true-us.txt"
echo "machine: $(machine)"
echo "run -- true, block, 50 endpoints: median $(median <"$OUT/startup-us.txt" | awk '{printf "%.1f", $1/1000}') ms, p90 $(percentile 90 <"$OUT/startup-us.txt" | awk '{printf "%.1f", $1/1000}') ms ($RUNS runs)"
echo "ip netns exec true (baseline):   median $(median <"$OUT/true-us.txt" | awk '{printf "%.1f", $1/1000}') ms"
