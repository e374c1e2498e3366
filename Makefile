# make demo / make test do all the set-up: a .venv with minihash (editable) and its dev tools.
# The stamp file makes a second run on a ready machine install nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.minihash-installed

.PHONY: demo test test-unit test-notebooks lab strip clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/minihash demo

# Unit tests and every notebook in fast mode, exercises solved (MINIHASH_SOLUTIONS=1: the reference answers of
# minihash/lessons in place of the stubs); fails on committed notebook outputs.
test: $(STAMP)
	MINIHASH_FAST=1 MINIHASH_SOLUTIONS=1 $(BIN)/python -m pytest -q tests --nbmake notebooks

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-notebooks: $(STAMP)
	MINIHASH_FAST=1 MINIHASH_SOLUTIONS=1 $(BIN)/python -m pytest -q --nbmake notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Strip outputs from every notebook before committing.
strip: $(STAMP)
	$(BIN)/nbstripout notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
