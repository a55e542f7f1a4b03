# The verbs people type. Everything runs in .venv (made by `make install`).
PY ?= .venv/bin/python
ARGS ?=

.PHONY: help install test test-fast lint format typecheck data train bench bench-models bench-inference study sweep drift export clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## create .venv and install tabxfer with its dev extras (CPU torch)
	bash scripts/setup.sh

test:  ## run the test suite (ARGS="-k synthetic" to select)
	bash scripts/test.sh $(ARGS)

test-fast:  ## the suite without slow and real-data tests
	bash scripts/test.sh -m "not slow and not real_data" $(ARGS)

lint:  ## ruff lint + format check
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format:  ## ruff fix + format
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

typecheck:  ## mypy on src/
	$(PY) -m mypy

data:  ## build the tensor cache of a dataset (ARGS="data=nyc_kaggle")
	$(PY) prepare_data.py $(ARGS)

train:  ## train a model (ARGS="model=tabnet data=nyc_kaggle")
	$(PY) train.py $(ARGS)

bench:  ## featurization benchmark vs pandas (needs: pip install -e .[bench])
	$(PY) scripts/bench_featurize.py $(ARGS)

bench-models:  ## every model on the real NYC rows (needs ../shared/data or TABXFER_DATA_DIR)
	$(PY) scripts/bench_models.py $(ARGS)

study:  ## the transfer study on the real data (ARGS: --models mlp,tabnet --sizes 1000,10000 ...)
	$(PY) scripts/transfer_study.py --target nyc_kaggle --corpus mobility_real $(ARGS)

export:  ## ONNX artifact of a checkpoint (ARGS="outputs/<run>/checkpoints/best.ckpt --quantize all")
	$(PY) -m tabxfer.cli export $(ARGS)

bench-inference:  ## ONNX fp32/int8 vs torch eager, every model (needs ../shared/data or TABXFER_DATA_DIR)
	$(PY) scripts/bench_inference.py $(ARGS)

sweep:  ## an Optuna sweep (ARGS="hparams_search=tabnet hydra.sweeper.n_workers=2"); rerun to resume
	$(PY) train.py -m $(if $(findstring hparams_search=,$(ARGS)),,hparams_search=mlp) $(ARGS)

drift:  ## drift report (ARGS="logs/train/runs/<run> new_trips.parquet")
	$(PY) -m tabxfer.cli drift $(ARGS)

clean:  ## remove caches and run logs (never data)
	rm -rf .cache logs outputs multirun .pytest_cache .mypy_cache .ruff_cache
