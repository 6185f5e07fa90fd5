"""Shared by the CNN-pattern tests (issue: import Brevitas CNNs as people write them).

* :func:`export_both`: a Brevitas model exported by both of Brevitas 0.13.4's QONNX exporters
  (``export_qonnx(..., dynamo=True)`` and the TorchScript one, ``dynamo=False``).
* :func:`reference_ranges`: an independent reference of every accumulator's exact range, computed
  from the Brevitas modules themselves (their integer weights, the bit width and signedness of the
  quantizer that feeds them) by enumerating every output position of every channel with Python
  integers: no a2qhls code involved.
* :func:`check_exact_then_narrower`: inspect against that reference, build, cosim random +
  adversarial at the derived widths (0 mismatches), and every accumulator one bit narrower (caught).
"""
from __future__ import annotations

import json

import numpy as np


def export_both(model, example, tmp_dir, name: str, exporters=("dynamo", "torchscript")) -> dict:
    """``{"dynamo": path, "torchscript": path}``: ``model`` exported by each QONNX exporter."""
    import warnings

    import torch
    from brevitas.export import export_qonnx

    model.eval()
    out = {}
    for ex in exporters:
        path = tmp_dir / f"{name}_{ex}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            export_qonnx(model, example, export_path=str(path), dynamo=(ex == "dynamo"))
        out[ex] = path
    return out


def op_types(path) -> set:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return (lo + 1 if narrow and signed else lo), hi


def quant_type(act) -> tuple:
    """``(bits, signed)`` of a Brevitas activation quantizer module (QuantIdentity / QuantReLU)."""
    q = act.act_quant
    return int(q.bit_width()), bool(q.is_signed)


def conv_range(w: np.ndarray, in_hw: tuple, stride: tuple, pads: tuple, xlo: int, xhi: int, bias=None) -> tuple:
    """Exact ``(min, max)`` over all channels and output positions of a convolution on an input of
    ``in_hw`` with integer weights ``w`` ``[C_out, C_in/g, kh, kw]`` (depthwise when C_in/g == 1 and
    it is used per channel), each input in ``[xlo, xhi]``, padding the value 0."""
    C, _, kh, kw = w.shape
    H, W = in_hw
    (sh, sw), (pt, pl, pb, pr) = stride, pads
    OH, OW = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    lo = hi = None
    for j in range(C):
        for oy in range(OH):
            for ox in range(OW):
                s_hi = s_lo = int(bias[j]) if bias is not None else 0
                for dy in range(kh):
                    for dx in range(kw):
                        iy, ix = oy * sh - pt + dy, ox * sw - pl + dx
                        if not (0 <= iy < H and 0 <= ix < W):
                            continue
                        for c in range(w.shape[1]):
                            v = int(w[j, c, dy, dx])
                            s_hi += max(v * xhi, v * xlo)
                            s_lo += min(v * xhi, v * xlo)
                lo = s_lo if lo is None else min(lo, s_lo)
                hi = s_hi if hi is None else max(hi, s_hi)
    return lo, hi


def dense_range(w: np.ndarray, xlo: int, xhi: int, bias=None) -> tuple:
    lo = hi = None
    for j in range(w.shape[0]):
        b = int(bias[j]) if bias is not None else 0
        s_hi = b + sum(max(int(v) * xhi, int(v) * xlo) for v in w[j])
        s_lo = b + sum(min(int(v) * xhi, int(v) * xlo) for v in w[j])
        lo = s_lo if lo is None else min(lo, s_lo)
        hi = s_hi if hi is None else max(hi, s_hi)
    return lo, hi


def int_weight(layer) -> np.ndarray:
    import torch

    with torch.no_grad():
        return layer.quant_weight().int().detach().cpu().numpy().astype(np.int64)


def build(path, out, capsys, *extra) -> dict:
    from a2qhls.cli import main

    assert main(["build", str(path), "--out", str(out), *extra]) == 0
    capsys.readouterr()
    return json.loads((out / "a2qhls.json").read_text())


def cosim(out, capsys, *args) -> tuple:
    from a2qhls.cli import main

    rc = main(["cosim", str(out), *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def check_exact_then_narrower(path, ref: list, tmp_path, capsys, *, random: int = 30, tag: str = "m", extra=(),
                              narrower: bool = True) -> dict:
    """inspect == ``ref`` (``[(min, max), ...]`` per accumulating op, in order); build; cosim random +
    adversarial: 0 mismatches; with ``narrower``, every accumulator one bit narrower (those above
    1 bit): caught (the tests run it on one exporter's file per pattern, to keep g++ time down)."""
    import a2qhls

    rep = a2qhls.inspect(str(path), **({"input_quant": extra[1]} if extra[:1] == ("--input-quant",) else {}))
    got = [(ly["acc_min"], ly["acc_max"]) for ly in rep["layers"]]
    assert got == [tuple(r) for r in ref], (got, ref)
    out = tmp_path / f"{tag}_exact"
    summary = build(path, out, capsys, *extra)
    rc, cs = cosim(out, capsys, "--random", str(random), "--adversarial")
    assert rc == 0 and cs["mismatches_cpp_vs_model"] == 0 and cs["mismatches_model_vs_qonnx"] == 0, cs
    if not narrower:
        return summary
    narrow = [f"{ly['name']}={ly['acc_bits'] - 1}" for ly in summary["layers"] if ly["acc_bits"] > 1]
    out2 = tmp_path / f"{tag}_narrow"
    build(path, out2, capsys, *extra, *[a for n in narrow for a in ("--acc-bits", n)])
    rc, cs2 = cosim(out2, capsys, "--adversarial")
    assert rc == 1 and cs2["mismatches_cpp_vs_model"] == 0 and cs2["mismatches_model_vs_qonnx"] > 0, cs2
    return summary
