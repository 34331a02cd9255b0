# syntax=docker/dockerfile:1
#
# The checkin node: a static binary on a distroless base, run as non-root.
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t checkin:dev .
#   docker run --rm checkin:dev --help
# REVISION stamps the build (checkin_build_info, the start line): the build
# context has no .git, so Go cannot read the revision itself.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOOS=linux
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.stampedRevision=${REVISION}" -o /out/checkin ./cmd/checkin

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/checkin /usr/local/bin/checkin
# The embedded store (store=pebble) writes here; the scylla store does not.
WORKDIR /home/nonroot
ENV CHECKIN_DATA_DIR=/home/nonroot/data
USER nonroot:nonroot
EXPOSE 8080 7946
ENTRYPOINT ["/usr/local/bin/checkin"]
