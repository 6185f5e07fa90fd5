"""The build flow: one ordered list of named steps, and the Python API on top of it.

``a2qhls build`` is :func:`build`, which runs :data:`BUILD_STEPS` in order over a
:class:`BuildState` (the IR plus what the steps produce). Every step is a plain function
``step(state) -> None``; the IR steps change only the model, and each decision a step makes
(the width each accumulator is built with, the folding) is stored on the ops, where the later
steps read it::

    import        QONNX file -> IR                         (a2qhls.importer.load_qonnx)
    size          exact accumulator range and safe width  (passes.accumulator.size_accumulators)
    acc_bits      built width per accumulator: safe, or the user's override (passes.acc_bits)
    thresholds    exact integer thresholds for those widths (passes.thresholds)
    folding       PE/SIMD per layer: default policy, the user's file, or the cheapest folding
                  (by the resource estimate) meeting a throughput target / fitting a budget
                  (passes.folding)
    memories      which layers stream their weights from outside instead of on-chip ROMs
                  (passes.memories: the user's layers, or auto when the BRAM estimate exceeds the part)
    codegen       the HLS project's files and its summary, with resource estimates (codegen, estimate)
    testbench     sample inputs and the bit-accurate model's outputs for the testbench (sim)
    write         the project folder, written atomically

With ``save_steps=True`` the project also gets ``steps/NN_<step>.json``: a small JSON view of the
IR after each step (see :func:`ir_view`), so a user can see where a width or a folding came from.

The same module gives :func:`inspect` (what ``a2qhls inspect --json`` prints) and :func:`cosim`
(what ``a2qhls cosim --json`` prints).
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .errors import A2QError, A2QWarning
from .ir import Model

TB_SAMPLES = 8  # sample vectors the Vitis testbench runs (tb_data/)
MODEL_FILE = "model.onnx"  # the project's copy of the input model (what cosim re-imports)
SUMMARY_FILE = "a2qhls.json"

__all__ = ["BUILD_STEPS", "BuildConfig", "BuildState", "build", "run_steps", "inspect", "estimate_cost", "cosim", "ir_view",
           "tb_vectors"]


@dataclass
class BuildConfig:
    """What the user asked of a build.

    ``folding``: ``{layer: {"PE": p, "SIMD": s}}`` (partial is fine), or a path to such a JSON
    file, or None for the default policy. ``acc_bits``: ``{LAYER: bits}`` overrides, LAYER an
    accumulating op's name, ``layerN`` or ``N`` (the N-th Dense/Conv layer). ``warn``: receives
    one-line warnings (a width below the safe one); default: :func:`warnings.warn` with
    :class:`~a2qhls.errors.A2QWarning`.
    ``target_fps`` (at ``clock_mhz``, default 200; a given clock also sets the Vitis clock) and
    ``budget`` (``{"LUT": n, "BRAM18": n, "DSP": n}``, any subset) choose the folding instead of
    the default policy (not with ``folding``). ``part``: the part the resource estimate is
    compared with (default: the project's part).
    """

    folding: Union[dict, str, os.PathLike, None] = None
    acc_bits: Union[dict, list, tuple, None] = None
    save_steps: bool = False
    warn: Optional[Callable[[str], None]] = None
    target_fps: Optional[float] = None
    clock_mhz: Optional[float] = None
    budget: Optional[dict] = None
    part: Optional[str] = None
    bus_bits: Optional[int] = None  # AXI-stream data width of both ports (codegen.AxisPort); None: natural
    input_quant: Optional[str] = None  # "TYPE:SCALE[:ZERO_POINT]" for an input the file leaves unquantized
    control: str = "none"  # block control of the top: "none" (ap_ctrl_none) or "axilite" (codegen.CONTROLS)
    stream_weights: Union[str, list, None] = None  # layers whose weights stream in (passes.memories), or "auto"

    def __post_init__(self):
        a = self.acc_bits
        if a is not None and not isinstance(a, dict) and not (isinstance(a, (list, tuple)) and all(isinstance(v, str) for v in a)):
            raise A2QError(f"acc_bits: expected {{LAYER: bits}} or a list of 'LAYER=BITS' strings, got {type(a).__name__}")
        f = self.folding
        if f is not None and not isinstance(f, (dict, str, os.PathLike)):
            raise A2QError(f"folding: expected {{LAYER: {{'PE': p, 'SIMD': s}}}} or a JSON file path, got {type(f).__name__}")
        if self.input_quant is not None and not isinstance(self.input_quant, str):
            raise A2QError(f"input_quant: expected a string like 'uint8:0.00392', got {type(self.input_quant).__name__}")
        if self.control not in ("none", "axilite"):
            raise A2QError(f"control {self.control!r}: expected none or axilite")
        if self.warn is None:
            self.warn = lambda msg: warnings.warn(msg, A2QWarning, stacklevel=4)


@dataclass
class BuildState:
    """What flows through the steps: the model (IR) and the project being made."""

    source: Union[str, os.PathLike, Model]  # the model file, or an IR loaded from one
    config: BuildConfig
    model: Optional[Model] = None
    files: dict = field(default_factory=dict)  # relative path -> text, the generated project
    summary: Optional[dict] = None
    out_dir: Optional[Path] = None
    force: bool = False  # the write step may replace an a2qhls project in out_dir (a2qhls.files.check_out_dir)


# ----------------------------------------------------------------------------- steps


def step_import(s: BuildState) -> None:
    from .importer import load_qonnx

    s.model = s.source if isinstance(s.source, Model) else load_qonnx(str(s.source), input_quant=s.config.input_quant)


def step_size(s: BuildState) -> None:
    from .passes.accumulator import size_accumulators

    size_accumulators(s.model)


def step_acc_bits(s: BuildState) -> None:
    from .passes.acc_bits import apply_acc_bits, parse_acc_bits

    a = s.config.acc_bits or {}
    specs = [f"{k}={v}" for k, v in a.items()] if isinstance(a, dict) else [str(v) for v in a]
    apply_acc_bits(s.model, parse_acc_bits(s.model, specs))
    for d in s.model.accumulating_ops():
        if d.acc_bits_overridden and d.acc_bits < d.acc.acc_bits:
            s.config.warn(
                f"layer '{d.name}': --acc-bits {d.acc_bits} is below its safe width {d.acc.acc_bits}; "
                "its accumulator can overflow (wrap) on some inputs"
            )


def step_thresholds(s: BuildState) -> None:
    from .passes.thresholds import compute_thresholds

    compute_thresholds(s.model)


def step_folding(s: BuildState) -> None:
    from .passes import folding as F

    c = s.config
    f = c.folding
    budget = {k: v for k, v in (c.budget or {}).items() if v is not None}
    targeted = c.target_fps is not None or bool(budget)
    if f is not None and targeted:
        raise A2QError("--folding cannot be combined with --target-fps or a budget (--lut-budget, --bram-budget, --dsp-budget)")
    if c.clock_mhz is not None and not c.clock_mhz > 0:
        raise A2QError(f"--clock-mhz {c.clock_mhz:g}: must be positive")
    for k, v in budget.items():
        if k not in ("LUT", "BRAM18", "DSP") or v < 0:
            raise A2QError(f"budget {k}={v}: expected LUT, BRAM18 or DSP >= 0")
    if not targeted:
        F.apply_folding(s.model, F.load_folding(s.model, f) if isinstance(f, (str, os.PathLike)) else f)
        return
    clock = c.clock_mhz or 200.0
    max_cycles = F.fps_to_cycles(c.target_fps, clock) if c.target_fps is not None else None
    # a bad --bus-bits is its own error (checked with the candidates, before the search), not the target's
    kw = dict(clock_mhz=clock, bus_bits=c.bus_bits, stream_weights=c.stream_weights, part=c.part, target_fps=c.target_fps)
    if budget:
        F.fold_to_budget(s.model, budget, max_cycles=max_cycles, **kw)
    else:
        F.fold_to_cycles(s.model, max_cycles, **kw)


def step_memories(s: BuildState) -> None:
    from . import codegen
    from .passes.memories import apply_stream_weights, wants_auto

    names = apply_stream_weights(s.model, s.config.stream_weights, s.config.part or codegen.DEFAULT_PART)
    if names and wants_auto(s.config.stream_weights):
        s.config.warn(f"--stream-weights auto: the weights of {', '.join(names)} stream in from outside "
                      "(the on-chip estimate exceeds the part's memories); a2qhls.json interface.weights gives the ports' layout")


def step_codegen(s: BuildState) -> None:
    from . import codegen

    part = s.config.part or codegen.DEFAULT_PART
    summary = codegen.summary(s.model, model_file=MODEL_FILE, part=part, bus_bits=s.config.bus_bits,
                              control=s.config.control)  # checks the part before rendering
    kw = {} if s.config.clock_mhz is None else {"clock_ns": round(1000.0 / s.config.clock_mhz, 3)}
    s.files.update(codegen.generate(s.model, bus_bits=s.config.bus_bits, control=s.config.control, **kw))
    s.summary = summary
    cost = summary.get("cost") or {}
    for res, pct in (cost.get("utilization_percent") or {}).items():
        if pct > 100:
            s.config.warn(
                f"the estimate needs {pct:.0f}% of {cost['part']}'s {res} ({cost['total'][res]} of "
                f"{cost['capacity'][res]}): the design does not fit that part; fold it smaller (--lut-budget, "
                "--bram-budget) or choose a larger --part"
            )


def tb_vectors(model: Model, n: int = TB_SAMPLES) -> np.ndarray:
    """Deterministic sample inputs for the Vitis testbench, ``[n, K]`` integers over the input
    type's range (K: the quantized input flattened channels-last); row 0 is all qmin, row 1 all qmax."""
    iq = model.ops[0]
    t = iq.out_type
    K = int(np.prod(model.tensors[iq.outputs[0]].shape))
    rng = np.random.default_rng(0)
    q = rng.integers(t.qmin, t.qmax + 1, size=(n, K))
    q[0] = t.qmin
    q[1 % n] = t.qmax
    return q


def _lines(a) -> str:
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in np.asarray(a))


