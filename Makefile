# Billing ledger build. Only Go is needed: every tool comes from the Go module proxy.
SHELL := /bin/bash
GO ?= go
BIN := bin
DATA_DIR ?= ./data
HTTP ?= 127.0.0.1:8080
PKGS := ./...

.PHONY: all build run demo up up-kurrentdb down test test-short soak bench bench-projectors bench-profile generate lint clean check-generate

all: build

## build: billingd and billctl into ./bin
build:
	$(GO) build -o $(BIN)/billingd ./services/billingd
	$(GO) build -o $(BIN)/billctl ./services/billctl

## run: build and start billingd on $(HTTP) with the embedded NATS server and SQLite under $(DATA_DIR)
run: build
	./$(BIN)/billingd --data-dir $(DATA_DIR) --http $(HTTP)

## demo: start billingd (simulated clock, fresh ./demo-data) with the channel-partner scenario; Ctrl-C stops it
demo: build
	$(GO) run ./services/demo --bin $(BIN) --data-dir ./demo-data --http $(HTTP)

## up: the split deployment of docker-compose.yml (3 NATS nodes at R3, PostgreSQL, billingd roles); needs Docker
up:
	docker compose up -d --build

## up-kurrentdb: the split deployment with the event store on a KurrentDB node (profile eventstoredb)
up-kurrentdb:
	BILLING_STORE=eventstoredb BILLING_EVENTSTORE_URL='kurrentdb://kurrentdb:2113?tls=false' docker compose --profile eventstoredb up -d --build

## down: stop the split deployment (volumes are kept; `docker compose down -v` drops them)
down:
	docker compose --profile eventstoredb down

## test: the whole suite under the race detector (incl. end-to-end tests on the real binaries)
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## test-postgres: the read model and projection tests against SQLite and a throwaway PostgreSQL (pg-start)
test-postgres:
	BILLING_TEST_POSTGRES=$$(.ci/postgres.sh start) && export BILLING_TEST_POSTGRES && \
	$(GO) test -race -count=1 ./readmodel/... ./projections/ ./services/billingd/

## pg-start: start (installing PostgreSQL with apt-get if needed) a throwaway PostgreSQL server on
## 127.0.0.1:55432 with its data in /tmp/billing-pgtest; prints the URL to export as BILLING_TEST_POSTGRES
pg-start:
	@.ci/postgres.sh start

## pg-stop: stop that server (rm -rf /tmp/billing-pgtest discards it)
pg-stop:
	@.ci/postgres.sh stop

## test-short: the suite without the race detector and without the kill -9 crash test
test-short:
	$(GO) test -short -count=1 -timeout 20m $(PKGS)

## soak: the whole-system simulation (./sim) under the race detector for SOAK_DURATION, seeds from
## SOAK_FIRST_SEED on (make test runs 1 to 200), every read model of every month replayed, and
## SOAK_JETSTREAM_SEEDS seeds on the embedded JetStream; a failure prints its seed and how to rerun it
SOAK_DURATION ?= 10m
SOAK_FIRST_SEED ?= 201
SOAK_JETSTREAM_SEEDS ?= 20
soak:
	SIM_DURATION=$(SOAK_DURATION) SIM_FIRST_SEED=$(SOAK_FIRST_SEED) SIM_REPLAY=all SIM_JETSTREAM_SEEDS=$(SOAK_JETSTREAM_SEEDS) \
		$(GO) test -race -count=1 -timeout 0 -v -run 'TestSimulation' ./sim

## bench: end-to-end ingest (batch, durable), replay and peak RSS against a real billingd, then
## the event store micro-benchmarks, the read model figures and the split projectors on PostgreSQL
## (bench-readmodel, bench-projectors); one JSON line per figure (machine described first)
BENCH_FLAGS ?=
BENCH_PROJECTORS_FLAGS ?=
bench:
	$(GO) run ./services/benchmark $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchtime 2s -benchmem ./eventstore/jetstream/ | $(GO) run ./services/benchmark/benchjson -prefix eventstore/
	$(GO) test -run '^$$' -bench 'ProformaRerate' -benchmem ./projections/ | $(GO) run ./services/benchmark/benchjson -prefix proforma/
	@$(MAKE) --no-print-directory bench-readmodel
	@$(MAKE) --no-print-directory bench-projectors

## bench-readmodel: the usage projection (100,000 records in 200 events → committed billable rows and
## checkpoint) into SQLite and into PostgreSQL on the throwaway server (pg-start, stopped again unless it
## ran before), in records/s; without a PostgreSQL server only the SQLite figure is printed
bench-readmodel:
	@was_running=0; .ci/postgres.sh status && was_running=1; \
	url=$$(.ci/postgres.sh start) || { echo "bench-readmodel: no PostgreSQL server, SQLite only" >&2; url=; }; \
	BILLING_TEST_POSTGRES=$$url $(GO) test -run '^$$' -bench 'UsageProjection/memstore' -benchtime 3x ./projections/ | \
		$(GO) run ./services/benchmark/benchjson -prefix readmodel/; \
	status=$$?; [ $$was_running = 1 ] || .ci/postgres.sh stop; exit $$status

## bench-projectors: a split deployment on the throwaway PostgreSQL server (pg-start, stopped again unless
## it ran before): usage publish → committed read model with two billingd --role projector processes beside
## one, end to end and catching up (records/s); skipped without a PostgreSQL server
bench-projectors:
	@was_running=0; .ci/postgres.sh status && was_running=1; \
	url=$$(.ci/postgres.sh start) || { echo "bench-projectors: no PostgreSQL server, skipped" >&2; exit 0; }; \
	$(GO) run ./services/benchmark --projectors-postgres "$$url" $(BENCH_PROJECTORS_FLAGS); \
	status=$$?; [ $$was_running = 1 ] || .ci/postgres.sh stop; exit $$status

## bench-profile: in-process ingest/replay under pprof, plus per-stage timings (profiles in ./bench-profile)
bench-profile:
	$(GO) run ./services/benchmark --profile bench-profile

## generate: regenerate protobuf and Connect code (buf, protoc-gen-go, protoc-gen-connect-go pinned in tools/go.mod)
generate:
	cd proto && $(GO) tool -modfile=../tools/go.mod buf generate

## check-generate: fail when `make generate` leaves a diff
check-generate: generate
	git diff --exit-code -- proto

## lint: gofmt, go vet, buf lint
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	cd proto && $(GO) tool -modfile=../tools/go.mod buf lint

clean:
	rm -rf $(BIN)
