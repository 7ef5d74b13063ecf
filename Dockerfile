# fleetd container image.
#
#   make docker                      # tags fleetd:$(VERSION), stamps version/revision/branch
#   docker build -t fleetd:dev .     # works too; the version then reads "dev"
#
# Base images are build arguments so a release can pin them by digest without
# editing this file. The defaults are pinned by tag; for a release, pin the
# digest too (a digest cannot be checked from here, so none is baked in):
#
#   docker buildx imagetools inspect golang:1.26-bookworm                   # "Digest: sha256:..."
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
#   make docker GO_IMAGE=golang:1.26-bookworm@sha256:<digest> \
#               RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
#
# Refresh those digests whenever the tag moves (a Go patch release, a Debian
# security update) - a stale digest is a stale base image.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The builder runs on the build host's platform and cross-compiles, so a
# multi-platform build (--platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH
# The same stamps as the Makefile's LDFLAGS; .git is not in the build context,
# so they come in as build arguments.
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
WORKDIR /src
# Modules first: this layer survives source edits.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# CGO off: the runtime image has no libc. -trimpath keeps build paths out of
# the binary (reproducible, no host paths in panics).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w \
        -X github.com/prometheus/common/version.Version=${VERSION} \
        -X github.com/prometheus/common/version.Revision=${REVISION} \
        -X github.com/prometheus/common/version.Branch=${BRANCH}" \
      -o /out/fleetd ./cmd/fleetd
# The ledger directory, created here because the runtime image has no shell:
# copied with the nonroot owner, a fresh volume mounted there inherits it.
RUN mkdir -p /out/var/lib/fleetd

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG BUILD_DATE
LABEL org.opencontainers.image.title="fleetd" \
      org.opencontainers.image.description="Exports the health of Bikeep parking devices and COPRI rentals to Prometheus and re-syncs devices a sync-device can cure." \
      org.opencontainers.image.source="https://github.com/fleetd/fleetd" \
      org.opencontainers.image.url="https://github.com/fleetd/fleetd" \
      org.opencontainers.image.documentation="https://github.com/fleetd/fleetd/tree/main/deploy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
COPY --from=build /out/fleetd /fleetd
COPY --from=build --chown=65532:65532 /out/var/lib/fleetd /var/lib/fleetd
# distroless "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9870
# The remediation ledger (attempts, cooldowns, in-flight commands) must
# survive restarts, or a restart could re-send a command: mount a volume here.
VOLUME /var/lib/fleetd
ENTRYPOINT ["/fleetd"]
CMD ["run", "--config=/etc/fleetd/fleetd.yml"]
