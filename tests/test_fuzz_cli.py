"""Property test (hypothesis): random mutations of a valid QONNX model and random command lines,
run in-process through ``a2qhls.cli.main``.

Whatever the input, ``inspect`` and ``build``: exit with 0, 1 or 2 (130 on Ctrl-C); never show a
traceback; an error is exactly one line; a failed build leaves no output; nothing is written
outside ``--out``. Mutations: attribute values (NaN, inf, huge, wrong types), initializer values
and element types, dropped/duplicated/renamed inputs and outputs, op types, domains, opsets, input
shapes, the a2qhls metadata (random JSON), and the flags ``--acc-bits``, ``--folding`` (random JSON),
``--force``, ``--save-steps``, ``--out``; damaged bytes (truncated, flipped, appended); and ``cosim``'s
``--random``, ``--seed``, ``--inputs`` (random arrays, dtypes and bytes), ``--adversarial`` on a built
project, which it must never change.

Bounded for CI (derandomized, ``A2QHLS_FUZZ_EXAMPLES`` examples per test, default 60; a sixth of
that for cosim, which compiles with g++ when the arguments are valid);
``A2QHLS_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_cli.py -s`` runs a longer campaign and prints
the exit-code counts.
"""
from __future__ import annotations

import collections
import json
import os
import tempfile

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from robust_cases import listing, run_cli, valid_model
from test_import_conv import conv_graph, residual_graph

EXAMPLES = int(os.environ.get("A2QHLS_FUZZ_EXAMPLES", "60"))
OUTCOMES: collections.Counter = collections.Counter()
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="A2QHLS_FUZZ_EXAMPLES" not in os.environ, database=None,
                    suppress_health_check=list(HealthCheck))

BASE = valid_model(bias="int").SerializeToString()
BASES = [
    BASE,
    valid_model(bias="float", per_channel=False).SerializeToString(),
    valid_model(style="matmul", flatten_input=(3, 4)).SerializeToString(),  # Flatten, Transpose -> MatMul, Add
    conv_graph(pool="max", head=4)[0].SerializeToString(),  # Conv, Relu, Quant, MaxPool, Flatten, Gemm
    residual_graph().SerializeToString(),  # Conv, residual Add
]

numbers = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 1e300, 0.0, -0.0, 1e-45, -1.0,
                           0.5, 1.0, 2.0, 3.0, 4.0, 8.0, 16.0, 31.0, 32.0, 33.0, 64.0, 2.0**40, -(2.0**63)])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
attr_values = st.one_of(
    st.integers(-3, 3), st.integers(-2**63, 2**63 - 1), numbers, st.text(max_size=6),
    st.lists(st.integers(-3, 3), min_size=1, max_size=4), st.lists(numbers, min_size=1, max_size=3),
)
ATTR_NAMES = ["signed", "narrow", "rounding_mode", "transA", "transB", "alpha", "beta", "axis", "perm", "epsilon", "x",
              "kernel_shape", "strides", "pads", "group", "dilations", "auto_pad", "ceil_mode", "count_include_pad"]
OP_TYPES = ["Quant", "Trunc", "Gemm", "MatMul", "Relu", "Add", "Mul", "Identity", "Flatten", "Reshape", "Transpose",
            "Conv", "MaxPool", "Sigmoid", "If", "BatchNormalization", "Constant"]
DOMAINS = ["", "ai.onnx", "qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general", "evil"]
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_]


