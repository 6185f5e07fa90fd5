"""The QONNX metadata a2qhls writes (front end) and reads (importer): one contract, one place.

``LAYERS_KEY`` is a model-level ``metadata_props`` entry whose value is JSON keyed by the
name of each MatMul/Gemm/Conv node::

    {"<node name>": {"quant": "a2q+" | "a2q" | "baseline", "target_acc_bits": 12 | null, ...}}
"""
import json

LAYERS_KEY = "a2qhls.layers"


def write_layers(proto, layers: dict) -> None:
    """Set (replace) the per-layer annotations of an ONNX ``ModelProto``."""
    keep = [p for p in proto.metadata_props if p.key != LAYERS_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    proto.metadata_props.add(key=LAYERS_KEY, value=json.dumps(layers, sort_keys=True))
