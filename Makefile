# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment in .venv first when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test stubs clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py --dataset synthetic-pets --model unet --unet-width 16 --unet-depth 3 \
		--no-augment --epochs 8 --batch-size 16 --lr 2e-3 --weight-decay 1e-4 \
		--val-frequency 2 --workers 0 --device cpu --out runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest

stubs: $(STAMP)
	$(VENV)/bin/dlvc stubs

clean-venv:
	rm -rf $(VENV)
