"""Super-resolution task: ESPCN on the photographs shipped with scikit-image / scikit-learn.

A training smoke test through ``a2qhls train --task superres`` (export with targets, PixelShuffle
as DepthToSpace CRD), the exported file executed by qonnx against the torch model, and a quality
test: the trained model beats bicubic upsampling on the held-out images."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("skimage")

from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402

from a2qhls.cli import main  # noqa: E402
from a2qhls.frontend.export import METADATA_KEY, export_qonnx  # noqa: E402
from a2qhls.frontend.superres import (TEST_IMAGES, TRAIN_IMAGES, bicubic_up, build_espcn, load_superres,  # noqa: E402
                                      psnr)

torch.set_num_threads(1)


def _train(capsys, *argv):
    rc = main(["train", "--task", "superres", *argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_data_is_bundled_luminance_with_held_out_images():
    d = load_superres(2, seed=0, patches=64, patch=16)
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    assert d.x_train.shape == (64, 1, 8, 8) and d.y_train.shape == (64, 1, 16, 16)
    assert float(d.y_train.min()) >= 0 and float(d.y_train.max()) <= 1
    for lr, hr in zip(d.test_lr, d.test_hr):
        assert hr.shape[-2] == 2 * lr.shape[-2] and hr.shape[-1] == 2 * lr.shape[-1]
        # bicubic is a real baseline: close to, but not equal to, the original
        assert 20 < psnr(bicubic_up(lr, 2), hr, shave=2) < 60
    assert load_superres(2, seed=0, patches=64, patch=16).x_train.equal(d.x_train)  # deterministic


def test_psnr_definition():
    ref = torch.zeros(1, 1, 4, 4)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert psnr(ref + 2.0, ref) == pytest.approx(0.0)  # clipped to 1 first


def test_train_smoke_exports_depth_to_space_with_targets(tmp_path, capsys):
    out = tmp_path / "sr.onnx"
    r = _train(capsys, "--arch", "espcn:4,4,4", "--upscale", "3", "--quant", "a2q+", "--acc-bits", "13",
               "--constrain", "inner", "--epochs", "1", "--float-epochs", "1", "--out", str(out))
    assert r["upscale"] == 3 and set(r["test_images"]) == set(TEST_IMAGES)
    for k in ("bicubic_psnr", "float_psnr", "psnr"):
        assert 5 < r[k] < 60, r
    assert r["psnr_vs_bicubic"] == pytest.approx(r["psnr"] - r["bicubic_psnr"], abs=1e-3)
    assert [row["quant"] for row in r["layers"]] == ["baseline", "a2q+", "a2q+", "baseline"]
    assert [row.get("target_acc_bits") for row in r["layers"]] == [None, 13, 13, None]
    assert all(row["acc_bits_bound"] <= 13 for row in r["layers"][1:3])
    m = onnx.load(str(out))
    d2s = [n for n in m.graph.node if n.op_type == "DepthToSpace"]
    assert len(d2s) == 1 and d2s[0].output[0] == m.graph.output[0].name
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in d2s[0].attribute}
    assert attrs == {"blocksize": 3, "mode": b"CRD"}
    meta = json.loads(next(p.value for p in m.metadata_props if p.key == METADATA_KEY))
    assert sorted(v["target_acc_bits"] for v in meta.values() if v["target_acc_bits"]) == [13, 13]


@pytest.mark.parametrize("r", [2, 3])
def test_export_matches_torch_pixel_shuffle(tmp_path, r):
    """qonnx executes the exported ESPCN (DepthToSpace CRD) to the torch model's output."""
    torch.manual_seed(0)
    m = build_espcn("espcn:4,4,4", r, "a2q", 4, 4, 13, "all")
    x = torch.rand(3, 1, 6, 5)
    m.train()
    with torch.no_grad():
        m(x)  # calibrate activation scales
    m.eval()
    path = tmp_path / "m.onnx"
    export_qonnx(m, str(path), (1, 6, 5), batch_size=3)
    mw = ModelWrapper(str(path))
    got = execute_onnx(mw, {mw.graph.input[0].name: x.numpy()})[mw.graph.output[0].name]
    with torch.no_grad():
        ref = m(x).numpy()
    assert got.shape == (3, 1, 6 * r, 5 * r)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_quality_above_bicubic(tmp_path, capsys):
    """The default recipe's ESPCN (32-32-16, x2, Adam 1e-3, batches of 16), cut to 6 float epochs,
    beats bicubic upsampling on the held-out images, and so does the exported 8-bit quantized model
    after one epoch of QAT from it (measured: bicubic 25.36 dB, float 25.85 dB). A2Q/A2Q+ at
    P=13 need the full recipe (minutes): bench/bench_superres.py checks those, its output is in
    bench/results/superres_p13.json. About 25 s of CPU on one core."""
    ck = str(tmp_path / "float.pt")
    f = _train(capsys, "--quant", "float", "--epochs", "6", "--out", ck)
    assert f["arch"] == "espcn:32,32,16"  # the superres default
    assert f["float_psnr"] > f["bicubic_psnr"], f
    q = _train(capsys, "--quant", "baseline", "--weight-bits", "8", "--act-bits", "8", "--from", ck,
               "--epochs", "1", "--out", str(tmp_path / "q.onnx"))
    assert q["float_psnr"] == f["float_psnr"]  # loaded, not retrained
    assert q["psnr"] > q["bicubic_psnr"], q
    assert (tmp_path / "q.onnx").exists()


