#!/usr/bin/env bash
# The A2Q+ paper's study on MNIST-5k: test accuracy vs accumulator width for A2Q and A2Q+
# (each with EP-init and with A2Q's initialization) and an unconstrained baseline.
#
#   examples/paper_sweep.sh [OUTDIR]      (default: ./paper_sweep_out)
#
# MLP 784-64-64-10, 4-bit weights and activations, every layer's accumulator constrained
# to P = 9..12 bits, 20 epochs of quantization-aware training from one float checkpoint
# per seed (30 float epochs), 3 seeds. Runs on an embedded local Ray instance (one CPU per
# run); set RAY_ADDRESS to use a cluster, SEEDS to change the number of seeds. Runs are
# cached in OUTDIR/runs: run it again to extend or to resume after an interruption.
# Writes OUTDIR/results.csv, results.json and the plots quality_vs_acc_bits.png,
# quality_vs_cost.png, layer_widths.png.
# Needs a2qhls with its torch and sweep extras (pip install 'a2qhls[torch,sweep]').
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${1:-paper_sweep_out}
$PY -m a2qhls sweep --dataset mnist --arch 64,64 --quant baseline,a2q,a2q+ --init ep,default \
    --weight-bits 4 --act-bits 4 --acc-bits 9:12 --constrain all \
    --epochs 20 --float-epochs 30 --seeds "${SEEDS:-3}" --device cpu --out "$OUT"