def step_testbench(s: BuildState) -> None:
    from . import codegen
    from .sim import BitSim

    q = tb_vectors(s.model)
    sim = BitSim(s.model)
    vals = sim.run(q, start=s.model.ops[0].outputs[0])
    # every graph output, flattened channels-last, one line per sample in graph-output order (the testbench's)
    expected = np.concatenate([np.asarray(vals[t]).reshape(len(q), -1) for t in s.model.outputs], axis=1)
    s.files["tb_data/inputs.txt"] = _lines(q)
    s.files["tb_data/expected.txt"] = _lines(expected)
    s.files[SUMMARY_FILE] = codegen.summary_json(s.summary)


def step_write(s: BuildState) -> None:
    """Write the project to a temporary folder beside ``out_dir`` and rename it into place
    (:func:`a2qhls.files.write_project`); the model is copied self-contained (external data inlined)."""
    from .files import check_out_dir, write_project
    from .importer.onnx_file import copy_self_contained, external_data_files

    if s.out_dir is None:
        raise A2QError("the write step needs an output folder (BuildState.out_dir)")
    model_file = s.model.source if isinstance(s.source, Model) else str(s.source)
    if not model_file or not os.path.isfile(model_file):
        raise A2QError("the model has no source file to copy into the project (load it with load_qonnx from a file)")
    if isinstance(s.source, Model) and s.model.source_stat and _stat(model_file) != s.model.source_stat:
        raise A2QError(f"{model_file}: the file changed since the model was loaded; load it again")
    folding = s.config.folding if isinstance(s.config.folding, (str, os.PathLike)) else None
    inputs = [model_file, folding, *external_data_files(model_file)]
    out = check_out_dir(s.out_dir, force=s.force, inputs=inputs)
    write_project(out, s.files, lambda tmp: copy_self_contained(model_file, tmp / MODEL_FILE), executable=["build_csim.sh"])


