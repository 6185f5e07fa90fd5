"""a2qhls: accumulator-aware quantized networks to verified FPGA dataflow hardware.

The curated public API (the command line's subcommands as functions)::

    import a2qhls
    report = a2qhls.inspect("model.onnx")                 # = a2qhls inspect --json
    summary = a2qhls.build("model.onnx", "hls/")          # = a2qhls build (returns a2qhls.json)
    result = a2qhls.cosim("hls/", random=100, adversarial=True)   # = a2qhls cosim --json
    cost = a2qhls.estimate_cost("model.onnx", target_fps=1e6)      # = inspect --cost (the build summary, nothing written)

and the pieces the flow is made of (:mod:`a2qhls.flow` lists its steps)::

    model = a2qhls.size_accumulators(a2qhls.load_qonnx("model.onnx"))

The pipeline: :mod:`a2qhls.importer` -> :mod:`a2qhls.ir` -> :mod:`a2qhls.passes` ->
:mod:`a2qhls.codegen` -> :mod:`a2qhls.sim` / :mod:`a2qhls.cosimulation`, run in order by
:mod:`a2qhls.flow`; :mod:`a2qhls.frontend` (training, export) and :mod:`a2qhls.cli` on top.

Importing the package is cheap: these names load their modules (numpy, onnx, qonnx) on first
use, so the command line starts inside its own handling of Ctrl-C.
"""
from .errors import A2QError

__version__ = "0.1.0"

__all__ = [
    "A2QError",
    "BUILD_STEPS",
    "IntType",
    "Model",
    "build",
    "cosim",
    "estimate_cost",
    "inspect",
    "load_qonnx",
    "size_accumulators",
    "__version__",
]

_LAZY = {
    "BUILD_STEPS": ("flow", "BUILD_STEPS"),
    "build": ("flow", "build"),
    "cosim": ("flow", "cosim"),
    "inspect": ("flow", "inspect"),
    "estimate_cost": ("flow", "estimate_cost"),
    "load_qonnx": ("importer", "load_qonnx"),
    "IntType": ("ir", "IntType"),
    "Model": ("ir", "Model"),
    "size_accumulators": ("passes.accumulator", "size_accumulators"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'a2qhls' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
