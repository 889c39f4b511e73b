#!/usr/bin/env bash
# Train the recognizer on one rented CUDA GPU within a fixed time, from a packed line cache.
#
#   registre pack-lines .gpu/lines.pkl --synthetic 5000     # here: real lines + pre-rendered synthetic ones
#   scripts/train_gpu.sh OUT MINUTES [CACHE]                 # there: writes OUT/*.pt, OUT/*.log
#
# Two runs share the GPU (a 3.5 M-parameter CRNN uses a sliver of it), each with its own
# augmentation workers: "ft" fine-tunes the shipped model, "wide" trains a wider one from
# scratch. Each exports only a model that beats its start on the seen-hand validation lines;
# pick between them with bench/recognizer_bench.py on the full-quality crops.
# With .gpu/line-pages.pkl (`registre pack-line-pages .gpu/line-pages.pkl`), a third run
# continues the line finder from models/registre-lines.pt: OUT/lines.onnx (+ .json, .pt),
# written every 500 steps, so what the time limit leaves is kept.
# First, GPU recognition throughput by batch size for the shipped model (bench/results).
set -uo pipefail
out=${1:?usage: train_gpu.sh OUT MINUTES [CACHE]}
minutes=${2:?usage: train_gpu.sh OUT MINUTES [CACHE]}
cache=${3:-.gpu/lines.pkl}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
runs=2
[[ -f .gpu/line-pages.pkl ]] && runs=3
workers=$(( ($(nproc) - 4) / runs ))
(( workers < 1 )) && workers=1

timeout 120 python3 bench/recognizer_bench.py --cache "$cache" --device cuda >"$out/bench-gpu.txt" 2>&1

common=(--device cuda --cache "$cache" --synthetic-from-cache --workers "$workers" --batch-size 32
    --cosine --budget-minutes "$minutes" --epochs 1000)
python3 -m flows.cli train "${common[@]}" --init-from models/registre-crnn.pt --lr 5e-4 \
    --run-dir /tmp/registre-ft --export "$out/ft.pt" >"$out/ft.log" 2>&1 &
python3 -m flows.cli train "${common[@]}" --lr 1.5e-3 --channels 48,96,128,160 \
    --run-dir /tmp/registre-wide --export "$out/wide.pt" >"$out/wide.log" 2>&1 &
if (( runs == 3 )); then
    init=()
    [[ -f models/registre-lines.pt ]] && init=(--init-from models/registre-lines.pt --lr 1e-3)
    timeout "$(( minutes * 60 ))" python3 -m flows.cli train-lines --pages .gpu/line-pages.pkl --device cuda --bf16 \
        --workers "$workers" --batch-size 16 --steps 8000 "${init[@]}" --out "$out/lines.onnx" >"$out/lines.log" 2>&1 &
fi
wait
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv >>"$out/bench-gpu.txt" 2>&1 || true
