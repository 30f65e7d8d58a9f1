#!/usr/bin/env bash
# One call on a lent GPU machine (python3 with torch and torchvision, no internet): installs
# the wheels that `make gpu-prepare` put in .whl, then runs `make gpu-checks`, every step even
# after one fails (the machine's torch is not the project's pin), its output also in $OUT/gpu.log
# when the device tool gives $OUT. From the session:
#   make gpu-prepare
#   run(command="bash tools/gpu_session.sh", carry=[".whl", "benchmarks/.peers"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
site=/tmp/site
python3 -m pip install --quiet --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD"  # the library from the working tree
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
export PYTHONUNBUFFERED=1
make --ignore-errors gpu-checks PYTHON=python3 2>&1 | tee "${OUT:-/tmp}/gpu.log"
