"""UNet-style ops (issue 11): nearest-neighbour Resize/Upsample, channel Concat (same scale or
power-of-two scales), stride-2 ConvTranspose (zero insertion + stride-1 convolution, sized per
output phase), and a small Brevitas UNet through both QONNX exporters: inspect against independent
references, build, g++ cosim 0 mismatches at the derived widths, one bit narrower caught."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import a2qhls
from a2qhls import codegen, load_qonnx
from a2qhls.errors import A2QError
from a2qhls.ir import Concat, Conv, Upsample, ZeroInsert
from a2qhls.sim import BitSim, simulate, to_real, upsample, zero_insert
from cnn_patterns import check_exact_then_narrower, conv_range, export_both, int_range, int_weight, quant_type
from golden_files import assert_matches_golden

QD = "qonnx.custom_op.general"


# ------------------------------------------------------------------ Resize / Upsample

@pytest.mark.parametrize("coord,nearest", [("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                                           ("pytorch_half_pixel", "round_prefer_ceil")])
@pytest.mark.parametrize("s", [(2, 2), (3, 2)])
def test_upsample_matches_onnx_reference(coord, nearest, s):
    q = np.random.default_rng(s[0]).integers(-100, 100, size=(2, 3, 4, 5)).astype(np.int64)  # [B, H, W, C]
    op = Upsample("u", ["a"], ["b"], s, (3, 4, 5))
    node = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array([1, 1, *s], np.float32), "sc")])
    ref = ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])).run(
        None, {"x": q.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    np.testing.assert_array_equal(upsample(op, q), ref.transpose(0, 2, 3, 1))


def _graph(tail, inits=(), C=2, out_c=None, H=4, W=4):
    """Quant(x) -> Conv 1x1 (C channels) -> Relu -> Quant (uint4, scale 0.25) -> ``tail`` nodes -> y."""
    rng = np.random.default_rng(0)
    base = [("s_in", 1 / 16), ("z", 0.0), ("b8", 8.0), ("b4", 4.0), ("s_w", 0.5), ("s_a", 0.25),
            ("w", rng.integers(-7, 8, size=(C, 1, 1, 1)) * 0.5)]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in base + list(inits)]
    nodes = [helper.make_node("Quant", ["x", "s_in", "z", "b8"], ["xq"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND"),
             helper.make_node("Quant", ["w", "s_w", "z", "b4"], ["wq"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["acc"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["acc"], ["r"]),
             helper.make_node("Quant", ["r", "s_a", "z", "b4"], ["a"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND")]
    g = helper.make_graph(nodes + list(tail), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, None, None])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


@pytest.mark.parametrize("kw,scales,msg", [
    (dict(mode="linear"), [1, 1, 2, 2], "mode 'linear' is not supported"),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), [1, 1, 1.5, 2],
     r"scale factors \(1.5, 2\) are not supported"),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor"), [1, 1, 3, 3],
     "does not repeat each pixel 3 times"),
    (dict(mode="nearest"), [1, 2, 2, 2], "spatial only"),
])
def test_resize_refusals_are_one_line(tmp_path, kw, scales, msg):
    m = _graph([helper.make_node("Resize", ["a", "", "sc"], ["y"], **kw)], [("sc", np.array(scales))])
    p = tmp_path / "r.onnx"
    onnx.save(m, str(p))
    with pytest.raises(A2QError, match=msg) as e:
        load_qonnx(str(p))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ Concat

def _concat_graph(s_b: float):
    """Two branches (1x1 convs, uint4 activations of scales 0.25 and ``s_b``) concatenated, then a 1x1 conv."""
    rng = np.random.default_rng(3)
    tail = [helper.make_node("Quant", ["w2", "s_w", "z", "b4"], ["w2q"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
            helper.make_node("Conv", ["xq", "w2q"], ["acc2"], kernel_shape=[1, 1]),
            helper.make_node("Relu", ["acc2"], ["r2"]),
            helper.make_node("Quant", ["r2", "s_b", "z", "b4"], ["b"], domain=QD, signed=0, narrow=0, rounding_mode="ROUND"),
            helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
            helper.make_node("Quant", ["w3", "s_w", "z", "b4"], ["w3q"], domain=QD, signed=1, narrow=1, rounding_mode="ROUND"),
            helper.make_node("Conv", ["cat", "w3q"], ["y"], kernel_shape=[1, 1])]
    return _graph(tail, [("w2", rng.integers(-7, 8, size=(3, 1, 1, 1)) * 0.5), ("s_b", s_b),
                         ("w3", rng.integers(-7, 8, size=(2, 5, 1, 1)) * 0.5)])


def test_concat_of_power_of_two_scales_is_exact_and_cosim_passes(tmp_path, capsys):
    """Scales 0.25 and 1.0: the coarser input is shifted left by 2 into a uint6 common type; the
    numpy model equals qonnx; build + cosim 0 mismatches; the last conv one bit narrower is caught."""
    p = tmp_path / "cat.onnx"
    onnx.save(_concat_graph(1.0), str(p))
    m = load_qonnx(str(p))
    cat = next(o for o in m.ops if isinstance(o, Concat))
    assert cat.shifts == (0, 2) and str(m.tensors[cat.outputs[0]].dtype) == "uint6"
    conv = m.ops[-1]
    w = np.asarray(conv.weight).reshape(conv.channels, -1)
    # reference range of the last conv: first 2 channels in [0, 15], the 3 shifted in [0, 60] (exact), but
    # the common type's range [0, 63] is what the sizing may assume for every channel
    lo = min(sum(min(0, int(v) * 63) for v in row) for row in w)
    hi = max(sum(max(0, int(v) * 63) for v in row) for row in w)
    assert _ranges(p)[-1] == (lo, hi)
    check_exact_then_narrower(p, _ranges(p), tmp_path, capsys, random=10, tag="cat")


def _ranges(p):
    return [(ly["acc_min"], ly["acc_max"]) for ly in a2qhls.inspect(str(p))["layers"]]


def test_concat_of_unaligned_scales_is_refused(tmp_path):
    p = tmp_path / "cat3.onnx"
    onnx.save(_concat_graph(0.75), str(p))
    with pytest.raises(A2QError, match="not in a power-of-two ratio") as e:
        load_qonnx(str(p))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ ConvTranspose

def conv_transpose_int(x, w, s, p, op_pad=(0, 0)):
    """Plain Python-integer ConvTranspose by its definition (scatter): ``x`` [H, W, Cin], ``w`` [Cin, Cout, kh, kw],
    ``out[iy*s - pt + ky, ix*s - pl + kx, co] += x[iy, ix, ci] * w[ci, co, ky, kx]``."""
    H, W, Cin = x.shape
    _, Cout, kh, kw = w.shape
    OH = (H - 1) * s - p[0] - p[2] + kh + op_pad[0]
    OW = (W - 1) * s - p[1] - p[3] + kw + op_pad[1]
    out = [[[0] * Cout for _ in range(OW)] for _ in range(OH)]
    for iy in range(H):
        for ix in range(W):
            for ky in range(kh):
                for kx in range(kw):
                    oy, ox = iy * s - p[0] + ky, ix * s - p[1] + kx
                    if 0 <= oy < OH and 0 <= ox < OW:
                        for ci in range(Cin):
                            for co in range(Cout):
                                out[oy][ox][co] += int(x[iy, ix, ci]) * int(w[ci, co, ky, kx])
    return np.array(out, dtype=object)


def conv_transpose_range(w, in_hw, s, p, op_pad, xlo, xhi):
    """Exact ``(min, max)`` over channels and output positions: per output position, only the taps
    that meet a real input (the scatter definition), each input in ``[xlo, xhi]``."""
    H, W = in_hw
    Cin, Cout, kh, kw = w.shape
    OH = (H - 1) * s - p[0] - p[2] + kh + op_pad[0]
    OW = (W - 1) * s - p[1] - p[3] + kw + op_pad[1]
    lo = hi = None
    for co in range(Cout):
        for oy in range(OH):
            for ox in range(OW):
                a = b = 0
                for ky in range(kh):
                    for kx in range(kw):
                        ny, nx = oy + p[0] - ky, ox + p[1] - kx
                        if ny % s or nx % s or not (0 <= ny // s < H and 0 <= nx // s < W):
                            continue
                        for ci in range(Cin):
                            v = int(w[ci, co, ky, kx])
                            a += min(v * xlo, v * xhi)
                            b += max(v * xlo, v * xhi)
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
    return lo, hi


def _unet_ref(net, in_hw):
    """Independent reference of every accumulating op's exact range in a2qhls's order, from the
    Brevitas modules (their integer weights and the quantizers feeding them)."""
    import torch.nn as nn

    H, W = in_hw
    b8 = int_range(8, True)
    a4 = int_range(*quant_type(net.act1))
    out = [conv_range(int_weight(net.enc1), (H, W), (1, 1), (1, 1, 1, 1), *b8),
           conv_range(int_weight(net.enc2), (H // 2, W // 2), (1, 1), (1, 1, 1, 1), *a4)]
    cat = int_range(*quant_type(net.cat_q))
    if isinstance(net.up, nn.Upsample):
        ident = [a4]  # cat_q on the upsampled act2 (a depthwise identity layer), then on act1
    else:
        up = net.up
        k, s, p, opad = up.kernel_size[0], up.stride[0], up.padding[0], up.output_padding[0]
        out.append(conv_transpose_range(int_weight(up), (H // 2, W // 2), s, (p, p, p, p), (opad, opad), *a4))
        ident = []
    out += ident + [a4]  # the identity layer of cat_q on act1
    out.append(conv_range(int_weight(net.dec), (H, W), (1, 1), (1, 1, 1, 1), *cat))
    out.append(conv_range(int_weight(net.head), (H, W), (1, 1), (0, 0, 0, 0), *int_range(*quant_type(net.act3))))
    return out


@pytest.mark.parametrize("k", [2, 3, 4])
def test_conv_transpose_model_equals_plain_reference_and_sizing_is_per_phase(tmp_path, k):
    """The imported ConvTranspose (ZeroInsert + stride-1 Conv) computes the plain integer scatter
    definition on random inputs, and its derived range equals the per-phase reference (tighter than
    sizing the convolution as if every window tap met data)."""
    import torch

    from unet_nets import brevitas_unet

    net = brevitas_unet("convT", ch=2, kernel=k, seed=k).eval()
    path = export_both(net, torch.rand(1, 1, 8, 8), tmp_path, f"ct{k}", exporters=("torchscript",))["torchscript"]
    m = load_qonnx(str(path))
    conv = next(o for o in m.ops if isinstance(o, Conv) and o.source_op == "ConvTranspose")
    zi = m.producer(conv.inputs[0])
    assert isinstance(zi, ZeroInsert) and zi.factor == (2, 2) and conv.stride == (1, 1)
    w = int_weight(net.up)
    p, opad = net.up.padding[0], net.up.output_padding[0]
    x = np.random.default_rng(k).integers(0, 16, size=(2, 4, 4, w.shape[0]))
    sim = BitSim(m)
    got = sim.accumulate(conv, [zero_insert(zi, x, 0)], exact=True)
    for b in range(2):
        want = conv_transpose_int(x[b], w, 2, (p, p, p, p), (opad, opad))
        np.testing.assert_array_equal(np.asarray(got[b], dtype=object), want)
    ref = conv_transpose_range(w, (4, 4), 2, (p, p, p, p), (opad, opad), 0, 15)
    rep = {ly["name"]: (ly["acc_min"], ly["acc_max"]) for ly in a2qhls.inspect(str(path))["layers"]}
    assert rep[conv.name] == ref
    # every tap meeting data (no phases) would be wider or equal: the per-phase ranges are never looser
    full = conv_range(np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)), (7, 7), (1, 1),
                      conv.pads, 0, 15)
    assert full[0] <= ref[0] and ref[1] <= full[1]


def test_conv_transpose_refusals_are_one_line(tmp_path):
    import torch

    from unet_nets import brevitas_unet

    net = brevitas_unet("convT", ch=2, kernel=2, seed=0).eval()
    path = export_both(net, torch.rand(1, 1, 4, 4), tmp_path, "ct", exporters=("torchscript",))["torchscript"]
    for attr_name, value, msg in [("pads", [2, 2, 2, 2], "pads up to kernel - 1"), ("group", 2, "group 1")]:
        m = onnx.load(str(path))
        node = next(n for n in m.graph.node if n.op_type == "ConvTranspose")
        for a in list(node.attribute):
            if a.name == attr_name:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(attr_name, value))
        p = tmp_path / f"bad_{attr_name}.onnx"
        onnx.save(m, str(p))
        with pytest.raises(A2QError, match=msg) as e:
            load_qonnx(str(p))
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------ the Brevitas UNet end to end

@pytest.mark.parametrize("up,exporter,k", [("upsample", "torchscript", 2), ("convT", "dynamo", 3)])
def test_brevitas_unet_inspect_build_cosim_exact_then_narrower(tmp_path, capsys, up, exporter, k):
    """Encoder QuantConv2d + QuantReLU, MaxPool, nn.Upsample + shared QuantIdentity (or a stride-2
    QuantConvTranspose2d), skip torch.cat, decoder conv: both exporters import to the same ranges as
    the independent reference; one exporter's file: build, cosim random + adversarial 0 mismatches,
    every accumulator one bit narrower caught."""
    import torch

    from unet_nets import brevitas_unet

    net = brevitas_unet(up, ch=2, kernel=k, seed=1).eval()
    paths = export_both(net, torch.rand(1, 1, 8, 8), tmp_path, up)
    ref = _unet_ref(net, (8, 8))
    other = "dynamo" if exporter == "torchscript" else "torchscript"
    assert _ranges(paths[other]) == [tuple(r) for r in ref]
    summary = check_exact_then_narrower(paths[exporter], ref, tmp_path, capsys, random=10, tag=up)
    kinds = [u["kind"] for u in summary["units"]]
    assert ("upsample" in kinds) == (up == "upsample") and ("zeroins" in kinds) == (up == "convT") and "concat" in kinds
    assert summary["fifo_depths"], "the skip path's fork copy needs a deep FIFO"


@pytest.mark.parametrize("up", ["convT", "upsample"])
def test_unet_golden_and_counted_cycles(tmp_path, up):
    """Golden text of a tiny UNet project (zero insertion or upsample unit, concat unit), and the C
    simulation's per-process iteration counts equal the cycles the summary states (outputs equal
    the numpy model's)."""
    import torch

    from test_hls_units import _assert_counts_match_summary, _counted_cycles, _write
    from unet_nets import brevitas_unet

    net = brevitas_unet(up, ch=2, kernel=2, seed=0).eval()
    name = "tiny_unet" if up == "convT" else "tiny_unet_up"
    path = export_both(net, torch.rand(1, 1, 4, 4), tmp_path, name, exporters=("torchscript",))["torchscript"]
    from a2qhls.passes.accumulator import size_accumulators
    from a2qhls.passes.folding import apply_folding, default_folding
    from a2qhls.passes.thresholds import compute_thresholds

    m = size_accumulators(load_qonnx(str(path)))
    compute_thresholds(m)
    apply_folding(m, default_folding(m))
    files = codegen.generate(m)
    assert_matches_golden(files, name)
    prj = tmp_path / "prj"
    _write(files, prj)
    summary = codegen.summary(m)
    want = {"zeroins", "concat"} if up == "convT" else {"upsample", "concat"}
    assert {"upsample", "zeroins", "concat"} & {u["kind"] for u in summary["units"]} == want
    ly0 = summary["layers"][0]
    counts = _counted_cycles(prj, tmp_path, int(np.prod(ly0["input_shape"])), ly0["input_type"], n=3, model=m)
    _assert_counts_match_summary(summary, counts)


