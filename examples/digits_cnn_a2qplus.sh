#!/usr/bin/env bash
# A small A2Q+ CNN on scikit-learn's 8x8 digits, end to end:
# float CNN -> A2Q+ (EP-init) at P=12 -> exact QONNX -> inspect -> Vitis HLS C++ -> bit-exact g++ co-simulation.
#
#   examples/digits_cnn_a2qplus.sh [WORKDIR]      (default: ./digits_cnn_a2qplus_out)
#
# The network (--arch cnn:c16,dw,p,r,a, see `a2qhls train --help`), on 1x8x8 images:
#   4-bit input quantizer -> 3x3 conv to 16 channels -> ReLU/quant -> depthwise 3x3 conv -> ReLU/quant
#   -> 2x2 max pool -> residual block x + (3x3 conv -> ReLU/quant -> 3x3 conv -> ReLU/quant shared with x)
#   -> ReLU/quant -> 2x2 average pool -> quant -> flatten -> fully connected to 10 classes.
# The residual's two addends share one quantizer (one scale), so the Add is exact on integers.
#
# Needs the front-end extras (torch, scikit-learn) and g++. About a minute on one CPU core.
# Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${1:-digits_cnn_a2qplus_out}
ARCH=cnn:c16,dw,p,r,a
mkdir -p "$OUT"

# 1. float CNN
$PY -m a2qhls train --dataset digits --arch "$ARCH" --quant float --epochs 30 --seed 0 --device cpu \
    --out "$OUT/float.pt"

# 2. A2Q+ from that checkpoint: 4-bit weights and activations, every layer's accumulator
#    (convolutions, depthwise, residual convolutions, classifier) constrained to 12 bits,
#    Euclidean-projection init; exports QONNX with the trained integers
$PY -m a2qhls train --dataset digits --arch "$ARCH" --from "$OUT/float.pt" --quant a2q+ --init ep \
    --weight-bits 4 --act-bits 4 --acc-bits 12 --epochs 30 --seed 0 --device cpu \
    --out "$OUT/digits_cnn_a2qplus_p12.onnx" --json > "$OUT/train.json"
$PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"float {r['float_test_accuracy']:.4f}  a2q+ P=12 {r['test_accuracy']:.4f}\")" "$OUT/train.json"

# 3. exact accumulator widths per layer (each constrained layer within its 12-bit target;
#    the residual Add and the average pool's window sum are sized too)
$PY -m a2qhls inspect "$OUT/digits_cnn_a2qplus_p12.onnx"

# 4. Vitis HLS project, then g++ co-simulation against the bit-accurate model and QONNX,
#    on random inputs and on each layer's adversarial (worst-case) inputs
$PY -m a2qhls build "$OUT/digits_cnn_a2qplus_p12.onnx" --out "$OUT/hls" --force
$PY -m a2qhls cosim "$OUT/hls" --random 256 --adversarial
