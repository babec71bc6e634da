#!/usr/bin/env bash
# One shot for whoever has a CUDA GPU for a few minutes: every CUDA benchmark at the README targets'
# sizes (1024 px, config-f) and every speed option as its own row, into ONE markdown table.
#
#   bench/gpu.sh OUT_DIR            # needs CUDA; fails at once (exit 2) without it
#   bench/gpu.sh --dry-run OUT_DIR  # the same rows on CPU at tiny sizes: checks the script itself
#   ROWS='LSAP_O|PTI' bench/gpu.sh OUT_DIR   # only the rows whose name matches this regex
#
# Rows: generator (fwd, fwd+bwd; fp32, TF32, bf16 autocast, torch.compile), encoder inference (plain
# vs fused, e4e/pSp IR-SE50 256 px), encoder training (fp32, bf16 autocast = system.autocast),
# LSAP_O steps (1024 px; fp32 at batches 1/4/8, then batch 8 with inversion.tf32, .autocast=bf16,
# .cuda_graphs, all three, .compile=inductor; "LSAP_O auto batch": the footprint that
# data.batch_size=auto measures at 256 and 1024 px and the batch it plans on this card), PTI
# (1024 px; fp32, refinement.autocast=bf16 + tf32),
# eval (memory). Each benchmark runs under its own time limit (compile rows longer: the compiler
# runs in them); a failed or timed-out row says so in the table and the rest still run. Raw
# outputs stay in OUT_DIR/raw/. All rows take about 8-12 minutes on one H100 (compile rows most).
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT="${1:?usage: bench/gpu.sh [--dry-run] OUT_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"

if [[ $DRY == 0 ]]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu.sh: no CUDA device visible to torch (use --dry-run to check the script on CPU)" >&2
    exit 2
  fi
fi
mkdir -p "$OUT/raw"
TABLE="$OUT/gpu_benchmarks.md"

if [[ $DRY == 1 ]]; then
  DEV=cpu
  GEN=(--device cpu --resolution 32 --channel-multiplier 1 --batch 2 --repeats 1)
  ENC=(--device cpu --inference-only --infer-batches 1 --repeats 1)
  ENC_TRAIN=(--device cpu --preset tiny --batch 2 --infer-batch 2 --repeats 1)
  INV=(--device cpu --sizes 32 --batches 1 --steps 2 --anchor-samples 200)
  INV8=(--device cpu --sizes 32 --batches 2 --steps 2 --anchor-samples 200)
  FOOT=(--device cpu --sizes 32 --footprint --anchor-samples 200)
  PTI=(--device cpu --resolutions 32 --timed-steps 1)
  EVAL=(--images 4 --batch 4)
  COMPILER=aot_eager   # the real compiler takes minutes on a CPU; the dry run checks the wiring
  LIMIT=600; LIMIT_COMPILE=900
else
  DEV=cuda
  GEN=(--device cuda --resolution 1024 --batch 8 --repeats 5)
  ENC=(--device cuda --inference-only --infer-batches 1,64,256 --repeats 5)
  ENC_TRAIN=(--device cuda --preset ffhq1024 --batch 8 --infer-batch 64 --repeats 5)
  INV=(--device cuda --sizes 1024 --batches 1,4,8 --steps 20)
  INV8=(--device cuda --sizes 1024 --batches 8 --steps 20)
  FOOT=(--device cuda --sizes 256,1024 --footprint)
  PTI=(--device cuda --resolutions 1024 --timed-steps 10)
  EVAL=(--images 100 --batch 32)
  COMPILER=inductor
  LIMIT=60; LIMIT_COMPILE=180
fi

{
  echo "# bench/gpu.sh, $(date -u +%Y-%m-%dT%H:%MZ), $( [[ $DRY == 1 ]] && echo 'DRY RUN on CPU (tiny sizes)' || "$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
  echo
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)'), commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "| benchmark | setting | result (last lines of its output) | status |"
  echo "|---|---|---|---|"
} > "$TABLE"

