#!/usr/bin/env bash
# The transformers OOF backend on one GPU (written for an H200), with kykim/bert-kor-base's shape and random
# weights (no downloads): about 4-6 minutes, within 8. Run from the repository root:
#
#   bash benchmarks/gpu_oof.sh                 # results in $OUT if set, else benchmarks/results/gpu/
#
# 1. training throughput, length-grouped dynamic padding vs shuffled dynamic vs fixed padding to 128,
#    bf16 autocast and fp32, 16,384 reviews, batch 128 (benchmarks/bench_oof.py -> oof.json, oof.md);
# 2. `hardaug oof --backend transformers` end to end: 2 folds x 1 epoch with --dynamics on ROWS reviews
#    (default 100,000) and a test set, bf16 (-> e2e_metrics.json, and the wall time and peak memory in
#    gpu_oof.log); the per-epoch rows/s and GPU memory in its history project a full 10-fold x 3-epoch run.
#
# Needs a Python with torch (CUDA), transformers, tokenizers, polars, scikit-learn, numpy and tqdm
# (`pip install -e .` plus torch); it checks them first. Data: $DATA (a folder with train.csv and test.csv),
# else ../shared/data/nsmc4 or shared/data/nsmc4, else the bundled 20,001-row sample.
# A dry run of the plumbing on a CPU machine: DEVICE=cpu SHAPE=tiny ROWS=600 BENCH_ROWS=256 bash benchmarks/gpu_oof.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results/gpu}
ROWS=${ROWS:-100000}
BENCH_ROWS=${BENCH_ROWS:-16384}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-base}
WORK=$(mktemp -d /tmp/gpu_oof.XXXXXX)
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_oof.log"
# the driver JIT cache, project-local and at its largest: kernels compiled from PTX on this GPU are kept
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.cache/nv} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DEVICE
export HF_HOME="$WORK/hf" MPLCONFIGDIR="$WORK/mpl" TOKENIZERS_PARALLELISM=false
exec > >(tee "$LOG") 2>&1
started=$(date +%s)
say() { echo "== $(($(date +%s) - started)) s: $*"; }

say "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'EOF'
import importlib, sys
missing = []
for name in ("torch", "transformers", "tokenizers", "polars", "sklearn", "numpy", "tqdm"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing Python packages: {missing}; install them (pip install -e . brings all but torch)")
import os, torch
if os.environ.get("DEVICE", "cuda") == "cuda":
    if not torch.cuda.is_available():
        sys.exit("torch sees no GPU")
    print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
EOF

DATA=${DATA:-}
for candidate in "$DATA" ../shared/data/nsmc4 shared/data/nsmc4 engine/data/sample; do
    if [ -n "$candidate" ] && [ -f "$candidate/train.csv" ] && [ -f "$candidate/test.csv" ]; then DATA=$candidate; break; fi
done
say "data: $DATA"

say "building a random BERT of shape $SHAPE (WordPiece trained on 20,000 reviews)"
"$PY" -m engine.random_models.bert "$SHAPE" "$WORK/bert" --texts "$DATA/train.csv" --rows 20000 --vocab-size 32000

say "1/2 training throughput: grouped vs shuffled vs fixed padding, bf16 and fp32"
"$PY" benchmarks/bench_oof.py --model "$WORK/bert" --shape "$SHAPE" --device "$DEVICE" --precision bf16 fp32 \
    --rows "$BENCH_ROWS" --batch-size 128 --max-length 128 --repeats 3 --data "$DATA/train.csv" --out "$OUT_DIR"

say "2/2 hardaug oof end to end: 2 folds x 1 epoch, --dynamics, $ROWS rows"
"$PY" - "$DATA/train.csv" "$WORK/train.csv" "$ROWS" <<'EOF'
import sys
import polars as pl
source, target, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
frame = pl.read_csv(source, infer_schema_length=None).filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
frame.sample(n=min(rows, frame.height), seed=0).write_csv(target)
EOF
"$PY" - "$DATA/test.csv" "$WORK/test.csv" <<'EOF'
import sys
import polars as pl
frame = pl.read_csv(sys.argv[1], infer_schema_length=None)
frame.filter(pl.col("text").str.strip_chars().str.len_chars() > 0).write_csv(sys.argv[2])
EOF
TIME=""
if [ -x /usr/bin/time ]; then TIME="/usr/bin/time -v"; fi
$TIME "$PY" -m engine.cli oof --backend transformers --model "$WORK/bert" --device "$DEVICE" --precision bf16 \
    --folds 2 --epochs 1 --dynamics --train "$WORK/train.csv" --test "$WORK/test.csv" --out-dir "$WORK/oof"
cp "$WORK/oof/metrics.json" "$OUT_DIR/e2e_metrics.json"
"$PY" - "$OUT_DIR/e2e_metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
for fold in m["folds"]:
    for e in fold["history"]:
        print(f"fold {fold['fold']} epoch {e['epoch']}: {e['train_samples_per_s']:,.0f} train rows/s, epoch with "
              f"eval + dynamics {e['seconds']:.1f} s, peak GPU memory {e.get('max_gpu_memory_gib', '?')} GiB")
print(f"whole run {m['seconds']:.1f} s")
EOF
rm -rf "$WORK"
say "done; results in $OUT_DIR"
