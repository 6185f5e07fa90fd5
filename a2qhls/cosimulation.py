"""C simulation of a generated project with g++, compared with the bit-accurate model and QONNX.

Three implementations run on the same inputs:

* the generated C++ (compiled with g++ against the ap_int/hls_stream headers, see
  :mod:`a2qhls.headers`), fed the integers the input quantizer produces;
* the bit-accurate numpy model (:mod:`a2qhls.sim`) with the build's widths;
* the QONNX reference: ``qonnx.core.onnx_exec.execute_onnx`` on the copied model (on a large net, on the
  first samples of each group that fit :data:`REF_MAC_BUDGET` multiply-accumulates, or ``ref_samples``;
  the report's ``qonnx_samples`` says how many),
  exactly as exported (float32), with the batch dimension resized.

C++ and the model must agree bit for bit on the output integers. The model and
QONNX are compared on every requantized activation (exact integers, recovered from
QONNX's float values) and on the float graph output (within a quarter of the
output's quantization step, so any integer difference counts and float32 rounding
noise does not), and the input quantizer against QONNX's own ``quant`` in float32.

QONNX computes each Gemm as a float32 sum of hundreds of float32 products; where the sum
nearly cancels, its error can reach ~1e-4 of an activation step and flip a rounding whose
exact value lies that close to a tie (seen: ~1 sample in 2000 on a 784-64-64-10 MLP with
normal inputs). Such a sample's first differing activation sits at an accumulator that
did not wrap, so the integers entering it agree with QONNX and only QONNX's float
rounding can differ; when the exact value (rational arithmetic) is within ``NEAR_TIE``
of a tie it is reported as ``qonnx_float32_near_ties`` and not counted as a mismatch.
A wrapped accumulator is never explained away. (Executing a float64 copy does not help:
qonnx's ``Quant`` casts its output to float32.)

Adversarial inputs: for every layer, the two input vectors that drive its worst
channel to ``acc_max`` / ``acc_min`` (A2QPLUS.md, bound 4). For the first layer they
are mapped back to float inputs through the input quantizer and run through the whole
network. For deeper layers they are *fed to that layer alone*: the C++ testbench
starts the pipeline at that layer (``--start L``), the model runs from that tensor,
and QONNX runs the graph cut at that tensor, fed its real value.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import A2QError
from .limits import MAX_SAMPLE_VALUES, MAX_SAMPLES
from .headers import find_cxx, find_headers
from .ir import Model, ZeroInsert
from .sim import BitSim, dequantize_input, onnx_layout, preprocess_input, to_real, unpreprocess_input

SUMMARY = "a2qhls.json"
MODEL_FILE = "model.onnx"

__all__ = ["Project", "load_project", "compile_csim", "run_csim", "QonnxReference", "cosimulate"]


@dataclass
class Project:
    dir: Path
    summary: dict
    model: Model
    sim: BitSim
    onnx_path: Path


def load_project(d) -> Project:
    """Re-import a build directory's model copy with its recorded widths and folding.

    The summary (``a2qhls.json``) is untrusted: it is read with size and nesting limits, its
    ``model`` must be ``model.onnx``, its overrides and folding are checked like the command
    line's, and the whole summary must equal the one a build of the copied model with those
    decisions writes; otherwise :class:`A2QError` asks for a rebuild."""
    from . import codegen
    from .files import load_json_file
    from .importer import load_qonnx
    from .passes.acc_bits import apply_acc_bits
    from .passes.accumulator import size_accumulators
    from .passes.folding import apply_folding

    d = Path(d)
    if not d.is_dir():
        raise A2QError(f"{d}: not a directory (expected the output of 'a2qhls build')")
    sp = d / SUMMARY
    if not sp.exists():
        raise A2QError(f"{d}: no {SUMMARY} found; is this the output of 'a2qhls build'?")
    summary = load_json_file(sp, "build summary")
    if not isinstance(summary, dict) or summary.get("tool") != "a2qhls":
        raise A2QError(f"{sp}: not an a2qhls build summary (no \"tool\": \"a2qhls\")")
    if summary.get("format") != codegen.FORMAT_VERSION:
        raise A2QError(f"{sp}: project format {json.dumps(summary.get('format'))[:20]}, this a2qhls reads format "
                       f"{codegen.FORMAT_VERSION} (the layout changed); rebuild the project with 'a2qhls build'")
    if summary.get("model") != MODEL_FILE:
        raise A2QError(f"{sp}: \"model\" is {json.dumps(summary.get('model'))[:80]}; a project's model copy is '{MODEL_FILE}'")
    overrides = summary.get("acc_bits_overrides", {})
    folding = summary.get("folding", {})
    for key, v in (("acc_bits_overrides", overrides), ("folding", folding)):
        if not isinstance(v, dict):
            raise A2QError(f"{sp}: \"{key}\" must be a JSON object, got {type(v).__name__}")
    input_quant = summary.get("input_quant")
    if input_quant is not None and not isinstance(input_quant, str):
        raise A2QError(f"{sp}: \"input_quant\" must be a string, got {type(input_quant).__name__}")
    onnx_path = d / MODEL_FILE
    model = apply_acc_bits(size_accumulators(load_qonnx(str(onnx_path), input_quant=input_quant)), overrides)
    sim = BitSim(model)
    apply_folding(model, folding)
    cost = summary.get("cost")
    part = cost.get("part") if isinstance(cost, dict) else None
    if not isinstance(part, str):
        raise A2QError(f"{sp}: no FPGA part recorded (\"cost\": {{\"part\": ...}}); rebuild the project")
    bus_bits = summary.get("bus_bits")
    if bus_bits is not None and (isinstance(bus_bits, bool) or not isinstance(bus_bits, int)):
        raise A2QError(f"{sp}: \"bus_bits\" must be an integer or null")
    control = summary.get("control")
    if control not in codegen.CONTROLS:
        raise A2QError(f"{sp}: \"control\" must be one of {', '.join(codegen.CONTROLS)}")
    streamed = summary.get("stream_weights")
    if not isinstance(streamed, list) or not all(isinstance(v, str) for v in streamed):
        raise A2QError(f"{sp}: \"stream_weights\" must be a list of layer names")
    from .passes.memories import apply_stream_weights

    apply_stream_weights(model, streamed)
    if json.loads(codegen.summary_json(codegen.summary(model, model_file=MODEL_FILE, part=part, bus_bits=bus_bits,
                                                       control=control))) != summary:
        raise A2QError(f"{sp}: does not match the project's {MODEL_FILE} (edited, or written by another a2qhls version); rebuild the project")
    return Project(d, summary, model, sim, onnx_path)


def compile_csim(project_dir, out_bin, cxxflags: str = "-O1") -> float:
    """Build the C simulation binary; returns seconds.

    Runs the compiler calls of :func:`a2qhls.codegen.csim_commands` (the same commands the
    project's ``build_csim.sh`` runs, rendered from the same description) as argument lists:
    no shell, nothing from the project folder is executed. ``cxxflags`` is split like a shell
    would split ``$CXXFLAGS`` (quotes respected, no expansion)."""
    import shlex

    from .codegen import csim_commands, csim_sources

    project = Path(project_dir).resolve()
    for src, _ in csim_sources([]):
        if not (project / src).is_file():
            raise A2QError(f"{project_dir}: {src} missing; rebuild the project")
    try:
        flags = shlex.split(cxxflags)
    except ValueError as e:
        raise A2QError(f"--cxxflags {cxxflags!r}: {e}") from None
    inc = find_headers()
    cxx = find_cxx()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="a2qhls-obj-") as obj:
        *compiles, link = csim_commands(project, include=inc, cxx=cxx, cxxflags=flags, obj=obj, binary=out_bin)
        # one compiler per core at a time (each unit is its own translation unit)
        from concurrent.futures import ThreadPoolExecutor

        def cc(c):
            r = subprocess.run(c, capture_output=True, text=True)
            return r.returncode, r.stdout, r.stderr

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            results = list(pool.map(cc, compiles))
        if all(rc == 0 for rc, _, _ in results):
            r = subprocess.run(link, capture_output=True, text=True)
            results.append((r.returncode, r.stdout, r.stderr))
    dt = time.perf_counter() - t0
    for rc, out, err in results:
        if rc != 0:
            msg = (err or out).strip().splitlines()
            first = next((l for l in msg if "error" in l), msg[0] if msg else "")
            raise A2QError(f"g++ failed to compile {project_dir} (exit {rc}): {first.strip()}")
    return dt


def _file_tag(tag: str) -> str:
    """A short, safe file-name part for a group name (layer names may hold '/', ':', newlines,
    thousands of characters): plain characters, at most 48 of them, plus a hash when changed."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_-]", "_", tag)[:48]
    if safe != tag:
        safe += "_" + hashlib.sha256(tag.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return safe


def run_csim(binary, ints: np.ndarray, workdir, start: int = 0, tag: str = "run", unit: Optional[int] = None) -> np.ndarray:
    """Run the testbench on integer vectors (one flattened, channels-last sample per row);
    returns the output integers. ``start``: feed layer ``start`` of a dense chain; ``unit``:
    feed that unit alone."""
    workdir = Path(workdir)
    tag = _file_tag(tag)
    inp, outp = workdir / f"{tag}_in.txt", workdir / f"{tag}_out.txt"
    ints = np.asarray(ints)
    ints = ints.reshape(len(ints), -1)
    with open(inp, "w") as f:
        for row in ints:
            f.write(" ".join(str(int(v)) for v in row) + "\n")
    args = [str(binary), str(inp), str(outp)] + (["--unit", str(unit)] if unit is not None else ["--start", str(start)])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise A2QError(f"C simulation failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
    rows = [[int(v) for v in line.split()] for line in outp.read_text().splitlines() if line.strip()]
    if len(rows) != len(ints):
        raise A2QError(f"C simulation wrote {len(rows)} output vectors for {len(ints)} inputs")
    return np.array(rows, dtype=np.int64)


class QonnxReference:
    """QONNX's executor on the exported model (float32), for any batch size, optionally cut at a tensor.

    ``float64=True``: the same graph with every standard ONNX op (Gemm, MatMul, Conv, Add, ...)
    computed in float64 (a Cast to double on each float input); QONNX's own ops (Quant, Trunc)
    run as exported. Accumulations above 2^24 are then exact, where float32 sums are not.
    ``input_quant``: the build's declared input type (``--input-quant``), inserted as the importer does.
    """

    def __init__(self, onnx_path, input_quant: Optional[str] = None, *, float64: bool = False):
        import onnx

        self.proto = onnx.load(str(onnx_path))
        if input_quant is not None:
            from .importer.input_quant import insert_input_quant

            self.proto = insert_input_quant(self.proto, input_quant, str(onnx_path))
        self.float64 = float64
        self._cache: dict = {}

    def _prepared(self, starts: Optional[tuple], shapes: tuple, end: Optional[str] = None):
        key = (starts, shapes, end)
        if key in self._cache:
            return self._cache[key]
        import onnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes

        p = onnx.ModelProto()
        p.CopyFrom(self.proto)
        g = p.graph
        inits = {i.name for i in g.initializer}
        vi0 = next(i for i in g.input if i.name not in inits)
        d0 = vi0.type.tensor_type.shape.dim
        b0 = d0[0].dim_value if len(d0) and d0[0].HasField("dim_value") else None
        batch = int(shapes[0][0])
        if starts is not None:
            known = set(inits) | set(starts) | {""}
            keep = []
            for n in g.node:  # exporters write nodes in topological order
                if any(o in starts for o in n.output):
                    continue  # the fed tensors replace their producers
                if n.op_type == "Constant" or all(i in known for i in n.input):
                    keep.append(n)
                    known.update(n.output)
            if end is None and not all(o.name in known for o in g.output):
                raise A2QError(f"cannot cut the QONNX graph at tensor(s) {', '.join(starts)}")
            if end is not None and end not in known:
                raise A2QError(f"cannot compute tensor '{end}' of the QONNX graph from {', '.join(starts)}")
            del g.node[:]
            g.node.extend(keep)
            old = [i for i in g.input if i.name in inits]
            del g.input[:]
            g.input.extend(old)
            for t, shape in zip(starts, shapes):
                g.input.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, list(shape)))
        else:
            vi0.type.tensor_type.shape.Clear()
            for sdim in shapes[0]:
                vi0.type.tensor_type.shape.dim.add().dim_value = int(sdim)
        if end is not None:
            del g.output[:]
            g.output.append(onnx.helper.make_tensor_value_info(end, onnx.TensorProto.FLOAT, None))
            need, order = {end}, []
            for n in reversed(list(g.node)):  # keep only what the end tensor needs
                if any(o in need for o in n.output):
                    order.append(n)
                    need.update(n.input)
            del g.node[:]
            g.node.extend(reversed(order))
        # a Reshape to a constant shape that bakes in the exported batch size (dynamo exports [1, C])
        if b0 is not None and b0 != batch:
            from onnx import numpy_helper

            byname = {i.name: i for i in g.initializer}
            for n in g.node:
                if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] in byname:
                    shp = numpy_helper.to_array(byname[n.input[1]]).copy()
                    if shp.ndim == 1 and shp.size and shp[0] == b0:
                        shp[0] = -1 if -1 not in shp else batch  # TorchScript's view(n, -1) bakes in [1, -1]
                        name = n.input[1] + f"__a2qhls_batch{batch}"
                        if name not in byname:
                            g.initializer.append(numpy_helper.from_array(shp.astype(np.int64), name))
                            byname[name] = g.initializer[-1]
                        n.input[1] = name
        del g.value_info[:]
        for vi in g.output:
            d = vi.type.tensor_type.shape.dim
            if len(d):
                d[0].dim_value = batch
        mw = ModelWrapper(p).transform(InferShapes())
        if not mw.check_all_tensor_shapes_specified():  # e.g. a Reshape whose shape is computed
            from qonnx.transformation.fold_constants import FoldConstants

            mw = mw.transform(FoldConstants()).transform(InferShapes())
        if self.float64:
            mw = _float64_accumulation(mw)
        self._cache[key] = mw
        return mw

    def input_name(self, start: Optional[str] = None) -> str:
        if start is not None:
            return start
        inits = {i.name for i in self.proto.graph.initializer}
        return next(i.name for i in self.proto.graph.input if i.name not in inits)

    def run(self, x, *, start: Optional[str] = None, full: bool = False, end: Optional[str] = None) -> dict:
        """Execute on a batch; ``x`` is the graph input, or the real value of tensor ``start``
        (NCHW for a feature map), or ``{tensor: real value}`` to feed several tensors.
        ``end``: compute only up to that tensor (it becomes the graph output)."""
        from qonnx.core.onnx_exec import execute_onnx

        if not isinstance(x, dict):
            x = {self.input_name(start): np.asarray(x, dtype=np.float32)}
            starts = (start,) if start is not None else None
        else:
            starts = tuple(sorted(x))
        feeds = {t: np.asarray(v, dtype=np.float32) for t, v in x.items()}
        names = tuple(sorted(feeds)) if starts is not None else tuple(feeds)

        def once(fd):
            mw = self._prepared(starts, tuple(tuple(int(v) for v in fd[t].shape) for t in names), end)
            return mw, execute_onnx(mw, fd, return_full_exec_context=full)

        n = len(next(iter(feeds.values())))
        try:
            return once(feeds)[1]
        except Exception:
            if n <= 1:
                raise
        # a graph that only runs one sample at a time (a Reshape to a fixed [1, -1] from a
        # TorchScript export): run per sample and stack what depends on the inputs
        runs = [once({t: v[i:i + 1] for t, v in feeds.items()}) for i in range(n)]
        mw, first = runs[0]
        dynamic = set(feeds)
        for node in mw.graph.node:
            if any(i in dynamic for i in node.input):
                dynamic.update(node.output)
        return {k: (np.concatenate([r[1][k] for r in runs], axis=0) if k in dynamic else v) for k, v in first.items()}


