# fleetd — developer entry points. `make check` is what CI runs.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(BRANCH)
BENCHTIME ?= 5x

.PHONY: all build test test-real real-deps check bench vet fuzz clean screenshots

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/fleetd ./cmd/fleetd

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Unit and in-process end-to-end tests, race detector on.
test:
	$(GO) test -race -count=1 ./...

# Installs Prometheus, Alertmanager, Chromium and curl from Debian when missing.
real-deps:
	./scripts/install-real.sh

# The race tests with the real programs required: the tests that drive the
# real Prometheus, promtool, Alertmanager and Chromium fail instead of skip.
test-real: real-deps
	FLEETD_REQUIRE_REAL=1 $(GO) test -race -count=1 ./...

# The full suite: vet, every test with the real programs, then promtool over
# the rules and over the exposition of a running demo.
check: vet test-real
	./scripts/check-real.sh

# Benchmarks against the simulator; figures are recorded in docs/performance.md.
# One package at a time (-p 1): the walk's CPU, wall time and peak RSS are
# measured against the machine's two cores, which another package's
# benchmarks running beside it would take.
bench:
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# A short fuzzing pass over every fuzz target.
fuzz:
	./scripts/fuzz.sh 20s

clean:
	rm -rf bin

# docs/status-page.png and docs/status-page-800.png from a running demo, in
# headless Chromium (found through PATH).
screenshots:
	GO=$(GO) ./scripts/screenshots.sh

# Container image (needs BuildKit). Pass GO_IMAGE / RUNTIME_IMAGE to pin the
# base images by digest for a release; the Dockerfile says how.
DOCKER     ?= docker
IMAGE      ?= fleetd
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: docker prometheusrule

docker:
	$(DOCKER) build \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) \
		--build-arg BRANCH=$(BRANCH) \
		--build-arg BUILD_DATE=$(BUILD_DATE) \
		$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) \
		$(if $(RUNTIME_IMAGE),--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE)) \
		-t $(IMAGE):$(VERSION) .

# deploy/kubernetes/prometheusrule.yaml is generated from alerts.yml;
# deploy/deploy_test.go fails when they drift apart.
prometheusrule:
	$(GO) run ./deploy/genrule -in alerts.yml -out deploy/kubernetes/prometheusrule.yaml
