#!/usr/bin/env bash
# The GPU checks, as one script for a machine with a CUDA GPU and the project's Python
# packages (or, without network, wheels in .whl/: see README "On a GPU").
#   bash benchmarks/on_gpu.sh tests    tests/test_gpu.py and the benchmarks
#   bash benchmarks/on_gpu.sh labs P J B...  every lab under profile P, J at a time, at seed bases B
# Logs and executed notebooks go to $OUT (default /tmp/gpu_out).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import nbval, myst_nb, mnist1d" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
case "${1:-tests}" in
tests)
  timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.log" | tail -3
  for b in "fit_throughput.py --repeats 2" "sweep_throughput.py --repeats 2" \
           "vmap_vs_stacked.py" "cnn_sweep.py --repeats 2" "roofline.py --repeats 5"; do
    echo "== $b"; timeout 120 python3 benchmarks/$b
  done 2>&1 | tee "$OUT/bench.log" | grep -E "^==|ratio|peak|fraction|device|GFLOP"
  ;;
labs)
  prof=$2 jobs=$3; shift 3
  for base in "$@"; do
    mkdir -p "$OUT/$prof.$base"
    LABKIT_SEED=$base python3 benchmarks/course_time.py --profile "$prof" --jobs "$jobs" \
      --out "$OUT/$prof.$base" 2>&1 | tee "$OUT/course.$prof.$base.log" | grep -v "^WARNING"
  done
  ;;
esac