def _stat(path) -> tuple:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


# The flow, in order: (name, step). Visible, explicit and immutable; no registry.
BUILD_STEPS: tuple = (
    ("import", step_import),
    ("size", step_size),
    ("acc_bits", step_acc_bits),
    ("thresholds", step_thresholds),
    ("folding", step_folding),
    ("memories", step_memories),
    ("codegen", step_codegen),
    ("testbench", step_testbench),
    ("write", step_write),
)


# ----------------------------------------------------------------------------- IR view


def ir_view(model: Model, state: Optional[BuildState] = None) -> dict:
    """A small JSON-ready view of the IR: per op its kind, tensors, types and the decisions
    made so far (safe and built accumulator width, override, target, PE/SIMD, thresholds)."""
    ops = []
    for op in model.ops:
        e = {"name": op.name, "op": op.op, "inputs": list(op.inputs), "outputs": list(op.outputs)}
        out = model.tensors.get(op.outputs[0])
        if out is not None:
            e["output_shape"] = [int(v) for v in out.shape]
            e["output_type"] = str(out.dtype) if out.dtype is not None else "accumulator"
        if hasattr(op, "K"):
            e["K"], e["channels"] = int(op.K), int(op.channels)
        if getattr(op, "target_acc_bits", None) is not None:
            e["target_acc_bits"] = int(op.target_acc_bits)
        if getattr(op, "acc", None) is not None:
            e["safe_acc_bits"] = int(op.acc.acc_bits)
            e["acc_range"] = [int(op.acc.acc_min), int(op.acc.acc_max)]
        if getattr(op, "acc_bits", None) is not None:
            e["acc_bits"] = int(op.acc_bits)
            e["acc_bits_overridden"] = bool(op.acc_bits_overridden)
        if getattr(op, "pe", None) is not None:
            e["PE"], e["SIMD"] = int(op.pe), int(op.simd)
            e["folding_overridden"] = bool(op.folding_overridden)
            e["weights_external"] = bool(getattr(op, "weights_external", False))
        if getattr(op, "thresholds", None) is not None:
            e["thresholds_shape"] = [int(v) for v in np.asarray(op.thresholds).shape]
        ops.append(e)
    view = {"model": model.name, "ops": ops}
    if state is not None and state.files:
        view["files"] = sorted(f for f in state.files if not f.startswith("steps/"))
    return view


