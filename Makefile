# lieur: two commands from a fresh clone, `make run` and `make test`.

GO       ?= go
BIN      := bin
NODES    ?= 3
DATA_DIR ?=

.PHONY: all build run test unit integration chaos measure bench bench-compare fuzz vet fmt-check clean

all: build

build:
	$(GO) build -o $(BIN)/lieur ./cmd/lieur
	$(GO) build -o $(BIN)/lieur-echo ./cmd/lieur-echo

## run: start a local cluster of $(NODES) agents (Ctrl-C stops it);
## `make run TLS=1` serves it over TLS with a development CA.
TLS ?=
run: build
	./$(BIN)/lieur dev --nodes $(NODES) $(if $(DATA_DIR),--data-dir $(DATA_DIR),) $(if $(TLS),--tls,)

## test: vet, then every unit and integration test with the race detector.
test: vet fmt-check
	$(GO) test -race -count=1 -timeout 8m ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -race -count=1 -timeout 8m -v ./integration/

## chaos: the long soak of the chaos harness (CHAOS_DURATION, default 10m;
## CHAOS_SEED replays a run). `make test` runs a 20 s version.
CHAOS_DURATION ?= 10m
chaos:
	CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -race -count=1 -timeout 0 -run 'TestChaos$$' -v ./integration/

## measure: the failover and catch-up figures of docs/reliability.md.
measure:
	LIEUR_MEASURE=1 $(GO) test -count=1 -timeout 0 -run 'TestMeasure' -v ./integration/

## bench: the Go benchmarks (FSM apply, snapshot/restore, lookup handler,
## cached Resolve).
bench:
	$(GO) test -run XXX -bench . -benchmem -count 6 ./fsm ./transport/httpapi ./client

## bench-compare: lieur beside etcd (Debian's etcd-server, installed if
## missing) on loopback, 3 nodes each, 1/16/64 clients, medians of 3 runs.
bench-compare: build
	@command -v etcd >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server)
	./$(BIN)/lieur bench compare --etcd $$(command -v etcd) --runs 3 --duration 5s --clients 1,16,64

## fuzz: each fuzz target for FUZZTIME (default 30s). Their seeds run in
## every `make test`.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzSnapshotRoundTrip$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzHandlerBodies$$' -fuzztime $(FUZZTIME) ./transport/httpapi

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN)
