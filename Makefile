# heritage: the two commands of the README (make demo, make test) plus helpers.
# Each target installs what it needs first (scripts/bootstrap.sh is idempotent).
# make test runs pytest on every core (pytest-xdist), one test file per worker at a time
# (module fixtures are built once); plain `pytest FILE` runs in one process.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM := offscreen

.PHONY: demo test setup lint docs plugin dist wheelhouse bench bench-report clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	@$(PY) scripts/demo.py

test: setup
	@$(PY) -m ruff check core heritage_qgis tests scripts research
	@$(VENV)/bin/lint-imports --no-cache
	@$(PY) -m pytest -n auto --dist loadfile
	@$(MAKE) --no-print-directory docs

# the user documentation site (mkdocs.yml, pages in docs/) into site/; any warning
# (a broken link, a page missing from the navigation) fails the build. Run as a module:
# .venv/bin/mkdocs would put .venv/bin first on sys.path, where mkdocstrings then takes
# the `heritage` console script for the package.
docs: setup
	@NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
	@echo "documentation built: site/index.html"

lint: setup
	@$(PY) -m ruff check core heritage_qgis tests scripts research
	@$(PY) -m ruff format --check core heritage_qgis tests scripts research

bench: setup
	@$(PY) bench/scene_throughput.py
	@$(PY) bench/throughput.py

bench-report: setup
	@$(PY) bench/report_time.py

plugin: setup
	@$(PY) scripts/build_plugin.py

# the backend's wheel (distribution heritage-defects, with the shipped model) and the
# plugin zip, in dist/
dist: setup
	@$(PY) -m pip wheel -q --no-deps --no-build-isolation --no-index -w dist .
	@$(PY) scripts/build_plugin.py

# dist/wheelhouse: the wheel and every pinned dependency, for the plugin's offline
# installer (Settings > Options > Heritage > Folder of wheels); downloads once
wheelhouse: dist
	@$(PY) -m pip wheel -q -w dist/wheelhouse -r requirements.lock dist/heritage_defects-*.whl

clean:
	rm -rf build dist site .pytest_cache