def _save_step(s: BuildState, index: int, name: str) -> None:
    if s.config.save_steps and s.model is not None:
        s.files[f"steps/{index:02d}_{name}.json"] = json.dumps(ir_view(s.model, s), indent=1) + "\n"


def run_steps(state: BuildState, steps=BUILD_STEPS) -> BuildState:
    """Run ``steps`` (a sequence of ``(name, step)``, default :data:`BUILD_STEPS`) in order over
    ``state``; returns it. The ``write`` step replaces ``state.out_dir``: :func:`build` checks
    that folder first, and a caller of this function is responsible for it."""
    for i, (name, fn) in enumerate(steps):
        if name == "write":  # the last view goes into the project before it is written
            _save_step(state, i, name)
        fn(state)
        if name != "write":
            _save_step(state, i, name)
    return state


# ----------------------------------------------------------------------------- API


def build(model, out_dir, *, folding=None, acc_bits=None, force: bool = False, save_steps: bool = False, warn=None,
          part=None, target_fps=None, clock_mhz=None, budget=None,
          bus_bits: Optional[int] = None, input_quant: Optional[str] = None, control: str = "none",
          stream_weights=None) -> dict:
    """Build a Vitis HLS project from a QONNX model; returns its summary (``a2qhls.json``).

    ``model``: a QONNX file path, or a :class:`~a2qhls.ir.Model` from :func:`a2qhls.load_qonnx`
    (built from a copy: the caller's Model is not changed; its source file is copied into the
    project, where cosim re-imports it, so the IR must be as loaded from that file, unchanged). ``folding``: ``{layer: {"PE": p, "SIMD": s}}``
    or a JSON file path. ``acc_bits``: ``{LAYER: bits}`` overrides (or ``["LAYER=BITS", ...]``). ``force``: replace an
    existing project in ``out_dir`` (see :func:`a2qhls.files.check_out_dir` for what is refused). ``save_steps``: also write ``steps/NN_<step>.json``. ``warn(msg)``
    receives one-line warnings (default: :func:`warnings.warn` with
    :class:`~a2qhls.errors.A2QWarning`). ``part``, ``target_fps``, ``clock_mhz``, ``budget``: see
    :class:`BuildConfig`. ``bus_bits``: the AXI-stream data width of both ports (a multiple of 8;
    None: each port its natural width, see :class:`a2qhls.codegen.AxisPort`). ``input_quant``:
    ``"TYPE:SCALE[:ZERO_POINT]"`` (e.g. ``"uint8:0.00392"``) declares the integer type of a graph input
    the file feeds to a layer without a quantizer; it is recorded in the summary and honoured by
    :func:`cosim`. ``control``: ``none`` (ap_ctrl_none) or ``axilite`` (s_axilite block control).
    ``stream_weights``: layers (``"layer0,layer3"`` or a list) whose weights stream in over an extra
    AXI-stream port instead of on-chip ROMs, or ``"auto"`` (when the estimate exceeds the part's
    memories). Raises :class:`A2QError` on bad input; nothing is written then.
    """
    from .files import check_out_dir

    out = Path(out_dir)
    check_options(part=part, clock_mhz=clock_mhz, stream_weights=stream_weights, bus_bits=bus_bits)
    folding_file = folding if isinstance(folding, (str, os.PathLike)) else None
    check_out_dir(out_dir, force=force, inputs=[model if not isinstance(model, Model) else model.source, folding_file])
    cfg = BuildConfig(folding=folding, acc_bits=acc_bits, save_steps=save_steps, warn=warn, part=part, target_fps=target_fps,
                      clock_mhz=clock_mhz, budget=budget, bus_bits=bus_bits, input_quant=input_quant, control=control,
                      stream_weights=stream_weights)
    if isinstance(model, Model):
        model = copy.deepcopy(model)
    state = run_steps(BuildState(source=model, config=cfg, out_dir=out, force=force))
    return state.summary


