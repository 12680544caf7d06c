# Deployment artifacts (deploy/): included from the Makefile.
#   make deps-promtool   install promtool (Debian package prometheus) if missing; `make test` needs it
#   make deploy-deps     install the validators: haproxy, nginx, promtool, systemd-analyze, openssl
#   make deploy-check    validate deploy/: systemd-analyze verify, haproxy -c, nginx -t,
#                        promtool check rules + test rules
# The Go tests in test/e2e/promtool_test.go check the rest against a real node
# (promtool check metrics, dashboard and alert metrics exposed, env file and
# unit against the flags, sysctl keys).

GO   ?= go
BIN  ?= bin
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends
# The Debian packages start their daemons on install where systemd runs
# (prometheus listens on :9090, edgeplane's default admin port; nginx on
# :80): only the tools are wanted here.
NO_DAEMONS = { ! command -v systemctl >/dev/null || $(SUDO) systemctl disable --now $(1) >/dev/null 2>&1 || true; }

.PHONY: deps-promtool deploy-deps deploy-check

deps-promtool:
	@command -v promtool >/dev/null || { echo "installing promtool (apt-get: prometheus)"; $(APT_INSTALL) prometheus >/dev/null; \
	  $(call NO_DAEMONS,prometheus); }
	@promtool --version 2>&1 | head -1

deploy-deps: deps-promtool
	@command -v haproxy >/dev/null && command -v nginx >/dev/null && command -v systemd-analyze >/dev/null && command -v openssl >/dev/null || { \
	  echo "installing haproxy nginx systemd openssl (apt-get)"; $(APT_INSTALL) haproxy nginx systemd openssl >/dev/null; \
	  $(call NO_DAEMONS,haproxy nginx); }

deploy-check: deploy-deps
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) build -o "$$tmp/edgeplane" ./cmd/edgeplane; \
	echo "== systemd-analyze verify deploy/edgeplane.service"; \
	sed "s#/usr/local/bin/edgeplane#$$tmp/edgeplane#" deploy/edgeplane.service > "$$tmp/edgeplane.service"; \
	out=$$(systemd-analyze verify "$$tmp/edgeplane.service" 2>&1) || { echo "$$out"; exit 1; }; \
	[ -z "$$out" ] || { echo "$$out"; exit 1; }; \
	echo "== haproxy -c deploy/haproxy.cfg (throwaway certificate)"; \
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=edgeplane \
	  -keyout "$$tmp/key.pem" -out "$$tmp/crt.pem" 2>/dev/null; \
	cat "$$tmp/crt.pem" "$$tmp/key.pem" > "$$tmp/edgeplane.pem"; \
	sed "s#/etc/haproxy/certs/edgeplane.pem#$$tmp/edgeplane.pem#" deploy/haproxy.cfg > "$$tmp/haproxy.cfg"; \
	haproxy -dW -c -f "$$tmp/haproxy.cfg"; \
	echo "== nginx -t deploy/nginx.conf (throwaway certificate)"; \
	sed -e "s#/etc/nginx/certs/edgeplane.crt#$$tmp/crt.pem#" -e "s#/etc/nginx/certs/edgeplane.key#$$tmp/key.pem#" \
	  -e "s#^pid .*#pid $$tmp/nginx.pid;#" -e "s#^error_log .*#error_log stderr warn;#" deploy/nginx.conf > "$$tmp/nginx.conf"; \
	nginx -q -t -c "$$tmp/nginx.conf"; \
	echo "== promtool check rules / test rules deploy/alerts.yml"; \
	(cd deploy && promtool check rules alerts.yml && promtool test rules alerts_test.yml); \
	echo "deploy-check: ok"
