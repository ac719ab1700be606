# Builds the Action's image from source, for `uses: ./` at a commit that
# has no released image yet, for the architecture of the machine building
# it (the release workflow pins action.yml to the
# released image's digest instead). Same result as dist/build.sh +
# dist/Dockerfile. It sits at the repository root because the runner
# builds a local action's image only from a file named Dockerfile, with
# the file's own directory as the build context (which must hold go.mod).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Only the architecture this image is built on (the runner's own).
RUN ARCHS="$(go env GOARCH)" ./dist/build.sh && cp -a "dist/out/linux-$(go env GOARCH)/rootfs" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
ENTRYPOINT ["/harden-runner"]
