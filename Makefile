# petalnet: `make demo` and `make test` work from a fresh clone; each creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PETALNET := $(VENV)/bin/petalnet
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= runs/demo
DEMO_RECIPE ?= seed

.PHONY: install test test-quick coverage demo bench clean-demo

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# The whole suite (CI's: .ci/run).
test: $(STAMP)
	$(PY) -m pytest -q

# The inner loop (~1 minute): every test not marked slow; it touches every subpackage of src/petalnet. Left out
# (tests/conftest.py's SLOW_MODULES and @pytest.mark.slow): torchrun, crashes, benchmarks/, the CLI's child
# processes, serve's guarded and TLS servers, old runs, the fine-tuned and lever runs, the real photos, and
# the tests that train, export or decode at length what a quick test already touches. docs/testing.md.
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Line coverage of src/petalnet by the whole suite, child processes (CLI, torchrun, servers) included (~2x
# make test's time); the data stays in .coverage-data/ for `coverage html`.
coverage: $(STAMP)
	rm -rf .coverage-data && mkdir .coverage-data
	COVERAGE_FILE=$(CURDIR)/.coverage-data/coverage $(PY) -m coverage run -m pytest -q
	COVERAGE_FILE=.coverage-data/coverage $(PY) -m coverage combine -q .coverage-data
	COVERAGE_FILE=.coverage-data/coverage $(PY) -m coverage report

# Speed of training and inference against the model alone and the tutorial's pipeline (~2 min on CPU).
bench: $(STAMP)
	@test -n "$$PETALNET_DATA" || { echo "make bench: set PETALNET_DATA to a folder of class folders"; exit 2; }
	TQDM_DISABLE=1 $(PY) benchmarks/bench_train.py $(BENCH_FLAGS)

# Get the photos (unless $$PETALNET_DATA names them), train (the seed recipe: ~4 min on a 2-core CPU;
# `make demo DEMO_RECIPE=sprint DEMO_RUN=runs/demo-sprint`: train's default, more accurate, ~2.5 min), evaluate, predict.
demo: $(STAMP)
	@set -e; \
	if [ -n "$$PETALNET_DATA" ]; then data="$$PETALNET_DATA"; \
	else $(PETALNET) data get; data="$${PETALNET_HOME:-$$HOME/.cache/petalnet}/flower_photos"; fi; \
	if [ -f $(DEMO_RUN)/last.pt ]; then $(PETALNET) train --out $(DEMO_RUN) --resume; \
	else $(PETALNET) train --data "$$data" --out $(DEMO_RUN) --recipe $(DEMO_RECIPE); fi; \
	$(PETALNET) evaluate $(DEMO_RUN) --out $(DEMO_RUN)/eval-val; \
	$(PY) -c "from petalnet.config.run import RunFolder; \
	print('\0'.join(map(str, RunFolder('$(DEMO_RUN)').read_split().paths('val')[5::28])), end='')" \
	| xargs -0 $(PETALNET) predict $(DEMO_RUN) --plot $(DEMO_RUN)/predictions.png; \
	echo; echo "results in $(DEMO_RUN)/:"; \
	echo "  curves.png                 loss and val accuracy per epoch (metrics.csv: the numbers)"; \
	echo "  eval-val/confusion.png     confusion matrix on the val photos (report.json: the numbers)"; \
	echo "  eval-val/mistakes.png      the most confident wrong predictions"; \
	echo "  predictions.png            a few val photos with their predicted class"; \
	echo "  best.pt                    the weights: petalnet predict $(DEMO_RUN) PHOTO..."

clean-demo:
	rm -rf $(DEMO_RUN)
