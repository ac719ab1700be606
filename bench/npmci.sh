#!/usr/bin/env bash
# Benchmark 8: the cost of file monitoring to a real build. `npm ci --offline`
# of a 392-package tree (eslint, typescript, webpack, @babel/core, jest) in a
# git workspace, under `harden-runner run` in audit mode inside a namespace
# of our own, file monitoring on vs off, alternating, ROUNDS rounds; prints
# each round and the ratio of the medians (wall and the build's sys time).
#
# WARM=1 runs an unmonitored npm ci first in each round, so the workspace
# holds a node_modules tree (≈ 12,000 files) when monitoring starts, as when
# a job re-runs npm ci in a workspace that already has one: npm ci deletes it
# and installs again.
#
# The npm cache is filled once, with the network of the machine's own
# namespace (no firewall is touched there): set NPM_CACHE to reuse one.
source "$(dirname "$0")/lib.sh"
need npm git /usr/bin/time
build
ROUNDS=${ROUNDS:-5}
CACHE=${NPM_CACHE:-$OUT/npm-cache}
TPL=$OUT/npmci-template
if [ ! -f "$TPL/package-lock.json" ] || [ ! -d "$CACHE/_cacache" ]; then
  rm -rf "$TPL"; mkdir -p "$TPL"
  cp "$HERE/npmci/package.json" "$TPL/"
  # install writes the lock; ci with the network then caches all it reads
  (cd "$TPL" && npm install --cache "$CACHE" --no-audit --no-fund >/dev/null && rm -rf node_modules &&
    npm ci --cache "$CACHE" --no-audit --no-fund >/dev/null && rm -rf node_modules)
fi
netns_up 198.18.0.1/32
WS=$OUT/npmci-ws
round() { # $1: on|off; prints "wall sys"
  rm -rf "$WS"; mkdir -p "$WS"
  cp "$TPL/package.json" "$TPL/package-lock.json" "$WS/"
  (cd "$WS" && git init -q && git add -A && git -c user.name=b -c user.email=b@example.com commit -qm lock)
  if [ "${WARM:-0}" = 1 ]; then
    in_ns npm ci --offline --cache "$CACHE" --no-audit --no-fund --prefix "$WS" >/dev/null 2>&1
  fi
  local flag=()
  [ "$1" = off ] && flag=(--disable-file-monitoring)
  in_ns "$BIN" run --egress-policy audit --upstream 198.18.0.1 --workspace "$WS" --report-dir "$OUT/npmci-report" "${flag[@]}" -- \
    /usr/bin/time -f "%e %S" -o "$OUT/npmci-time" npm ci --offline --cache "$CACHE" --no-audit --no-fund --prefix "$WS" >/dev/null 2>"$OUT/npmci-run.log"
  cat "$OUT/npmci-time"
}
: >"$OUT/npmci-on"; : >"$OUT/npmci-off"
for i in $(seq "$ROUNDS"); do
  order="on off"; [ $((i % 2)) = 0 ] && order="off on" # alternate who goes first
  for mode in $order; do
    r=$(round "$mode"); echo "round $i $mode: wall/sys $r s"; echo "$r" >>"$OUT/npmci-$mode"
  done
done
on=$(cut -d' ' -f1 "$OUT/npmci-on" | median); off=$(cut -d' ' -f1 "$OUT/npmci-off" | median)
son=$(cut -d' ' -f2 "$OUT/npmci-on" | median); soff=$(cut -d' ' -f2 "$OUT/npmci-off" | median)
echo "npm ci (WARM=${WARM:-0}): wall median on $on s, off $off s: ratio $(echo "$on $off" | awk '{printf "%.3f", $1/$2}'); sys on $son s, off $soff s: ratio $(echo "$son $soff" | awk '{printf "%.2f", $1/$2}')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); machine: $(machine)"
