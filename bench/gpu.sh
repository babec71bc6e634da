#!/usr/bin/env bash
# One shot for whoever has a CUDA GPU for a few minutes: every CUDA benchmark at the README targets'
# sizes (1024 px, config-f), in under 8 minutes on one H100, into ONE markdown table.
#
#   bench/gpu.sh OUT_DIR            # needs CUDA; fails at once (exit 2) without it
#   bench/gpu.sh --dry-run OUT_DIR  # the same rows on CPU at tiny sizes: checks the script itself
#
# Rows: generator (fwd, fwd+bwd; fp32, TF32, bf16 autocast), encoder inference (plain vs fused,
# e4e/pSp IR-SE50 256 px), LSAP_O steps (1024 px, batches 1/4/8), PTI (1024 px), eval (memory).
# Each benchmark runs under its own time limit; a failed or timed-out row says so in the table and
# the rest still run. Raw outputs stay in OUT_DIR/raw/.
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
  INV=(--device cpu --sizes 32 --batches 1 --steps 2 --anchor-samples 200)
  PTI=(--device cpu --resolutions 32 --timed-steps 1)
  EVAL=(--images 4 --batch 4)
  LIMIT=600
else
  DEV=cuda
  GEN=(--device cuda --resolution 1024 --batch 8 --repeats 5)
  ENC=(--device cuda --inference-only --infer-batches 1,64,256 --repeats 5)
  INV=(--device cuda --sizes 1024 --batches 1,4,8 --steps 20)
  PTI=(--device cuda --resolutions 1024 --timed-steps 10)
  EVAL=(--images 100 --batch 32)
  LIMIT=65   # 7 rows x 65 s < 8 minutes, the whole run
fi

{
  echo "# bench/gpu.sh, $(date -u +%Y-%m-%dT%H:%MZ), $( [[ $DRY == 1 ]] && echo 'DRY RUN on CPU (tiny sizes)' || "$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
  echo
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)'), commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "| benchmark | setting | result (last lines of its output) | status |"
  echo "|---|---|---|---|"
} > "$TABLE"

row() {  # row NAME SETTING -- command...
  local name="$1" setting="$2"; shift 3
  local raw="$OUT/raw/${name// /_}.txt" t0 status
  t0=$(date +%s)
  timeout "$LIMIT" "$@" > "$raw" 2>&1
  local rc=$?
  if [[ $rc == 0 ]]; then status="ok, $(( $(date +%s) - t0 )) s";
  elif [[ $rc == 124 ]]; then status="TIMED OUT after $LIMIT s";
  else status="FAILED (exit $rc)"; fi
  local result
  result=$(grep -v '^\s*$' "$raw" | tail -n 4 | sed 's/|/\\|/g' | tr -s ' ' | paste -sd '~' | sed 's/~/<br>/g')
  echo "| $name | $setting | $result | $status |" >> "$TABLE"
  echo "bench/gpu.sh: $name: $status"
}

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
row "generator fp32" "${GEN[*]}" -- "$PY" "$HERE/generator.py" "${GEN[@]}"
row "generator tf32" "${GEN[*]} --tf32" -- "$PY" "$HERE/generator.py" "${GEN[@]}" --tf32
row "generator bf16 autocast" "${GEN[*]} --amp" -- "$PY" "$HERE/generator.py" "${GEN[@]}" --amp
row "encoder inference" "${ENC[*]}" -- "$PY" "$HERE/encoder.py" "${ENC[@]}"
row "LSAP_O" "${INV[*]}" -- "$PY" "$HERE/inversion.py" "${INV[@]}"
row "PTI" "${PTI[*]}" -- "$PY" "$HERE/refinement.py" "${PTI[@]}"
row "eval memory" "${EVAL[*]}" -- "$PY" "$HERE/eval_memory.py" "${EVAL[@]}"
echo "bench/gpu.sh: table written to $TABLE"