CLOCK_MHZ_RANGE = (1.0, 2000.0)  # --clock-mhz: what an FPGA fabric clock can be (the Tcl's create_clock period)


def check_options(*, part=None, clock_mhz=None, stream_weights=None, bus_bits=None) -> None:
    """Option values checked before anything is read or written: ``clock_mhz`` within
    :data:`CLOCK_MHZ_RANGE`, ``part`` not empty, ``bus_bits`` an integer multiple of 8 from 8 to 4096
    (the model's element widths are checked against it before folding), ``stream_weights`` as
    :func:`a2qhls.passes.memories.check_stream_weights` checks it. Raises :class:`A2QError` (one line)."""
    from .passes.memories import check_stream_weights

    lo, hi = CLOCK_MHZ_RANGE
    if clock_mhz is not None and not (isinstance(clock_mhz, (int, float)) and lo <= clock_mhz <= hi):
        raise A2QError(f"--clock-mhz {clock_mhz}: expected a clock between {lo:g} and {hi:g} MHz")
    if part is not None and not str(part).strip():
        raise A2QError("--part: empty value (expected a part such as xczu3eg)")
    if bus_bits is not None:
        from .codegen import AP_INT_LIMIT_W

        if isinstance(bus_bits, bool) or not isinstance(bus_bits, int) or bus_bits % 8 or not 8 <= bus_bits <= AP_INT_LIMIT_W:
            raise A2QError(f"--bus-bits {bus_bits}: the AXI-stream width must be a multiple of 8 from 8 to {AP_INT_LIMIT_W}")
    check_stream_weights(stream_weights)


def layer_record(model: Model, op, per_channel: bool = True) -> dict:
    """The JSON-ready sizing facts of one accumulating op (what ``inspect --json`` lists)."""
    r = op.acc
    in_type = model.tensors[op.inputs[0]].dtype
    if in_type is None:  # an accumulator (an add or an average pool of a layer's output)
        prod = model.producer(op.inputs[0])
        in_type = f"acc{prod.acc.acc_bits if prod.acc is not None else '?'}"
    rec = {
        "name": op.name,
        "op": op.source_op,
        "K": op.K,
        "channels": op.channels,
        "input_type": str(in_type),
        "weight_type": str(op.weight_type) if hasattr(op, "weight_type") else "-",
        "has_bias": getattr(op, "bias", None) is not None,
        "acc_bits": r.acc_bits,
        "acc_min": r.acc_min,
        "acc_max": r.acc_max,
        "acc_bits_datatype": r.datatype_bits,
        "acc_bits_a2q": r.a2q_bits,
        "acc_bits_a2qplus": r.a2qplus_bits,
        "acc_bits_per_channel": [int(b) for b in r.per_channel_bits],
        "target_acc_bits": getattr(op, "target_acc_bits", None),
        "quant": getattr(op, "quant_kind", None),
        "exceeds_target": r.exceeds_target,
        "worst_channel": r.worst_channel,
        "negated_channels": list(getattr(op, "negated_channels", ())),
        "adversarial_input_max": [int(v) for v in r.adversarial_max],
        "adversarial_input_min": [int(v) for v in r.adversarial_min],
    }
    if r.alignment:
        # what aligning the inputs' scales costs: per input its exact width, the multiplier (odd part, shift)
        # and the width of the aligned term
        rec["alignment"] = [dict(a) for a in r.alignment]
    if per_channel:
        rec["acc_min_per_channel"] = [int(v) for v in r.per_channel_min]
        rec["acc_max_per_channel"] = [int(v) for v in r.per_channel_max]
    return rec


