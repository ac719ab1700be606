#!/usr/bin/env bash
# Reproducible build of the Action's image content: the same commit and Go
# version give the same bytes (no paths, build IDs, VCS stamps or times in
# the binary; sorted tar with fixed owners and mtimes). Writes $OUT
# (default dist/out/):
#   rootfs/harden-runner   static binary (CGO_ENABLED=0), rootfs/{pre,main,post} hard links
#   rootfs.tar             what dist/Dockerfile ADDs
#   Dockerfile             a copy, so dist/out is the whole build context
#   SHA256SUMS             checksums of the binary and the tar
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-dist/out}"
rm -rf "$out"
mkdir -p "$out/rootfs"
export CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH:-amd64}" GOFLAGS=-buildvcs=false
go build -trimpath -ldflags="-s -w -buildid=" -o "$out/rootfs/harden-runner" .
for stage in pre main post; do ln "$out/rootfs/harden-runner" "$out/rootfs/$stage"; done
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$out/rootfs" -cf "$out/rootfs.tar" harden-runner main post pre
cp dist/Dockerfile "$out/Dockerfile"
(cd "$out" && sha256sum rootfs/harden-runner rootfs.tar > SHA256SUMS)
cat "$out/SHA256SUMS"
