# `make book` and `make test` set up .venv (created, and requirements.txt installed into it whenever that
# file changes), then build the website or run the tests. Plain equivalents are in README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup book test release clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

book: setup
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W --keep-going  # no progress bars on the website
	@echo "Open _build/html/index.html in a browser."

test: setup
	$(BIN)/python -m pytest

release: setup
	$(BIN)/python -m autograder release

clean:
	rm -rf _build
