"""`a2qhls train`: quality bars, determinism, checkpoints, and one-line errors."""
import json
import os

import pytest

torch = pytest.importorskip("torch")

from a2qhls.cli import main  # noqa: E402


def _train(capsys, *argv):
    rc = main(["train", *argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_digits_a2qplus_p12_quality_bar_and_determinism(tmp_path, capsys):
    """Digits MLP 64-64-32-10, 4-bit weights and activations, A2Q+ at P=12: >= 94% (Brevitas: 96.9%)."""
    args = ["--dataset", "digits", "--arch", "64,32", "--quant", "a2q+", "--weight-bits", "4", "--act-bits", "4",
            "--acc-bits", "12", "--init", "ep", "--seed", "0", "--device", "cpu"]
    a = _train(capsys, *args, "--out", str(tmp_path / "a.onnx"))
    assert a["test_accuracy"] >= 0.94, a
    assert 0 < a["float_test_accuracy"] <= 1
    assert [row["target_acc_bits"] for row in a["layers"]] == [12, 12, 12]
    assert all(row["acc_bits_bound"] <= 12 for row in a["layers"])
    b = _train(capsys, *args, "--out", str(tmp_path / "b.onnx"))
    assert a["test_accuracy"] == b["test_accuracy"] and a["layers"] == b["layers"]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_digits_64_32_10_quality_bar(tmp_path, capsys):
    """The issue's digits MLP read as 64 inputs, 32 hidden, 10 classes: >= 94% too (measured 96.7%)."""
    r = _train(capsys, "--dataset", "digits", "--arch", "32", "--quant", "a2q+", "--weight-bits", "4", "--act-bits", "4",
               "--acc-bits", "12", "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "m.onnx"))
    assert r["arch"] == [64, 32, 10]
    assert r["test_accuracy"] >= 0.94, r
    assert all(row["acc_bits_bound"] <= 12 for row in r["layers"])


def test_mnist_a2qplus_p12_quality_bar(tmp_path, capsys):
    """MNIST-5k MLP 784-64-64-10 at P=12: >= 93% (Brevitas: 93.2%). About 15 s on one CPU core."""
    r = _train(capsys, "--dataset", "mnist", "--arch", "64,64", "--quant", "a2q+", "--acc-bits", "12",
               "--device", "cpu", "--out", str(tmp_path / "m.onnx"))
    assert r["test_accuracy"] >= 0.93, r
    assert r["arch"] == [784, 64, 64, 10]
    assert all(row["acc_bits_bound"] <= 12 for row in r["layers"])


def test_float_checkpoint_then_from(tmp_path, capsys):
    ck = str(tmp_path / "float.pt")
    f = _train(capsys, "--dataset", "digits", "--quant", "float", "--epochs", "5", "--out", ck)
    assert os.path.exists(ck) and f["test_accuracy"] == f["float_test_accuracy"]
    q = _train(capsys, "--dataset", "digits", "--quant", "a2q", "--from", ck, "--epochs", "2",
               "--constrain", "inner", "--acc-bits", "14", "--out", str(tmp_path / "q.onnx"))
    assert q["float_test_accuracy"] == f["float_test_accuracy"]  # loaded, not retrained
    assert [row["quant"] for row in q["layers"]] == ["baseline", "a2q", "baseline"]
    assert [row["weight_bits"] for row in q["layers"]] == [8, 4, 8]
    # a checkpoint of another architecture is refused with one line
    assert main(["train", "--dataset", "digits", "--arch", "16", "--from", ck, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2qhls: error: --from:") and err.count("\n") == 1


@pytest.mark.parametrize("argv,needle", [
    (["--from", "/nonexistent/float.pt"], "no such file"),
    (["--out", "/nonexistent/dir/m.onnx"], "directory does not exist"),
    (["--acc-bits", "0"], "--acc-bits 0: must be in 2..32"),
    (["--acc-bits", "3", "--act-bits", "4", "--epochs", "0", "--float-epochs", "0"], "leaves no l1 budget"),
])
def test_bad_input_is_one_line_error(capsys, argv, needle, tmp_path):
    argv = list(argv)
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.onnx")]
    assert main(["train", "--dataset", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("a2qhls: error:")


def test_help_documents_the_constrain_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--constrain" in text and "first and last layers keep 8-bit" in text
