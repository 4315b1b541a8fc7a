# edgefc — the four entry points of CONTRACT §0.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := runc libseccomp2 containernetworking-plugins iptables mosquitto mosquitto-clients systemd postgresql chromium chromium-driver
# Node.js functions (docs/nodejs.md): Debian's nodejs and npm only where no node (>= 18) is installed already.
ifeq ($(shell command -v node 2>/dev/null),)
DEB_PACKAGES += nodejs npm
endif
NODE_DIR := src/edgefc/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
STAMP := $(VENV)/.installed

# `make run` settings: LISTEN=host:port of the API, MQTT_LISTEN=host:port of the managed broker, DATA_DIR;
# `make dist` writes the wheel into DIST_DIR.
LISTEN ?= 127.0.0.1:9999
MQTT_LISTEN ?=
DATA_DIR ?= ./.edgefc
DIST_DIR ?= dist

.PHONY: install run test bench chaos fuzz lint typecheck clean system-packages dist

install: system-packages $(STAMP) $(NODE_STAMP)

# Debian packages the gateway and its tests use; installed only when missing and only as root.
system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: not root; missing Debian packages:$$missing (tests needing them will skip)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@if ! $(PY) -c "import venv, ensurepip" 2>/dev/null && [ "$$(id -u)" = "0" ]; then \
	  echo "installing python3-venv"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	fi
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# The Node.js worker's npm dependencies (pinned by package-lock.json), again only when the lock file changed.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(NODE_DIR) && npm ci --omit=dev --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "note: npm is not installed; Node.js functions will not run (tests needing them will skip)"; fi

# The quickstart is deployed only into an empty data dir: a second `make run` keeps what the user deployed.
# To start again from the quickstart: `rm -rf $(DATA_DIR)` first.
run: install
	$(if $(MQTT_LISTEN),EDGEFC_MQTT__LISTEN='$(MQTT_LISTEN)') $(BIN)/edgefc gateway run --data-dir '$(DATA_DIR)' \
	  --listen '$(LISTEN)' --deploy examples/quickstart/deployment.yaml --if-empty

# A wheel in dist/ to `pip install` on a gateway (docs/deploying.md).
dist: install
	rm -rf '$(DIST_DIR)' && $(BIN)/pip wheel --no-deps --disable-pip-version-check -q -w '$(DIST_DIR)' . && ls '$(DIST_DIR)'/*.whl

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: install lint
	@set +e; $(BIN)/pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

# The fuzz targets of tests/fuzz, long and random (make test runs them short and derandomised).
FUZZ_EXAMPLES ?= 20000
fuzz: install
	EDGEFC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/fuzz --timeout 3600

bench: install
	$(BIN)/python -m bench

# QoS 1 under random kills of the gateway, its Mosquitto, workers and the cloud broker, for longer than the
# bounded run in `make test` (EDGEFC_CHAOS_SECONDS, default 300; EDGEFC_CHAOS_SEED to replay one run).
chaos: install
	EDGEFC_CHAOS_SECONDS=$${EDGEFC_CHAOS_SECONDS:-300} $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_chaos.py

clean:
	rm -rf $(VENV) .edgefc dist build .pytest_cache .mypy_cache .ruff_cache
