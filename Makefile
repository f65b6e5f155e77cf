# lieur: two commands from a fresh clone, `make run` and `make test`.

GO       ?= go
BIN      := bin
NODES    ?= 3
DATA_DIR ?=

.PHONY: all build run test unit integration chaos netns measure bench bench-compare bench-scale bench-dns fuzz vet fmt-check clean

all: build

VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/lieur ./cmd/lieur
	$(GO) build -o $(BIN)/lieur-echo ./cmd/lieur-echo

## run: start a local cluster of $(NODES) agents (Ctrl-C stops it);
## `make run TLS=1` serves it over TLS with a development CA.
TLS ?=
run: build
	./$(BIN)/lieur dev --nodes $(NODES) $(if $(DATA_DIR),--data-dir $(DATA_DIR),) $(if $(TLS),--tls,)

## test: vet, then every unit and integration test with the race detector.
## The network-namespace tests run only as root; otherwise a line says why
## they skip.
test: vet fmt-check
	@$(NETNS_NOTE)
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

## netns: the 5-host cluster in network namespaces (TestNetnsCluster,
## about a minute; needs root and iproute2). `make test` runs it too.
netns:
	@$(NETNS_NOTE)
	$(GO) test -race -count=1 -timeout 10m -run 'TestNetns' -v ./integration/

# Prints why the network-namespace tests will skip here, if they will.
NETNS_NOTE = if [ "$$(id -u)" -ne 0 ]; then echo "note: the network-namespace tests (TestNetns*, TestPrometheusDNSSDInNetns) skip: they need root"; \
	elif ! command -v ip >/dev/null 2>&1; then echo "note: the network-namespace tests skip: iproute2's ip is missing"; \
	elif ip netns add lieur-make-probe-$$$$ 2>/dev/null; then ip netns del lieur-make-probe-$$$$; \
	else echo "note: the network-namespace tests skip: this machine cannot create network namespaces"; fi

## measure: the failover and catch-up figures of docs/reliability.md.
measure:
	LIEUR_MEASURE=1 $(GO) test -count=1 -timeout 0 -run 'TestMeasure' -v ./integration/

## bench: the Go benchmarks (FSM apply, snapshot/restore, lookup handler,
## cached Resolve).
bench:
	$(GO) test -run XXX -bench . -benchmem -count 6 ./fsm ./transport/httpapi ./client

## bench-compare: lieur beside etcd (Debian's etcd-server, installed if
## missing) on loopback, 3 nodes each, 1/16/64 clients, medians of 3 runs;
## etcd driven with its native Go client, one per member shared by the
## clients that talk to it (ETCD_CLIENT=native: one per client; gateway:
## its v3 JSON gateway).
ETCD_CLIENT ?= native-shared
bench-compare: build
	@command -v etcd >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server)
	./$(BIN)/lieur bench compare --etcd $$(command -v etcd) --etcd-client $(ETCD_CLIENT) --runs 3 --duration 5s --clients 1,16,64

## bench-dns: lieur's DNS beside NSD (a static zone of the same records),
## both under dnsperf, DNS_PAIRS alternating pairs of 8 s runs; the server
## pinned to CPU 0 and dnsperf to CPU 1 (Debian's dnsperf and nsd,
## installed if missing; docs/benchmarks.md).
DNS_PAIRS ?= 8
bench-dns: build
	@command -v dnsperf >/dev/null 2>&1 && command -v nsd >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dnsperf nsd)
	./$(BIN)/lieur bench dns --pairs $(DNS_PAIRS)

## bench-scale: 10 000, 100 000 and 1 000 000 instances in a 3-agent
## cluster: heap per instance, snapshot size and write time, restore,
## catch-up after a wipe, lookup p50/p99 (docs/benchmarks.md; ~15 min).
SCALE_SIZES ?= 10000,100000,1000000
bench-scale: build
	./$(BIN)/lieur bench scale --sizes $(SCALE_SIZES)

## fuzz: each fuzz target for FUZZTIME (default 30s). Their seeds run in
## every `make test`.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzSnapshotRoundTrip$$' -fuzztime $(FUZZTIME) ./fsm
	$(GO) test -run XXX -fuzz '^FuzzHandlerBodies$$' -fuzztime $(FUZZTIME) ./transport/httpapi
	$(GO) test -run XXX -fuzz '^FuzzCheckJSONAgreesWithTheTokenWalk$$' -fuzztime $(FUZZTIME) ./transport/httpapi
	$(GO) test -run XXX -fuzz '^FuzzSnapshotFile$$' -fuzztime $(FUZZTIME) ./binder
	$(GO) test -run XXX -fuzz '^FuzzUDPAnswersAgreeWithTheSlowPath$$' -fuzztime $(FUZZTIME) ./transport/dns

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN)
