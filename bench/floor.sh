#!/usr/bin/env bash
# What a stateful ruleset costs before any agent does anything: new TCP
# connections per second (as conn.sh makes them) with no firewall, iptables
# with one ACCEPT rule without and with conntrack, and nftables skeletons
# of ours: conntrack plus a NAT chain (as the DNS redirect needs), and the
# same with the allowed flow untracked (notrack). Every round runs each case
# once, in turn; medians of REPS rounds. No harden-runner here: this is the
# floor that conn.sh's ratios sit on.
source "$(dirname "$0")/lib.sh"
need iptables-restore nft
LOAD=$OUT/connload
(cd "$ROOT" && go build -o "$LOAD" ./bench/connload)
SECS=${SECS:-4}
REPS=${REPS:-5}
pair_up
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
sleep 0.3
TARGET=198.18.1.10

rate() { ip netns exec "$NS" "$LOAD" -dial "$TARGET:443" -c 8 -d "${SECS}s" | awk '{print $1}'; }
reset() {
  ip netns exec "$NS" iptables-restore <<<$'*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT'
  ip netns exec "$NS" nft flush ruleset
}
ipt() { ip netns exec "$NS" iptables-restore; }
nftf() { ip netns exec "$NS" nft -f -; }

declare -A got
add() { got[$1]="${got[$1]:-} $2"; }
CASES="none iptables-stateless iptables-conntrack nft-conntrack-nat nft-notrack-nat"
for rep in $(seq "$REPS"); do
  reset; add none "$(rate)"
  ipt <<EOR
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -d $TARGET/32 -p tcp --dport 443 -j ACCEPT
-A OUTPUT -j REJECT
COMMIT
EOR
  add iptables-stateless "$(rate)"; reset
  ipt <<EOR
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -d $TARGET/32 -p tcp --dport 443 -j ACCEPT
-A OUTPUT -j REJECT
COMMIT
EOR
  add iptables-conntrack "$(rate)"; reset
  nftf <<EOR
table inet t {
  chain out { type filter hook output priority filter; policy accept; ct state established,related accept; ip daddr . tcp dport { $TARGET . 443 } accept; drop; }
  chain nat { type nat hook output priority -100; policy accept; udp dport 53 redirect to :153; }
}
EOR
  add nft-conntrack-nat "$(rate)"; reset
  nftf <<EOR
table inet t {
  chain raw { type filter hook output priority raw; policy accept; ip daddr . tcp dport { $TARGET . 443 } notrack; }
  chain rawin { type filter hook prerouting priority raw; policy accept; ip saddr . tcp sport { $TARGET . 443 } notrack; }
  chain out { type filter hook output priority filter; policy accept; ip daddr . tcp dport { $TARGET . 443 } accept; ct state established,related accept; drop; }
  chain nat { type nat hook output priority -100; policy accept; udp dport 53 redirect to :153; }
}
EOR
  add nft-notrack-nat "$(rate)"; reset
  echo "round $rep done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

none=$(echo ${got[none]} | tr ' ' '\n' | median)
echo "machine: $(machine); SECS=$SECS REPS=$REPS; load at end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-20s %12s %8s  %s\n' case conns_per_s x_none rounds
for k in $CASES; do
  m=$(echo ${got[$k]} | tr ' ' '\n' | median)
  printf '%-20s %12s %8s  %s\n' "$k" "$m" "$(awk -v a="$m" -v b="$none" 'BEGIN { printf "%.2f", a/b }')" "${got[$k]}"
done
