"""IR -> Vitis HLS C++ project, as a pure function: ``{relative path: text}``.

All C++, Tcl and shell text lives in the Jinja2 templates of the top-level
``templates/`` folder (package ``a2qhls.templates`` when installed); this module
only computes numbers (widths, folding, packed arrays) and hands them to the
templates, rendered with ``StrictUndefined``. Same IR, same folding, same widths:
byte-identical files.

The supported graph is a chain ``InputQuant -> (Dense [-> Requant])+`` with one
graph output (an accumulator or a requantized activation). Each Dense, fused with
the Requant that follows it, becomes one matrix-vector unit ``layer<i>``:

* input: a stream of words of ``IPB`` packed elements (``IPB`` = the previous layer's
  PE, or the first layer's SIMD for the top input), buffered as ``[SF][SIMD]`` values;
* compute: ``NF = MH / PE`` by ``SF = MW / SIMD`` iterations pipelined at II=1,
  ``PE x SIMD`` multiply-accumulates per cycle into ``PE`` accumulators ``ap_int<P>``
  (two's-complement wraparound; bias preloaded);
* output: per PE, the multi-threshold count ``qmin + #{t: acc >= T[j, t]}`` (or the
  accumulator itself for a graph output), ``PE`` elements packed per word.

Weights ``W[pe][nf * SF + sf][s] = weight[nf * PE + pe, sf * SIMD + s]`` and thresholds
``T[pe][nf][t]`` are partitioned on the PE and SIMD/threshold dimensions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import bounds
from .errors import A2QError
from .ir import Dense, InputQuant, Model, Requant
from .passes.thresholds import effective_acc_bits

TOP = "a2q_top"
FORMAT_VERSION = 1

__all__ = ["TOP", "template_dir", "plan", "generate", "summary", "LayerPlan"]


def template_dir() -> Path:
    """The templates folder: the installed package ``a2qhls.templates``, else the repo's ``templates/``."""
    try:
        from importlib.resources import files

        p = files("a2qhls.templates")
        path = Path(str(p))
        if (path / "layers.h.j2").is_file():
            return path
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    import a2qhls

    path = Path(a2qhls.__file__).resolve().parent.parent / "templates"
    if not (path / "layers.h.j2").is_file():
        raise A2QError(f"a2qhls templates not found (looked for package a2qhls.templates and {path})")
    return path


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return env


@dataclass
class IntT:
    """A C++ integer type: ``ap_int<bits>`` or ``ap_uint<bits>``."""

    bits: int
    signed: bool

    @staticmethod
    def for_range(lo: int, hi: int) -> "IntT":
        if lo >= 0:
            return IntT(max(1, int(hi).bit_length()), False)
        return IntT(max(2, int(bounds.signed_bits_for_range(lo, hi))), True)


@dataclass
class LayerPlan:
    index: int
    cname: str
    dense: Dense
    requant: Optional[Requant]
    MW: int
    MH: int
    PE: int
    SIMD: int
    IPB: int  # input elements per stream word
    P: int
    safe_bits: int
    in_t: IntT  # stored input integers q
    zp: int
    val_t: IntT  # q - zp
    w_t: IntT
    bias_t: Optional[IntT]
    out_t: IntT  # stored output integers
    thr_t: Optional[IntT]
    NT: int
    qmin: int

    @property
    def NF(self) -> int:
        return self.MH // self.PE

    @property
    def SF(self) -> int:
        return self.MW // self.SIMD

    @property
    def out_tensor(self) -> str:
        return (self.requant or self.dense).outputs[0]


