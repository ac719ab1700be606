#!/usr/bin/env bash
# What the agent costs per new connection, part by part, on a runner's
# rules (docker's conntrack and NAT): the kernel time in each of its BPF
# programs (the kernel's own BPF statistics, kernel.bpf_stats_enabled, on
# for the measurement only) and the agent process's CPU time, for the same
# connections. conn.sh measures the rate these costs add up to; its ratios
# move 10-20 % with this VM, these figures much less.
#
# The load runs beside the agent (in its network namespace, outside its
# cgroup): the agent's programs are attached machine-wide, so the load's
# packets run them all the same, and the agent's CPU is read from /proc
# for the load's window only. Program times include the statistics' own
# clock reads (two per run), so a program that does nothing still shows
# tens of ns; compare programs with each other and across builds, not
# with zero. ROUNDS (default 3) runs, each SECS (default 5) seconds.
source "$(dirname "$0")/lib.sh"
need iptables-restore nft conntrack bpftool python3
build
LOAD=$OUT/connload
(cd "$ROOT" && go build -o "$LOAD" ./bench/connload)
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
TARGET=198.18.1.10
pair_up
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
sleep 0.3
printf 'egress-policy: block\nallowed-endpoints:\n  - %s:443\n' "$TARGET" >"$OUT/hooks-policy.yml"
# The runner's rules: conn.sh's runner_rules, one definition.
eval "$(sed -n '/^runner_rules() {/,/^}/p' "$HERE/conn.sh")"
ip netns exec "$NS" iptables-restore < <(runner_rules)

stats_was=$(sysctl -n kernel.bpf_stats_enabled)
restore_stats() { sysctl -q kernel.bpf_stats_enabled="$stats_was"; }
trap 'restore_stats; cleanup; ip netns del "$NET" 2>/dev/null || true' EXIT

for r in $(seq "$ROUNDS"); do
  for ns in "$NS" "$NET"; do ip netns exec "$ns" conntrack -F >/dev/null 2>&1 || true; done
  ip netns exec "$NS" "${CG2[@]}" "$BIN" run --policy "$OUT/hooks-policy.yml" --upstream 198.18.0.2 \
    --report-dir "$OUT/hooks-report" --disable-file-monitoring -- sleep $((SECS + 4)) 2>"$OUT/hooks-agent.log" &
  agent=$!
  # The agent is run's own process (the shell exec'd it): wait until it enforces.
  for _ in $(seq 50); do ip netns exec "$NS" nft list table inet harden_runner >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 0.5
  pid=$(pgrep -f "^$BIN run --policy $OUT/hooks-policy.yml" | head -1)
  [ -n "$pid" ] || { echo "hooks.sh: the agent did not start (log: $OUT/hooks-agent.log)" >&2; exit 1; }
  sysctl -q kernel.bpf_stats_enabled=1
  bpftool -j prog show >"$OUT/hooks-before.json"
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rate=$(ip netns exec "$NS" "$LOAD" -dial "$TARGET:443" -c 8 -d "${SECS}s" | awk '{print $1}')
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  bpftool -j prog show >"$OUT/hooks-after.json"
  restore_stats
  wait "$agent" || true
  python3 - "$OUT/hooks-before.json" "$OUT/hooks-after.json" "$rate" "$SECS" "$((t1 - t0))" "$(getconf CLK_TCK)" "$(nproc)" "$r" <<'PY'
import json, sys
before, after, rate, secs, ticks, hz, cpus, rnd = sys.argv[1:]
conns = float(rate) * float(secs)
b = {p["id"]: p for p in json.load(open(before))}
rows, total = [], 0.0
for p in json.load(open(after)):
    q = b.get(p["id"])
    # Ours only: the agent's programs are named on_*; the id must be in
    # both snapshots (loaded before the window).
    if not q or not p.get("name", "").startswith("on_") or "run_cnt" not in p:
        continue
    runs = p["run_cnt"] - q.get("run_cnt", 0)
    ns = p["run_time_ns"] - q.get("run_time_ns", 0)
    if runs == 0:
        continue
    total += ns
    rows.append((p["name"], runs / conns, ns / runs, ns / conns))
machine = float(cpus) * 1e9 / float(rate)  # ns of CPU the machine has per connection
agent = float(ticks) / float(hz) * 1e9 / conns
print(f"round {rnd}: {float(rate):,.0f} conns/s for {secs} s; the machine has {machine/1000:.1f} us of CPU per connection")
print(f"  {'program':<16} {'runs/conn':>9} {'ns/run':>8} {'ns/conn':>8}")
for name, rc, nr, nc in sorted(rows, key=lambda r: -r[3]):
    print(f"  {name:<16} {rc:9.2f} {nr:8.1f} {nc:8.1f}")
print(f"  BPF programs: {total/conns/1000:.2f} us/conn ({100*total/conns/machine:.1f} % of the machine)")
print(f"  agent process: {agent/1000:.2f} us/conn ({100*agent/machine:.1f} % of the machine)")
PY
done
echo "machine: $(machine)"
