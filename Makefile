# GenerateVision — two commands do all set-up on a fresh machine:
#   make book   # create .venv, install, execute every chapter (PROFILE=ci by default), render _build/html/
#   make test   # create .venv, install, lint, unit tests, execute each chapter once (papermill) and compare its
#               # check cells (nbval rules), build the site, then check the built pages in headless Chromium
#               # (skipped when there is none)
# Both are idempotent: the second run skips the install (a stamp keyed on requirements.txt + pyproject.toml).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= ci
JOBS   ?= 2
LAB_ARGS ?=
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)

.PHONY: book test venv lint lab clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@if [ -d .git ]; then git config filter.nbstripout.clean "$(abspath $(BIN))/python -m nbstripout --keep-count" && \
	  git config filter.nbstripout.smudge cat && git config filter.nbstripout.required true; fi
	@rm -f $(VENV)/.installed-*
	@touch $@

book: venv
	$(BIN)/python tools/course.py book --profile $(PROFILE) --jobs $(JOBS)
	@echo "open _build/html/index.html"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/nbstripout --verify --keep-count chapters/*.ipynb

test: lint
	COURSE_PROFILE=ci $(BIN)/python -m pytest -n $(JOBS) --dist loadscope tests
	$(BIN)/python tools/course.py build
	COURSE_SITE_TEST=1 $(BIN)/python -m pytest -q -rs tests/test_site.py -k browser

# Convenience (not part of set-up): JupyterLab from the pinned environment, opened on the chapters.
lab: venv
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) chapters

clean:
	rm -rf _build
