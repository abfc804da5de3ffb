# The README's commands. Everything runs from a virtual environment in .venv,
# made with --system-site-packages so that a sourced ROS 2 install's rclpy
# stays visible to the node.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench clean typecheck-node

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg constraints.txt
	python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,bag,dev]'
	touch $@

# bench/training.py shares its module name with the training package, so mypy
# checks it on its own, as a script (-c), and the other benchmarks as files.
MYPY_ALL = $(PY) -m mypy mtl_perception training $(filter-out bench/training.py,$(wildcard bench/*.py)) \
	&& $(PY) -m mypy -c "$$(cat bench/training.py)"

test: setup typecheck-node
	$(PY) -m ruff check .
	$(MYPY_ALL)
	$(PY) -m pytest $(PYTEST_ARGS)

# The node's calls into rclpy, checked against the Humble rclpy sources that the
# PyPI package rclpy-intellisense ships (a type reference only: it cannot run).
# Installed with --target into a git-ignored folder that only mypy reads, never
# into the venv, where it would shadow a real ROS 2 rclpy.
TYPESTUBS := .typestubs/rclpy
typecheck-node: setup
	test -f $(TYPESTUBS)/rclpy/lifecycle/node.py || $(PY) -m pip install --quiet --target $(TYPESTUBS) rclpy-intellisense==1.2.0
	MYPYPATH=$(TYPESTUBS) $(PY) -m mypy --follow-imports=silent --ignore-missing-imports --cache-dir .mypy_cache/node mtl_perception/ros

# The main job on built-in defaults (until bag evaluation lands): render the
# synthetic set and check it the way a user checks a real one.
demo: setup
	$(PY) -m training synth --out demo/synthetic
	$(PY) -m training summarize --config demo/synthetic/set.yaml --check-videos --json demo/summary.json

lint: setup
	$(PY) -m ruff check .
	$(MYPY_ALL)

bench: setup
	$(PY) bench/models.py
	$(PY) bench/data_loading.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
