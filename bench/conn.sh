#!/usr/bin/env bash
# Benchmark 3: new TCP connections per second to an allowed address with 10
# and 100,000 allowed entries: our nftables sets (the entries from a policy
# file, in the interval set every address entry goes to) against iptables
# with one ACCEPT rule per address (how StepSecurity's agent does it; the
# allowed target is the last rule), and against no firewall at all. Every
# round runs each case once, in turn, so the machine's load drifts over all
# of them alike; medians of REPS rounds. The agent runs twice per size: with
# the kernel's attribution records (ebpf) and with HARDEN_RUNNER_NO_EBPF=1
# (procfs).
#
# "runner" is no agent on a GitHub-hosted runner: dockerd runs there and its
# iptables rules (NAT for docker0, the DOCKER chains) keep conntrack on for
# every host connection. runner+hr-ebpf is the agent on top of those rules,
# what a workflow that adds the agent gets, at every size; x_runner
# compares with that.
# Every case starts with empty conntrack tables: the entries a case leaves
# (120 s in TIME_WAIT, 125,000 a case) would fill the table for the next
# one, which then pays for evicting them.
source "$(dirname "$0")/lib.sh"
need iptables-restore nft conntrack
build
LOAD=$OUT/connload
(cd "$ROOT" && go build -o "$LOAD" ./bench/connload)
SECS=${SECS:-5}
SIZES=${SIZES:-"10 100000"}
REPS=${REPS:-5}
pair_up
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
sleep 0.3
TARGET=198.18.1.10

# entries N: N-1 filler address:port pairs (198.19/16, ports 1..) plus the target last.
fillers() { awk -v n="$1" 'BEGIN { for (i = 0; i < n-1; i++) printf "198.19.%d.%d %d\n", int(i/250)%250, i%250+1, 1+int(i/62500) }'; }

rate() { ip netns exec "$NS" "$LOAD" -dial "$TARGET:443" -c 8 -d "${SECS}s" | awk '{print $1}'; }

for n in $SIZES; do
  { echo "*filter"; echo ":OUTPUT ACCEPT [0:0]"
    echo "-A OUTPUT -o lo -j ACCEPT"
    echo "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    fillers "$n" | awk '{printf "-A OUTPUT -d %s/32 -p tcp --dport %s -j ACCEPT\n", $1, $2}'
    echo "-A OUTPUT -d $TARGET/32 -p tcp --dport 443 -j ACCEPT"
    echo "-A OUTPUT -j REJECT"; echo "COMMIT"; } >"$OUT/ipt-$n.rules"
  { echo "egress-policy: block"; echo "allowed-endpoints:"
    fillers "$n" | awk '{printf "  - %s:%s\n", $1, $2}'
    echo "  - $TARGET:443"; } >"$OUT/policy-$n.yml"
done

# dockerd's rules on a runner with no container running (docker 27/28).
runner_rules() { cat <<'EOR'
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
EOR
}
flush() { for ns in "$NS" "$NET"; do ip netns exec "$ns" conntrack -F >/dev/null 2>&1 || true; done; }
clean() { ip netns exec "$NS" nft flush ruleset; flush; }
agent() { # attr entries report-name
  local noebpf=""; [ "$1" = procfs ] && noebpf=1
  HARDEN_RUNNER_NO_EBPF=$noebpf ip netns exec "$NS" "${CG2[@]}" "$BIN" run --policy "$OUT/policy-$2.yml" \
    --upstream 198.18.0.2 --report-dir "$OUT/conn-report-$3" --disable-file-monitoring -- \
    "$LOAD" -dial $TARGET:443 -c 8 -d ${SECS}s 2>>"$OUT/conn-agent-$3.log" | awk '{print $1}'
}

declare -A got
add() {
  [ -n "$2" ] || { echo "conn.sh: no rate for '$1' (an agent's log is in $OUT/conn-agent-*.log)" >&2; exit 1; }
  got[$1]="${got[$1]:-} $2"
}
for rep in $(seq "$REPS"); do
  clean; add "none -" "$(rate)"
  clean; ip netns exec "$NS" iptables-restore < <(runner_rules); add "runner -" "$(rate)"
  for n in $SIZES; do
    clean; ip netns exec "$NS" iptables-restore < <(runner_rules)
    add "runner+hr-ebpf $n" "$(agent ebpf "$n" runner-ebpf-$n)"
  done
  for n in $SIZES; do
    clean; ip netns exec "$NS" iptables-restore <"$OUT/ipt-$n.rules"
    add "iptables $n" "$(rate)"
    for attr in ebpf procfs; do
      clean; add "hr-$attr $n" "$(agent $attr "$n" $attr-$n)"
    done
  done
  echo "round $rep done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

none=$(echo ${got["none -"]} | tr ' ' '\n' | median)
runner=$(echo ${got["runner -"]} | tr ' ' '\n' | median)
# paired A B: the median over rounds of A's rate over B's in the same
# round. This VM's speed drifts by 10-20 % from one round to the next;
# the ratio of medians mixes rounds, this does not.
paired() { paste -d' ' <(echo $1 | tr ' ' '\n') <(echo $2 | tr ' ' '\n') | awk '{ printf "%.4f\n", $1/$2 }' | median | awk '{ printf "%.2f", $1 }'; }
echo "machine: $(machine); SECS=$SECS REPS=$REPS; load at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "x_none, x_runner: ratios of the medians; p_none, p_runner: medians of the per-round ratios"
printf '%-15s %8s %12s %8s %8s %8s %8s  %s\n' firewall entries conns_per_s x_none x_runner p_none p_runner rounds
for k in "none -" "runner -" $(for n in $SIZES; do echo "runner+hr-ebpf:$n"; done) $(for n in $SIZES; do echo "iptables:$n hr-ebpf:$n hr-procfs:$n"; done); do
  k=${k/:/ }
  m=$(echo ${got[$k]} | tr ' ' '\n' | median)
  printf '%-15s %8s %12s %8s %8s %8s %8s  %s\n' $k "$m" "$(awk -v a="$m" -v b="$none" 'BEGIN { printf "%.2f", a/b }')" \
    "$(awk -v a="$m" -v b="$runner" 'BEGIN { printf "%.2f", a/b }')" \
    "$(paired "${got[$k]}" "${got["none -"]}")" "$(paired "${got[$k]}" "${got["runner -"]}")" "${got[$k]}"
done
# The last round's reports: attribution, losses, and the agent process's
# own CPU time (report.json agent.usage: its whole life, start-up included)
# per connection of that round.
for k in $(for n in $SIZES; do echo "runner-ebpf:$n:runner+hr-ebpf ebpf:$n:hr-ebpf procfs:$n:hr-procfs"; done); do
  IFS=: read -r tag n case <<<"$k"
  f="$OUT/conn-report-$tag-$n/report.json"
  last=$(echo ${got["$case $n"]} | awk '{print $NF}')
  [ -f "$f" ] && python3 - "$f" "$case $n" "$last" "$SECS" <<'PY'
import json, sys
f, case, rate, secs = sys.argv[1:]
a = json.load(open(f))["agent"]
u = a.get("usage") or {}
cpu = u.get("user_seconds", 0) + u.get("system_seconds", 0)
per = f"{cpu * 1e6 / (float(rate) * float(secs)):.1f} us/conn" if u else "no usage in the report"
print(f"{case}: attribution {a.get('attribution')}, unattributed {a.get('unattributed_events')}, lost {a['lost']['total']}, "
      f"agent CPU {cpu:.2f} s ({per}), peak RSS {u.get('max_rss_bytes', 0) / 1e6:.1f} MB")
PY
done
