# Builds the Action's image from source, for `uses: ./` at a commit that
# has no released image yet (the release workflow pins action.yml to the
# released image's digest instead). Same result as dist/build.sh +
# dist/Dockerfile. It sits at the repository root because the runner
# builds a local action's image only from a file named Dockerfile, with
# the file's own directory as the build context (which must hold go.mod).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN ./dist/build.sh

FROM scratch
COPY --from=build /src/dist/out/rootfs/ /
ENTRYPOINT ["/harden-runner"]
