# Two commands do all set-up on a fresh clone: `make demo` and `make test`. Both are idempotent:
# stamp files in .venv record what is installed, so a second run skips straight to the work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LGTC   := $(VENV)/bin/lgtc
TORCH  := torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build on disk: any later `torch>=...` is then already satisfied,
# so pip never pulls a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	touch $@

$(VENV)/.installed: setup.py setup.cfg package.xml $(VENV)/.torch
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(LGTC) demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(LGTC) bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
