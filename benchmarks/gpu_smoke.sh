#!/usr/bin/env bash
# Every engine once on a GPU, in one command (under 5 minutes on one H200): run this first on a new node,
# before the benchmarks. No downloads: it works on an air-gapped node.
#
#   benchmarks/gpu_smoke.sh                 # on the GPU node (PYTHON=/path/to/python3 to choose it)
#   DEVICE=cpu benchmarks/gpu_smoke.sh      # the same steps on a CPU machine (dry run of the script)
#
# 1. `hardaug doctor` (--gpu on cuda: versions, CUDA devices, driver, CTranslate2's cuBLAS 12, vLLM, caches);
# 2. builds tiny random-weight models as the tests do (BERT, Qwen2 chat, SBERT, mBART-50 -> CTranslate2; no
#    downloads) and 64 sources / 300 training rows from the bundled sample;
# 3. runs each engine through the `hardaug` CLI, as a user would, one line per step:
#      oof-transformers         2 folds                               torch, transformers
#      compare-transformers     baseline arm on the transformer       torch, transformers (once compare has --backend)
#      paraphrase-transformers  the fallback backend on the Qwen2     torch, transformers
#      filter-embedding         the embedding filter on the SBERT     sentence-transformers
#      backtranslate-ct2-*      CTranslate2 float16, int8_float16     ctranslate2
#      paraphrase-vllm-guided   vLLM with guided JSON                 vllm
#    A step whose packages are missing prints `skipped: <package> not installed` and does not fail the run,
#    so a node with only torch, transformers, polars and hardaug's core (README, "A torch-only node") runs
#    the torch steps.
# Random weights give gibberish: the lines say whether each engine runs on the device and writes its
# rows, nothing about quality. Exit code 1 if a step that ran (or the doctor) fails; each step's log is kept.
#
# Writes $OUT (default benchmarks/results/gpu_smoke): gpu_smoke.log, doctor.json, one log per step, work/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PY=${PYTHON:-python3}  # a bare system has python3, not always python
DEVICE=${DEVICE:-cuda}
# 240 s a step: CTranslate2's wheel has no sm_90 machine code, so its first call on an H100/H200 JIT-compiles
# its kernels (kept in CUDA_CACHE_PATH for the next run), and vLLM's first start compiles its graphs.
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-240}
OUT_DIR=${OUT:-benchmarks/results/gpu_smoke}
WORK="$OUT_DIR/work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME=${HF_HOME:-$PWD/.cache/huggingface}
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/torchinductor}
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.cache/nv} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
mkdir -p "$WORK"
exec > >(tee "$OUT_DIR/gpu_smoke.log") 2>&1
start=$(date +%s)
failed=0
HARDAUG=("$PY" -m engine.cli)

# One line per step: status, name, seconds, what it wrote; the step's output goes to its own log.
step() {
  local name=$1 check=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  timeout "$STEP_TIMEOUT_S" "$@" >"$OUT_DIR/$name.log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ] && result=$("$PY" -c "$check" 2>>"$OUT_DIR/$name.log"); then
    printf 'OK    %-28s %4d s  %s\n' "$name" "$took" "$result"
  else
    failed=1
    [ "$rc" -eq 124 ] && result="timed out after ${STEP_TIMEOUT_S} s" || result="exit $rc"
    printf 'FAIL  %-28s %4d s  %s; last lines of %s:\n' "$name" "$took" "$result" "$OUT_DIR/$name.log"
    tail -n 5 "$OUT_DIR/$name.log" | sed 's/^/        /'
  fi
}
# The first of the Python modules a step needs that is not installed (nothing printed when all are).
missing() { "$PY" -c "import importlib.util as u, sys; print(next((m for m in sys.argv[1:] if u.find_spec(m) is None), ''))" "$@"; }
# step_if "module module ..." NAME CHECK COMMAND...: the step, or its skipped line naming the package
step_if() {
  local need absent
  need=$1
  shift
  # shellcheck disable=SC2086  # the module list splits on purpose
  absent=$(missing $need)
  if [ -n "$absent" ]; then
    printf 'SKIP  %-28s        skipped: %s not installed\n' "$1" "$(echo "$absent" | tr _ -)"
  else
    step "$@"
  fi
}
rows() { echo "import polars as pl; print(f'{pl.read_parquet(\"$1\").height} rows in $1')"; }

echo "== hardaug GPU smoke run on $DEVICE ($(date -u +%FT%TZ))"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  DOCTOR=(--gpu); QUANTS=(float16 int8_float16); VLLM=(--gpu-memory-utilization 0.3)
else
  DOCTOR=(); QUANTS=(float32 int8); VLLM=(--kv-cache-gib 1 --enforce-eager)
fi
"${HARDAUG[@]}" doctor "${DOCTOR[@]}" --json >"$OUT_DIR/doctor.json"
doctor_rc=$?
"$PY" - "$OUT_DIR/doctor.json" <<'EOF' || failed=1
import json, sys
report = json.load(open(sys.argv[1]))
for c in report["checks"]:
    if c["status"] != "OK" or c["name"] in ("torch cuda", "gpu 0", "ctranslate2 cuda", "cublas 12", "vllm"):
        print(f"  {c['status']:<5} {c['name']:<17} {c['detail']}" + (f"\n  {'':<23} fix: {c['fix']}" if c["fix"] else ""))
