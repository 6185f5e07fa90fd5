"""a2qhls: accumulator-aware quantized networks to verified FPGA dataflow hardware.

The curated public API (the command line's subcommands as functions)::

    import a2qhls
    report = a2qhls.inspect("model.onnx")                 # = a2qhls inspect --json
    summary = a2qhls.build("model.onnx", "hls/")          # = a2qhls build (returns a2qhls.json)
    result = a2qhls.cosim("hls/", random=100, adversarial=True)   # = a2qhls cosim --json

and the pieces the flow is made of (:mod:`a2qhls.flow` lists its steps)::

    model = a2qhls.size_accumulators(a2qhls.load_qonnx("model.onnx"))

The pipeline: :mod:`a2qhls.importer` -> :mod:`a2qhls.ir` -> :mod:`a2qhls.passes` ->
:mod:`a2qhls.codegen` -> :mod:`a2qhls.sim` / :mod:`a2qhls.cosimulation`, run in order by
:mod:`a2qhls.flow`; :mod:`a2qhls.frontend` (training, export) and :mod:`a2qhls.cli` on top.
"""
from .errors import A2QError
from .flow import BUILD_STEPS, build, cosim, inspect
from .importer import load_qonnx
from .ir import IntType, Model
from .passes.accumulator import size_accumulators

__version__ = "0.1.0"

__all__ = [
    "A2QError",
    "BUILD_STEPS",
    "IntType",
    "Model",
    "build",
    "cosim",
    "inspect",
    "load_qonnx",
    "size_accumulators",
    "__version__",
]
