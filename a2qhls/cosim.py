"""C simulation of a generated project with g++, compared with the bit-accurate model and QONNX.

Three implementations run on the same inputs:

* the generated C++ (compiled with g++ against the ap_int/hls_stream headers, see
  :mod:`a2qhls.headers`), fed the integers the input quantizer produces;
* the bit-accurate numpy model (:mod:`a2qhls.sim`) with the build's widths;
* the QONNX reference: ``qonnx.core.onnx_exec.execute_onnx`` on the copied model,
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
from .headers import find_cxx, find_headers
from .ir import Model
from .sim import BitSim, dequantize_input, to_real

SUMMARY = "a2qhls.json"

__all__ = ["Project", "load_project", "compile_csim", "run_csim", "QonnxReference", "cosimulate"]


@dataclass
class Project:
    dir: Path
    summary: dict
    model: Model
    sim: BitSim
    onnx_path: Path


def load_project(d) -> Project:
    """Re-import a build directory's model copy with its recorded widths."""
    from .importer import load_qonnx
    from .passes.accumulator import size_accumulators

    d = Path(d)
    if not d.is_dir():
        raise A2QError(f"{d}: not a directory (expected the output of 'a2qhls build')")
    sp = d / SUMMARY
    if not sp.is_file():
        raise A2QError(f"{d}: no {SUMMARY} found; is this the output of 'a2qhls build'?")
    try:
        summary = json.loads(sp.read_text())
        onnx_path = d / summary["model"]
        overrides = {str(k): int(v) for k, v in summary.get("acc_bits_overrides", {}).items()}
        _ = summary["layers"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise A2QError(f"{sp}: not a valid a2qhls build summary ({type(e).__name__}: {e})") from None
    model = size_accumulators(load_qonnx(str(onnx_path)))
    sim = BitSim(model, overrides)
    return Project(d, summary, model, sim, onnx_path)


def compile_csim(project_dir, out_bin, cxxflags: str = "-O1") -> float:
    """Build the C simulation binary with the project's own build script; returns seconds."""
    inc = find_headers()
    cxx = find_cxx()
    env = dict(os.environ, AP_INCLUDE=str(inc), CXX=cxx, CXXFLAGS=cxxflags, CSIM_BIN=str(out_bin))
    script = Path(project_dir) / "build_csim.sh"
    if not script.is_file():
        raise A2QError(f"{project_dir}: build_csim.sh missing; rebuild the project")
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        first = next((l for l in msg if "error" in l), msg[0] if msg else "")
        raise A2QError(f"g++ failed to compile {project_dir} (exit {r.returncode}): {first.strip()}")
    return dt


def run_csim(binary, ints: np.ndarray, workdir, start: int = 0, tag: str = "run") -> np.ndarray:
    """Run the testbench on integer vectors; returns the output integers (int64 or object)."""
    workdir = Path(workdir)
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)  # layer names may hold '/' and ':'
    inp, outp = workdir / f"{tag}_in.txt", workdir / f"{tag}_out.txt"
    ints = np.asarray(ints)
    with open(inp, "w") as f:
        for row in ints:
            f.write(" ".join(str(int(v)) for v in row) + "\n")
    r = subprocess.run([str(binary), str(inp), str(outp), "--start", str(start)], capture_output=True, text=True)
    if r.returncode != 0:
        raise A2QError(f"C simulation failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
    rows = [[int(v) for v in line.split()] for line in outp.read_text().splitlines() if line.strip()]
    if len(rows) != len(ints):
        raise A2QError(f"C simulation wrote {len(rows)} output vectors for {len(ints)} inputs")
    return np.array(rows, dtype=np.int64)


class QonnxReference:
    """QONNX's executor on the exported model (float32), for any batch size, optionally cut at a tensor."""

    def __init__(self, onnx_path):
        import onnx

        self.proto = onnx.load(str(onnx_path))
        self._cache: dict = {}

    def _prepared(self, start: Optional[str], shape: tuple):
        key = (start, shape)
        if key in self._cache:
            return self._cache[key]
        import onnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes

        p = onnx.ModelProto()
        p.CopyFrom(self.proto)
        g = p.graph
        inits = {i.name for i in g.initializer}
        if start is not None:
            known = set(inits) | {start, ""}
            keep = []
            for n in g.node:  # exporters write nodes in topological order
                if n.op_type == "Constant" or all(i in known for i in n.input):
                    keep.append(n)
                    known.update(n.output)
            if not all(o.name in known for o in g.output):
                raise A2QError(f"cannot cut the QONNX graph at tensor '{start}'")
            del g.node[:]
            g.node.extend(keep)
            old = [i for i in g.input if i.name in inits]
            del g.input[:]
            g.input.extend(old)
            g.input.append(onnx.helper.make_tensor_value_info(start, onnx.TensorProto.FLOAT, list(shape)))
        else:
            vi = next(i for i in g.input if i.name not in inits)
            vi.type.tensor_type.shape.Clear()
            for s in shape:
                vi.type.tensor_type.shape.dim.add().dim_value = int(s)
        del g.value_info[:]
        for vi in g.output:
            d = vi.type.tensor_type.shape.dim
            if len(d):
                d[0].dim_value = int(shape[0])
        mw = ModelWrapper(p).transform(InferShapes())
        self._cache[key] = mw
        return mw

    def input_name(self, start: Optional[str] = None) -> str:
        if start is not None:
            return start
        inits = {i.name for i in self.proto.graph.initializer}
        return next(i.name for i in self.proto.graph.input if i.name not in inits)

    def run(self, x: np.ndarray, *, start: Optional[str] = None, full: bool = False) -> dict:
        """Execute on a batch; ``x`` is the graph input, or the real value of tensor ``start``."""
        from qonnx.core.onnx_exec import execute_onnx

        x = np.asarray(x, dtype=np.float32)
        mw = self._prepared(start, tuple(int(s) for s in x.shape))
        return execute_onnx(mw, {self.input_name(start): x}, return_full_exec_context=full)


# ----------------------------------------------------------------------------- comparison


@dataclass
class Group:
    """A set of inputs run through all three implementations."""

    name: str
    start_layer: int  # 0: the whole network from float inputs
    x: np.ndarray  # float inputs (start_layer 0) or the stored integers of the layer's input
    note: str = ""
    results: dict = field(default_factory=dict)


def _input_float(project: Project, n: int, rng) -> np.ndarray:
    """Random float inputs spanning the input quantizer's range plus clipping on both sides."""
    iq = project.model.ops[0]
    t = iq.out_type
    q = rng.uniform(t.qmin - 2, t.qmax + 2, size=(n,) + tuple(project.model.tensors[iq.outputs[0]].shape))
    x = (q - float(iq.zero_point)) * float(iq.scale)
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
    """Distance (in output steps) of the exact pre-rounding value to the nearest multiple of 1/2."""
    from fractions import Fraction

    info = model.tensors[op.inputs[0]]
    sc = np.asarray(op.scale).reshape(-1)
    v = Fraction(float(info.scale[j])) * int(acc) + Fraction(float(info.offset[j]))
    if op.relu:
        v = max(v, Fraction(0))
    u = v / Fraction(float(sc[j if sc.size > 1 else 0])) + Fraction(float(np.asarray(op.zero_point).reshape(-1)[0]))
    twice = 2 * u
    return float(abs(twice - round(twice)) / 2)


NEAR_TIE = 1e-3


def _compare_group(project: Project, ref: "QonnxReference", binary, workdir, g: Group) -> dict:
    from qonnx.custom_op.general.quant import quant

    model, sim = project.model, project.sim
    layers = project.summary["layers"]
    L = g.start_layer
    start_tensor = layers[L]["input_tensor"] if L > 0 else None
    out_t = model.outputs[0]
    n = len(g.x)
    iq_bad = np.zeros(n, dtype=bool)
    if L == 0:
        iq = model.ops[0]
        vals = sim.run(g.x, keep=True)
        q_in = vals[iq.outputs[0]]
        ref_x = g.x.reshape((n,) + tuple(model.input_shape)).astype(np.float32)
        # the input quantizer vs QONNX's own Quant function, in float32 as exported: exact
        t = iq.out_type
        y_ref = quant(ref_x, iq.scale, iq.zero_point, np.float32(t.bits), t.signed, t.narrow, iq.rounding_mode)
        y_model = (q_in.astype(np.float32) - np.float32(iq.zero_point)) * np.float32(iq.scale)
        iq_bad = np.any(y_ref.reshape(n, -1) != y_model.reshape(n, -1), axis=1)
    else:
        q_in = np.asarray(g.x, dtype=np.int64)
        vals = sim.run(q_in, start=start_tensor, keep=True)
        ref_x = to_real(model, start_tensor, q_in).astype(np.float32)
    # C++
    cpp = run_csim(binary, q_in, workdir, start=L, tag=f"{g.name}")
    model_out = np.asarray(vals[out_t]).astype(np.int64)
    cpp_bad = np.any(cpp != model_out, axis=1)
    # QONNX
    ctx = ref.run(ref_x, start=start_tensor, full=True)
    onnx_out_name = model.output_names[0] if model.output_names else ref.proto.graph.output[0].name
    ref_out = np.asarray(ctx[onnx_out_name], dtype=np.float64).reshape(n, -1)
    out_info = model.tensors[out_t]
    model_real = to_real(model, out_t, model_out)
    tol = 0.25 * np.asarray(out_info.scale, dtype=np.float64)
    out_bad = np.any(np.abs(model_real - ref_out) > tol, axis=1)
    per_layer = []
    any_bad = out_bad | iq_bad
    explained = np.zeros(n, dtype=bool)  # first difference is a float32 near-tie in QONNX
    decided = iq_bad.copy()
    for i, ly in enumerate(layers):
        entry = {"layer": ly["name"], "acc_bits": ly["acc_bits"], "safe_acc_bits": ly["safe_acc_bits"]}
        if i < L:
            entry["skipped"] = "not run (inputs fed to a later layer)"
            per_layer.append(entry)
            continue
        dense = next(d for d in model.layers() if d.name == ly["name"])
        x_in = vals[dense.inputs[0]]
        st = sim.stages[dense.name]
        exact = sim.dense(st, x_in, exact=True)
        acc = vals[dense.outputs[0]]
        wrapped = np.any(np.asarray(exact) != np.asarray(acc), axis=1)
        entry.update(
            acc_min_seen=int(np.min(exact)),
            acc_max_seen=int(np.max(exact)),
            samples_overflowing=int(wrapped.sum()),
        )
        act = ly["activation"]
        if act is not None and ly["output_tensor"] in ctx:
            info = model.tensors[ly["output_tensor"]]
            r = np.asarray(ctx[ly["output_tensor"]], dtype=np.float64).reshape(n, -1)
            q_ref = np.round(r / np.asarray(info.scale, dtype=np.float64) + info.dtype.zero_point).astype(np.int64)
            diff = q_ref != vals[ly["output_tensor"]]
            bad = np.any(diff, axis=1)
            entry["activation_mismatches_vs_qonnx"] = int(bad.sum())
            # a first difference at an accumulator that did not wrap comes from QONNX's float32
            # arithmetic; it is explained when the exact value lies within NEAR_TIE of a rounding tie
            op = next(o for o in model.ops if o.name == act)
            for b in np.flatnonzero(bad & ~decided):
                if wrapped[b]:
                    continue
                dist = max(_tie_distance(model, op, int(acc[b, j]), int(j)) for j in np.flatnonzero(diff[b]))
                explained[b] = dist < NEAR_TIE
            decided |= bad | wrapped
            any_bad |= bad
        per_layer.append(entry)
    real_bad = any_bad & ~explained
    return {
        "group": g.name,
        "samples": n,
        "fed_to": "network input (float, through the input quantizer)" if L == 0 else f"layer {L} ('{layers[L]['name']}') alone, at tensor '{start_tensor}'",
        "note": g.note,
        "mismatches_cpp_vs_model": int(cpp_bad.sum()),
        "mismatches_model_vs_qonnx": int(real_bad.sum()),
        "qonnx_float32_near_ties": int((any_bad & explained).sum()),
        "output_mismatches_model_vs_qonnx": int(out_bad.sum()),
        "input_quant_mismatches_vs_qonnx": int(iq_bad.sum()),
        "max_abs_output_error_vs_qonnx": float(np.max(np.abs(model_real - ref_out))) if n else 0.0,
        "layers": per_layer,
    }


def adversarial_groups(project: Project) -> list:
    """Per layer, the inputs reaching its worst channel's acc_max and acc_min."""
    model = project.model
    groups = []
    for i, d in enumerate(model.layers()):
        rep = d.acc
        in_t = model.tensors[d.inputs[0]].dtype
        q = np.stack([rep.adversarial_max, rep.adversarial_min]).astype(np.int64) + in_t.zero_point
        note = f"worst channel {rep.worst_channel}: acc_max {int(rep.per_channel_max[rep.worst_channel])}, acc_min {int(rep.per_channel_min[rep.worst_channel])}"
        if i == 0:
            x = dequantize_input(model.ops[0], q)
            groups.append(Group(f"adversarial_{d.name}", 0, x, note))
        else:
            groups.append(Group(f"adversarial_{d.name}", i, q, note))
    return groups


def cosimulate(project_dir, *, random: int = 0, adversarial: bool = False, inputs=None, seed: int = 0, cxxflags: str = "-O1") -> dict:
    """Compile, run and compare; returns the report (see module doc)."""
    project = load_project(project_dir)
    groups = []
    if inputs is not None:
        try:
            arr = np.load(str(inputs), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise A2QError(f"{inputs}: cannot read a numpy array ({e})") from None
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise A2QError(f"{inputs}: inputs must be finite numbers")
        groups.append(Group("inputs", 0, _reshape_input(project, arr), f"from {inputs}"))
    if random:
        if random < 0:
            raise A2QError("--random must be >= 0")
        rng = np.random.default_rng(seed)
        groups.append(Group("random", 0, _input_float(project, int(random), rng), f"uniform over the input range, seed {seed}"))
    if adversarial:
        groups.extend(adversarial_groups(project))
    if not groups:
        raise A2QError("nothing to simulate: give --random N, --adversarial and/or --inputs FILE.npy")
    ref = QonnxReference(project.onnx_path)
    with tempfile.TemporaryDirectory(prefix="a2qhls-cosim-") as work:
        binary = Path(work) / "a2q_csim"
        compile_s = compile_csim(project.dir, binary, cxxflags)
        t0 = time.perf_counter()
        results = [_compare_group(project, ref, binary, work, g) for g in groups]
        run_s = time.perf_counter() - t0
    return {
        "project": str(project_dir),
        "samples": int(sum(r["samples"] for r in results)),
        "mismatches_cpp_vs_model": int(sum(r["mismatches_cpp_vs_model"] for r in results)),
        "mismatches_model_vs_qonnx": int(sum(r["mismatches_model_vs_qonnx"] for r in results)),
        "acc_bits": {ly["name"]: ly["acc_bits"] for ly in project.summary["layers"]},
        "safe_acc_bits": {ly["name"]: ly["safe_acc_bits"] for ly in project.summary["layers"]},
        "headers": str(find_headers()),
        "compile_seconds": round(compile_s, 3),
        "run_seconds": round(run_s, 3),
        "qonnx_float32_near_ties": int(sum(r["qonnx_float32_near_ties"] for r in results)),
        "reference": "qonnx execute_onnx on the exported float32 graph; differences whose first cause is an "
        f"activation within {NEAR_TIE} of a rounding tie at a non-wrapping accumulator are counted as "
        "qonnx_float32_near_ties, not as mismatches",
        "groups": results,
    }