sys.exit(0 if report["ok"] else 1)
EOF
[ "$doctor_rc" -eq 0 ] || { echo "FAIL  doctor: fix the FAIL lines above first"; failed=1; }

echo "== models and data (tiny, random weights)"
# The filter's input: each source with its first word dropped, in the augmented schema, so the filter step
# needs no other engine and always has rows to judge.
step data "print('300 training rows, 64 sources and their 64 edits, 100 test rows')" "$PY" -c "import polars as pl
t = pl.read_csv('engine/data/sample/train.csv', n_rows=300)
t.write_csv('$WORK/train.csv'); t.head(64).write_parquet('$WORK/sources.parquet')
pl.read_csv('engine/data/sample/test.csv', n_rows=100).write_csv('$WORK/test.csv')
t.head(64).select(id='edit-' + pl.col('id').cast(pl.String), source_id=pl.col('id').cast(pl.String),
    text=pl.col('text').str.replace(r'^[^ ]+ ', ''), label=pl.col('label').cast(pl.Int64), method=pl.lit('smoke'),
    model=pl.lit(''), params=pl.lit('{}'), variant=pl.lit('0'), round=pl.lit(1, pl.Int64),
    hardness=pl.lit(None, pl.Float64), extra=pl.lit('{}')).write_parquet('$WORK/augmented.parquet')"
step_if "torch transformers tokenizers" build-bert "print('$WORK/bert')" \
  "$PY" -m engine.random_models.bert tiny "$WORK/bert" --texts engine/data/sample/train.csv --rows 3000
step_if "torch transformers tokenizers" build-qwen2 "print('$WORK/qwen2')" \
  "$PY" -m engine.random_models.qwen2 tiny "$WORK/qwen2"
step_if "sentence_transformers" build-sbert "print('$WORK/sbert')" "$PY" -m engine.random_models.sbert tiny "$WORK/sbert"
step_if "ctranslate2 sentencepiece" build-mbart-ct2 "print('$WORK/mbart/ct2')" \
  "$PY" tools/make_random_model.py mbart tiny "$WORK/mbart" --quantization float16 --force

echo "== engines"
step_if "torch transformers" oof-transformers "$(rows "$WORK/oof/oof.parquet")" \
  "${HARDAUG[@]}" oof --backend transformers --model "$WORK/bert" --train "$WORK/train.csv" --folds 2 \
  --epochs 1 --max-length 64 --device "$DEVICE" --out-dir "$WORK/oof" --restart
# compare on the transformer: baseline and the smoke edits as the targeted arm, one seed, one epoch (2 cells);
# an older hardaug without compare --backend says so instead of failing.
if "${HARDAUG[@]}" compare --help 2>/dev/null | grep -q -- "--backend"; then
  step_if "torch transformers" compare-transformers "print('$WORK/compare/results.json')" \
    "${HARDAUG[@]}" compare --backend transformers --model "$WORK/bert" --train "$WORK/train.csv" \
    --test "$WORK/test.csv" --targeted "$WORK/augmented.parquet" --seeds 0 --epochs 1 --max-length 64 \
    --bootstrap 100 --device "$DEVICE" --out-dir "$WORK/compare"
else
  printf 'SKIP  %-28s        skipped: hardaug compare has no --backend yet (the transformer compare)\n' \
    compare-transformers
fi
step_if "torch transformers" paraphrase-transformers "$(rows "$WORK/paraphrase_hf.parquet")" \
  "${HARDAUG[@]}" paraphrase --backend transformers --input "$WORK/sources.parquet" --model "$WORK/qwen2" \
  --max-tokens 32 --device "$DEVICE" --out "$WORK/paraphrase_hf.parquet" --restart
step_if "sentence_transformers" filter-embedding "$(rows "$WORK/kept.parquet")" \
  "${HARDAUG[@]}" filter --input "$WORK/augmented.parquet" --train "$WORK/train.csv" --embed-model "$WORK/sbert" \
  --device "$DEVICE" --no-label-check --out "$WORK/kept.parquet"
for quant in "${QUANTS[@]}"; do
  step_if "ctranslate2" "backtranslate-ct2-$quant" "$(rows "$WORK/bt_$quant.parquet")" \
    "${HARDAUG[@]}" backtranslate --input "$WORK/sources.parquet" --model "$WORK/mbart/ct2" --device "$DEVICE" \
    --compute-type "$quant" --max-output-tokens 32 --out "$WORK/bt_$quant.parquet" --restart
done
# random weights rarely write a usable rewrite: the line gives candidates and kept, and fails if vLLM fell
# back to free text (no structured-output backend on this platform)
guided_check="import json, sys
log = open('$OUT_DIR/paraphrase-vllm-guided.log').read()
drops = json.load(open('$WORK/paraphrase.drops.json'))
if 'is not available here' in log:
    sys.exit('guided JSON (vLLM structured output) is not available: see the log')
print(f\"{drops['generated']} candidates, {drops['kept']} kept, guided JSON on\")"
step_if "vllm" paraphrase-vllm-guided "$guided_check" \
  "${HARDAUG[@]}" paraphrase --input "$WORK/sources.parquet" --model "$WORK/qwen2" --guided --max-tokens 32 \
  --max-model-len 512 "${VLLM[@]}" --out "$WORK/paraphrase.parquet" --restart

echo "== done in $(($(date +%s) - start)) s: $([ "$failed" -eq 0 ] && echo 'every step that ran passed' || echo 'FAILURES above'); logs in $OUT_DIR"
exit "$failed"
