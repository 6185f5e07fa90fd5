"""``a2qhls inspect MODEL``: per-layer accumulator sizing of a QONNX model.

Imports no torch: only onnx, qonnx's helpers and numpy.
"""
from __future__ import annotations

import json
import os
import sys

from ..importer import load_qonnx
from ..ir import Model
from ..passes.accumulator import size_accumulators


def add_arguments(p) -> None:
    p.add_argument("model", help="QONNX model file (.onnx)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--per-channel", action="store_true", help="also list every output channel's exact range and width")


def layer_record(model: Model, dense, per_channel: bool = True) -> dict:
    """The JSON-ready facts of one sized op (a layer, or an average pool's window sum)."""
    r = dense.acc
    in_type = model.tensors[dense.inputs[0]].dtype
    rec = {
        "name": dense.name,
        "op": dense.source_op,
        "K": dense.K,
        "channels": dense.channels,
        "input_type": str(in_type),
        "weight_type": str(dense.weight_type) if hasattr(dense, "weight_type") else "-",
        "has_bias": getattr(dense, "bias", None) is not None,
        "acc_bits": r.acc_bits,
        "acc_min": r.acc_min,
        "acc_max": r.acc_max,
        "acc_bits_datatype": r.datatype_bits,
        "acc_bits_a2q": r.a2q_bits,
        "acc_bits_a2qplus": r.a2qplus_bits,
        "acc_bits_per_channel": [int(b) for b in r.per_channel_bits],
        "target_acc_bits": getattr(dense, "target_acc_bits", None),
        "quant": getattr(dense, "quant_kind", None),
        "exceeds_target": r.exceeds_target,
        "worst_channel": r.worst_channel,
        "negated_channels": list(getattr(dense, "negated_channels", ())),
        "adversarial_input_max": [int(v) for v in r.adversarial_max],
        "adversarial_input_min": [int(v) for v in r.adversarial_min],
    }
    if per_channel:
        rec["acc_min_per_channel"] = [int(v) for v in r.per_channel_min]
        rec["acc_max_per_channel"] = [int(v) for v in r.per_channel_max]
    return rec


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(model: Model, records: list[dict], per_channel: bool) -> str:
    head = ["layer", "op", "K", "ch", "in", "weight", "dtype", "a2q", "a2q+", "exact", "target", "worst ch"]
    rows = [head]
    for r in records:
        tgt = "-" if r["target_acc_bits"] is None else str(r["target_acc_bits"])
        if r["exceeds_target"]:
            tgt += " !"
        rows.append([
            r["name"], r["op"], str(r["K"]), str(r["channels"]), r["input_type"], r["weight_type"],
            str(r["acc_bits_datatype"]), str(r["acc_bits_a2q"]), str(r["acc_bits_a2qplus"]),
            str(r["acc_bits"]), tgt, str(r["worst_channel"]),
        ])
    out = [f"model: {model.source or model.name}", "accumulator widths in bits (signed); exact = minimal safe width over every input the types allow", "", _table(rows)]
    over = [r["name"] for r in records if r["exceeds_target"]]
    if over:
        out += ["", "! exact width exceeds the model's target accumulator width in: " + ", ".join(over)]
    if per_channel:
        for r in records:
            out += ["", f"{r['name']}: per-channel exact range"]
            ch_rows = [["channel", "acc_min", "acc_max", "bits"]]
            for j, (lo, hi, b) in enumerate(zip(r["acc_min_per_channel"], r["acc_max_per_channel"], r["acc_bits_per_channel"])):
                ch_rows.append([str(j), str(lo), str(hi), str(b)])
            out.append(_table(ch_rows))
    return "\n".join(out)


def run(args) -> int:
    model = size_accumulators(load_qonnx(args.model))
    records = [layer_record(model, op, per_channel=True) for op in model.accumulating_ops()]
    if args.json:
        doc = {"model": os.path.abspath(args.model), "layers": records}
        if not args.per_channel:
            for r in doc["layers"]:
                r.pop("acc_min_per_channel")
                r.pop("acc_max_per_channel")
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(render_text(model, records, args.per_channel))
    return 1 if any(r["exceeds_target"] for r in records) else 0