def _mutation(draw, m):
    g = m.graph
    kind = draw(st.sampled_from(["attr", "init_value", "init_dtype", "init_shape", "inputs", "outputs", "op", "domain",
                                 "metadata", "opset", "node", "input_shape", "graph_io"]))
    node = g.node[draw(st.integers(0, len(g.node) - 1))]
    init = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
    if kind == "attr":
        name = draw(st.sampled_from(ATTR_NAMES))
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(keep)
        if draw(st.booleans()):
            node.attribute.append(helper.make_attribute(name, draw(attr_values)))
    elif kind == "init_value":
        a = numpy_helper.to_array(init).astype(np.float64).copy()
        if a.size:
            a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(numbers)
        with np.errstate(all="ignore"):
            b = a.astype(numpy_helper.to_array(init).dtype) if draw(st.booleans()) else a.astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(b, init.name))
    elif kind == "init_dtype":
        a = numpy_helper.to_array(init)
        with np.errstate(all="ignore"):
            init.CopyFrom(numpy_helper.from_array(np.nan_to_num(a).astype(draw(st.sampled_from(DTYPES))), init.name))
    elif kind == "init_shape":
        a = numpy_helper.to_array(init).reshape(-1)
        shape = draw(st.sampled_from([(a.size,), (1, a.size), (a.size, 1, 1), (), (0,)]))
        b = a[:1].reshape(()) if shape == () else (a[:0] if shape == (0,) else a.reshape(shape))
        init.CopyFrom(numpy_helper.from_array(b, init.name))
    elif kind == "inputs":
        how = draw(st.sampled_from(["drop", "duplicate", "rename", "empty", "other"]))
        if how == "drop" and len(node.input):
            del node.input[draw(st.integers(0, len(node.input) - 1))]
        elif how == "duplicate" and len(node.input):
            node.input.append(node.input[draw(st.integers(0, len(node.input) - 1))])
        elif how == "rename" and len(node.input):
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.text(max_size=5))
        elif how == "empty" and len(node.input):
            node.input[draw(st.integers(0, len(node.input) - 1))] = ""
        elif how == "other" and len(node.input):
            names = [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
    elif kind == "outputs":
        how = draw(st.sampled_from(["drop", "add", "rename"]))
        if how == "drop":
            del node.output[:]
        elif how == "add":
            node.output.append(draw(st.sampled_from(["extra", node.output[0] if len(node.output) else "x"])))
        elif len(node.output):
            node.output[0] = draw(st.sampled_from(["x", "renamed", g.output[0].name, init.name]))
    elif kind == "op":
        node.op_type = draw(st.sampled_from(OP_TYPES))
    elif kind == "domain":
        node.domain = draw(st.sampled_from(DOMAINS))
    elif kind == "metadata":
        text = json.dumps(draw(json_values)) if draw(st.booleans()) else draw(st.text(max_size=30))
        if draw(st.booleans()):
            text = json.dumps({node.name: {"target_acc_bits": draw(json_values), "quant": draw(json_values)}})
        m.metadata_props.add(key="a2qhls.layers", value=text)
    elif kind == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 7, 10, 11, 13, 18, 21, 99, 10**6]))
    elif kind == "node":
        k = draw(st.integers(0, len(g.node) - 1))
        if draw(st.booleans()):
            g.node.append(g.node[k])
        else:
            del g.node[k]
    elif kind == "input_shape":
        d = g.input[0].type.tensor_type.shape.dim
        d[draw(st.integers(0, len(d) - 1))].dim_value = draw(st.sampled_from([0, 1, 3, 12, 13, 2**31, 2**40, 2**62]))
    elif kind == "graph_io":
        if draw(st.booleans()):
            g.output.append(g.output[0])
        else:
            g.input.append(helper.make_tensor_value_info(draw(st.sampled_from(["x", "y", "extra"])), onnx.TensorProto.FLOAT, [1, 12]))


@st.composite
def hostile_models(draw):
    m = onnx.ModelProto()
    m.ParseFromString(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        _mutation(draw, m)
    return m


acc_bits_specs = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["layer0", "layer1", "0", "1", "layer9", "layer٠", "x", ""]),
              st.sampled_from(["12", "1", "2", "64", "65", "-3", "١٢", "12.5", "nan", "", "9" * 30])),
    st.text(max_size=12),
)


def _outside(tmp, out) -> list:
    """Everything under ``tmp`` but ``out`` and the folders above it."""
    if not out:
        return listing(tmp)
    made, d = set(), os.path.dirname(out)
    while d != tmp:
        made.add(os.path.relpath(d, tmp))
        d = os.path.dirname(d)
    rel = os.path.relpath(out, tmp)
    return [p for p in listing(tmp) if p not in made and p != rel and not p.startswith(rel + os.sep)]


