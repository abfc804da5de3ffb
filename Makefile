# The README's commands. Everything runs from a virtual environment in .venv,
# made with --system-site-packages so that a sourced ROS 2 install's rclpy
# stays visible to the node.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg constraints.txt
	python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,bag,dev]'
	touch $@

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/models.py
	$(PY) bench/data_loading.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
