#!/usr/bin/env bash
# Exec storm: N short-lived processes (default 20,000 execs of /bin/true in a
# burst) under the agent in audit mode. The lineage ring must carry every
# exec/fork/exit record (lost 0) and the agent's peak RSS (VmHWM) stay under
# 64 MB (issue 11). Prints the lineage component's event and lost counts.
source "$(dirname "$0")/lib.sh"
build
N=${N:-20000}
netns_up 198.18.0.1/32
R=$OUT/storm-report
rm -rf "$R"
in_ns "${CG2[@]}" "$BIN" run --egress-policy audit --upstream 198.18.0.1 --report-dir "$R" --disable-file-monitoring -- \
  bash -c "s=\$(date +%s.%N); for ((i=0;i<$N;i++)); do /bin/true; done; e=\$(date +%s.%N); echo \"\$s \$e\" >'$OUT/storm-time.txt'; sleep 1; grep VmHWM /proc/\$PPID/status >'$OUT/storm-rss.txt'"
python3 - "$R/report.json" "$N" "$OUT/storm-time.txt" "$OUT/storm-rss.txt" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
s, e = map(float, open(sys.argv[3]).read().split())
agent = rep.get("agent", {})
rss_kb = int(open(sys.argv[4]).read().split()[1])
lin = [c for c in agent.get("components", []) if c["component"] == "lineage"]
print(f"attribution: {agent.get('attribution')}; {n} execs in {e-s:.2f} s ({n/(e-s):.0f}/s)")
print(f"lineage component: {lin[0] if lin else 'absent'}")
print(f"lost (all components): {agent.get('lost', {}).get('total')}; agent peak RSS: {rss_kb/1024:.1f} MB")
PY
echo "machine: $(machine)"
