# petalnet: `make demo` and `make test` work from a fresh clone; each creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PETALNET := $(VENV)/bin/petalnet
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= runs/demo

.PHONY: install test demo clean-demo

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Get the photos (unless $$PETALNET_DATA names them), train the default recipe, evaluate, predict.
demo: $(STAMP)
	@set -e; \
	if [ -n "$$PETALNET_DATA" ]; then data="$$PETALNET_DATA"; \
	else $(PETALNET) data get; data="$${PETALNET_HOME:-$$HOME/.cache/petalnet}/flower_photos"; fi; \
	if [ -f $(DEMO_RUN)/last.pt ]; then $(PETALNET) train --out $(DEMO_RUN) --resume; \
	else $(PETALNET) train --data "$$data" --out $(DEMO_RUN); fi; \
	echo; echo "run folder: $(DEMO_RUN) (best.pt, last.pt, metrics.csv, curves.png, config.json)"

clean-demo:
	rm -rf $(DEMO_RUN)
