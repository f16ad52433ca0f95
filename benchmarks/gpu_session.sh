#!/usr/bin/env bash
# Every GPU measurement of issues 4 and 5 in one device call (the device tool's `run`):
#
#     bash benchmarks/gpu_session.sh
#
# It needs no install: the device image has torch, transformers, peft and triton, and zoo runs from
# this checkout through PYTHONPATH. Results land in $OUT (default runs/gpu): gpu_check.json (Triton
# stream against the C kernel, step/forwards on a 1B-class bf16 Llama, peak memory, sweep bandwidth),
# the gpu bench preset's step_cost.json and summary.md, and the GPU tests' log (8 files, the most a
# device call brings back). Copy them into docs/. `TINY=1 TRITON_INTERPRET=1 bash ...` checks the
# script's logic on a CPU (a tiny model; the gpu preset then stops at its no-CUDA error).
set -uo pipefail
OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BENCH="$(mktemp -d)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } | tee "$OUT/device.txt"
python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -30 > "$OUT/test_gpu.log"; echo "tests/test_gpu.py: $(tail -1 "$OUT/test_gpu.log")"
python3 benchmarks/gpu_check.py --out "$OUT" ${TINY:+--tiny} > "$OUT/gpu_check.log" 2>&1; echo "gpu_check: exit $?"
python3 -m zoo bench gpu --out "$BENCH" --quiet > "$OUT/bench.log" 2>&1; echo "bench gpu: exit $?"
cp "$BENCH/summary.md" "$BENCH/step_cost.json" "$BENCH/step_cost.png" "$OUT/" 2>/dev/null
tail -n 5 "$OUT/gpu_check.log" "$OUT/bench.log"
