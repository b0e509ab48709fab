# drover — the two commands are `make run` and `make test`.
GO        ?= go
BIN       ?= bin/drover
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# go test flags for `make test`; CI uses the defaults.
TESTFLAGS ?= -race -count=1 -timeout 20m
BENCHTIME ?= 1x
# runs of every benchmark for `make bench` (the report shows medians); BENCHARGS adds report flags, e.g. -pkgs ./bridge/,./bench/
COUNT     ?= 3
BENCHARGS ?=

.PHONY: all build run test vet fmt bench smoke chaos chaos-db clean deps console-assets console-screenshots

all: build

## build: compile the drover binary into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/drover

## deps: install the Debian packages the tests need when missing (scripts/deps)
deps:
	bash scripts/deps test

## run: build and start the whole pipeline on the embedded stack (drover dev)
run: build
	bash scripts/deps run
	./$(BIN) dev $(ARGS)

## test: vet and every test (unit and integration, real PostgreSQL, MQTT, embedded Kafka)
test: deps vet
	$(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

## bench: every stage benchmark and the end-to-end one, COUNT runs each; writes BENCHMARKS.md (medians, baselines, ratios, targets) and the raw output to .bench.out
bench: deps
	$(GO) run ./bench/report -count $(COUNT) -benchtime $(BENCHTIME) -o BENCHMARKS.md -raw .bench.out $(BENCHARGS)

## smoke: fresh drover dev on free ports, the smoke suite against it, stop
smoke: build
	$(GO) test -count=1 -run '^TestIntegrationSmoke$$' -v -timeout 15m ./smoke/

## chaos: kill -9 stages, restart Kafka and PostgreSQL under load; loss and duplicates must be 0 (make test runs the default size)
CHAOS_N       ?= 3000
CHAOS_SECONDS ?= 30
chaos: build
	DROVER_CHAOS_N=$(CHAOS_N) DROVER_CHAOS_SECONDS=$(CHAOS_SECONDS) $(GO) test -count=1 -run '^TestIntegrationChaos$$' -v -timeout 60m ./smoke/chaos/

## chaos-db: the database-failover variant: the sink under load on Patroni/etcd, HAProxy and PgBouncer (devstack/hatest); CHAOS_KILLS kill -9 of the leader's PostgreSQL, then a switchover; every record once
CHAOS_KILLS ?= 3
chaos-db:
	DROVER_FAILOVER_KILLS=$(CHAOS_KILLS) $(GO) test -count=1 -run '^TestIntegrationSinkFailover$$' -v -timeout 30m ./processors/timescale/

## console-assets: rebuild the console's front end (console/web → console/dist, committed, embedded) from the lockfile
console-assets:
	cd console/web && npm ci --no-audit --no-fund && npm run build

## console-screenshots: the console's browser test against a fresh drover dev; copies its page screenshots to console/screenshots/
console-screenshots:
	$(GO) test -count=1 -run '^TestIntegrationConsoleBrowser$$' -timeout 15m ./console/ -update

clean:
	rm -rf bin .drover
