#!/usr/bin/env bash
# Benchmark 4: audit mode under 5,000 new connections/s for 10 s. Every
# connection must be in report.json (summed counts == connections made), the
# report's lost-events counters at 0, and the agent's peak RSS (VmHWM) under
# 64 MB (issue 11's target with the lineage table).
source "$(dirname "$0")/lib.sh"
build
LOAD=$OUT/connload
(cd "$ROOT" && go build -o "$LOAD" ./bench/connload)
RATE=${RATE:-5000}
SECS=${SECS:-10}
pair_up
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
sleep 0.3
R=$OUT/audit-report
rm -rf "$R"
HARDEN_RUNNER_NO_EBPF=${NO_EBPF:-} ip netns exec "$NS" "${CG2[@]}" "$BIN" run --egress-policy audit --upstream 198.18.0.2 --report-dir "$R" --disable-file-monitoring -- \
  bash -c "'$LOAD' -dial 198.18.1.10:443 -c 32 -rate $RATE -d ${SECS}s >'$OUT/audit-load.txt'; sleep 1; grep VmHWM /proc/\$PPID/status >'$OUT/audit-rss.txt'"
read -r rate failed made <"$OUT/audit-load.txt"
python3 - "$R/report.json" "$made" "$rate" "$OUT/audit-rss.txt" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
made, rate = int(sys.argv[2]), float(sys.argv[3])
seen = sum(e.get("count", 1) for e in rep["egress"] if e["ip"] == "198.18.1.10" and e["port"] == 443)
agent = rep.get("agent", {})
rss_kb = int(open(sys.argv[4]).read().split()[1])
print(f"attribution: {agent.get('attribution')}; connections made: {made} ({rate:.0f}/s); in report: {seen}; lost: {agent.get('lost')}; unattributed: {agent.get('unattributed_events')}; agent peak RSS: {rss_kb/1024:.1f} MB")
PY
echo "machine: $(machine)"
