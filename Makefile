# marc: `make demo` runs the headline job on the embedded default, `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# lmms-eval (marc.eval.lmms) in an environment of its own: it pins av<16, wandb==0.25.0 and
# ruff>=0.16.4 and pulls 74 packages that the main one does not have.
LMMS_VENV ?= .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed

.PHONY: venv lmms-venv demo reproduce test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(LMMS_STAMP): pyproject.toml
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/python -m pip install --quiet -e '.[lmms]'
	touch $(LMMS_STAMP)

lmms-venv: $(LMMS_STAMP)

demo: $(STAMP)
	$(BIN)/python -m marc.demo

# The README's accuracy figures from scratch: the teacher on its full schedule (checked against
# the shipped teacher's recorded accuracy), then the headline job and the report on that
# teacher, then the students again with three seeds (marc.eval.seeds). Starts from an empty
# artifacts/ so that no stage reuses a model installed or built before.
reproduce: $(STAMP)
	rm -rf artifacts
	$(BIN)/python main.py fit --config configs/teacher.yaml --config configs/full/teacher.yaml
	$(BIN)/python -m marc.eval.teacher_asset check --model artifacts/teacher/model
	$(BIN)/python -m marc.demo
	$(BIN)/python -m marc.eval.seeds --seeds 0 1 2

test: $(STAMP) $(LMMS_STAMP)
	$(BIN)/python -c "import torch, torchvision, lightning, transformers, timm, hnswlib, av; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MARC_LMMS_PYTHON=$(abspath $(LMMS_VENV))/bin/python $(BIN)/python -m pytest -q --nbmake tests notebooks

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script --quick || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(LMMS_VENV) artifacts lightning_logs .pytest_cache
