"""Size limits, checked before anything is allocated (README, "Limits").

A model file, a folding file, a project's ``a2qhls.json`` or a cosim input file is untrusted input:
a header can claim any shape. Every size is compared with these limits first, so a hostile or
damaged file gets a one-line :class:`~a2qhls.errors.A2QError` instead of an attempt to allocate
terabytes. The values are far above what FPGA dataflow networks need (a ResNet-50's largest weight
has 2.4M values, its largest activation 0.8M per image).
"""
from __future__ import annotations

from .errors import A2QError

MAX_MODEL_BYTES = 2**31 - 1  # an ONNX file plus its external data (protobuf's own limit is 2 GiB)
MAX_TENSOR_ELEMENTS = 2**26  # one initializer, or one tensor of one sample (64M values)
MAX_NODES = 1_000_000  # nodes of a graph
MAX_THRESHOLDS = 2**24  # thresholds of one requantization: channels * (2^bits - 1)
MAX_SAMPLES = 100_000  # samples of one cosim run (--random N, --inputs)
MAX_SAMPLE_VALUES = 2**27  # samples * values per sample of one cosim run
MAX_JSON_BYTES = 64 * 2**20  # a folding file, a project's a2qhls.json, the model's metadata
MAX_JSON_DEPTH = 32  # nesting of those JSON documents

__all__ = [
    "MAX_MODEL_BYTES", "MAX_TENSOR_ELEMENTS", "MAX_NODES", "MAX_THRESHOLDS", "MAX_SAMPLES",
    "MAX_SAMPLE_VALUES", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "check_elements",
]


def check_elements(shape, what: str, limit: int = MAX_TENSOR_ELEMENTS) -> int:
    """The number of values of ``shape`` (exact Python ints); raises :class:`A2QError` naming
    ``what`` when a dimension is negative or the count is above ``limit``."""
    n = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise A2QError(f"{what}: negative dimension {d} in shape {list(map(int, shape))}")
        n *= d
    if n > limit:
        raise A2QError(f"{what}: shape {list(map(int, shape))} has {n} values, above the limit of {limit} (see README, Limits)")
    return n
