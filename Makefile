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

# The main job on built-in defaults, from nothing to a bag evaluation: render
# the synthetic action/gesture set, train a small HPS model on the CPU
# (config/train/cpu_small.yaml), replay the test videos as a rosbag2 and
# evaluate the model on it through the live node's streaming core. Prints both
# tasks' accuracies and where the report and plots are. DEMO_TRAIN adds
# training overrides; DEMO_STREAM the stream settings: cpu_small trains on
# every 2nd frame of 25 fps videos, so the stream samples at 12.5 fps.
DEMO ?= demo
DEMO_TRAIN ?=
DEMO_STREAM ?= target_fps=12.5 inference_stride=4

demo: setup
	@start=$$(date +%s); \
	$(PY) -m training synth --out $(DEMO)/synthetic && \
	$(PY) -m training train --config config/train/cpu_small.yaml --out $(DEMO)/model \
		--overwrite --progress lines set=$(abspath $(DEMO))/synthetic/set.yaml $(DEMO_TRAIN) && \
	$(PY) -m training to-bag --set $(DEMO)/synthetic/set.yaml --split test \
		--out $(DEMO)/bag --overwrite && \
	$(PY) -m mtl_perception.bag.evaluate --bag $(DEMO)/bag \
		--checkpoint $(DEMO)/model/best.safetensors --labels $(DEMO)/bag/labels.csv \
		--out $(DEMO)/evaluation --overwrite --write-bag --set $(DEMO_STREAM) && \
	echo "demo: $$(( $$(date +%s) - start )) s after set-up; the replayed bag with the" \
		"predictions: $(DEMO)/evaluation/bag (ros2 bag play / Foxglove)"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy mtl_perception training bench

bench: setup
	$(PY) bench/models.py
	$(PY) bench/data_loading.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
