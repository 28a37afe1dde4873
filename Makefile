# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint clean venv sysdeps

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian tools some tests drive (tmux for the dashboard smoke test, curl for the socket test,
# sqlite3 to read the database as a user would, systemd-analyze for the unit).
sysdeps:
	@bash scripts/ensure-sysdeps.sh

run: $(STAMP)
	$(VENV)/bin/cronkeeper daemon --config cronkeeper.toml

test: $(STAMP) sysdeps
	$(PY) -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check cronkeeper tests bench handlers
	$(VENV)/bin/mypy cronkeeper

clean:
	rm -rf $(VENV) .cronkeeper build *.egg-info
