# The two commands a new machine needs: `make demo` and `make test`.
GO ?= go
BIN := bin/trainyard

.PHONY: build demo test race deps fuzz bench lint image

build:
	$(GO) build -o $(BIN) ./cmd/trainyard

# The protocol container image, without a Docker engine (docker/mkimage):
# a docker tarball for `docker load -i` (IMAGE_OUT=oci:DIR for an OCI
# layout), pushed too when IMAGE_PUSH=REG/REPO:TAG. IMAGE_USER=65532 makes
# it run non-root (then the socket needs --group-add, docs/pht-v2.md).
IMAGE_OUT ?= bin/trainyard-protocol.tar
IMAGE_TAG ?= trainyard-protocol:latest
IMAGE_USER ?= 0
IMAGE_PUSH ?=
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o bin/trainyard-static ./cmd/trainyard
	$(GO) run ./docker/mkimage -bin bin/trainyard-static -out $(IMAGE_OUT) -tag $(IMAGE_TAG) -user $(IMAGE_USER) $(if $(IMAGE_PUSH),-push $(IMAGE_PUSH))

# System packages the tests and the demo use (runc for trains, openssl for
# the legacy-format tests). Needs root; does nothing when all are present.
deps:
	@bash scripts/deps.sh

demo: deps build
	./$(BIN) demo

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 75m ./...
	bash scripts/fuzz-smoke.sh

# Every test again under the race detector (about twice as long as the
# tests; CI runs it after make test). A station runs for months: a data
# race is a bug it would meet one day.
race: deps
	$(GO) test -race -count=1 -timeout 80m ./...

fuzz:
	FUZZTIME=$${FUZZTIME:-30s} bash scripts/fuzz-smoke.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# staticcheck at a pinned version, fetched by the go command (no install
# step); findings that are deliberate carry a //lint:ignore with the reason.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) ./...
