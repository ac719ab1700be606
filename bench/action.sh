#!/usr/bin/env bash
# From `docker run` of the Action's image (the main step) to "agent
# enforcing" (the moment the agent writes its ready marker, after the
# ruleset is committed) and to the step's end (`docker run` returns:
# docker's teardown of the action container included), median of N runs,
# next to the bare cost of `docker run` of the same image doing nothing
# (the part no container action can avoid). Runs against a dockerd inside a fake VM: a network
# namespace this script makes, with a PID/mount namespace whose PID 1 is
# that dockerd; the machine's own docker and network are never used.
# Usage: bench/action.sh [N]   (root; needs dockerd, docker, nsenter)
# STORAGE_DRIVER (default overlay2, as on GitHub's runners) picks dockerd's.
source "$(dirname "$0")/lib.sh"
need dockerd docker nsenter unshare
N=${1:-9}
W=$(mktemp -d /tmp/hr-bench-action.XXXXXX)
IMG=$W/image
(cd "$ROOT" && OUT=$IMG ./dist/build.sh >/dev/null)
netns_up 198.18.0.1/24
echo "nameserver 198.18.0.2" > "$W/resolv.conf"
mkdir -p "$W/opt" "$W/home" "$W/fc" "$W/ws"
# PID 1 of the fake VM is a shell that binds the VM's resolv.conf and runs dockerd.
setsid nsenter --net=/var/run/netns/"$NS" unshare --pid --fork --mount --mount-proc --propagation private \
  sh -c "mount --bind $W/resolv.conf /etc/resolv.conf && dockerd --data-root $W/data --exec-root $W/exec \
    --pidfile $W/dockerd.pid -H unix://$W/docker.sock --bridge=none --iptables=false --ip6tables=false \
    --ip-masq=false --containerd-namespace hrbench --containerd-plugins-namespace hrbenchp \
    --storage-driver ${STORAGE_DRIVER:-overlay2} >$W/dockerd.log 2>&1" &
VMPID=$!
PIDS+=("$VMPID")
vmcleanup() {
  kill -TERM -- -"$VMPID" 2>/dev/null || true # its process group: nsenter, init, dockerd, containerd
  wait "$VMPID" 2>/dev/null || true
  for _ in $(seq 100); do [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break; sleep 0.1; done
  umount -R "$W/exec" "$W/data" 2>/dev/null || true
  rm -rf "$W"
  cleanup
}
trap vmcleanup EXIT
export DOCKER_HOST=unix://$W/docker.sock DOCKER_API_VERSION=1.41 DOCKER_BUILDKIT=0 DOCKER_CONFIG=$W
for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker build -q -t harden-runner:bench "$IMG" >/dev/null

ms() { date +%s%3N; }
run_action() { # entrypoint, extra env...
  local ep=$1; shift
  local envs=()
  for e in "$@"; do envs+=(-e "$e"); done
  docker run --rm --network none --workdir /github/workspace -v "$W/docker.sock:/var/run/docker.sock" \
    -v "$W/home:/github/home" -v "$W/fc:/github/file_commands" -v "$W/ws:/github/workspace" \
    -e HOME=/github/home -e GITHUB_WORKSPACE=/github/workspace -e GITHUB_REPOSITORY=octo/repo \
    -e INPUT_EGRESS-POLICY=block -e INPUT_ALLOWED-ENDPOINTS=github.com:443 -e HARDEN_RUNNER_DIR="$W/opt" \
    -e GITHUB_OUTPUT=/github/file_commands/out -e GITHUB_STATE=/github/file_commands/state \
    -e GITHUB_STEP_SUMMARY=/github/file_commands/summary "${envs[@]}" --entrypoint "$ep" harden-runner:bench
}
: > "$OUT/action-main-ms.txt"; : > "$OUT/action-bare-ms.txt"; : > "$OUT/action-ready-ms.txt"
for i in $(seq "$N"); do
  t0=$(ms); docker run --rm --network none --entrypoint /harden-runner harden-runner:bench help >/dev/null; t1=$(ms)
  echo $((t1 - t0)) >> "$OUT/action-bare-ms.txt"
  : > "$W/fc/out"; : > "$W/fc/state"; : > "$W/fc/summary"
  t0=$(ms); run_action /main >/dev/null; t1=$(ms)
  echo $((t1 - t0)) >> "$OUT/action-main-ms.txt"
  ready=$(stat -c %.3Y "$W/opt/state/ready") # the agent's clock is ours: same machine
  awk -v r="$ready" -v t="$t0" 'BEGIN { printf "%d\n", r * 1000 - t }' >> "$OUT/action-ready-ms.txt"
  run_action /post STATE_harden_runner_started=true >/dev/null
done
main=$(median < "$OUT/action-main-ms.txt"); bare=$(median < "$OUT/action-bare-ms.txt")
ready=$(median < "$OUT/action-ready-ms.txt")
echo "action main step, docker run -> enforcing: median ${ready} ms (N=$N; runs: $(tr '\n' ' ' < "$OUT/action-ready-ms.txt"))"
echo "action main step, docker run -> step end:  median ${main} ms (runs: $(tr '\n' ' ' < "$OUT/action-main-ms.txt"))"
echo "bare docker run of the same image:          median ${bare} ms"
awk -v a="$main" -v b="$bare" 'BEGIN { printf "ratio main/bare: %.2f\n", a/b }'