def _check(tmp, argv, out):
    """Run, then assert the properties of the module docstring; returns the exit code."""
    before_all, before = listing(tmp), _outside(tmp, out)
    rc, stdout, err = run_cli(argv)
    OUTCOMES[rc] += 1
    assert rc in (0, 1, 2, 130), (argv, rc, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert all(ln.startswith(("a2qhls: warning: ", "a2qhls: error: ")) for ln in lines), err
    if rc == 2:  # one error line, the last, after any one-line warnings
        assert lines and lines[-1].startswith("a2qhls: error: ") and sum(ln.startswith("a2qhls: error: ") for ln in lines) == 1, err
    if rc == 0 and argv[0] == "build":
        assert os.path.isfile(os.path.join(out, "a2qhls.json")) and os.path.isfile(os.path.join(out, "model.onnx"))
        assert _outside(tmp, out) == before, argv  # nothing written outside --out
    elif argv[0] == "build":
        assert listing(tmp) == before_all, argv  # a failed build changes nothing, --out included
    else:
        assert listing(tmp) == before_all, argv
    return rc


@SETTINGS
@given(m=hostile_models(), cmd=st.sampled_from(["inspect", "build"]), acc=st.lists(acc_bits_specs, max_size=2),
       folding=st.none() | json_values, force=st.booleans(), steps=st.booleans(), nested=st.booleans())
def test_fuzz_model_and_flags(m, cmd, acc, folding, force, steps, nested):
    with tempfile.TemporaryDirectory(prefix="a2qhls-fuzz-") as tmp:
        tmp = os.path.realpath(tmp)
        path = os.path.join(tmp, "m.onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        if cmd == "inspect":
            _check(tmp, ["inspect", path, "--json"], None)
            return
        out = os.path.join(tmp, "a", "prj") if nested else os.path.join(tmp, "prj")
        argv = ["build", path, "--out", out]
        argv += [f"--acc-bits={a}" for a in acc]
        if folding is not None:
            fp = os.path.join(tmp, "fold.json")
            with open(fp, "w") as f:
                f.write(json.dumps(folding))
            argv += ["--folding", fp]
        if force:
            argv.append("--force")
        if steps:
            argv.append("--save-steps")
        rc = _check(tmp, argv, out)
        if rc == 0 and force:  # a second build over the project it wrote
            assert _check(tmp, argv, out) == 0


@SETTINGS
@given(raw=st.binary(max_size=64), cut=st.integers(0, 4000), flip=st.integers(0, 4000))
def test_fuzz_damaged_bytes(raw, cut, flip):
    """Truncated, bit-flipped and random files: refused in one line (or imported if still valid)."""
    data = bytearray(BASE)
    if flip < len(data):
        data[flip] ^= 0xFF
    data = bytes(data[: len(data) - cut]) + raw if cut else bytes(data) + raw
    with tempfile.TemporaryDirectory(prefix="a2qhls-fuzz-") as tmp:
        path = os.path.join(tmp, "m.onnx")
        with open(path, "wb") as f:
            f.write(data)
        _check(tmp, ["inspect", path], None)


def test_fuzz_outcomes_seen():
    """The campaign above reached both accepted and refused inputs (printed with -s)."""
    print(f"\nfuzz outcomes (exit code: count): {dict(sorted(OUTCOMES.items()))}")
    if OUTCOMES:
        assert OUTCOMES[2] > 0


@pytest.fixture(scope="module")
def built_project(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzprj")
    path = os.path.join(d, "m.onnx")
    onnx.save(valid_model(), path)
    assert run_cli(["build", path, "--out", os.path.join(d, "prj")])[0] == 0
    return os.path.join(d, "prj")


npy_arrays = st.builds(
    lambda shape, dtype, fill: np.full(shape, fill).astype(dtype) if dtype != "complex" else np.full(shape, fill) + 1j,
    st.sampled_from([(0, 12), (1, 12), (2, 12), (3, 5), (12,), (2, 3, 4), (), (1, 0)]),
    st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.float16, "complex"]),
    numbers,
)


@settings(max_examples=max(5, EXAMPLES // 6), deadline=None, derandomize="A2QHLS_FUZZ_EXAMPLES" not in os.environ,
          database=None, suppress_health_check=list(HealthCheck))
@given(random=st.one_of(st.integers(-5, 6), st.sampled_from([10**5, 10**5 + 1, 10**7, 10**12, -(2**63)])),
       seed=st.one_of(st.integers(-3, 3), st.sampled_from([2**63, 2**64, 2**70])),
       inputs=st.none() | npy_arrays | st.binary(max_size=40), adversarial=st.booleans())
def test_fuzz_cosim_arguments(built_project, random, seed, inputs, adversarial):
    with tempfile.TemporaryDirectory(prefix="a2qhls-fuzz-") as tmp:
        argv = ["cosim", built_project, "--random", str(random), "--seed", str(seed)]
        if adversarial:
            argv.append("--adversarial")
        if inputs is not None:
            p = os.path.join(tmp, "x.npy")
            if isinstance(inputs, bytes):
                with open(p, "wb") as f:
                    f.write(inputs)
            else:
                with np.errstate(all="ignore"):
                    np.save(p, inputs)
            argv += ["--inputs", p]
        before = listing(built_project)
        rc = _check(tmp, argv, None)
        assert listing(built_project) == before  # cosim never writes into the project
        if rc != 2:
            assert random <= 10**5 and seed >= 0
