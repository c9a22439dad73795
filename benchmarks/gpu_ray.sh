#!/usr/bin/env bash
# Replicas across the GPUs of one node through Ray (what `--ray` does): the Qwen2-7B-shape paraphraser
# (vLLM, random weights via load_format="dummy", no download) and CTranslate2 back-translation (the
# mbart-large-50 shape, random weights built on the GPU), first on 1 GPU, then one replica on every GPU.
# Reports throughput per GPU and the scaling efficiency (goal: >= 90% of linear).
#
# Needs a multi-GPU node with the GPU and Ray extras: pip install -e '.[gpu,ray]'
# At most 9.5 minutes (vLLM starts once per replica: 1-3 minutes, in parallel; twice: 1 GPU, then all).
# Results: $OUT/ray_gpu.{json,md} when OUT is set, else benchmarks/results/ray_gpu.{json,md}.
#
#   bash benchmarks/gpu_ray.sh             # PYTHON=/path/to/python to choose the interpreter; extra args pass on
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mkdir -p .cache/tmp
# the driver JIT cache, project-local and at its largest: kernels compiled from PTX on this GPU are kept
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.cache/nv} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export VLLM_CACHE_ROOT="$PWD/.cache/vllm" TORCHINDUCTOR_CACHE_DIR="$PWD/.cache/torchinductor"
export RAY_TMPDIR="${RAY_TMPDIR:-/tmp}"  # Ray's Unix sockets need a short path

"$PY" -c "import ray, vllm, ctranslate2, torch; assert torch.cuda.device_count() > 0, 'no CUDA GPU visible'" \
    || { echo "needs a GPU node with pip install -e '.[gpu,ray]'" >&2; exit 2; }
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv || true
# Under 10 minutes: half the default work per GPU (the rate is measured after every replica is up, so it
# needs fewer sources), and a hard limit; later arguments override these.
exec timeout 570 "$PY" benchmarks/bench_ray_gpu.py --prompts-per-gpu 3000 --sentences-per-gpu 3000 "$@"
