# Two entry points for a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := zookeeper haproxy dnsperf bind9 dnsutils socat prometheus iproute2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-quick deps venv lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/discoveryd demo

# The real ZooKeeper, HAProxy, bind9 and dnsperf the tests start come from Debian.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: deps venv
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The same minus the tests marked `long` (fault injection, fuzzing, soak): for iterating.
test-quick: deps venv
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not long'

lint: venv
	$(BIN)/ruff check discoveryd tests benchmarks
	$(BIN)/mypy discoveryd

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