def plan(model: Model, folding: dict, acc_bits: dict | None = None) -> list[LayerPlan]:
    """Check the graph is a supported chain and compute every layer's C++ types."""
    ops = model.ops
    if not ops or not isinstance(ops[0], InputQuant):
        raise A2QError("code generation needs the graph to start with an input Quant")
    if len(model.outputs) != 1:
        raise A2QError(f"code generation supports one graph output, the model has {len(model.outputs)}")
    widths = effective_acc_bits(model, acc_bits)
    layers: list[LayerPlan] = []
    cur = ops[0].outputs[0]
    i = 1
    while i < len(ops):
        d = ops[i]
        if not isinstance(d, Dense) or d.inputs[0] != cur:
            raise A2QError(f"code generation supports a chain of layers; op '{d.name}' ({d.op}) does not continue it")
        rq = None
        if i + 1 < len(ops) and isinstance(ops[i + 1], Requant) and ops[i + 1].inputs[0] == d.outputs[0]:
            rq = ops[i + 1]
            if d.outputs[0] in model.outputs or len(model.consumers(d.outputs[0])) != 1:
                raise A2QError(f"layer '{d.name}': an accumulator used by more than its activation is not supported")
            if rq.thresholds is None:
                raise A2QError(f"{rq.name}: thresholds not computed (run passes.thresholds.compute_thresholds)")
        i += 2 if rq is not None else 1
        in_dt = model.tensors[d.inputs[0]].dtype
        fold = folding[d.name]
        PE, SIMD = int(fold["PE"]), int(fold["SIMD"])
        if d.channels % PE or d.K % SIMD:
            raise A2QError(f"layer '{d.name}': PE={PE}/SIMD={SIMD} do not divide MH={d.channels}/MW={d.K}")
        P = widths[d.name]
        safe = int(d.acc.acc_bits) if d.acc is not None else P
        w = np.asarray(d.weight)
        w_t = IntT.for_range(min(int(w.min()), -1), max(int(w.max()), 1))
        w_t = IntT(w_t.bits, True)
        bias_t = None
        if d.bias is not None:
            b = np.asarray(d.bias)
            bias_t = IntT(int(bounds.signed_bits_for_range(min(int(b.min()), 0), max(int(b.max()), 0))), True)
        if rq is not None:
            T = np.asarray(rq.thresholds)
            NT = int(T.shape[1])
            thr_t = IntT(int(bounds.signed_bits_for_range(min(int(T.min()), 0) if NT else 0, max(int(T.max()), 0) if NT else 0)), True) if NT else None
            ot = rq.out_type
            out_t = IntT(ot.bits, ot.signed)
            qmin = ot.qmin
        else:
            NT, thr_t, qmin = 0, None, 0
            out_t = IntT(P, True)
        in_t = IntT(in_dt.bits, in_dt.signed)
        layers.append(
            LayerPlan(
                index=len(layers),
                cname=f"layer{len(layers)}",
                dense=d,
                requant=rq,
                MW=d.K,
                MH=d.channels,
                PE=PE,
                SIMD=SIMD,
                IPB=SIMD if not layers else layers[-1].PE,
                P=P,
                safe_bits=safe,
                in_t=in_t,
                zp=int(in_dt.zero_point),
                val_t=IntT.for_range(in_dt.vmin, in_dt.vmax),
                w_t=w_t,
                bias_t=bias_t,
                out_t=out_t,
                thr_t=thr_t,
                NT=NT,
                qmin=qmin,
            )
        )
        cur = (rq or d).outputs[0]
    if cur != model.outputs[0]:
        raise A2QError(f"code generation: the graph output '{model.outputs[0]}' is not the end of the layer chain")
    return layers


def _weights_folded(lp: LayerPlan) -> list:
    """``[PE][NF*SF][SIMD]`` nested lists of Python ints."""
    w = np.asarray(lp.dense.weight).astype(np.int64)
    # weight[nf*PE + pe, sf*SIMD + s] -> [pe][nf][sf][s]
    a = w.reshape(lp.NF, lp.PE, lp.SF, lp.SIMD).transpose(1, 0, 2, 3).reshape(lp.PE, lp.NF * lp.SF, lp.SIMD)
    return a.tolist()


def _bias_folded(lp: LayerPlan) -> list:
    b = np.asarray(lp.dense.bias).astype(object)
    return b.reshape(lp.NF, lp.PE).T.tolist()


def _thresholds_folded(lp: LayerPlan) -> list:
    T = np.asarray(lp.requant.thresholds).astype(object)
    return T.reshape(lp.NF, lp.PE, lp.NT).transpose(1, 0, 2).tolist()


def file_names(lp: LayerPlan) -> dict:
    out = {"weights": f"firmware/weights/{lp.cname}_w.h"}
    if lp.requant is not None and lp.NT:
        out["thresholds"] = f"firmware/weights/{lp.cname}_t.h"
    return out