def inspect(model, *, per_channel: bool = False, input_quant: Optional[str] = None) -> dict:
    """Per-layer accumulator sizing of a QONNX model: what ``a2qhls inspect --json`` prints.

    ``model``: a file path or a loaded :class:`~a2qhls.ir.Model`. Returns
    ``{"model": path, "layers": [record, ...]}`` (see the README for the record's keys);
    ``per_channel`` adds each channel's exact range; ``input_quant`` as for :func:`build`.
    Raises :class:`A2QError` on bad input.
    """
    state = run_steps(BuildState(source=model, config=BuildConfig(input_quant=input_quant)), BUILD_STEPS[:2])
    m = state.model
    path = m.source if isinstance(model, Model) else os.path.abspath(str(model))
    return {"model": path, "layers": [layer_record(m, op, per_channel=per_channel) for op in m.accumulating_ops()]}


def estimate_cost(model, *, folding=None, acc_bits=None, part=None, target_fps=None, clock_mhz=None, budget=None,
                  input_quant: Optional[str] = None, stream_weights=None) -> dict:
    """The build summary (``a2qhls.json``: layers, folding, cycles, resource estimates) of a model
    without writing or rendering anything: the build's steps up to ``memories``, then the summary.
    Arguments as for :func:`build`. Raises :class:`A2QError` on bad input."""
    from . import codegen

    check_options(part=part, clock_mhz=clock_mhz, stream_weights=stream_weights)
    cfg = BuildConfig(folding=folding, acc_bits=acc_bits, part=part, target_fps=target_fps, clock_mhz=clock_mhz, budget=budget,
                      input_quant=input_quant, stream_weights=stream_weights)
    if isinstance(model, Model):  # the steps record decisions on the IR: leave the caller's Model unchanged
        model = copy.deepcopy(model)
    names = [n for n, _ in BUILD_STEPS]
    state = run_steps(BuildState(source=model, config=cfg), BUILD_STEPS[: names.index("memories") + 1])
    m = state.model
    return codegen.summary(m, model_file=os.path.basename(m.source or MODEL_FILE), part=part or codegen.DEFAULT_PART)


def cosim(project_dir, *, random: int = 0, adversarial: bool = False, inputs=None, seed: int = 0, cxxflags: str = "-O1",
          ref_samples: Optional[int] = None) -> dict:
    """Compile a built project with g++ and compare C++, the bit-accurate model and QONNX bit for
    bit: what ``a2qhls cosim --json`` prints (see :mod:`a2qhls.cosimulation`).

    ``project_dir``: a folder written by :func:`build`. ``random``: number of random inputs
    (int >= 0) over the input quantizer's range, drawn with ``seed``. ``adversarial``: add each
    layer's worst-case inputs. ``inputs``: float inputs ``[batch, ...]`` as a numpy array or a
    ``.npy`` file path. ``ref_samples``: the QONNX reference runs on at most that many samples
    per group (default: all, or on a large net as many as fit
    :data:`a2qhls.cosimulation.REF_MAC_BUDGET` multiply-accumulates; the report's ``qonnx_samples``).
    Returns the report dict; raises :class:`A2QError` on bad input.
    """
    from .cosimulation import cosimulate

    for name, v in (("random", random), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise A2QError(f"{name}: expected an integer, got {type(v).__name__}")
    if inputs is not None and not isinstance(inputs, (str, os.PathLike, np.ndarray)):
        raise A2QError(f"inputs: expected a numpy array or a .npy file path, got {type(inputs).__name__}")

    return cosimulate(project_dir, random=random, adversarial=adversarial, inputs=inputs, seed=seed, cxxflags=cxxflags,
                      ref_samples=ref_samples)
