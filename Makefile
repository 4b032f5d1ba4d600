# Two commands set everything up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install run test test-slow test-long lint mutate bench clean

# The venv is rebuilt when the lock or pyproject changes. Exact versions come from requirements.lock.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# data/raw/snapshot.csv is DVC-tracked (its .dvc file is in git); a fresh clone rebuilds it from the
# bundled, git-tracked data of params.yaml's use case, so `dvc repro` works right after the install.
data/raw/snapshot.csv: $(STAMP)
	$(BIN)/steward ingest

install: $(STAMP) data/raw/snapshot.csv

run: install
	$(BIN)/steward run

test: install
	bash scripts/pytest.sh tests --durations=25

test-slow: install
	bash scripts/pytest.sh tests -m 'slow and not long'

# The Adult income lifecycle end to end (two demos and a retraining: 24 minutes measured on 2 cores): not in CI.
test-long: install
	bash scripts/pytest.sh tests -m long

# Mutation testing of the decision-critical modules (pyproject.toml [tool.mutmut]) → reports/mutation.md.
# Not part of `make test`: a full run (4,369 mutants, always from scratch) takes about 18 minutes on 2 cores.
mutate: install
	$(BIN)/python scripts/mutate.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check steward tasks flows deployments usecases bench tests
	$(BIN)/mypy

# Evidently (bench/monitor.py's peer) does not import under pandas 3: it gets a virtual environment of its own.
EVIDENTLY := .bench/evidently/bin/python
$(EVIDENTLY):
	$(PYTHON) -m venv .bench/evidently
	.bench/evidently/bin/pip install --quiet "evidently==0.7.23" "pandas==2.3.3" "pyarrow>=21"

bench: install $(EVIDENTLY)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/rollback.py
	$(BIN)/python bench/log_loss.py
	$(BIN)/python bench/monitor.py

clean:
	rm -rf $(VENV) .bench .steward data/prepared models reports/data_docs mutants
