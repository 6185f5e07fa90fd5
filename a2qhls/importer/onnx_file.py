"""Reading a QONNX file: the protobuf (with external data) and the a2qhls annotations in its metadata."""
from __future__ import annotations

import json
import os

from ..errors import A2QError
from ..metadata import LAYERS_KEY as METADATA_KEY

def read_onnx(path: str):
    import onnx
    from google.protobuf.message import DecodeError

    if not os.path.exists(path):
        raise A2QError(f"{path}: no such file")
    if os.path.isdir(path):
        raise A2QError(f"{path}: is a directory, expected a QONNX (.onnx) file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError) as e:
        raise A2QError(f"{path}: not a valid ONNX file (protobuf parse failed: {str(e).splitlines()[0]})") from e
    except Exception as e:  # onnx raises a variety of types for damaged files
        raise A2QError(f"{path}: not a valid ONNX file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not proto.HasField("graph") or proto.ir_version == 0 or len(proto.graph.node) == 0:
        raise A2QError(f"{path}: not an ONNX model (no graph or no nodes found)")
    base = os.path.dirname(os.path.abspath(path))
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    for t in proto.graph.initializer:
        if uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if not os.path.exists(os.path.join(base, loc)):
                raise A2QError(f"{path}: external data file '{loc}' of tensor '{t.name}' not found next to the model")
    try:
        load_external_data_for_model(proto, base)
    except Exception as e:
        raise A2QError(f"{path}: could not load external data ({type(e).__name__}: {e})") from e
    return proto


def layer_annotations(proto) -> dict:
    """Per-node annotations (quantizer kind, target accumulator width) written by our export."""
    out: dict = {}
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            try:
                data = json.loads(p.value)
            except json.JSONDecodeError as e:
                raise A2QError(f"metadata '{METADATA_KEY}' is not valid JSON: {e}") from e
            if isinstance(data, dict):
                out.update({str(k): v for k, v in data.items() if isinstance(v, dict)})
    for node in proto.graph.node:
        for p in getattr(node, "metadata_props", []):
            if p.key == "a2qhls.target_acc_bits":
                out.setdefault(node.name, {})["target_acc_bits"] = int(p.value)
            elif p.key == "a2qhls.quant":
                out.setdefault(node.name, {})["quant"] = p.value
    return out
