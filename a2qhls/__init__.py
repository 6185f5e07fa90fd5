"""a2qhls: accumulator-aware quantized networks to verified FPGA dataflow hardware.

The curated public API::

    from a2qhls import load_qonnx, size_accumulators
    model = size_accumulators(load_qonnx("model.onnx"))
"""
from .errors import A2QError
from .ir import IntType, Model
from .importer import load_qonnx
from .passes.accumulator import size_accumulators

__version__ = "0.1.0"

__all__ = ["A2QError", "IntType", "Model", "load_qonnx", "size_accumulators", "__version__"]
