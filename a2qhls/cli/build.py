"""``a2qhls build MODEL --out DIR [--folding F.json] [--acc-bits LAYER=BITS ...] [--force]``.

Writes a complete Vitis HLS project for a QONNX model:

    DIR/a2qhls.json            machine-readable summary (layers, widths, folding, files)
    DIR/model.onnx             a copy of the input model (what cosim re-imports)
    DIR/firmware/...           C++: top function, one MVU per layer, weights, thresholds
    DIR/tb/a2q_tb.cpp          C testbench (integer vectors in, integer vectors out)
    DIR/tb_data/               sample inputs and the bit-accurate model's expected outputs
    DIR/build_csim.sh          g++ C-simulation build;  DIR/vitis_hls.tcl  Vitis HLS flow

The project is written to a temporary folder next to DIR and renamed into place at
the end, so a failure leaves nothing behind. Same inputs, byte-identical output.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import A2QError

TB_SAMPLES = 8


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="QONNX model file (.onnx)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (must not exist or be empty, unless --force)")
    p.add_argument("--folding", metavar="F.json", help='per-layer folding: {"LAYER": {"PE": p, "SIMD": s}, ...}')
    p.add_argument(
        "--acc-bits",
        action="append",
        default=[],
        metavar="LAYER=BITS",
        help="override a layer's accumulator width (LAYER: its name, 'layerN' or index N); repeatable",
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")


def parse_acc_bits(model, specs) -> dict:
    """``["LAYER=BITS", ...]`` -> {op name: bits}; LAYER is the name of any op with an accumulator
    (layer, average pool, residual add), or ``layerN`` / ``N`` for the N-th Dense/Conv layer."""
    layers = model.layers()
    acc_ops = model.accumulating_ops()
    out = {}
    for spec in specs:
        if "=" not in spec:
            raise A2QError(f"--acc-bits '{spec}': expected LAYER=BITS")
        key, _, bits = spec.rpartition("=")
        try:
            b = int(bits)
        except ValueError:
            raise A2QError(f"--acc-bits '{spec}': BITS must be an integer") from None
        match = [d for d in acc_ops if d.name == key]
        if not match and key.isdigit() and int(key) < len(layers):
            match = [layers[int(key)]]
        if not match and key.startswith("layer") and key[5:].isdigit() and int(key[5:]) < len(layers):
            match = [layers[int(key[5:])]]
        if not match:
            raise A2QError(f"--acc-bits '{spec}': unknown layer '{key}' (layers: {', '.join(d.name for d in acc_ops)}, or layer0..layer{len(layers) - 1})")
        if not 2 <= b <= 64:
            raise A2QError(f"--acc-bits '{spec}': width must be in 2..64")
        out[match[0].name] = b
    return out


def tb_vectors(model, n: int = TB_SAMPLES) -> np.ndarray:
    """Deterministic sample inputs for the Vitis testbench: integers over the input type's range."""
    iq = model.ops[0]
    t = iq.out_type
    K = int(np.prod(model.tensors[iq.outputs[0]].shape))  # a feature map: flattened channels-last
    rng = np.random.default_rng(0)
    q = rng.integers(t.qmin, t.qmax + 1, size=(n, K))
    q[0] = t.qmin
    q[1 % n] = t.qmax
    return q


def _lines(a) -> str:
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in np.asarray(a))


def build(model_path, out_dir, *, folding_path=None, acc_bits_specs=(), force: bool = False, warn=None) -> dict:
    """Build the project; returns the summary. ``warn(msg)`` receives width warnings."""
    from .. import codegen
    from ..importer import load_qonnx
    from ..passes.accumulator import size_accumulators
    from ..passes.folding import default_folding, load_folding
    from ..passes.thresholds import compute_thresholds
    from ..sim import BitSim

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise A2QError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise A2QError(f"{out}: directory is not empty (use --force to replace it)")
    model = size_accumulators(load_qonnx(str(model_path)))
    acc_bits = parse_acc_bits(model, acc_bits_specs)
    for d in model.accumulating_ops():
        if d.name in acc_bits and acc_bits[d.name] < d.acc.acc_bits and warn is not None:
            warn(
                f"layer '{d.name}': --acc-bits {acc_bits[d.name]} is below its safe width {d.acc.acc_bits}; "
                "its accumulator can overflow (wrap) on some inputs"
            )
    compute_thresholds(model, acc_bits)
    folding = load_folding(model, folding_path) if folding_path else default_folding(model)
    files = codegen.generate(model, folding, acc_bits)
    summary = codegen.summary(model, folding, acc_bits, model_file="model.onnx")
    q = tb_vectors(model)
    sim = BitSim(model, acc_bits)
    expected = np.asarray(sim.run(q, start=model.ops[0].outputs[0])[model.outputs[0]]).reshape(len(q), -1)
    files["tb_data/inputs.txt"] = _lines(q)
    files["tb_data/expected.txt"] = _lines(expected)
    files["a2qhls.json"] = codegen.summary_json(summary)

    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.a2qhls-", dir=parent))
    try:
        shutil.copyfile(model_path, tmp / "model.onnx")
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", newline="\n") as f:
                f.write(text)
        os.chmod(tmp / "build_csim.sh", 0o755)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / "x")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def run(args) -> int:
    def warn(msg):
        print(f"a2qhls: warning: {msg}", file=sys.stderr)

    s = build(args.model, args.out, folding_path=args.folding, acc_bits_specs=args.acc_bits, force=args.force, warn=warn)
    print(f"wrote {args.out} ({len(s['layers'])} layers, top {s['top']})")
    print(f"{'layer':24s} {'kind':>7s} {'MHxMW':>10s} {'PE':>4s} {'SIMD':>5s} {'cycles':>7s} {'acc':>4s} {'safe':>5s}")
    for ly in s["layers"]:
        flag = "  (override)" if ly["acc_bits_overridden"] else ""
        simd = "-" if ly["SIMD"] is None else str(ly["SIMD"])
        print(
            f"{ly['name'][:24]:24s} {ly['kind']:>7s} {str(ly['MH']) + 'x' + str(ly['MW']):>10s} {ly['PE']:>4d} {simd:>5s} "
            f"{ly['cycles_per_image']:>7d} {ly['acc_bits']:>4d} {ly['safe_acc_bits']:>5d}{flag}"
        )
    print(f"dataflow: {s['cycles_per_image']} cycles per image (slowest unit: {s['bottleneck']})")
    return 0
