# ringroute — the two commands are `make run` and `make test`.
# `make help` lists every target.

GO      ?= go
BIN     := bin/ringroute
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
CONFIG  ?= testdata/ringroute.yaml

.PHONY: help build run test unit race oneproc e2e lint vet fmt check deps bench soak fuzz clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

build: ## build bin/ringroute
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ringroute

run: build ## build and run the daemon on testdata/ringroute.yaml (127.0.0.1:5060, UDP and TCP)
	$(BIN) run -c $(CONFIG)

test: deps lint race oneproc e2e ## everything CI runs: install sipp if missing, vet, gofmt, race-tested units, the SIP layer on one P, sipp end-to-end

unit: ## unit tests only, no sipp (fast)
	$(GO) test -short ./...

race: ## unit tests under the race detector (skips the sipp end-to-end suite)
	$(GO) test -race -short ./...

oneproc: ## the SIP layer's tests on one P (a 1-CPU container): the UDP read loop then forks calls and steps answers itself
	GOMAXPROCS=1 $(GO) test -count=1 -short ./sip/

e2e: deps ## the sipp end-to-end suite against the built daemon, over UDP and TCP
	$(GO) test -count=1 -timeout 15m ./internal/e2e/

lint: vet fmt ## go vet and a gofmt check

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

check: build ## validate the shipped configs with `ringroute check`
	$(BIN) check -c $(CONFIG)
	@if [ -f ../shared/spec/ringroute.example.yaml ]; then $(BIN) check -c ../shared/spec/ringroute.example.yaml; fi

bench: ## benchmarks: SIP call rate vs Kamailio (bench/sip, ~9 min, results in bench/results/DATE-HOST.md), then the RTP relay (bench/media)
	@mkdir -p bench/results
	$(GO) run ./bench/sip $(BENCH_FLAGS)
	$(GO) run ./bench/media -out bench/results/media.json

bench-scale: ## scale figures: memory per ringing call and per registration, relay packets/s per core vs rtpengine (bench/results/DATE-HOST-scale.md)
	@mkdir -p bench/results
	$(GO) run ./bench/sip -scale $(BENCH_FLAGS)

# One step and one line, for profiling work: make bench-quick SUT=kamailio RATE=1200
# BENCH_FLAGS="-pprof cpu.pprof -allocs allocs.pprof" (go run ./bench/sip -h lists every flag).
.PHONY: bench-scale bench-quick
bench-quick: SUT ?= ringroute
bench-quick: SCENARIO ?= parallel
bench-quick: MEDIA ?= direct
bench-quick: RATE ?= 400
bench-quick: DURATION ?= 10s
bench-quick: ## one bench step (SUT= SCENARIO= MEDIA= RATE= DURATION=), one line with the knee figures and CPU per call
	$(GO) run ./bench/sip -sut $(SUT) -scenario $(SCENARIO) -media $(MEDIA) -rate $(RATE) -duration $(DURATION) $(BENCH_FLAGS)

FUZZTIME ?= 1m
# package:target for every go test -fuzz target in the tree.
FUZZ_TARGETS := ./config:FuzzParse ./media:FuzzSDP ./sip:FuzzDatagram ./sip:FuzzLightResponse ./sip:FuzzRequestBranch ./registrar:FuzzVerify ./routing:FuzzCall ./strategy:FuzzPlan

fuzz: ## run every fuzz target for FUZZTIME each (default 1m, one worker); a crash is saved under the package's testdata/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) -parallel 1 $$pkg; \
	done

soak: deps ## the soak of issue 9: mixed SIPp traffic and a reload every 10 s for SOAK (30m by default; SOAK=2m for CI); summary in bench/results/soak-DATE.txt
	@scripts/soak.sh

deps: ## install sipp (sip-tester) and baresip (baresip-core) when missing
	@scripts/deps.sh

clean: ## remove build output
	rm -rf bin
