# syntax=docker/dockerfile:1
#
# The checkin node: a static binary on a distroless base, run as non-root.
#   docker build -t checkin:dev .
#   docker run --rm checkin:dev --help

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOOS=linux
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/checkin ./cmd/checkin

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/checkin /usr/local/bin/checkin
# The embedded store (store=pebble) writes here; the scylla store does not.
WORKDIR /home/nonroot
ENV CHECKIN_DATA_DIR=/home/nonroot/data
USER nonroot:nonroot
EXPOSE 8080 7946
ENTRYPOINT ["/usr/local/bin/checkin"]
