#!/usr/bin/env bash
# ESPCN x2 super-resolution: float -> A2Q and A2Q+ (EP-init) at P=13 -> exact QONNX -> accumulator widths.
#
#   examples/espcn_a2qplus.sh [WORKDIR]      (default: ./espcn_a2qplus_out)
#
# The defaults of `a2qhls train --task superres` are the README's measured recipe (ESPCN 32-32-16,
# 8-bit first/last layers and input, 4-bit weights and activations inside at P=13, float then QAT,
# Adam lr 1e-3, batches of 16 patches). CPU only, one thread each; see the README for the time taken.
# Needs the front-end extras (torch, tqdm, scikit-image, scikit-learn). PYTHON picks the interpreter.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${1:-espcn_a2qplus_out}
mkdir -p "$OUT"

# 1. float ESPCN on random patches of the luminance of the photographs bundled with
#    scikit-image / scikit-learn; PSNR on held-out images against bicubic upsampling
$PY -m a2qhls train --task superres --quant float --out "$OUT/float.pt" --json > "$OUT/float.json"

# 2. A2Q and A2Q+ from that checkpoint (EP-init), hidden accumulators constrained to 13 bits
for q in a2q a2q+; do
    $PY -m a2qhls train --task superres --from "$OUT/float.pt" --quant "$q" --out "$OUT/espcn_$q.onnx" \
        --json > "$OUT/$q.json"
done
$PY - "$OUT" <<'PYEOF'
import json, sys
d = sys.argv[1]
r = {q: json.load(open(f"{d}/{q}.json")) for q in ("a2q", "a2q+")}
f = r["a2q+"]
print(f"held-out {', '.join(f['test_images'])} (x{f['upscale']}, PSNR dB): bicubic {f['bicubic_psnr']:.2f}  "
      f"float {f['float_psnr']:.2f}  A2Q P=13 {r['a2q']['psnr']:.2f}  A2Q+ P=13 {r['a2q+']['psnr']:.2f}")
PYEOF

# 3. exact accumulator widths per layer of the exported A2Q+ model (hidden layers within 13 bits)
$PY -m a2qhls inspect "$OUT/espcn_a2q+.onnx"
