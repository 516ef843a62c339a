# `make book` and `make test` set up .venv (created, and requirements.txt installed into it whenever that
# file changes) and node_modules (package-lock.json, for the website's own copy of MathJax and the widget
# manager), then build the website or run the tests. Plain equivalents are in README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup book test release clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	npm ci --ignore-scripts --no-audit --no-fund  # the JavaScript the website serves itself (package.json)
	touch $(STAMP)

book: setup
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going  # no progress bars on the website
	@echo "Open _build/html/index.html in a browser."

test: setup
	$(BIN)/python -m pytest

release: setup
	$(BIN)/python -m autograder release

clean:
	rm -rf _build
