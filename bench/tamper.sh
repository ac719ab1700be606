#!/usr/bin/env bash
# Benchmark 8: how fast the guard puts our table back after root deletes it
# (`nft delete table inet harden_runner`), ROUNDS times (default 50), in the
# test namespaces egress/guard's system test makes. Two clocks: from the
# commit's netlink notification to our restore batch's acknowledgement, and
# from nft's exit (its commit is done) to the same. The alternative, no
# guard, never restores: there is no ratio to give.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
HR_TAMPER_ROUNDS=${ROUNDS:-50} go test -count=1 -run 'TestRestoreLatency$' -v ./egress/guard | grep -E 'rounds:|^(ok|FAIL)'
