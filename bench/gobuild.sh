#!/usr/bin/env bash
# Benchmark 9: the cost of file monitoring to `go build -a` of this
# repository, in a git clone of it as the workspace, with the build cache
# inside the workspace too (GOCACHE=$WS/.gocache, fresh each round), so every
# file the build writes is under the monitored root. Under `harden-runner
# run` in audit mode inside a namespace of our own, monitoring on vs off,
# alternating, ROUNDS rounds; prints the ratio of the medians. Offline: the
# module cache must hold the dependencies (GOPROXY=off).
source "$(dirname "$0")/lib.sh"
need git go /usr/bin/time
build
ROUNDS=${ROUNDS:-5}
netns_up 198.18.0.1/32
WS=$OUT/gobuild-ws
GOBIN_=$(command -v go)
round() { # $1: on|off; prints "wall sys"
  rm -rf "$WS"
  git clone -q "$ROOT" "$WS"
  local flag=()
  [ "$1" = off ] && flag=(--disable-file-monitoring)
  in_ns env GOCACHE="$WS/.gocache" GOPROXY=off GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
    "$BIN" run --egress-policy audit --upstream 198.18.0.1 --workspace "$WS" --report-dir "$OUT/gobuild-report" "${flag[@]}" -- \
    /usr/bin/time -f "%e %S" -o "$OUT/gobuild-time" "$GOBIN_" build -C "$WS" -a -o "$WS/harden-runner.bin" . >"$OUT/gobuild-run.log" 2>&1
  cat "$OUT/gobuild-time"
}
: >"$OUT/gobuild-on"; : >"$OUT/gobuild-off"
for i in $(seq "$ROUNDS"); do
  order="on off"; [ $((i % 2)) = 0 ] && order="off on"
  for mode in $order; do
    r=$(round "$mode"); echo "round $i $mode: wall/sys $r s"; echo "$r" >>"$OUT/gobuild-$mode"
  done
done
on=$(cut -d' ' -f1 "$OUT/gobuild-on" | median); off=$(cut -d' ' -f1 "$OUT/gobuild-off" | median)
son=$(cut -d' ' -f2 "$OUT/gobuild-on" | median); soff=$(cut -d' ' -f2 "$OUT/gobuild-off" | median)
echo "go build -a: wall median on $on s, off $off s: ratio $(echo "$on $off" | awk '{printf "%.3f", $1/$2}'); sys on $son s, off $soff s: ratio $(echo "$son $soff" | awk '{printf "%.2f", $1/$2}')"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); machine: $(machine)"
