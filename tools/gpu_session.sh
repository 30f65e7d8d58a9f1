#!/usr/bin/env bash
# One call on a lent GPU machine (python3 with torch and torchvision, no internet): installs
# the wheels that `make gpu-prepare` put in .whl, then runs `make gpu-checks`. From the session:
#   make gpu-prepare
#   run(command="bash tools/gpu_session.sh", carry=[".whl", "benchmarks/.peers"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
site=/tmp/site
python3 -m pip install --quiet --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD"  # the library from the working tree
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
make gpu-checks PYTHON=python3
