#!/usr/bin/env bash
# `hardaug compare --backend transformers` on GPUs, with kykim/bert-kor-base's shape and random weights (no
# downloads): 2 arms (baseline, targeted) x 2 seeds = 4 cells on ROWS training rows (default 20,000), 1 epoch
# each, bf16; cells per hour on one GPU, then on every visible GPU with --only-cells i/N (one process per GPU,
# CUDA_VISIBLE_DEVICES=i) and the assembling run. Run from the repository root:
#
#   bash benchmarks/gpu_compare.sh               # results in $OUT if set, else benchmarks/results/gpu/
#
# Data: the bundled 20,001-row sample (engine/data/sample), or $DATA (a folder with train.csv and test.csv);
# the targeted arm adds 2,000 generated augmentations (a review + a suffix). Writes gpu_compare.json (cells,
# seconds, cells per hour per setup) and gpu_compare.log. Both runs must give the same results.json (bf16 on
# a GPU may differ in the last digits between GPUs; the script reports whether they are equal).
# A dry run of the plumbing on a CPU machine: DEVICE=cpu SHAPE=tiny ROWS=300 bash benchmarks/gpu_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results/gpu}
ROWS=${ROWS:-20000}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-base}
EPOCHS=${EPOCHS:-1}
DATA=${DATA:-engine/data/sample}
WORK=$(mktemp -d /tmp/gpu_compare.XXXXXX)
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_compare.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_HOME="$WORK/hf" MPLCONFIGDIR="$WORK/mpl" TOKENIZERS_PARALLELISM=false
exec > >(tee "$LOG") 2>&1
started=$(date +%s)
say() { echo "== $(($(date +%s) - started)) s: $*"; }

if [ "$DEVICE" = cuda ]; then
    GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
    PRECISION=bf16
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
else
    GPUS=2  # two CPU processes: the plumbing of --only-cells
    PRECISION=fp32
fi
[ "$GPUS" -ge 1 ] || { echo "no GPU visible"; exit 1; }
say "data: $DATA, $ROWS rows; $GPUS device(s) for --only-cells"

"$PY" -m engine.random_models.bert "$SHAPE" "$WORK/bert" --texts "$DATA/train.csv" --rows 20000 --vocab-size 32000
"$PY" - "$DATA" "$WORK" "$ROWS" <<'PYEOF'
import sys
import polars as pl
data, work, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
usable = pl.col("text").is_not_null() & (pl.col("text").str.strip_chars().str.len_chars() > 0)
train = pl.read_csv(f"{data}/train.csv", infer_schema_length=None).filter(usable)
train.sample(n=min(rows, train.height), seed=0).write_csv(f"{work}/train.csv")
pl.read_csv(f"{data}/test.csv", infer_schema_length=None).filter(usable).head(5000).write_csv(f"{work}/test.csv")
extra = train.sample(n=min(2000, train.height), seed=1)
extra.select("id", pl.col("text") + " 정말", "label").with_columns(method=pl.lit("eda")).write_parquet(
    f"{work}/targeted.parquet"
)
PYEOF

ARGS=(compare --train "$WORK/train.csv" --test "$WORK/test.csv" --targeted "$WORK/targeted.parquet" --seeds 0,1
      --bootstrap 200 --backend transformers --model "$WORK/bert" --epochs "$EPOCHS" --warmup-steps 100
      --train-batch-size 128 --eval-batch-size 256 --max-length 128 --precision "$PRECISION" --device "$DEVICE")

say "1/2 one process, one device: 4 cells"
t0=$(date +%s.%N)
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} "$PY" -m engine.cli "${ARGS[@]}" --out-dir "$WORK/one" > "$WORK/one.txt"
t1=$(date +%s.%N)

say "2/2 $GPUS processes with --only-cells i/$GPUS, then the assembling run"
pids=()
for ((i = 0; i < GPUS; i++)); do
    if [ "$DEVICE" = cuda ]; then export CUDA_VISIBLE_DEVICES=$i; fi
    "$PY" -m engine.cli "${ARGS[@]}" --out-dir "$WORK/all" --only-cells "$i/$GPUS" > "$WORK/only_$i.txt" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
unset CUDA_VISIBLE_DEVICES
"$PY" -m engine.cli "${ARGS[@]}" --out-dir "$WORK/all" > "$WORK/all.txt"
t2=$(date +%s.%N)

"$PY" - "$WORK" "$t0" "$t1" "$t2" "$GPUS" "$ROWS" "$SHAPE" "$DEVICE" "$EPOCHS" "$OUT_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
work, t0, t1, t2, gpus, rows, shape, device, epochs, out = sys.argv[1:]
work, t0, t1, t2 = Path(work), float(t0), float(t1), float(t2)
one, every = t1 - t0, t2 - t1
same = (work / "one" / "results.json").read_bytes() == (work / "all" / "results.json").read_bytes()
manifest = json.loads((work / "one" / ".job" / "manifest.json").read_text())
per_cell = [round(sum(h["seconds"] for h in p["meta"]["history"]), 1) for p in manifest["parts"]]
result = {
    "shape": shape, "device": device, "rows": int(rows), "epochs": int(epochs), "cells": 4,
    "one_device": {"seconds": round(one, 1), "cells_per_hour": round(4 * 3600 / one, 1), "train_seconds_per_cell": per_cell},
    "only_cells": {"processes": int(gpus), "seconds": round(every, 1), "cells_per_hour": round(4 * 3600 / every, 1)},
    "same_results": same,
}
(Path(out) / "gpu_compare.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PYEOF
say "done"
rm -rf "$WORK"
