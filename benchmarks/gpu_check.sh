#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py), in two steps:
#
#   benchmarks/gpu_check.sh prepare   # here, with network: wheels the GPU image lacks, into .whl/
#   benchmarks/gpu_check.sh run       # on the lent GPU machine (its python3 holds a CUDA torch)
#
# 'prepare' pins the versions this checkout's .venv uses: TransformerLens and what the GPU
# image (torch, accelerate, safetensors, tokenizers, ... preinstalled) lacks or holds in
# another version. 'run' installs them into /tmp/site without touching the image, then runs
# the check, which writes gpu_check.json (and bench_patching_cuda.json) into $OUT (or
# ./gpu_check_out) within about 5 minutes on one H200. Run both from the repository root;
# on the device call, carry .whl (ignored by .gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="transformer-lens transformers huggingface-hub datasets dill multiprocess"

case "${1:-run}" in
prepare)
    mkdir -p .whl
    pins=""
    for name in $PACKAGES; do
        version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
        pins="$pins $name==$version"
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $pins
    ls -la .whl
    ;;
run)
    out="${OUT:-gpu_check_out}"
    mkdir -p "$out"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    fi
    export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
    nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv 2>&1 | tee "$out/nvidia_smi.txt" || true
    set -o pipefail
    timeout 295 python3 -m benchmarks.gpu_check --out "$out" 2>&1 | tee "$out/gpu_check.log"
    ;;
*)
    echo "usage: benchmarks/gpu_check.sh [prepare|run]" >&2
    exit 2
    ;;
esac