def generate(model: Model, folding: dict, acc_bits: dict | None = None, *, part: str = "xczu3eg-sbva484-1-e", clock_ns: float = 5.0) -> dict:
    """Render the whole project: ``{relative path: file text}`` (sorted, deterministic)."""
    layers = plan(model, folding, acc_bits)
    env = _env()
    first, last = layers[0], layers[-1]
    ctx = dict(
        top=TOP,
        model_name=model.name,
        layers=layers,
        first=first,
        last=last,
        part=part,
        clock_ns=clock_ns,
        files={lp.cname: file_names(lp) for lp in layers},
    )
    files: dict = {}
    for lp in layers:
        names = file_names(lp)
        files[names["weights"]] = env.get_template("weights.h.j2").render(
            ctx, lp=lp, W=_weights_folded(lp), B=_bias_folded(lp) if lp.bias_t is not None else None
        )
        if "thresholds" in names:
            files[names["thresholds"]] = env.get_template("thresholds.h.j2").render(ctx, lp=lp, T=_thresholds_folded(lp))
    files["firmware/a2q_layers.h"] = env.get_template("layers.h.j2").render(ctx)
    files[f"firmware/{TOP}.h"] = env.get_template("top.h.j2").render(ctx)
    files[f"firmware/{TOP}.cpp"] = env.get_template("top.cpp.j2").render(ctx)
    files["tb/a2q_tb.cpp"] = env.get_template("tb.cpp.j2").render(ctx)
    files["build_csim.sh"] = env.get_template("build_csim.sh.j2").render(ctx)
    files["vitis_hls.tcl"] = env.get_template("vitis_hls.tcl.j2").render(ctx)
    return dict(sorted(files.items()))


def summary(model: Model, folding: dict, acc_bits: dict | None = None, *, model_file: str = "model.onnx") -> dict:
    """The machine-readable description of a build (written as ``a2qhls.json``)."""
    layers = plan(model, folding, acc_bits)
    overrides = {k: int(v) for k, v in sorted((acc_bits or {}).items())}
    out_layers = []
    for lp in layers:
        d = lp.dense
        entry = {
            "index": lp.index,
            "name": d.name,
            "cname": lp.cname,
            "MW": lp.MW,
            "MH": lp.MH,
            "PE": lp.PE,
            "SIMD": lp.SIMD,
            "cycles_per_vector": lp.NF * lp.SF,
            "acc_bits": lp.P,
            "safe_acc_bits": lp.safe_bits,
            "acc_bits_overridden": d.name in overrides,
            "target_acc_bits": d.target_acc_bits,
            "quant_kind": d.quant_kind,
            "input_tensor": d.inputs[0],
            "input_type": f"{'int' if lp.in_t.signed else 'uint'}{lp.in_t.bits}",
            "input_zero_point": lp.zp,
            "weight_bits": lp.w_t.bits,
            "activation": lp.requant.name if lp.requant is not None else None,
            "output_tensor": lp.out_tensor,
            "output_type": f"{'int' if lp.out_t.signed else 'uint'}{lp.out_t.bits}",
            "threshold_bits": lp.thr_t.bits if lp.thr_t is not None else None,
            "thresholds_per_channel": lp.NT,
            "files": file_names(lp),
        }
        if d.acc is not None:
            entry.update(
                acc_min=int(d.acc.acc_min),
                acc_max=int(d.acc.acc_max),
                datatype_bits=int(d.acc.datatype_bits),
                a2q_bits=int(d.acc.a2q_bits),
                a2qplus_bits=int(d.acc.a2qplus_bits),
                worst_channel=int(d.acc.worst_channel),
            )
        out_layers.append(entry)
    return {
        "format": FORMAT_VERSION,
        "tool": "a2qhls",
        "model": model_file,
        "model_name": model.name,
        "top": TOP,
        "input": {"name": model.input_name, "shape": list(model.input_shape), "tensor": layers[0].dense.inputs[0]},
        "output": {"tensor": model.outputs[0], "name": (model.output_names or [None])[0]},
        "acc_bits_overrides": overrides,
        "folding": {lp.dense.name: {"PE": lp.PE, "SIMD": lp.SIMD} for lp in layers},
        "layers": out_layers,
    }


def summary_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
