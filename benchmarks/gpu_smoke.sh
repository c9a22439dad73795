#!/usr/bin/env bash
# Every engine once on a GPU, in one command (under 5 minutes on one H200): run this first on a new node,
# before the benchmarks.
#
#   benchmarks/gpu_smoke.sh                 # on the GPU node
#   DEVICE=cpu benchmarks/gpu_smoke.sh      # the same steps on a CPU machine (dry run of the script)
#
# 1. `hardaug doctor --gpu` (versions, CUDA devices, CTranslate2's cuBLAS 12, vLLM platform, caches);
# 2. builds tiny random-weight models as the tests do (BERT, mBART-50 -> CTranslate2, Qwen2 chat,
#    sentence-transformers; no downloads) and 64 sources / 300 training rows from the bundled sample;
# 3. runs each engine through the `hardaug` CLI, as a user would, and prints one line per engine:
#      oof-transformers   2 folds on cuda
#      backtranslate      CTranslate2 float16, then int8_float16
#      paraphrase         vLLM with guided JSON
#      filter             the embedding filter (sentence-transformers on cuda)
# Random weights give gibberish: the lines say whether each engine runs on the device and writes its
# rows, nothing about quality. Exit code 1 if any engine (or the doctor) fails; each step's log is kept.
#
# Needs: the gpu extra (pip install -e '.[gpu]' -c constraints/gpu.txt). Writes $OUT (default
# benchmarks/results/gpu_smoke): gpu_smoke.log, doctor.json, one log per step, and the work folder.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-150}
OUT_DIR=${OUT:-benchmarks/results/gpu_smoke}
WORK="$OUT_DIR/work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME=${HF_HOME:-$PWD/.cache/huggingface}
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/torchinductor}
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
step build-models "print('bert, mbart (ct2), qwen2, sbert')" bash -c "
  set -e
  '$PY' -m engine.random_models.bert tiny '$WORK/bert' --texts engine/data/sample/train.csv --rows 3000
  '$PY' tools/make_random_model.py mbart tiny '$WORK/mbart' --quantization float16 --force
  '$PY' -m engine.random_models.qwen2 tiny '$WORK/qwen2'
  '$PY' -m engine.random_models.sbert tiny '$WORK/sbert'
  '$PY' -c \"import polars as pl; t = pl.read_csv('engine/data/sample/train.csv', n_rows=300); \
t.write_csv('$WORK/train.csv'); t.head(64).write_parquet('$WORK/sources.parquet')\"
"

echo "== engines"
step oof-transformers "$(rows "$WORK/oof/oof.parquet")" \
  "${HARDAUG[@]}" oof --backend transformers --model "$WORK/bert" --train "$WORK/train.csv" --folds 2 \
  --epochs 1 --max-length 64 --device "$DEVICE" --out-dir "$WORK/oof" --restart
for quant in "${QUANTS[@]}"; do
  step "backtranslate-ct2-$quant" "$(rows "$WORK/bt_$quant.parquet")" \
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
step paraphrase-vllm-guided "$guided_check" \
  "${HARDAUG[@]}" paraphrase --input "$WORK/sources.parquet" --model "$WORK/qwen2" --guided --max-tokens 32 \
  --max-model-len 512 "${VLLM[@]}" --out "$WORK/paraphrase.parquet" --restart
step filter-embedding "$(rows "$WORK/kept.parquet")" \
  "${HARDAUG[@]}" filter --input "$WORK/bt_${QUANTS[0]}.parquet" --train "$WORK/train.csv" \
  --embed-model "$WORK/sbert" --device "$DEVICE" --no-label-check --out "$WORK/kept.parquet"

echo "== done in $(($(date +%s) - start)) s: $([ "$failed" -eq 0 ] && echo 'every engine ran' || echo 'FAILURES above'); logs in $OUT_DIR"
exit "$failed"
