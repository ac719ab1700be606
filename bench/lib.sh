# Shared helpers for the bench scripts. Everything happens inside a network
# namespace the script creates (198.18.0.0/15 only) and deletes on exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
NS=hrbench$$
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  # $! of a backgrounded in_ns is a subshell, not the server it started:
  # end whatever still runs in our namespaces, or it outlives them.
  for ns in "$NS" "${NET:-}"; do
    [ -n "$ns" ] && ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

need() { for t in "$@"; do command -v "$t" >/dev/null || { echo "bench: needs $t" >&2; exit 1; }; done; }

# build puts a fresh harden-runner binary at $BIN.
build() {
  BIN=$OUT/harden-runner
  (cd "$ROOT" && go build -o "$BIN" .)
}

# netns_up creates $NS with lo up and the given addresses on lo.
netns_up() {
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  for a in "$@"; do ip -n "$NS" addr add "$a" dev lo; done
}

in_ns() { ip netns exec "$NS" "$@"; }

# pair_up makes the runner namespace $NS (198.18.0.1) and an "internet"
# namespace $NET joined by a veth pair; every 198.18.1.0/24 address is local
# to $NET, so a server there listening on the wildcard serves any test host.
pair_up() {
  NET=${NS}n
  ip netns add "$NS"; ip netns add "$NET"
  trap 'cleanup; ip netns del "$NET" 2>/dev/null || true' EXIT
  ip link add hrb0 netns "$NS" type veth peer name hrb1 netns "$NET"
  ip -n "$NS" link set lo up; ip -n "$NET" link set lo up
  ip -n "$NS" addr add 198.18.0.1/24 dev hrb0; ip -n "$NET" addr add 198.18.0.2/24 dev hrb1
  ip -n "$NS" link set hrb0 up; ip -n "$NET" link set hrb1 up
  ip -n "$NS" route add default via 198.18.0.2
  ip -n "$NET" route add local 198.18.1.0/24 dev lo
}

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# percentile P of numbers on stdin
percentile() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; print a[i]}'; }

machine() { echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(date -u +%Y-%m-%d)"; }

# CG2 prefixes a command run with ip netns exec so that it sees cgroup v2:
# ip netns exec mounts a fresh /sys without it (in its private mount
# namespace), and the agent would fall back to /proc attribution. It
# mounts only where nothing is mounted, never over the machine's own.
CG2=(sh -c 'mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; exec "$@"' sh)
