# The README's commands. Everything runs from a virtual environment in .venv,
# made with --system-site-packages so that a sourced ROS 2 install's rclpy
# stays visible to the node.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg constraints.txt
	python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,bag,dev]'
	touch $@

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy mtl_perception training bench
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job on built-in defaults (until bag evaluation lands): render the
# synthetic set and check it the way a user checks a real one.
demo: setup
	$(PY) -m training synth --out demo/synthetic
	$(PY) -m training summarize --config demo/synthetic/set.yaml --check-videos --json demo/summary.json

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy mtl_perception training bench

bench: setup
	$(PY) bench/models.py
	$(PY) bench/data_loading.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
