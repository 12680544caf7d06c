# edgeplane — the two commands that matter:
#   make run    build and run one node (in-memory backplane, client port 8080, admin port 9090)
#   make test   install what is missing, then vet, the race-enabled suite and the compatibility tests

GO        ?= go
BIN       := bin
LISTEN    ?= 127.0.0.1:8080
ADMIN     ?= 127.0.0.1:9090
HUBS      ?= chat
POLLER    ?= epoll
RUN_FLAGS ?=
TEST_TIMEOUT ?= 20m
FUZZTIME  ?= 30s

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build run test test-long deps deps-redis deps-node deps-browser vet fmt-check bench-smoke fuzz mutate mutate-changed mutate-report clean

all: build

build:
	$(GO) build -o $(BIN)/edgeplane ./cmd/edgeplane

run: build
	$(BIN)/edgeplane --listen $(LISTEN) --admin $(ADMIN) $(foreach h,$(HUBS),--hub $(h)) --poller $(POLLER) $(RUN_FLAGS)

# deps installs what the tests need on a fresh machine: redis-server (Debian
# package), the npm packages of the compatibility tests (committed lockfile)
# and what the browser test needs (deps-browser).
deps: deps-redis deps-node deps-promtool deps-browser

deps-redis:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { \
	  echo "installing redis-server (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

deps-node:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "installing nodejs and npm (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	@[ -d test/compat/node_modules/@microsoft/signalr ] && [ -d test/compat/node_modules/@microsoft/signalr-protocol-msgpack ] || (cd test/compat && npm ci --no-audit --no-fund)

# deps-browser: Debian's chromium (/usr/bin/chromium), the browser bundles of
# @microsoft/signalr that examples/browser serves, and playwright-core, which
# drives that chromium in test/e2e/browser_test.go. Nothing downloads a
# browser: playwright-core has no install step, and the variables say so to
# any package that would. npm ci runs again when a lockfile is newer than
# what it installed.
BROWSER_NPM_ENV := PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1

deps-browser: examples/browser/node_modules/.package-lock.json test/browser/node_modules/.package-lock.json
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null

examples/browser/node_modules/.package-lock.json test/browser/node_modules/.package-lock.json: %/node_modules/.package-lock.json: %/package-lock.json | deps-node
	cd $* && $(BROWSER_NPM_ENV) npm ci --no-audit --no-fund
	@touch $@

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

vet:
	$(GO) vet ./...

# The whole suite: unit, integration (real binary, real redis-server) and
# compatibility (npm @microsoft/signalr under Node) tests, with -race.
test: deps fmt-check vet
	$(GO) test -race -shuffle=on -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) bench-smoke

# The long variants: 15,000-client storm, 50,000 broadcasts to a stalled
# client, 20 s Redis pause, the fault scenarios with 20 s faults and 10
# clients a node (CI runs the default suite, then this).
test-long: deps
	EDGEPLANE_LONG=1 $(GO) test -count=1 -timeout 40m -run 'Drain|Storm|RedisPaused|StalledClientFlood|Fault' -v ./test/e2e/

# Benchmarks run briefly so they keep compiling and running.
# (The poller density benchmarks open thousands of connections: they run
# with make bench-density, not here.)
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./fanout/ ./backplane/...
	$(GO) test -run '^$$' -bench '^Benchmark(Send|Broadcast|CountOpenFDs)$$' -benchtime 20x ./poller/
	$(GO) test -run '^$$' -bench '^BenchmarkWheel' -benchtime 20x ./conn/

fuzz:
	@for t in FuzzTokenVerify FuzzClientBytes; do \
	  echo "== conn $$t ($(FUZZTIME))"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./conn/ || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/hubproto/ | grep '^Fuzz'); do \
	  echo "== hubproto $$t ($(FUZZTIME))"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/hubproto/ || exit 1; done
	@for t in FuzzFrameHeader FuzzFrameRoundTrip; do \
	  echo "== wsframe $$t ($(FUZZTIME))"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/wsframe/ || exit 1; done
	@echo "== auth FuzzVerify"; $(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/auth/
	@echo "== backplane FuzzRESPRead"; $(GO) test -run '^$$' -fuzz '^FuzzRESPRead$$' -fuzztime $(FUZZTIME) ./backplane/
	@for t in $$($(GO) test -list '^Fuzz' ./backplane/wire/ | grep '^Fuzz'); do \
	  echo "== wire $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./backplane/wire/ || exit 1; done
	@for t in FuzzParse FuzzSplitter; do \
	  echo "== serviceproto $$t ($(FUZZTIME))"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/serviceproto/ || exit 1; done
	@echo "== service FuzzServerStream"; $(GO) test -run '^$$' -fuzz '^FuzzServerStream$$' -fuzztime $(FUZZTIME) ./service/

# Mutation testing (not part of `make test`: it takes a while, tens of
# minutes on two cores). gremlins mutates one line at a time (conditions,
# boundaries, arithmetic, ++/--, signs) and runs the package's tests
# against each mutant: a mutant that passes them ("lived") is a behaviour
# no test pins down. tools/mutate runs gremlins per package of MUTATE_PKGS
# (per-package scope and test selection are in tools/mutate/main.go),
# fails below 90% efficacy or 85% mutator coverage, and writes the table
# into docs/MUTATION.md. mutate-changed runs the packages of the list that
# changed since BASE (git merge-base), and writes bin/mutate/table.md only.
#   make mutate
#   make mutate MUTATE_PKGS="internal/auth fanout"
#   make mutate-changed BASE=main
#   make mutate-report   (table from the last runs' JSON in bin/mutate)
GREMLINS_VERSION := v0.6.0
GREMLINS         := $(BIN)/gremlins-$(GREMLINS_VERSION)/gremlins
MUTATE_PKGS      ?= conn fanout poller backplane/wire backplane internal/auth internal/wsframe internal/hubproto
MUTATE_WORKERS   ?= 2
BASE             ?= main

$(GREMLINS):
	GOBIN=$(abspath $(dir $(GREMLINS))) $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)

mutate: $(GREMLINS) deps-redis
	$(GO) run ./tools/mutate -gremlins $(GREMLINS) -workers $(MUTATE_WORKERS) -doc docs/MUTATION.md $(MUTATE_PKGS)

# The table again from the JSON the last runs left in bin/mutate (after
# re-running one package with MUTATE_PKGS=...).
mutate-report:
	$(GO) run ./tools/mutate -report-only -doc docs/MUTATION.md $(MUTATE_PKGS)

mutate-changed: $(GREMLINS) deps-redis
	$(GO) run ./tools/mutate -gremlins $(GREMLINS) -workers $(MUTATE_WORKERS) -changed-since $(BASE) $(MUTATE_PKGS)

clean:
	rm -rf $(BIN)

-include bench/bench.mk
-include deploy/deploy.mk
