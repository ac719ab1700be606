#!/usr/bin/env bash
# Reproducible build of the Action's image content for every architecture a
# runner can have: the same commit and Go version give the same bytes (no
# paths, build IDs, VCS stamps or times in the binaries; sorted tars with
# fixed owners and mtimes; gzip without name or time; JSON written in a
# fixed order). Writes $OUT (default dist/out/), for each GOARCH in $ARCHS
# (default "amd64 arm64"):
#   linux-$arch/rootfs/harden-runner   static binary (CGO_ENABLED=0), rootfs/{pre,main,post} hard links
#   linux-$arch/rootfs.tar             what dist/Dockerfile ADDs for that arch
# and for all of them together:
#   Dockerfile    a copy, so dist/out is a build context: docker build --build-arg TARGETARCH=arm64 ...
#   oci/          OCI image layout whose image index is the multi-arch manifest list
#                 (one manifest per arch); its digest is in oci/INDEX_DIGEST
#   SHA256SUMS    checksums of the binaries, the tars and the index
# Releasing pushes oci/ as it is, so the registry serves exactly these bytes,
# and pins action.yml to the list's digest:
#   skopeo copy --all --preserve-digests oci:dist/out/oci:release docker://ghcr.io/OWNER/harden-runner:vX.Y.Z
#   image: docker://ghcr.io/OWNER/harden-runner@$(cat dist/out/oci/INDEX_DIGEST)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-dist/out}"
archs="${ARCHS:-amd64 arm64}"
rm -rf "$out"
mkdir -p "$out/oci/blobs/sha256"
export CGO_ENABLED=0 GOOS=linux GOFLAGS=-buildvcs=false

# blob FILE: moves FILE into the layout as a blob; prints "sha256:HEX SIZE".
blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$out/oci/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

manifests=""
for arch in $archs; do
  d="$out/linux-$arch"
  mkdir -p "$d/rootfs"
  GOARCH="$arch" go build -trimpath -ldflags="-s -w -buildid=" -o "$d/rootfs/harden-runner" .
  for stage in pre main post; do ln "$d/rootfs/harden-runner" "$d/rootfs/$stage"; done
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$d/rootfs" -cf "$d/rootfs.tar" harden-runner main post pre

  diff_id="sha256:$(sha256sum "$d/rootfs.tar" | cut -d' ' -f1)"
  gzip -n -9 -c "$d/rootfs.tar" > "$out/layer.tmp"
  read -r layer layer_size < <(blob "$out/layer.tmp")
  printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/harden-runner"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$arch" "$diff_id" > "$out/config.tmp"
  read -r config config_size < <(blob "$out/config.tmp")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$out/manifest.tmp"
  read -r manifest manifest_size < <(blob "$out/manifest.tmp")
  manifests+="${manifests:+,}$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"}}' \
    "$manifest" "$manifest_size" "$arch")"
done

# The manifest list, and the layout's own index naming it "release".
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$manifests" > "$out/index.tmp"
read -r index index_size < <(blob "$out/index.tmp")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"release"}}]}' \
  "$index" "$index_size" > "$out/oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci/oci-layout"
echo "$index" > "$out/oci/INDEX_DIGEST"

cp dist/Dockerfile "$out/Dockerfile"
(
  cd "$out"
  for arch in $archs; do sha256sum "linux-$arch/rootfs/harden-runner" "linux-$arch/rootfs.tar"; done
  echo "${index#sha256:}  oci (image index: the manifest list)"
) > "$out/SHA256SUMS.tmp"
mv "$out/SHA256SUMS.tmp" "$out/SHA256SUMS"
cat "$out/SHA256SUMS"
