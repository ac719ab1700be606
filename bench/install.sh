#!/usr/bin/env bash
# Benchmark 8: installing an allow-list of 1,000 / 10,000 / 100,000 address
# entries (half IPv4, half IPv6): harden-runner's firewall (interval sets,
# one transaction; bench/install) against iptables-restore + ip6tables-restore
# with one ACCEPT rule per entry (how StepSecurity's agent does it), and nft -f
# with the same sets, in the same run and namespace. Median of REPS, ms.
# Then the wall time of `harden-runner run --policy FILE -- true` (install,
# run, remove, report) with those lists, against no list.
source "$(dirname "$0")/lib.sh"
need iptables-restore ip6tables-restore nft
build
INST=$OUT/install
(cd "$ROOT" && go build -o "$INST" ./bench/install)
SIZES=${SIZES:-"1000 10000 100000"}
REPS=${REPS:-5}
netns_up 198.18.0.53/32
# ms CMD: wall time of CMD run by a shell already inside $NS (so the ~16 ms
# of `ip netns exec` is not counted; the tools' own process start is).
ms() { in_ns bash -c 's=$(date +%s%N); '"$1"'; e=$(date +%s%N); awk -v s=$s -v e=$e "BEGIN { printf \"%.1f\\n\", (e - s) / 1e6 }"'; }
printf "%-8s %10s %22s %12s %8s\n" entries ours_ms iptables-restore_ms nft_-f_ms ratio
for n in $SIZES; do
  "$INST" -n "$n" -emit ipt4 >"$OUT/ipt4.rules"
  "$INST" -n "$n" -emit ipt6 >"$OUT/ipt6.rules"
  "$INST" -n "$n" -emit nft >"$OUT/bench.nft"
  ours=$(in_ns "$INST" -n "$n" -reps "$REPS" | median)
  ipt=$(for _ in $(seq "$REPS"); do
      ms "iptables-restore <$OUT/ipt4.rules && ip6tables-restore <$OUT/ipt6.rules"
      in_ns iptables-restore <<<$'*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT'
      in_ns ip6tables-restore <<<$'*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT'
      in_ns nft flush ruleset
    done | median)
  nftf=$(for _ in $(seq "$REPS"); do
      ms "nft -f $OUT/bench.nft"
      in_ns nft delete table inet bench
    done | median)
  printf "%-8s %10s %22s %12s %8s\n" "$n" "$ours" "$ipt" "$nftf" "$(awk -v a="$ipt" -v b="$ours" 'BEGIN { printf "%.1f", a / b }')"
done

run_ms() { # policy file or "": median wall time of run -- true, ms
  local args=(--egress-policy block)
  [ -n "$1" ] && args=(--policy "$1")
  for _ in $(seq "$REPS"); do
    s=$(date +%s%N)
    in_ns "$BIN" run "${args[@]}" --upstream 198.18.0.53 --report-dir "$OUT/install-report" \
      --disable-file-monitoring -- true >/dev/null 2>&1
    e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
  done | median
}
echo
printf "%-8s %22s\n" entries "run --policy -- true ms"
printf "%-8s %22s\n" 0 "$(run_ms "")"
for n in $SIZES; do
  "$INST" -n "$n" -emit policy >"$OUT/policy-$n.yml"
  printf "%-8s %22s\n" "$n" "$(run_ms "$OUT/policy-$n.yml")"
done
