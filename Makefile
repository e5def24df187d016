# The two commands a new machine needs: `make demo` and `make test`.
GO ?= go
BIN := bin/trainyard

.PHONY: build demo test deps fuzz bench lint

build:
	$(GO) build -o $(BIN) ./cmd/trainyard

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

fuzz:
	FUZZTIME=$${FUZZTIME:-30s} bash scripts/fuzz-smoke.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
