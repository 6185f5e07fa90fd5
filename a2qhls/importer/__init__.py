"""QONNX -> a2qhls IR.

Loads a QONNX file with onnx/qonnx (shape inference only: node names and the graph are kept as
the exporter wrote them), then lowers it once into the plain dataclasses of :mod:`a2qhls.ir`.
Nothing downstream touches protobuf.

Layout: :mod:`.graph` walks the graph and holds the op dispatch table; :mod:`.onnx_file` reads the
file and its annotations; :mod:`.context` is the walk's state; :mod:`.quant` folds ``Quant`` nodes
(constants, the input quantizer, Requants); one module per op family: :mod:`.dense` (Gemm, MatMul),
:mod:`.conv`, :mod:`.pool` (pools, Trunc), :mod:`.arith` (Add, Mul), :mod:`.batchnorm`,
:mod:`.shape` (Flatten, Reshape, Transpose, Identity).

What is accepted: see the README ("What the importer accepts"). Integer weights are the weight
``Quant`` folded exactly as QONNX's executor computes it (float32 ``x / scale + zeropt``, clip,
the node's rounding mode), minus the zero-point.
"""
from .graph import HANDLERS, SUPPORTED_OPS, load_qonnx
from .quant import ROUNDING_MODES, quant_ints

__all__ = ["load_qonnx", "quant_ints", "HANDLERS", "SUPPORTED_OPS", "ROUNDING_MODES"]
