# The two commands a newcomer needs:
#   make up    install what is missing, build, and run a single-node Gantry with a demo app
#   make test  run the whole test suite (what CI runs)

GO       ?= go
BIN      := bin/gantry
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X github.com/gantry-dev/gantry/internal/apiserver.Version=$(VERSION)
# Packages that are ours (not the throwaway modules that benchmarks fetch).
PKGS     := ./...
FUZZTIME ?= 3s

.PHONY: up build setup test vet fmt-check unit e2e fuzz bench clean

setup:
	./scripts/setup.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gantry

up: setup build
	./$(BIN) up --seed --apply examples/hello.yaml

# test is the whole suite: static checks, unit and integration tests with
# the race detector, end-to-end tests against real containerd, and a short
# run of every fuzz target.
test: setup vet fmt-check build
	$(GO) test -race -timeout 15m -p 2 $(PKGS)
	$(MAKE) fuzz
	./scripts/conformance.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench:
	./bench/run.sh

clean:
	rm -rf bin
