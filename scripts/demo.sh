#!/usr/bin/env bash
# The main job on the bundled default model: a digits MLP trained and exported by
# Brevitas 0.13.4 with A2Q+ weights at a 12-bit target (examples/digits_a2qplus_p12.onnx):
# inspect its accumulator sizing, build the Vitis HLS project, co-simulate it with g++.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-examples/digits_a2qplus_p12.onnx}
OUT=${2:-hls/demo}
A2QHLS=.venv/bin/a2qhls
"$A2QHLS" inspect "$MODEL" || [ $? -eq 1 ]   # exit 1 only flags a layer above its target width
"$A2QHLS" build "$MODEL" --out "$OUT" --force
"$A2QHLS" cosim "$OUT" --random 1000 --adversarial
