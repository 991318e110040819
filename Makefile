# Two commands: `make demo` and `make test`. Both create .venv if missing and install the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.athanor-installed
# opentrons pins numpy 1.26 and jsonschema<4.18 (chromadb 1.x needs newer): it gets its own small
# environment, used as a subprocess to simulate robot protocols (and as their sandbox).
OT_VENV := .venv-opentrons
OT_STAMP := $(OT_VENV)/.athanor-installed
DEMO_REQUEST := Maximise the conductivity of a P3HT/CNT blend of P3HT, D1, D2, D6 and D8 (fractions sum to 1, P3HT at least 0.3), 30 experiments in batches of 5

SYSTEM_PACKAGES := $(shell sed -e 's/\#.*//' requirements/system.txt)

.PHONY: setup system demo test lint clean bench-setup

setup: system $(STAMP) $(OT_STAMP)

# Debian packages (requirements/system.txt): apt-get installs the missing ones when this runs as root;
# otherwise they are named. A new font also needs matplotlib's font cache rebuilt.
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q $$missing >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	  rm -f $$HOME/.cache/matplotlib/fontlist-*.json; \
	else \
	  echo "system packages missing: $$missing (install them: sudo apt-get install $$missing)"; \
	fi

# torch first, from its CPU wheel; the constraint file keeps every later step on that torch.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

$(OT_STAMP): requirements/opentrons.txt
	test -x $(OT_VENV)/bin/python || $(PYTHON) -m venv $(OT_VENV)
	$(OT_VENV)/bin/python -m pip install -q -r requirements/opentrons.txt
	touch $(OT_STAMP)

# Optional: the peer optimisers (BayBE, Ax) that `athanor bench optimiser` compares against.
bench-setup: setup
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[test,bench]'

demo: setup
	$(BIN)/athanor run "$(DEMO_REQUEST)" --seed 7

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(OT_VENV) .athanor
