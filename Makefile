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
	$(PY) train.py --dataset synthetic-pets --model unet --epochs 24 --batch-size 32 \
		--val-frequency 2 --device cpu --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

stubs: $(STAMP)
	$(VENV)/bin/dlvc stubs

clean-venv:
	rm -rf $(VENV)
