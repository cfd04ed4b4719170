# The two commands a newcomer needs:
#   make up    install what is missing, build, and run a single-node Gantry with a demo app
#   make test  run the whole test suite (what CI runs)

GO       ?= go
BIN      := bin/gantry
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X github.com/gantry-dev/gantry/internal/apiserver.Version=$(VERSION)
# Packages that are ours (not the throwaway modules that benchmarks fetch).
PKGS     := ./...
# A count, not a duration: with a duration, Go 1.26's fuzzing coordinator
# can fail a target with "context deadline exceeded" as the time runs out
# (golang/go#75804, fixed in Go 1.27). 10000 runs take 1-4 s per target.
FUZZTIME ?= 10000x

.PHONY: up build setup test vet fmt-check unit e2e fuzz bench clean

setup:
	./scripts/setup.sh

# gantry-logdriver goes next to gantry: containerd's shim starts it for
# every container, and it starts much faster than the whole gantry binary
# (docs/adr/0007-log-driver-binary.md).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gantry
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)-logdriver ./cmd/gantry-logdriver

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
