# fusionsync — the two commands a newcomer needs are `make demo` and `make test`.
# `make demo` installs the package and its runtime dependencies only; `make docs` adds the docs tools (the `docs`
# extra) and `make test` the test tools too (`dev`): a first demo never waits for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
DOCS := $(VENV)/.installed-docs

.PHONY: test lint docs demo bench venv clean browser

venv: $(DEV)

# The suite starts hundreds of Python processes: they share bytecode caches (where PYTHONDONTWRITEBYTECODE is
# set, each would compile every module it imports).
unexport PYTHONDONTWRITEBYTECODE

# uv installs in seconds what pip takes minutes over; pip does it where uv cannot be had.
install = $(BIN)/python -m uv pip install -q --python $(BIN)/python $(1) \
	|| { echo "installing with pip instead"; $(BIN)/python -m pip install -q $(1); }
DOCS_EXTRAS := .[docs]
DEV_EXTRAS := .[dev,docs]

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv || echo "uv not available: installing with pip"
	$(call install,-e .)
	touch $(RUNTIME)

$(DOCS): $(RUNTIME)
	$(call install,-e '$(DOCS_EXTRAS)')
	touch $(DOCS)

$(DEV): $(RUNTIME)
	$(call install,-e '$(DEV_EXTRAS)')
	touch $(DOCS) $(DEV)

lint: $(DEV)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs
	$(BIN)/mypy

# The web catalog's tests drive Debian's chromium (Playwright's own browser download is not used).
CHROMIUM ?= /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { echo "installing chromium (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# strict: a broken link or reference, a public name without docs (docs/hooks.py) fails the build
docs: $(DOCS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Three pytest workers on two cores: a third of the suite's time is waiting (servers starting, processes
# killed and restarted, timeouts), not computing.
test: lint docs browser
	$(BIN)/python -m pytest -n 3 -q

demo: $(RUNTIME)
	$(BIN)/python -m fusionsync demo

bench: $(DEV)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
