#!/usr/bin/env bash
# Benchmark 8: the name-checking relay. The same agent, policy mode and
# server, alternating in the same run: "direct" allows the server by its
# address (an address entry: the firewall passes it, the relay is not
# involved) and "relay" by a name (bulk.test, answered by dnsmasq: every new
# connection to it goes through the relay, which reads its Host header and
# checks it against the resolver's answers). bench/relayload measures bulk
# download throughput, connect-to-first-byte latency (sequential), new
# connections/s (8 dialers) and the agent's RSS per idle connection.
# RATE=1gbit shapes the link (tc tbf, in the bench's own namespace) like a
# NIC, instead of the CPU-bound veth.
source "$(dirname "$0")/lib.sh"
need dnsmasq
build
LOAD=$OUT/relayload
(cd "$ROOT" && go build -o "$LOAD" ./bench/relayload)
ROUNDS=${ROUNDS:-3}
pair_up
if [ -n "${RATE:-}" ]; then
  ip netns exec "$NET" tc qdisc add dev hrb1 root tbf rate "$RATE" burst 512k latency 20ms
  ip netns exec "$NS" tc qdisc add dev hrb0 root tbf rate "$RATE" burst 512k latency 20ms
fi
# Each run its own server address (and name): TIME_WAIT sockets a run leaves
# behind (60 s) must not slow the next run's port search.
addrs=()
for i in $(seq $((2 * ROUNDS))); do addrs+=("--address=/b$i.test/198.18.1.$((10 + i))"); done
ip netns exec "$NET" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=198.18.0.2 "${addrs[@]}" --address=/#/ --user=root --pid-file= \
  >"$OUT/relay-dnsmasq.log" 2>&1 & PIDS+=($!)
ip netns exec "$NET" "$LOAD" -serve :443 >/dev/null & PIDS+=($!)
mkdir -p /etc/netns/"$NS"
echo "nameserver 198.18.0.2" >/etc/netns/"$NS"/resolv.conf
trap 'cleanup; ip netns del "$NET" 2>/dev/null || true; rm -rf /etc/netns/"$NS"' EXIT
sleep 0.5

one() { # way allowed-endpoints addr host
  ip netns exec "$NS" "$BIN" run --egress-policy block --allowed-endpoints "$2" --upstream 198.18.0.2 \
    --disable-file-monitoring --report-dir "$OUT/relay-report-$1" -- "$LOAD" -addr "$3" -host "$4"
}
: >"$OUT/relay-direct.txt"; : >"$OUT/relay-relay.txt"
i=0
for r in $(seq "$ROUNDS"); do
  # Alternate which way goes first.
  for w in $([ $((r % 2)) = 1 ] && echo direct relay || echo relay direct); do
    i=$((i + 1)); a=198.18.1.$((10 + i))
    if [ "$w" = direct ]; then
      one direct "$a:443" "$a:443" "b$i.test" >>"$OUT/relay-direct.txt"
    else
      one relay "b$i.test:443" "b$i.test:443" "b$i.test" >>"$OUT/relay-relay.txt"
    fi
  done
done
paste "$OUT/relay-direct.txt" "$OUT/relay-relay.txt"
col() { awk -v c="$1" '{print $c}' "$2" | median; }
echo "machine: $(machine), load $(cut -d' ' -f1-3 /proc/loadavg), link ${RATE:-veth unshaped}, rounds $ROUNDS"
printf "%-8s %10s %8s %8s %9s %14s\n" way "MB/s" p50-µs p99-µs conns/s idle-B/conn
for w in direct relay; do
  f=$OUT/relay-$w.txt
  printf "%-8s %10s %8s %8s %9s %14s\n" "$w" "$(col 1 "$f")" "$(col 2 "$f")" "$(col 3 "$f")" "$(col 4 "$f")" "$(col 5 "$f")"
done
awk 'NR==FNR {d[FNR]=$1; dl[FNR]=$2; next} {printf "round %d: bulk ratio %.2f, p50 added %d µs\n", FNR, $1/d[FNR], $2-dl[FNR]}' \
  "$OUT/relay-direct.txt" "$OUT/relay-relay.txt"
