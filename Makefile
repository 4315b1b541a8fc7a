# edgefc — the four entry points of CONTRACT §0.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := runc containernetworking-plugins iptables mosquitto mosquitto-clients
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint typecheck clean system-packages fuzz

install: system-packages $(STAMP)

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

run: install
	$(BIN)/edgefc gateway run --data-dir ./.edgefc --listen 127.0.0.1:9999 --deploy examples/quickstart/deployment.yaml

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

clean:
	rm -rf $(VENV) .edgefc .pytest_cache .mypy_cache .ruff_cache