# ------------------------------------------------------------------ our front end's UNet

def _conv_int_weights(path) -> list:
    """``[C_out, C_in, kh, kw]`` integers of every Conv of a QONNX file, read with onnx alone:
    the weight initializer divided by its Quant's scale (the exporter stores exactly ``q * s``)."""
    g = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    by_out = {n.output[0]: n for n in g.node}
    out = []
    for n in g.node:
        if n.op_type == "Conv":
            q = by_out[n.input[1]]
            out.append(np.round(inits[q.input[0]] / inits[q.input[1]]).astype(np.int64))
    return out


def test_frontend_unet_trains_exports_and_passes_build_cosim(tmp_path, capsys):
    """`a2qhls train --task superres --arch unet:A,B` (encoder conv, max pool, nearest upsampling, skip
    concat of a shared quantizer, upsampling by r): exports QONNX with targets; inspect equals the
    reference ranges from the file's integer weights; build + cosim 0 mismatches; one bit narrower caught."""
    from a2qhls.cli import main

    out = tmp_path / "unet.onnx"
    rc = main(["train", "--task", "superres", "--arch", "unet:4,8", "--upscale", "2", "--quant", "a2q+", "--acc-bits", "13",
               "--constrain", "all", "--epochs", "1", "--float-epochs", "1", "--out", str(out), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["arch"] == "unet:4,8" and r["input_shape"] == [1, 16, 16]
    assert [row.get("target_acc_bits") for row in r["layers"]] == [13] * 5
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Resize") == 2 and ops.count("Concat") == 1 and ops.count("MaxPool") == 1
    x4 = int_range(4, False)
    ws = _conv_int_weights(out)
    hw = [(16, 16), (8, 8), (16, 16), (16, 16), (32, 32)]
    ref = [conv_range(w, s, (1, 1), (1, 1, 1, 1), *x4) for w, s in zip(ws, hw)]
    summary = check_exact_then_narrower(out, ref, tmp_path, capsys, random=5, tag="fe_unet")
    assert all(ly["acc_bits"] <= 13 for ly in summary["layers"])


def test_bipolar_inputs_to_zero_insertion_and_shifted_concat_are_refused_in_one_line(tmp_path):
    """A bipolar tensor has no code for 0 (its stored bit means -1 or +1): a strided ConvTranspose's
    inserted zeros and a Concat that shifts or mixes it cannot be exact, so the importer refuses them."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    from qonnx.util.basic import qonnx_make_model

    from a2qhls.errors import A2QError
    from a2qhls.importer import load_qonnx

    def model(kind):
        inits = [helper.make_tensor("s1", TensorProto.FLOAT, [], [1.0]), helper.make_tensor("s2", TensorProto.FLOAT, [], [2.0]),
                 helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("b4", TensorProto.FLOAT, [], [4.0])]
        nodes = [helper.make_node("BipolarQuant", ["x", "s1"], ["a"], domain="qonnx.custom_op.general")]
        if kind == "convT":
            w = np.ones((2, 2, 2, 2), dtype=np.float32)
            inits.append(helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten()))
            nodes += [helper.make_node("Quant", ["w", "s1", "z", "b4"], ["wq"], domain="qonnx.custom_op.general",
                                       signed=1, narrow=0, rounding_mode="ROUND"),
                      helper.make_node("ConvTranspose", ["a", "wq"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
        else:
            nodes += [helper.make_node("BipolarQuant", ["x", "s2"], ["b"], domain="qonnx.custom_op.general"),
                      helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 if kind == "convT" else 4, 8 if kind == "convT" else 4, 8 if kind == "convT" else 4])], inits)
        return qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)])

    for kind, words in (("convT", "inserted zeros have no bipolar code"), ("concat", "bipolar tensors at different scales")):
        path = tmp_path / f"{kind}.onnx"
        onnx.save(model(kind), path)
        with pytest.raises(A2QError) as e:
            load_qonnx(str(path))
        assert words in str(e.value) and "\n" not in str(e.value)
