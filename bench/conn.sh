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
source "$(dirname "$0")/lib.sh"
need iptables-restore nft
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

declare -A got
add() { got[$1]="${got[$1]:-} $2"; }
for rep in $(seq "$REPS"); do
  add "none -" "$(rate)"
  for n in $SIZES; do
    ip netns exec "$NS" iptables-restore <"$OUT/ipt-$n.rules"
    add "iptables $n" "$(rate)"
    ip netns exec "$NS" iptables-restore <<<$'*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT'
    ip netns exec "$NS" nft flush ruleset
    for attr in ebpf procfs; do
      noebpf=""; [ "$attr" = procfs ] && noebpf=1
      r=$(HARDEN_RUNNER_NO_EBPF=$noebpf ip netns exec "$NS" "${CG2[@]}" "$BIN" run --policy "$OUT/policy-$n.yml" \
          --upstream 198.18.0.2 --report-dir "$OUT/conn-report-$attr-$n" --disable-file-monitoring -- \
          "$LOAD" -dial $TARGET:443 -c 8 -d ${SECS}s | awk '{print $1}')
      add "hr-$attr $n" "$r"
    done
  done
  echo "round $rep done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

none=$(echo ${got["none -"]} | tr ' ' '\n' | median)
echo "machine: $(machine); SECS=$SECS REPS=$REPS; load at end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %8s %12s %8s  %s\n' firewall entries conns_per_s x_none rounds
for k in "none -" $(for n in $SIZES; do echo "iptables:$n hr-ebpf:$n hr-procfs:$n"; done); do
  k=${k/:/ }
  m=$(echo ${got[$k]} | tr ' ' '\n' | median)
  printf '%-14s %8s %12s %8s  %s\n' $k "$m" "$(awk -v a="$m" -v b="$none" 'BEGIN { printf "%.2f", a/b }')" "${got[$k]}"
done
for attr in ebpf procfs; do for n in $SIZES; do
  f="$OUT/conn-report-$attr-$n/report.json"
  [ -f "$f" ] && python3 -c "import json,sys; a=json.load(open('$f'))['agent']; print('$attr $n: attribution', a.get('attribution'), 'unattributed', a.get('unattributed_events'), 'lost', a['lost']['total'])"
done; done
