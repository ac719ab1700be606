#!/usr/bin/env bash
# Benchmark 3: new TCP connections per second to an allowed address with 10,
# 10,000 and 100,000 allowed entries: our nftables sets (entries added to the
# same set the resolver fills) against iptables with one ACCEPT rule per
# address (how StepSecurity's agent does it; the allowed target is the last
# rule), and against no firewall at all, in the same run.
source "$(dirname "$0")/lib.sh"
need iptables-restore nft
build
LOAD=$OUT/connload
(cd "$ROOT" && go build -o "$LOAD" ./bench/connload)
SECS=${SECS:-5}
SIZES=${SIZES:-"10 10000 100000"}
REPS=${REPS:-3}
pair_up
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
sleep 0.3
TARGET=198.18.1.10

# entries N: N-1 filler address.port pairs (198.19/16, ports 1..) plus the target last.
fillers() { awk -v n="$1" 'BEGIN { for (i = 0; i < n-1; i++) printf "198.19.%d.%d %d\n", int(i/250)%250, i%250+1, 1+int(i/62500) }'; }

rate() { ip netns exec "$NS" "$LOAD" -dial "$TARGET:443" -c 8 -d "${SECS}s" | awk '{print $1}'; }

measure() { # label: median of REPS runs
  for _ in $(seq "$REPS"); do rate; done | median
}

results=()
results+=("none - $(measure)")
for n in $SIZES; do
  # iptables: one rule per address, target last, reject the rest.
  { echo "*filter"; echo ":OUTPUT ACCEPT [0:0]"
    echo "-A OUTPUT -o lo -j ACCEPT"
    echo "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    fillers "$n" | awk '{printf "-A OUTPUT -d %s/32 -p tcp --dport %s -j ACCEPT\n", $1, $2}'
    echo "-A OUTPUT -d $TARGET/32 -p tcp --dport 443 -j ACCEPT"
    echo "-A OUTPUT -j REJECT"; echo "COMMIT"; } >"$OUT/ipt.rules"
  ip netns exec "$NS" iptables-restore <"$OUT/ipt.rules"
  results+=("iptables $n $(measure)")
  ip netns exec "$NS" iptables-restore <<<$'*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT'
  ip netns exec "$NS" nft flush ruleset

  # ours: harden-runner's table, the same entries in its dyn4 set.
  { echo "add element inet harden_runner dyn4 {"
    fillers "$n" | awk '{printf "%s . %s timeout 1h,\n", $1, $2}'
    echo "$TARGET . 443 timeout 1h }"; } >"$OUT/nft.elems"
  # Once with the kernel's attribution records (ebpf), once without (procfs).
  for attr in ebpf procfs; do
    noebpf=""; [ "$attr" = procfs ] && noebpf=1
    r=$(HARDEN_RUNNER_NO_EBPF=$noebpf ip netns exec "$NS" "${CG2[@]}" "$BIN" run --egress-policy block --upstream 198.18.0.2 --report-dir "$OUT/conn-report" \
        --disable-file-monitoring -- bash -c "nft -f '$OUT/nft.elems' && for i in \$(seq $REPS); do '$LOAD' -dial $TARGET:443 -c 8 -d ${SECS}s; done" \
        | awk '{print $1}' | median)
    results+=("hr-$attr $n $r")
  done
done

echo "machine: $(machine)"
printf '%-14s %8s %12s\n' firewall entries conns_per_s
for r in "${results[@]}"; do printf '%-14s %8s %12s\n' $r; done
