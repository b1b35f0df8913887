# The two commands of the README: `make demo` and `make test`. Everything they need is
# installed here: the venv, the Python packages, and the Debian packages the tests use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PKGS   := daemon detectors policies alerts errors

.PHONY: soak install constraints system-deps typecheck-tree lint typecheck test test-fast demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --constraint constraints.txt
	touch $@

# Re-pin after changing the dependencies in pyproject.toml (then run make test).
constraints: $(STAMP)
	$(BIN)/python -m pip install --quiet --upgrade -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

# Debian packages for the alerting tests (Prometheus, promtool and Alertmanager) and the
# browser tests (Chromium, driven by Playwright), installed only when missing. Needs root
# (CI runs as root); the tests start their own instances.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && \
	  command -v prometheus-alertmanager >/dev/null && command -v chromium >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager chromium >/dev/null)
	@# the Debian packages start their services; the tests start their own on free ports
	@-systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true

# mypy resolves modules by directory, so it sees the folders under their installed dotted
# names through a tree of symlinks (the folders are mapped by setuptools' package-dir).
typecheck-tree:
	@mkdir -p .typecheck/watchkeeper
	@touch .typecheck/watchkeeper/__init__.py
	@for p in $(PKGS); do ln -sfn ../../$$p .typecheck/watchkeeper/$$p; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) typecheck-tree
	$(BIN)/mypy

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

demo: $(STAMP)
	$(BIN)/watchkeeper demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python tests/benchmarks/bench_sketches.py
	$(BIN)/python tests/benchmarks/bench_ingest.py
	$(BIN)/python tests/benchmarks/bench_drift.py
	$(BIN)/python tests/benchmarks/bench_shadow.py
	$(BIN)/python tests/benchmarks/bench_attribution.py --quick
	$(BIN)/python tests/benchmarks/bench_replicas.py
	$(BIN)/python tests/benchmarks/bench_estimates.py
	$(BIN)/python tests/benchmarks/bench_ab.py
	$(BIN)/python tests/benchmarks/bench_segments.py

# a sustained-rate run: RSS must stay flat and lag bounded (exit 1 otherwise)
soak: $(STAMP)
	$(BIN)/python tests/benchmarks/soak.py --duration $${SOAK_SECONDS:-600} --rate $${SOAK_RATE:-20000}

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .pytest_cache .ruff_cache build *.egg-info
