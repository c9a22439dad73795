#!/usr/bin/env bash
# Back-translation on one GPU (goal: 16,000 ko->en->ko round trips in under 60 s on an H200).
#
# One script, about 8 minutes at most: builds a random-weight model of the real
# facebook/mbart-large-50-many-to-many-mmt shape (d_model 1024, 12+12 layers, 250,054-token vocabulary;
# no download), converts it to CTranslate2 int8_float16, and runs, on the same 16,000 real nsmc4 reviews:
#   1. this engine (CTranslate2, 16,384 tokens/batch) on all 16,000 sentences, 2 repeats;
#   2. the notebook's DataLoader loop (transformers fp16, batch 128) on the first 2,048 of them;
#   3. the notebook's naive loop (one sentence per generate) on 16 evenly spaced ones;
#   4. this engine with 65,536 tokens/batch, then with beam 4 (a second results file), if time is left.
# Rows 2 and 3 are extrapolated to 16,000 sentences from their measured rate, and labeled so.
# Every leg generates exactly 32 tokens in every engine (lengths forced equal).
#
# Needs: python3 ($PYTHON) with torch (CUDA), transformers, ctranslate2 (CUDA build), sentencepiece, protobuf,
# tokenizers, polars, numpy, tqdm; the repository's `engine` is used in place (PYTHONPATH).
# Writes $OUT (or benchmarks/results): backtranslate_gpu.{json,md}, backtranslate_gpu_beam4.{json,md},
# random_model.json and gpu_backtranslate.log.
#
# Dry run of the same steps on a CPU with a tiny model: DEVICE=cpu SHAPE=tiny benchmarks/gpu_backtranslate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}  # a bare system has python3, not always python
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-large}
SENTENCES=${SENTENCES:-16000}
BUDGET_S=${BUDGET_S:-470}            # the whole script, build included
OUT_DIR=${OUT:-benchmarks/results}
MODEL_DIR=${MODEL_DIR:-${TMPDIR:-/tmp}/hardaug-mbart-$SHAPE}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export HF_HOME=${HF_HOME:-$PWD/.cache/huggingface}
# CTranslate2 4.8.5's wheel has machine code up to sm_86 plus PTX: on sm_90 (H100/H200) the driver compiles
# its kernels at the first call. Keep what it compiles (project-local, at the cache's largest size), so only
# the first run on a node pays it; the warm-up step below pays it outside every timed row.
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.cache/nv} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_backtranslate.log"
exec > >(tee "$LOG") 2>&1
start=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - start))); }

if [ "$DEVICE" = cuda ]; then
  QUANT=int8_float16; HF_DTYPE=float16
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
else
  QUANT=int8; HF_DTYPE=float32
fi
"$PY" - <<'EOF'
import importlib, sys
missing = []
for name in ("torch", "transformers", "ctranslate2", "sentencepiece", "google.protobuf", "tokenizers", "polars", "numpy"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '')}")
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)} (pip install -e '.[gpu]' on a machine with an index)")
import ctranslate2, torch
print("CUDA devices: ctranslate2", ctranslate2.get_cuda_device_count(), "/ torch", torch.cuda.device_count())
EOF

echo "== build + convert the $SHAPE random mBART-50 ($(left) s left)"
timeout "$(( $(left) - 240 ))" "$PY" tools/make_random_model.py mbart "$SHAPE" "$MODEL_DIR" \
  --dtype "$HF_DTYPE" --device "$DEVICE" --quantization "$QUANT" --force
cp "$MODEL_DIR/random_model.json" "$OUT_DIR/random_model.json"

echo "== warm-up: the first CTranslate2 call on this GPU, JIT compilation included ($(left) s left)"
"$PY" -c "import polars as pl; pl.read_csv('engine/data/sample/train.csv', n_rows=8).write_parquet('$MODEL_DIR/warmup.parquet')"
warm0=$(date +%s)
timeout 240 "$PY" -m engine.cli backtranslate --input "$MODEL_DIR/warmup.parquet" --model "$MODEL_DIR/ct2" \
  --device "$DEVICE" --compute-type "$QUANT" --max-output-tokens 8 --out "$MODEL_DIR/warmup_out.parquet" --restart \
  >"$OUT_DIR/warmup.log" 2>&1 && echo "first call done in $(( $(date +%s) - warm0 )) s (load + JIT + 8 sentences)" \
  || echo "warm-up failed or timed out after $(( $(date +%s) - warm0 )) s: see $OUT_DIR/warmup.log"

COMMON=(--device "$DEVICE" --shape "$SHAPE" --model-dir "$MODEL_DIR" --quantization "$QUANT" --hf-dtype "$HF_DTYPE"
        --sentences "$SENTENCES" --out-tokens 32 --out "$OUT_DIR")
echo "== benchmark, beam 1 ($(left) s left)"
"$PY" benchmarks/bench_backtranslate.py "${COMMON[@]}" --name backtranslate_gpu --beam 1 \
  --rows engine:16384,dataloader,naive,engine:65536 --repeats 2 --naive-repeats 1 \
  --dataloader-sentences $(( SENTENCES < 2048 ? SENTENCES : 2048 )) --naive-sentences 16 \
  --row-timeout 150 --time-budget "$(( $(left) - 75 ))" || echo "(some rows failed or were skipped: see above)"

if [ "$(left)" -gt 60 ]; then
  echo "== engine with beam 4 ($(left) s left)"
  "$PY" benchmarks/bench_backtranslate.py "${COMMON[@]}" --name backtranslate_gpu_beam4 --beam 4 \
    --rows engine:16384 --repeats 1 --time-budget "$(( $(left) - 10 ))" || echo "(beam 4 row failed or was skipped)"
fi
echo "== done in $(( $(date +%s) - start )) s; results in $OUT_DIR"
