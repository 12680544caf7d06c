# Benchmark targets for edgebench (included by the top-level Makefile).
# They build bin/edgeplane and bin/edgebench first.
#
#   make bench-density   idle connections per GiB at BENCH_SIZES, per poller, vs baseline
#   make bench-fanout    group broadcast to BENCH_FANOUT_CONNS connections, 64 B and 4 KiB
#   make bench-storm     BENCH_STORM_CLIENTS clients connecting at once
#   make bench-scale     BENCH_SCALE_NODES × BENCH_SCALE_PER_NODE idle connections (16 × 18,750 = 300,000) on one Redis, broadcasts to all
#   make bench-million   the per-connection structures (descriptor table, hub index, wheel, groups, drain, scrape) at 2^16, 2^18, 2^20 entries
#   make bench-floor     the kernel's floor: raw write loops and keep-alive calls over BENCH_FLOOR_CONNS sockets
#   make bench-service   service mode (Default mode): density beside the Redis path, the app's broadcast beside REST
#   make bench           all of them at sizes that finish in a few minutes
#
# Results (JSON, SVG, logs) go to BENCH_OUT (under bin/, which git ignores).

BENCH_OUT           ?= bin/bench-results
BENCH_POLLERS       ?= netpoll,epoll
BENCH_SIZES         ?= 1000,5000,19000
BENCH_IDLE          ?= 60s
BENCH_FANOUT_CONNS  ?= 19000
BENCH_FANOUT_SIZES  ?= 64,4096
BENCH_STORM_CLIENTS ?= 19000
BENCH_FLOOR_CONNS   ?= 19000
BENCH_SCALE_NODES   ?= 16
BENCH_SCALE_PER_NODE ?= 18750
# Both ends of 300,000 connections share this box's two cores: 15 s
# keep-alives both ways (40,000 pings/s each way) take most of them, so
# the scale scenario pings every 60 s (clients and nodes alike).
BENCH_SCALE_KEEPALIVE ?= 60s
BENCH_SCALE_TIMEOUT   ?= 150s
# BENCH_REDIS=redis://127.0.0.1:6379 adds the Redis path to the fanout.
BENCH_REDIS         ?=
BENCH_FLAGS         ?=

EDGEBENCH := bin/edgebench
bench_comma := ,
BENCH_FANOUT_REDIS = $(if $(BENCH_REDIS),--via rest$(bench_comma)redis --redis $(BENCH_REDIS),--via rest)

.PHONY: bench bench-density bench-fanout bench-storm bench-floor bench-scale bench-million $(EDGEBENCH) bench-edgeplane

$(EDGEBENCH): bench-edgeplane
	go build -o $(EDGEBENCH) ./cmd/edgebench

bench-edgeplane:
	go build -o bin/edgeplane ./cmd/edgeplane

$(BENCH_OUT):
	mkdir -p $(BENCH_OUT)

bench-density: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) density --sizes $(BENCH_SIZES) --poller $(BENCH_POLLERS) --idle-window $(BENCH_IDLE) \
		--json $(BENCH_OUT)/density.json $(BENCH_FLAGS)

bench-fanout: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) fanout --conns $(BENCH_FANOUT_CONNS) --sizes $(BENCH_FANOUT_SIZES) --poller $(BENCH_POLLERS) \
		$(BENCH_FANOUT_REDIS) --json $(BENCH_OUT)/fanout.json $(BENCH_FLAGS)

bench-storm: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) storm --clients $(BENCH_STORM_CLIENTS) --poller $(BENCH_POLLERS) \
		--json $(BENCH_OUT)/storm.json $(BENCH_FLAGS)

# A redis-server from PATH is started (and stopped) by edgebench unless
# BENCH_REDIS names one.
bench-scale: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) scale --nodes $(BENCH_SCALE_NODES) --per-node $(BENCH_SCALE_PER_NODE) $(if $(BENCH_REDIS),--redis $(BENCH_REDIS)) \
		--client-keepalive $(BENCH_SCALE_KEEPALIVE) \
		--edgeplane-args "--keepalive $(BENCH_SCALE_KEEPALIVE) --client-timeout $(BENCH_SCALE_TIMEOUT)" \
		--settle 30s --idle-window 30s --json $(BENCH_OUT)/scale.json $(BENCH_FLAGS)

# A million simulated entries in every per-connection structure; the table
# (bench/million.awk) gives each benchmark's CPU time per entry by size
# (the least of BENCH_MILLION_COUNT runs) and the 2^20 / 2^16 ratio.
# Needs ~3 GiB of memory and ~30 minutes.
BENCH_MILLION_COUNT ?= 3
bench-million: | $(BENCH_OUT)
	EDGEPLANE_BENCH_MILLION=1 go test -run '^$$' -bench '^BenchmarkScale' -count $(BENCH_MILLION_COUNT) -timeout 90m \
		./poller/ ./fanout/ ./conn/ | tee $(BENCH_OUT)/million.txt
	awk -f bench/million.awk $(BENCH_OUT)/million.txt | tee $(BENCH_OUT)/million-ratios.txt

bench-floor: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) floor --conns $(BENCH_FLOOR_CONNS) --json $(BENCH_OUT)/floor.json $(BENCH_FLAGS)

# The quick tour: every experiment at sizes that finish in a few minutes.
bench: $(EDGEBENCH) | $(BENCH_OUT)
	$(MAKE) bench-density BENCH_SIZES=1000,5000,10000 BENCH_IDLE=15s
	$(MAKE) bench-fanout BENCH_FANOUT_CONNS=5000
	$(MAKE) bench-storm BENCH_STORM_CLIENTS=5000
	$(MAKE) bench-floor BENCH_FLOOR_CONNS=5000

# Service mode (Azure SignalR Default mode, issue 14): density of each
# poller in Default mode beside the same clients on the Redis path, and
# the app's Clients.All beside the REST send (a fake app in edgebench
# holds the node's 5 server connections).
BENCH_SERVICE_SIZES ?= 19000
.PHONY: bench-service
bench-service: $(EDGEBENCH) | $(BENCH_OUT)
	$(EDGEBENCH) density --service-mode --sizes $(BENCH_SERVICE_SIZES) --poller $(BENCH_POLLERS) --idle-window $(BENCH_IDLE) \
		--no-baseline --no-floor --json $(BENCH_OUT)/density-service.json $(BENCH_FLAGS)
	$(EDGEBENCH) fanout --service-mode --conns $(BENCH_FANOUT_CONNS) --sizes 64 --poller $(BENCH_POLLERS) --via app,rest \
		--no-baseline --no-floor --json $(BENCH_OUT)/fanout-service.json $(BENCH_FLAGS)