def test_task_defaults_fill_only_unset_options():
    """`--task superres` without options is the README's recipe; given options are kept; classify is as before."""
    from a2qhls.frontend.pipeline import TASK_DEFAULTS, TrainRun, train_argv

    sr = TrainRun(task="superres")
    assert (sr.arch, sr.acc_bits, sr.constrain, sr.lr, sr.batch_size) == ("espcn:32,32,16", 13, "inner", 1e-3, 16)
    assert (sr.epochs, sr.float_epochs) == (TASK_DEFAULTS["superres"]["epochs"], TASK_DEFAULTS["superres"]["float_epochs"])
    mine = TrainRun(task="superres", epochs=2, lr=0.5, acc_bits=11)
    assert (mine.epochs, mine.float_epochs, mine.lr, mine.acc_bits) == (2, None, 0.5, 11)  # float = QAT epochs
    cl = TrainRun()
    assert (cl.arch, cl.acc_bits, cl.constrain, cl.epochs, cl.lr, cl.batch_size) == ([64, 32], 12, "all", 30, 1e-2, 64)
    # the command line written for a run resolves to the same run
    argv = train_argv(sr)
    assert argv[argv.index("--lr") + 1] == "0.001" and argv[argv.index("--float-epochs") + 1] == str(sr.float_epochs)


def test_activation_scale_from_percentile():
    """ESPCN's hidden activation quantizers start at the ACT_INIT_PERCENTILE-th percentile of the first
    batch, so one outlier does not set a 4-bit scale; the input quantizer keeps the maximum."""
    from a2qhls.frontend.layers import QuantIdentity, QuantReLU
    from a2qhls.frontend.superres import ACT_INIT_PERCENTILE

    x = torch.cat([torch.linspace(0, 1, 9999), torch.tensor([100.0])])
    r = QuantReLU(4, init_percentile=ACT_INIT_PERCENTILE).train()
    r(x)
    assert float(r.quant.scale()) * 15 == pytest.approx(float(x.sort().values[9989]), rel=1e-6)
    i = QuantIdentity(8).train()
    i(x)
    assert float(i.quant.scale()) * 255 == pytest.approx(100.0)
    m = build_espcn("espcn:4,4,4", 2, "a2q+", 4, 4, 13, "inner")
    pcts = [mod.quant.init_percentile for mod in m.modules() if isinstance(mod, (QuantReLU, QuantIdentity))]
    assert pcts == [None, ACT_INIT_PERCENTILE, ACT_INIT_PERCENTILE, ACT_INIT_PERCENTILE]
    with pytest.raises(Exception, match="init_percentile"):
        QuantReLU(4, init_percentile=0)


def test_bad_superres_options_are_one_line_errors(tmp_path, capsys):
    for argv, needle in ((["--arch", "espcn:4,x"], "espcn:A,B,C"), (["--upscale", "1"], "--upscale"),
                         (["--arch", "64,32"], "espcn")):
        assert main(["train", "--task", "superres", *argv, "--out", str(tmp_path / "m.onnx")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert main(["train", "--arch", "espcn", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "--task superres" in capsys.readouterr().err


def test_sweep_superres_reports_psnr(tmp_path, capsys):
    """`a2qhls sweep --task superres`: each row is the train run with PSNR as its quality, and the
    exact per-layer accumulator widths come from importing the exported ESPCN (DepthToSpace)."""
    out = tmp_path / "sw"
    rc = main(["sweep", "--task", "superres", "--arch", "espcn:4,4,4", "--quant", "a2q,a2q+", "--acc-bits", "13",
               "--constrain", "inner", "--epochs", "1", "--float-epochs", "1", "--serial", "--no-plots",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = json.loads((out / "results.json").read_text())
    assert [r["quant"] for r in rows] == ["a2q", "a2q+"] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["task"] == "superres" and 5 < r["test_psnr"] < 60 and r["bicubic_psnr"] > 20
        assert r["exact_acc_bits"][1:3] == [min(b, 13) for b in r["exact_acc_bits"][1:3]]
    assert "test PSNR (dB)" in text and "bicubic" in text