def _float64_accumulation(mw):
    """A copy of the graph whose standard ONNX ops compute in float64 (see :class:`QonnxReference`).
    onnxruntime has no float64 Conv: convolutions are first lowered to QONNX's Im2Col and a MatMul
    (qonnx's ``LowerConvsToMatMul``; the same sums, and MatMul runs in float64)."""
    import onnx
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    p = onnx.ModelProto()
    p.CopyFrom(mw.model)
    if any(n.op_type == "Conv" for n in p.graph.node):
        p = ModelWrapper(p).transform(InferShapes()).transform(LowerConvsToMatMul()).model
    g = p.graph
    infos = {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
    types = {k: vi.type.tensor_type.elem_type for k, vi in infos.items()}
    types.update({i.name: i.data_type for i in g.initializer})
    nodes, made = [], {}
    for n in g.node:
        if n.op_type == "Im2Col":  # QONNX's (numpy) Im2Col of the lowered convs keeps its input's dtype
            for o in n.output:
                if types.get(n.input[0]) == TensorProto.DOUBLE and o in infos:
                    infos[o].type.tensor_type.elem_type = types[o] = TensorProto.DOUBLE
        if n.domain not in ("", "ai.onnx") or n.op_type in ("Shape", "Constant", "Cast"):
            nodes.append(n)
            continue
        for k, t in enumerate(n.input):
            if t and types.get(t) == TensorProto.FLOAT:
                if t not in made:
                    c = made[t] = f"{t}__a2qhls_f64"
                    nodes.append(helper.make_node("Cast", [t], [c], to=TensorProto.DOUBLE))
                    vi = g.value_info.add()
                    if t in infos:
                        vi.CopyFrom(infos[t])
                    else:
                        init = next(i for i in g.initializer if i.name == t)
                        vi.CopyFrom(helper.make_tensor_value_info(t, TensorProto.FLOAT, list(init.dims)))
                    vi.name = c
                    vi.type.tensor_type.elem_type = TensorProto.DOUBLE
                n.input[k] = made[t]
        for o in n.output:
            if types.get(o) == TensorProto.FLOAT and o in infos:
                infos[o].type.tensor_type.elem_type = TensorProto.DOUBLE
                types[o] = TensorProto.DOUBLE
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return ModelWrapper(p)


# ----------------------------------------------------------------------------- comparison


@dataclass
class Group:
    """A set of inputs run through all three implementations.

    ``mode``: ``net`` (float inputs through the whole network), ``start`` (a dense chain fed at
    layer ``index``'s input and run to the end), ``unit`` (the unit of layer ``index`` of the
    summary fed alone: ``x`` is the list of its input tensors' stored integers).
    """

    name: str
    start_layer: int  # net: 0; start/unit: the layer index in the build summary
    x: object  # float inputs, or the stored integers of the layer's input(s)
    note: str = ""
    mode: str = "net"
    results: dict = field(default_factory=dict)


def _fmap_input(model: Model) -> bool:
    return len(model.tensors[model.ops[0].outputs[0]].shape) == 3


def _input_float(project: Project, n: int, rng) -> np.ndarray:
    """Random float inputs spanning the input quantizer's range plus clipping on both sides."""
    model = project.model
    iq = model.ops[0]
    t = iq.out_type
    shape = tuple(model.input_shape) if _fmap_input(model) else tuple(model.tensors[iq.outputs[0]].shape)
    if t.bipolar:  # both signs, zero and values near it
        x = rng.uniform(-2, 2, size=(n,) + shape) * float(iq.scale)
    else:
        q = rng.uniform(t.qmin - 2, t.qmax + 2, size=(n,) + shape)
        x = (q - float(iq.zero_point)) * float(iq.scale)
    if iq.pre:  # through the inverse of the float preprocessing, so the quantizer sees its whole range
        x = unpreprocess_input(iq, x)
    return x.astype(np.float32)


def _reshape_input(project: Project, x: np.ndarray) -> np.ndarray:
    shape = tuple(project.model.input_shape)
    feat = int(np.prod(shape))
    x = np.asarray(x)
    if x.ndim >= 1 and x.size % feat == 0 and (x.shape[1:] == shape or (x.ndim == 2 and x.shape[1] == feat)):
        return x.reshape((x.shape[0],) + shape).astype(np.float32)
    if x.shape == shape:
        return x.reshape((1,) + shape).astype(np.float32)
    raise A2QError(f"inputs of shape {list(x.shape)} do not match the model input {list(shape)} (batch first)")


def _tie_distance(model: Model, op, acc: int, j: int) -> float:
    """Distance (in output steps) of the exact pre-rounding value to the nearest multiple of 1/2,
    the smallest over every rounding stage of the Requant (a ``pre`` chain, a ``Trunc``'s first rounding)."""
    from fractions import Fraction

    info = model.tensors[op.inputs[0]]
    return _stage_tie_distance(op, int(acc), Fraction(float(info.scale[j])), Fraction(float(info.offset[j])), j)


def _stage_tie_distance(op, acc: int, sa, oa, j: int) -> float:
    from fractions import Fraction

    from .passes.thresholds import _pre_scale, _single, requant_exact

    if op.pre is not None:
        d1 = _stage_tie_distance(op.pre, acc, sa, oa, j)
        q1 = requant_exact(acc, sa, oa, op.pre, j)
        s1, zp1 = _pre_scale(op.pre, j)
        return min(d1, _stage_tie_distance(_single(op), q1, s1, -s1 * zp1, j))
    v = sa * acc + oa
    if op.relu:
        v = max(v, Fraction(0))
    if op.trunc is not None:  # only the first (half-even) rounding sees inexact float arithmetic
        u = v / Fraction(op.trunc.scale) + Fraction(op.trunc.zero_point)
    else:
        sc = np.asarray(op.scale).reshape(-1)
        u = v / Fraction(float(sc[j if sc.size > 1 else 0])) + Fraction(float(np.asarray(op.zero_point).reshape(-1)[0]))
    if op.out_type.bipolar:  # the sign's one breakpoint: v / s = 0
        return float(abs(u))
    twice = 2 * u
    return float(abs(twice - round(twice)) / 2)


NEAR_TIE = 1e-3
#: float32 ulps of an output value within which QONNX's float output agrees with the model's
#: (QONNX's Gemm/Conv with a float32 bias add and scale multiply round a few times)
OUTPUT_F32_ULPS = 4
# QONNX's executor is slow on large nets (node by node): per group it runs on the first samples that fit
# this many multiply-accumulates (ResNet18 on CIFAR-10, 0.56 G per image: 8 images; small nets: all)
REF_MAC_BUDGET = 5 * 10**9


def _from_qonnx(model: Model, tensor: str, a, n: int, onnx_name: Optional[str] = None) -> np.ndarray:
    """A QONNX value (NCHW for a feature map) of the IR tensor ``tensor`` -> channels-last, flattened
    ``[n, size]`` float64. Read as a graph output (``onnx_name`` in ``model.output_names``), it must have
    the shape the model states for that output (:meth:`~a2qhls.ir.Model.output_onnx_shape`)."""
    shape = tuple(model.tensors[tensor].shape)
    a = np.asarray(a, dtype=np.float64)
    if onnx_name in model.output_names:
        want = model.output_onnx_shape(model.output_names.index(onnx_name))
        if tuple(a.shape[1:]) != want:
            raise A2QError(f"QONNX's output '{onnx_name}' has shape {list(a.shape[1:])} per sample, the model's {list(want)}")
    if len(shape) == 3:
        H, W, C = shape
        a = a.reshape(n, C, H, W).transpose(0, 2, 3, 1)
    return a.reshape(n, -1)


def _stored_of_real(info, r: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """Stored integers of an activation tensor from its real values ``r`` (QONNX's), scale ``sc``."""
    y = np.round(r / sc).astype(np.int64)
    return (y + 1) // 2 if info.dtype.bipolar else y + int(info.dtype.zero_point)


def _flat(a, n: int) -> np.ndarray:
    return np.asarray(a).reshape(n, -1)


def macs_per_sample(model: Model) -> int:
    """Multiply-accumulates of one sample through every Dense and Conv of ``model`` (K per output value)."""
    from .ir import Conv, Dense

    total = 0
    for op in model.ops:
        if isinstance(op, Dense):
            total += int(op.K) * int(op.channels)
        elif isinstance(op, Conv):
            total += int(op.K) * int(np.prod(op.out_shape))
    return total


def reference_samples(model: Model, n: int, ref_samples: Optional[int] = None) -> int:
    """How many of a group's ``n`` samples the QONNX reference runs on (the first ones): ``ref_samples``
    if given (at most ``n``), else all of them when ``n`` samples fit :data:`REF_MAC_BUDGET`
    multiply-accumulates, else as many as fit, at least one."""
    if ref_samples is not None:
        return min(n, int(ref_samples))
    return int(min(n, max(1, REF_MAC_BUDGET // max(1, macs_per_sample(model)))))


def _compare_output(model: Model, cmp_t: str, onnx_out_name: str, vals, ctx, n: int, m: int) -> tuple:
    """One compared output (a graph output, or a unit's output tensor): ``(out_bad, out_f32, model_real,
    ref_out, tol)`` per sample: differs from QONNX's by more than a quarter of its step (``out_bad``), or
    only within QONNX's float32 accumulation error (``out_f32``); QONNX runs on the first ``m`` samples."""
    out_info = model.tensors[cmp_t]
    model_real = _flat(to_real(model, cmp_t, vals[cmp_t]), n)
    tol = 0.25 * np.abs(np.resize(np.asarray(out_info.scale, dtype=np.float64), model_real.shape[1]))
    out_bad = np.zeros(n, dtype=bool)
    out_f32 = np.zeros(n, dtype=bool)
    if ctx is not None:
        ref_out = _from_qonnx(model, cmp_t, ctx[onnx_out_name], m, onnx_out_name)
        ulps = OUTPUT_F32_ULPS * np.spacing(np.abs(ref_out).astype(np.float32)).astype(np.float64)
        diff = np.abs(model_real[:m] - ref_out)
        out_bad[:m] = np.any(diff > tol, axis=1)
        # an unquantized output accumulator that QONNX sums in float32: a difference within a few
        # float32 ulps of the value, or within the float32 dot-product error bound (Higham:
        # (K + 1) u sum|w x|, with sum|w x| at most the channel's exact range acc_max - acc_min,
        # times the output scale), is QONNX's rounding: counted as qonnx_float32_rounding
        allowed = np.maximum(tol, ulps)
        prod = model.producer(cmp_t)
        rep = getattr(prod, "acc", None) if prod is not None else None
        if rep is not None and getattr(prod, "K", None) and model.tensors[cmp_t].dtype is None:
            span = np.resize(np.asarray(rep.per_channel_max, dtype=np.float64) - np.asarray(rep.per_channel_min, dtype=np.float64),
                             model_real.shape[1])
            scale = np.abs(np.resize(np.asarray(out_info.scale, dtype=np.float64), span.shape))
            allowed = np.maximum(allowed, (int(prod.K) + 1) * 2.0 ** -24 * span * scale)
        within = out_bad[:m] & np.all(diff <= allowed, axis=1)
        out_f32[:m] = within
        out_bad[:m] &= ~within
    else:
        ref_out = model_real[:m]
    return out_bad, out_f32, model_real, ref_out, tol


def _compare_group(project: Project, ref: "QonnxReference", binary, workdir, g: Group, ref64: Optional["QonnxReference"] = None,
                   ref_samples: Optional[int] = None) -> dict:
    from qonnx.custom_op.general.quant import quant

    model, sim = project.model, project.sim
    layers = project.summary["layers"]
    L = g.start_layer
    acc_ops = {op.name: op for op in model.accumulating_ops()}
    iq_bad = None
    if g.mode == "net":
        n = len(g.x)
        iq = model.ops[0]
        vals = sim.run(g.x, keep=True)
        q_in = _flat(vals[iq.outputs[0]], n)
        ref_x = g.x.reshape((n,) + tuple(model.input_shape)).astype(np.float32)
        # the input quantizer vs QONNX's own Quant function, in float32 as exported: exact
        t = iq.out_type
        if t.bipolar:
            from qonnx.custom_op.general.bipolar_quant import binary_quant

            y_ref = binary_quant(preprocess_input(iq, ref_x), np.float32(iq.scale))
        else:
            y_ref = quant(preprocess_input(iq, ref_x), iq.scale, iq.zero_point, np.float32(t.bits), t.signed, t.narrow, iq.rounding_mode)
        q_nchw = onnx_layout(model, iq.outputs[0], vals[iq.outputs[0]])
        y_model = (t.values(q_nchw.astype(np.float32)) - np.float32(iq.zero_point)) * np.float32(iq.scale)
        iq_bad = np.any(y_ref.reshape(n, -1) != y_model.reshape(n, -1), axis=1)
        cpp = run_csim(binary, q_in, workdir, start=0, tag=g.name)
        run_ref = lambda r, sel: r.run(ref_x[sel], full=True)  # noqa: E731
        fed = "network input (float, through the input quantizer)"
    elif g.mode == "start":
        start_tensor = layers[L]["input_tensor"]
        q_in = np.asarray(g.x, dtype=np.int64)
        n = len(q_in)
        vals = sim.run(q_in, start=start_tensor, keep=True)
        ref_x = onnx_layout(model, start_tensor, to_real(model, start_tensor, sim._shaped(start_tensor, q_in))).astype(np.float32)
        cpp = run_csim(binary, q_in, workdir, start=L, tag=g.name)
        run_ref = lambda r, sel: r.run(ref_x[sel], start=start_tensor, full=True)  # noqa: E731
        fed = f"layer {L} ('{layers[L]['name']}') and the rest of the network, at tensor '{start_tensor}'"
    else:
        ly = layers[L]
        ins = ly["input_tensors"]
        qs = [np.asarray(q, dtype=np.int64) for q in g.x]
        n = len(qs[0])
        feeds = {t: q for t, q in zip(ins, qs)}
        stop = ly["activation"] or ly["name"]
        out_t = ly["output_tensor"]
        cmp_t = out_t
        onnx_names = {t for nd in ref.proto.graph.node for t in nd.output}
        nxt = model.consumers(out_t)
        if out_t not in onnx_names and len(nxt) == 1 and (nxt[0].op == "DepthToSpace" or nxt[0].op == "Pool" and nxt[0].mode == "max"):
            # a max pool the importer moved after the activation, or an activation it moved before a
            # DepthToSpace: QONNX has the pooled / reordered tensor only
            stop, cmp_t = nxt[0].name, nxt[0].outputs[0]
        vals = sim.run(feeds, keep=True, stop=stop)
        cpp = run_csim(binary, np.concatenate([_flat(q, n) for q in qs], axis=1), workdir, unit=ly["unit"], tag=g.name)
        # an accumulator input's real value is that of the ONNX tensor the op reads (after its BatchNormalization)
        src = dict(zip(acc_ops[ly["name"]].inputs, getattr(acc_ops[ly["name"]], "source_inputs", ()) or ()))
        ref_feeds = {}
        for t, q in feeds.items():
            prod = model.producer(t)
            if isinstance(prod, ZeroInsert) and t not in onnx_names:
                # a transposed convolution's zero-inserted input: QONNX reads the tensor before the insertion
                zy, zx = prod.factor
                ref_feeds[prod.inputs[0]] = sim._shaped(t, q)[:, ::zy, ::zx]
            else:
                ref_feeds[t] = sim._shaped(t, q)
        ref_x = {src.get(t, t): onnx_layout(model, t, to_real(model, t, q)).astype(np.float32) for t, q in ref_feeds.items()}
        onnx_out_name = model.output_names[model.outputs.index(cmp_t)] if cmp_t in model.outputs and model.output_names else cmp_t
        if ly["activation"] is None and len(nxt) == 1 and getattr(nxt[0], "source_inputs", ()):
            # an accumulator that feeds an add or an average pool: its real value is the ONNX tensor that op reads
            onnx_out_name = dict(zip(nxt[0].inputs, nxt[0].source_inputs)).get(cmp_t, onnx_out_name)
        run_ref = lambda r, sel: r.run({t: v[sel] for t, v in ref_x.items()}, full=True, end=onnx_out_name)  # noqa: E731
        fed = f"layer {L} ('{ly['name']}', unit {ly['cname']}) alone, at tensor(s) {', '.join(repr(t) for t in ins)}"
    if iq_bad is None:
        iq_bad = np.zeros(n, dtype=bool)
    if g.mode != "unit":
        # every graph output, in graph-output order: the testbench writes them on one line in that order
        names = model.output_names or [o.name for o in ref.proto.graph.output]
        compared = [(t, names[k] if k < len(names) else t, f"out{k}" if len(model.outputs) > 1 else "out")
                    for k, t in enumerate(model.outputs)]
    else:
        compared = [(cmp_t, onnx_out_name, None)]
    # what the C++ wrote: the graph outputs, or the unit's own output tensor (before a DepthToSpace/max pool QONNX has after it)
    written = [t for t, _, _ in compared] if g.mode != "unit" else [out_t]
    model_out = np.concatenate([_flat(vals[t], n).astype(np.int64) for t in written], axis=1)
    if cpp.shape != model_out.shape:
        raise A2QError(f"C simulation wrote {cpp.shape[1]} values per sample, the model's outputs have {model_out.shape[1]}; "
                       "rebuild the project")
    cpp_bad = np.any(cpp != model_out, axis=1)
    ref_error = None
    m = reference_samples(model, n, ref_samples)  # QONNX runs on the first m samples (C++ vs model on all n)
    try:
        ctx = run_ref(ref, slice(0, m)) if m else None
    except Exception as e:  # the reference's own failure: C++ vs model still stands
        ctx, ref_error = None, _reason(e)
    out_bad = np.zeros(n, dtype=bool)
    out_f32 = np.zeros(n, dtype=bool)  # output differences within QONNX's float32 accumulation error
    per_output, max_err, at = [], 0.0, 0
    for cmp_t, onnx_out_name, port in compared:
        width = model_out.shape[1] if port is None else _flat(vals[cmp_t], n).shape[1]  # a unit: its whole output
        cpp_bad_k = np.any(cpp[:, at:at + width] != model_out[:, at:at + width], axis=1)
        at += width
        bad_k, f32_k, model_real, ref_out, tol = _compare_output(model, cmp_t, onnx_out_name, vals, ctx, n, m)
        out_bad |= bad_k
        out_f32 |= f32_k
        max_err = max(max_err, float(np.max(np.abs(model_real[:m] - ref_out))) if m else 0.0)
        per_output.append({"port": port, "tensor": cmp_t, "name": onnx_out_name, "mismatches_cpp_vs_model": int(cpp_bad_k.sum()),
                           "output_mismatches_model_vs_qonnx": int(bad_k.sum()), "tol": tol, "model_real": model_real})
    wrapped_any = np.zeros(n, dtype=bool)
    per_layer = []
    any_bad = out_bad | iq_bad
    explained = np.zeros(n, dtype=bool)  # first difference is a float32 near-tie in QONNX
    decided = iq_bad.copy()
    for i, ly in enumerate(layers):
        entry = {"layer": ly["name"], "kind": ly.get("kind", "mvu"), "acc_bits": ly["acc_bits"], "safe_acc_bits": ly["safe_acc_bits"]}
        op = acc_ops[ly["name"]]
        if (g.mode == "unit" and i != L) or not all(t in vals for t in op.inputs) or op.outputs[0] not in vals:
            entry["skipped"] = "not run (inputs fed elsewhere)"
            per_layer.append(entry)
            continue
        exact = _flat(sim.accumulate(op, [vals[t] for t in op.inputs], exact=True), n)
        acc = _flat(vals[op.outputs[0]], n)
        wrapped = np.any(exact != acc, axis=1)
        wrapped_any |= wrapped
        entry.update(
            acc_min_seen=int(np.min(exact)),
            acc_max_seen=int(np.max(exact)),
            samples_overflowing=int(wrapped.sum()),
        )
        act = ly["activation"]
        if ctx is not None and act is not None and ly["output_tensor"] in ctx and ly["output_tensor"] in vals:
            info = model.tensors[ly["output_tensor"]]
            C = info.channels
            r = _from_qonnx(model, ly["output_tensor"], ctx[ly["output_tensor"]], m)
            sc = np.resize(np.asarray(info.scale, dtype=np.float64), r.shape[1])
            q_ref = _stored_of_real(info, r, sc)
            diff = q_ref != _flat(vals[ly["output_tensor"]], n)[:m]  # rows: the first m samples
            bad = np.zeros(n, dtype=bool)
            bad[:m] = np.any(diff, axis=1)
            entry["activation_mismatches_vs_qonnx"] = int(bad.sum())
            # a first difference at an accumulator that did not wrap comes from QONNX's float32
            # arithmetic; it is explained when the exact value lies within NEAR_TIE of a rounding tie
            rq = next(o for o in model.ops if o.name == act)
            for b in np.flatnonzero(bad & ~decided):
                if wrapped[b]:
                    continue
                dist = max(_tie_distance(model, rq, int(acc[b, k]), int(k % C)) for k in np.flatnonzero(diff[b]))
                explained[b] = dist < NEAR_TIE
            decided |= bad | wrapped
            any_bad |= bad
        per_layer.append(entry)
    real_bad = any_bad & ~explained
    # float32 accumulation in QONNX (sums above 2^24, e.g. a wide float graph output): the samples
    # left are run again with QONNX's standard ops in float64; where that reference agrees with
    # the model on every activation and the output, and no accumulator wrapped, the difference
    # was QONNX's float32 arithmetic
    f64 = np.zeros(n, dtype=bool)
    if ref64 is not None and ctx is not None and real_bad.any():
        idx = np.flatnonzero(real_bad & ~wrapped_any & ~iq_bad)
        if idx.size:
            try:
                ctx64 = run_ref(ref64, idx)
            except Exception:
                ctx64 = None
            if ctx64 is not None:
                f64[idx] = np.all([_reference_agrees(model, layers, ctx64, vals, idx, n, o["tensor"], o["name"], o["model_real"], o["tol"])
                                   for o in per_output], axis=0)
        real_bad &= ~f64
    return {
        "group": g.name,
        "samples": n,
        "qonnx_samples": m if ctx is not None else 0,
        "fed_to": fed,
        "note": g.note,
        "mismatches_cpp_vs_model": int(cpp_bad.sum()),
        "mismatches_model_vs_qonnx": int(real_bad.sum()),
        "qonnx_float32_near_ties": int((any_bad & explained).sum()),
        "qonnx_float32_rounding": int((f64 | (out_f32 & ~real_bad)).sum()),
        "qonnx_error": ref_error,
        "output_mismatches_model_vs_qonnx": int(out_bad.sum()),
        "input_quant_mismatches_vs_qonnx": int(iq_bad.sum()),
        "max_abs_output_error_vs_qonnx": max_err,
        **({"outputs": [{k: v for k, v in o.items() if k not in ("tol", "model_real")} for o in per_output]}
           if len(per_output) > 1 else {}),
        "layers": per_layer,
    }


def _reason(e: BaseException) -> str:
    from .escape import display

    msg = str(e).strip().splitlines()
    return display(f"{type(e).__name__}: {msg[0] if msg else ''}", limit=300)


def _reference_agrees(model: Model, layers: list, ctx, vals, idx, n: int, out_t: str, onnx_out_name: str, model_real, tol) -> np.ndarray:
    """Per selected sample: the reference context ``ctx`` (of those samples) matches the model on
    the output (within ``tol``) and on every requantized activation it computed."""
    m = len(idx)
    ok = ~np.any(np.abs(model_real[idx] - _from_qonnx(model, out_t, ctx[onnx_out_name], m, onnx_out_name)) > tol[None, :], axis=1)
    for ly in layers:
        t = ly["output_tensor"]
        if ly["activation"] is None or t not in ctx or t not in vals:
            continue
        info = model.tensors[t]
        r = _from_qonnx(model, t, ctx[t], m)
        sc = np.resize(np.asarray(info.scale, dtype=np.float64), r.shape[1])
        q_ref = _stored_of_real(info, r, sc)
        ok &= ~np.any(q_ref != _flat(vals[t], n)[idx], axis=1)
    return ok


def place_patch(op, patch, in_t, want: str = "max") -> tuple[np.ndarray, tuple]:
    """A ``[H, W, C]`` input feature map (stored integers) that puts the worst channel's adversarial
    ``patch`` (window values ``q - zp`` in (ky, kx, c) order, from the sizing report) at the
    output position whose window mask reaches the extreme (``want``: ``max`` or ``min``) of that
    channel; the rest of the map holds an arbitrary valid value. Returns ``(fmap, (oy, ox))``."""
    H, W, C = op.in_shape
    kh, kw = op.kernel
    sh, sw = op.stride
    t, l = op.pads[:2]
    zy, zx = getattr(op, "zero_insert", (1, 1))  # a transposed convolution: only (iy % zy, ix % zx) == 0 carry data
    OH, OW = op.out_shape[:2]
    j = int(op.acc.worst_channel)
    w = np.asarray(op.weight[j]).astype(object)  # [kh, kw, cin_g]
    p = np.asarray(patch).astype(object).reshape(kh, kw, -1)
    best = None
    for oy in range(OH):
        for ox in range(OW):
            rows = np.array([0 <= oy * sh - t + dy < H and (oy * sh - t + dy) % zy == 0 for dy in range(kh)])
            cols = np.array([0 <= ox * sw - l + dx < W and (ox * sw - l + dx) % zx == 0 for dx in range(kw)])
            mask = np.outer(rows, cols)[:, :, None]
            v = int((w * p * mask).sum())
            key = v if want == "max" else -v
            if best is None or key > best[0]:
                best = (key, oy, ox)
    _, oy, ox = best
    fill = min(max(in_t.zero_point, in_t.qmin), in_t.qmax)
    fmap = np.full((H, W, C), fill, dtype=np.int64)
    if (zy, zx) != (1, 1):  # structural zeros: the stored zero-point
        fmap[:] = in_t.zero_point
    for dy in range(kh):
        for dx in range(kw):
            iy, ix = oy * sh - t + dy, ox * sw - l + dx
            if 0 <= iy < H and 0 <= ix < W and iy % zy == 0 and ix % zx == 0:
                if op.depthwise:
                    fmap[iy, ix, j] = in_t.stored(int(p[dy, dx, 0]))
                else:
                    fmap[iy, ix, :] = in_t.stored(np.asarray(p[dy, dx, :], dtype=np.int64))
    return fmap, (oy, ox)


def adversarial_groups(project: Project) -> list:
    """Per layer (every op with an accumulator), the inputs reaching its worst channel's acc_max and acc_min.

    A dense chain (MLP): the first layer's through the whole network, each deeper layer's fed at
    that layer and run to the end. Otherwise (CNNs): the first layer, if it reads the input
    quantizer, through the whole network (a convolution's patch placed in an input image with
    :func:`place_patch`); every other op fed to its unit alone: a convolution the placed patch,
    a dense layer its adversarial vector, an average pool a map of the input's max (min) value
    (per channel: an accumulator's exact range), a residual add both inputs at their per-channel max (min).
    """
    from .ir import Conv, Dense
    from .passes.accumulator import operand_range

    model = project.model
    layers = project.summary["layers"]
    chain = project.summary.get("chain", True)
    ops = {op.name: op for op in model.accumulating_ops()}
    iq = model.ops[0]
    groups = []
    for i, ly in enumerate(layers):
        d = ops[ly["name"]]
        rep = d.acc
        in_t = model.tensors[d.inputs[0]].dtype
        note = f"worst channel {rep.worst_channel}: acc_max {int(rep.per_channel_max[rep.worst_channel])}, acc_min {int(rep.per_channel_min[rep.worst_channel])}"
        if chain:
            q = in_t.stored(np.stack([rep.adversarial_max, rep.adversarial_min]).astype(np.int64))
            if i == 0:
                groups.append(Group(f"adversarial_{d.name}", 0, dequantize_input(iq, q), note))
            else:
                groups.append(Group(f"adversarial_{d.name}", i, q, note, mode="start"))
            continue
        shape = tuple(model.tensors[d.inputs[0]].shape)
        if isinstance(d, Conv):
            fmaps = [place_patch(d, rep.adversarial_max, in_t, "max"), place_patch(d, rep.adversarial_min, in_t, "min")]
            note += "; patch at output pixels " + ", ".join(str(pos) for _, pos in fmaps)
            xs = [np.stack([f for f, _ in fmaps])]
        elif isinstance(d, Dense):
            xs = [in_t.stored(np.stack([rep.adversarial_max, rep.adversarial_min]).astype(np.int64)).reshape((2,) + shape)]
        else:  # average pool, residual add: every input at its per-channel max (min); all multipliers are positive
            xs = []
            for t in d.inputs:
                lo, hi = operand_range(model, t)
                dt = model.tensors[t].dtype
                stored = dt.stored if dt is not None else (lambda v: v)  # values -> stored (2q - 1 bipolar); an accumulator: as is
                prod = model.producer(t)
                if dt is None and prod.acc_bits is not None:  # what the producer's width can carry
                    half = 1 << (int(prod.acc_bits) - 1)
                    lo = [max(int(v), -half) for v in lo]
                    hi = [min(int(v), half - 1) for v in hi]
                st = tuple(model.tensors[t].shape)
                xs.append(np.stack([np.broadcast_to(stored(np.asarray(hi, dtype=np.int64)), st),
                                    np.broadcast_to(stored(np.asarray(lo, dtype=np.int64)), st)]).astype(np.int64))
        if i == 0 and d.inputs[0] == iq.outputs[0] and isinstance(d, (Conv, Dense)):
            q0 = xs[0]
            if len(shape) == 3:  # NHWC -> the NCHW (or [C, L]) float input's layout
                q0 = q0.transpose(0, 3, 1, 2).reshape((len(q0),) + tuple(model.input_shape))
            x = dequantize_input(iq, q0)
            groups.append(Group(f"adversarial_{d.name}", 0, np.ascontiguousarray(x), note))
        else:
            groups.append(Group(f"adversarial_{d.name}", i, xs, note, mode="unit"))
    return groups


def _load_inputs(path) -> np.ndarray:
    """A ``.npy`` file of float inputs, checked from its header before its data is read: real
    numbers (no complex, bool or object arrays), at least one sample, at most
    :data:`~a2qhls.limits.MAX_SAMPLES` samples and :data:`~a2qhls.limits.MAX_SAMPLE_VALUES` values,
    the data as long as the header says, every value finite and within float32's range."""
    from .files import regular_file

    p = regular_file(path, "numpy (.npy) file")
    fmt = np.lib.format
    try:
        with open(p, "rb") as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            start = f.tell()
    except (ValueError, OSError, SyntaxError, TypeError, UnicodeDecodeError) as e:
        raise A2QError(f"{p}: not a numpy .npy file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    _check_inputs_header(shape, dtype, p)
    n = int(np.prod(shape))
    if os.path.getsize(p) < start + n * dtype.itemsize:
        raise A2QError(f"{p}: the data is shorter than its header's shape {list(shape)} needs")
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise A2QError(f"{p}: cannot read a numpy array ({str(e).splitlines()[0]})") from None
    return _check_inputs(arr, p)


def _check_inputs_header(shape, dtype, what) -> None:
    from .limits import check_elements

    if dtype.hasobject or dtype.kind not in "iuf":
        desc = "complex numbers (the imaginary part would be dropped)" if dtype.kind == "c" else f"element type {dtype}"
        raise A2QError(f"{what}: holds {desc}; inputs must be real numbers (float or integer)")
    n = check_elements(shape, f"{what}", MAX_SAMPLE_VALUES)
    if n == 0 or len(shape) == 0:
        raise A2QError(f"{what}: holds no samples (shape {list(shape)}); inputs are [batch, ...] with batch >= 1")
    if shape[0] > MAX_SAMPLES:
        raise A2QError(f"{what}: {shape[0]} samples, above the limit of {MAX_SAMPLES} per run (see README, Limits)")


def _check_inputs(arr: np.ndarray, what) -> np.ndarray:
    """Float inputs: real numbers, 1..MAX_SAMPLES samples, every value finite within float32's range."""
    _check_inputs_header(arr.shape, arr.dtype, what)
    a = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(a) | (np.abs(np.nan_to_num(a)) > np.finfo(np.float32).max)
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise A2QError(f"{what}: value {a[i]} at index {list(map(int, i))}; inputs must be finite float32 numbers")
    return arr


def cosimulate(project_dir, *, random: int = 0, adversarial: bool = False, inputs=None, seed: int = 0, cxxflags: str = "-O1",
               ref_samples: Optional[int] = None) -> dict:
    """Compile, run and compare; returns the report (see module doc). ``ref_samples``: QONNX runs on at
    most that many samples of each group (default: :func:`reference_samples`)."""
    def int_in(v, hi: int) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and 0 <= int(v) <= hi

    if ref_samples is not None and not int_in(ref_samples, MAX_SAMPLES):
        raise A2QError(f"--ref-samples {ref_samples}: must be an integer in 0..{MAX_SAMPLES}")
    if not int_in(seed, 2**64 - 1):
        raise A2QError(f"--seed {seed}: must be an integer in 0..2^64-1")
    if not int_in(random, MAX_SAMPLES):
        raise A2QError(f"--random {random}: must be an integer in 0..{MAX_SAMPLES} (see README, Limits; run several seeds for more)")
    x_in = None  # checked before anything is compiled
    if isinstance(inputs, np.ndarray):
        x_in = _check_inputs(inputs, "inputs")
    elif inputs is not None:
        x_in = _load_inputs(inputs)
    project = load_project(project_dir)
    feat = int(np.prod(project.model.input_shape))
    groups = []
    if x_in is not None:
        groups.append(Group("inputs", 0, _reshape_input(project, x_in), f"from {inputs if not isinstance(inputs, np.ndarray) else 'the given array'}"))
    if random:
        if int(random) * feat > MAX_SAMPLE_VALUES:
            raise A2QError(f"--random {random}: {random} samples of {feat} values exceed the limit of {MAX_SAMPLE_VALUES} values per run "
                           f"(at most {MAX_SAMPLE_VALUES // feat} samples for this model; see README, Limits)")
        rng = np.random.default_rng(int(seed))
        groups.append(Group("random", 0, _input_float(project, int(random), rng), f"uniform over the input range, seed {seed}"))
    if adversarial:
        groups.extend(adversarial_groups(project))
    if not groups:
        raise A2QError("nothing to simulate: give --random N, --adversarial and/or --inputs FILE.npy")
    ref = QonnxReference(project.onnx_path, project.model.input_quant)
    ref64 = QonnxReference(project.onnx_path, project.model.input_quant, float64=True)
    with tempfile.TemporaryDirectory(prefix="a2qhls-cosim-") as work:
        binary = Path(work) / "a2q_csim"
        compile_s = compile_csim(project.dir, binary, cxxflags)
        t0 = time.perf_counter()
        results = [_compare_group(project, ref, binary, work, g, ref64, ref_samples) for g in groups]
        run_s = time.perf_counter() - t0
    return {
        "project": str(project_dir),
        "samples": int(sum(r["samples"] for r in results)),
        "qonnx_samples": int(sum(r["qonnx_samples"] for r in results)),
        "mismatches_cpp_vs_model": int(sum(r["mismatches_cpp_vs_model"] for r in results)),
        "mismatches_model_vs_qonnx": int(sum(r["mismatches_model_vs_qonnx"] for r in results)),
        "acc_bits": {ly["name"]: ly["acc_bits"] for ly in project.summary["layers"]},
        "safe_acc_bits": {ly["name"]: ly["safe_acc_bits"] for ly in project.summary["layers"]},
        "headers": str(find_headers()),
        "compile_seconds": round(compile_s, 3),
        "run_seconds": round(run_s, 3),
        "qonnx_float32_near_ties": int(sum(r["qonnx_float32_near_ties"] for r in results)),
        "qonnx_float32_rounding": int(sum(r["qonnx_float32_rounding"] for r in results)),
        "qonnx_error": next((f"{r['group']}: {r['qonnx_error']}" for r in results if r["qonnx_error"]), None),
        "reference": "qonnx execute_onnx on the exported float32 graph; differences whose first cause is an "
        f"activation within {NEAR_TIE} of a rounding tie at a non-wrapping accumulator are counted as "
        "qonnx_float32_near_ties, and samples on which the same graph with float64 accumulation (standard ops "
        "in float64, QONNX ops as exported) agrees with the model everywhere, with no accumulator wrapping, "
        "or whose only difference is an unquantized output within float32's dot-product error bound "
        "((K + 1) 2^-24 (acc_max - acc_min) scale per channel), as qonnx_float32_rounding; neither counts as a mismatch. qonnx_error: why the reference could not run "
        "(then only C++ vs model is compared)",
        "groups": results,
    }