row() {  # row NAME SETTING -- command...   (LIMIT: seconds for this row)
  local name="$1" setting="$2"; shift 3
  if [[ -n "${ROWS:-}" ]] && ! [[ "$name" =~ $ROWS ]]; then return; fi
  local raw="$OUT/raw/${name// /_}.txt" t0 status
  t0=$(date +%s)
  timeout "$ROW_LIMIT" "$@" > "$raw" 2>&1
  local rc=$?
  if [[ $rc == 0 ]]; then status="ok, $(( $(date +%s) - t0 )) s";
  elif [[ $rc == 124 ]]; then status="TIMED OUT after $ROW_LIMIT s";
  else status="FAILED (exit $rc)"; fi
  local result
  result=$(grep -v '^\s*$' "$raw" | grep -v -i 'warn' | tail -n 4 | sed 's/|/\\|/g' | tr -s ' ' | paste -sd '~' | sed 's/~/<br>/g')
  echo "| $name | $setting | $result | $status |" >> "$TABLE"
  echo "bench/gpu.sh: $name: $status"
}

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
G="$HERE/generator.py"; E="$HERE/encoder.py"; I="$HERE/inversion.py"; P="$HERE/refinement.py"
ROW_LIMIT=$LIMIT
row "generator fp32" "${GEN[*]}" -- "$PY" "$G" "${GEN[@]}"
row "generator tf32" "${GEN[*]} --tf32" -- "$PY" "$G" "${GEN[@]}" --tf32
row "generator bf16 autocast" "${GEN[*]} --amp" -- "$PY" "$G" "${GEN[@]}" --amp
row "encoder inference" "${ENC[*]}" -- "$PY" "$E" "${ENC[@]}"
row "encoder training fp32" "${ENC_TRAIN[*]}" -- "$PY" "$E" "${ENC_TRAIN[@]}"
row "encoder training bf16" "${ENC_TRAIN[*]} --amp" -- "$PY" "$E" "${ENC_TRAIN[@]}" --amp
row "LSAP_O fp32" "${INV[*]}" -- "$PY" "$I" "${INV[@]}"
row "LSAP_O auto batch" "${FOOT[*]}" -- "$PY" "$I" "${FOOT[@]}"
row "LSAP_O tf32" "${INV8[*]} --tf32" -- "$PY" "$I" "${INV8[@]}" --tf32
row "LSAP_O bf16" "${INV8[*]} --autocast bf16" -- "$PY" "$I" "${INV8[@]}" --autocast bf16
row "LSAP_O cuda graphs" "${INV8[*]} --cuda-graphs" -- "$PY" "$I" "${INV8[@]}" --cuda-graphs
row "LSAP_O graphs+bf16+tf32" "${INV8[*]} --cuda-graphs --autocast bf16 --tf32" -- \
  "$PY" "$I" "${INV8[@]}" --cuda-graphs --autocast bf16 --tf32
row "PTI fp32" "${PTI[*]}" -- "$PY" "$P" "${PTI[@]}"
row "PTI bf16+tf32" "${PTI[*]} --autocast bf16 --tf32" -- "$PY" "$P" "${PTI[@]}" --autocast bf16 --tf32
row "eval memory" "${EVAL[*]}" -- "$PY" "$HERE/eval_memory.py" "${EVAL[@]}"
ROW_LIMIT=$LIMIT_COMPILE   # last: the compiler's minutes do not hold up the other rows
row "generator compile" "${GEN[*]} --compile $COMPILER" -- "$PY" "$G" "${GEN[@]}" --compile "$COMPILER"
row "LSAP_O compile" "${INV8[*]} --compile $COMPILER" -- "$PY" "$I" "${INV8[@]}" --compile "$COMPILER"
echo "bench/gpu.sh: table written to $TABLE"
