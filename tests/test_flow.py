"""The build flow as named steps and the Python API (a2qhls.build / inspect / cosim)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import a2qhls
from a2qhls.cli import main
from a2qhls.flow import BUILD_STEPS

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "examples" / "digits_a2qplus_p12.onnx"


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_public_api_is_curated():
    for name in ("build", "inspect", "cosim", "load_qonnx", "size_accumulators"):
        assert name in a2qhls.__all__ and callable(getattr(a2qhls, name))
    assert issubclass(a2qhls.A2QError, Exception) and a2qhls.BUILD_STEPS is BUILD_STEPS
    assert [n for n, _ in BUILD_STEPS] == ["import", "size", "acc_bits", "thresholds", "folding", "memories", "codegen", "testbench", "write"]


def test_python_build_equals_cli_build(tmp_path, capsys):
    """a2qhls.build returns the summary the CLI writes as a2qhls.json, and writes the same files."""
    summary = a2qhls.build(str(BUNDLED), tmp_path / "api")
    assert main(["build", str(BUNDLED), "--out", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    assert summary == json.loads((tmp_path / "cli" / "a2qhls.json").read_text())
    assert _tree(tmp_path / "api") == _tree(tmp_path / "cli")


def test_python_build_from_a_loaded_model_with_overrides(tmp_path, capsys):
    """A loaded IR builds like its file; overrides and folding as Python values equal the CLI's."""
    model = a2qhls.load_qonnx(str(BUNDLED))
    first = model.layers()[0].name
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({first: {"PE": 4, "SIMD": 8}}))
    s = a2qhls.build(model, tmp_path / "api", acc_bits={"layer1": 11}, folding={first: {"PE": 4, "SIMD": 8}})
    assert main(["build", str(BUNDLED), "--out", str(tmp_path / "cli"), "--acc-bits", "layer1=11", "--folding", str(fold)]) == 0
    capsys.readouterr()
    assert _tree(tmp_path / "api") == _tree(tmp_path / "cli")
    second = s["layers"][1]
    assert (second["acc_bits"], second["acc_bits_overridden"]) == (11, True)
    assert s["folding"][first] == {"PE": 4, "SIMD": 8}


def test_save_steps_writes_one_view_per_step(tmp_path, capsys):
    """--save-steps: steps/NN_<step>.json for every step of the flow, in order, showing where a
    width and a folding came from; without it the project is unchanged."""
    assert main(["build", str(BUNDLED), "--out", str(tmp_path / "p"), "--save-steps", "--acc-bits", "layer0=13"]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "p" / "steps").iterdir())
    assert names == [f"{i:02d}_{n}.json" for i, (n, _) in enumerate(BUILD_STEPS)]
    views = [json.loads((tmp_path / "p" / "steps" / n).read_text()) for n in names]
    layer0 = lambda v: next(o for o in v["ops"] if o["op"] == "Dense")  # noqa: E731
    assert "safe_acc_bits" not in layer0(views[0])  # import: nothing derived yet
    assert "safe_acc_bits" in layer0(views[1]) and "acc_bits" not in layer0(views[1])  # size
    assert (layer0(views[2])["acc_bits"], layer0(views[2])["acc_bits_overridden"]) == (13, True)  # acc_bits
    assert "PE" not in layer0(views[3]) and "PE" in layer0(views[4])  # folding decided in its step
    assert "a2qhls.json" in views[-1]["files"]
    assert main(["build", str(BUNDLED), "--out", str(tmp_path / "q"), "--acc-bits", "layer0=13"]) == 0
    capsys.readouterr()
    assert not (tmp_path / "q" / "steps").exists()
    without = {k: v for k, v in _tree(tmp_path / "p").items() if not k.startswith("steps/")}
    assert without == _tree(tmp_path / "q")


def test_python_inspect_equals_cli_json(capsys):
    assert main(["inspect", str(BUNDLED), "--json"]) == 0
    assert a2qhls.inspect(str(BUNDLED)) == json.loads(capsys.readouterr().out)
    assert main(["inspect", str(BUNDLED), "--json", "--per-channel"]) == 0
    assert a2qhls.inspect(str(BUNDLED), per_channel=True) == json.loads(capsys.readouterr().out)


def test_python_cosim_equals_cli_json(tmp_path, capsys):
    a2qhls.build(str(BUNDLED), tmp_path / "p")
    rep = a2qhls.cosim(tmp_path / "p", random=20, seed=3)
    assert rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0 and rep["samples"] == 20
    assert main(["cosim", str(tmp_path / "p"), "--random", "20", "--seed", "3", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for k in ("compile_seconds", "run_seconds"):
        rep.pop(k), cli.pop(k)
    assert rep == cli


def test_api_errors_are_a2qerror_and_write_nothing(tmp_path):
    with pytest.raises(a2qhls.A2QError, match="unknown layer"):
        a2qhls.build(str(BUNDLED), tmp_path / "p", acc_bits={"nope": 9})
    assert not (tmp_path / "p").exists()
    assert list(tmp_path.iterdir()) == []


ACC_BITS_FREE = ("a2qhls/passes", "a2qhls/codegen.py", "a2qhls/sim.py")


def test_no_function_below_the_flow_takes_acc_bits():
    """The override is a decision stored in the IR (op.acc_bits): no pass, codegen or simulator
    function takes it (or the folding) as a parameter."""
    offenders = []
    for root in ACC_BITS_FREE:
        for path in sorted((ROOT / root).rglob("*.py")) if (ROOT / root).is_dir() else [ROOT / root]:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    args = node.args
                    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                    if "acc_bits" in names:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert offenders == []


def test_build_does_not_change_a_given_model_and_warns(tmp_path):
    """A loaded Model is built from a copy; a width below the safe one warns in Python too."""
    from a2qhls.errors import A2QWarning
    from a2qhls.sim import BitSim

    model = a2qhls.size_accumulators(a2qhls.load_qonnx(str(BUNDLED)))
    safe = [op.acc.acc_bits for op in model.accumulating_ops()]
    with pytest.warns(A2QWarning, match="below its safe width"):
        s = a2qhls.build(model, tmp_path / "p", acc_bits={"layer1": safe[1] - 2})
    assert s["layers"][1]["acc_bits"] == safe[1] - 2
    assert [op.acc_bits for op in model.accumulating_ops()] == [None, None]
    assert [op.pe for op in model.layers()] == [None, None]
    assert BitSim(model).acc_bits == {op.name: b for op, b in zip(model.accumulating_ops(), safe)}


def test_folding_and_acc_bits_name_layers_alike(tmp_path):
    """`layerN` / `N` name the N-th layer in folding as in acc_bits; --save-steps marks user folding."""
    s = a2qhls.build(str(BUNDLED), tmp_path / "p", folding={"layer0": {"PE": 4, "SIMD": 8}}, save_steps=True)
    first = s["layers"][0]["name"]
    assert s["folding"][first] == {"PE": 4, "SIMD": 8}
    view = json.loads((tmp_path / "p" / "steps" / "04_folding.json").read_text())
    dense = [o for o in view["ops"] if o["op"] == "Dense"]
    assert [o["folding_overridden"] for o in dense] == [True, False]
    assert not any(f.startswith("steps/") for f in view.get("files", []))
    with pytest.raises(a2qhls.A2QError, match="given twice"):
        a2qhls.build(str(BUNDLED), tmp_path / "q", folding={"layer0": {"PE": 4}, first: {"PE": 2}})
    with pytest.raises(a2qhls.A2QError, match="given twice"):
        a2qhls.build(str(BUNDLED), tmp_path / "q", acc_bits={"layer0": 13, first: 14})
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"acc_bits": 11}, "acc_bits: expected"),
    ({"acc_bits": "layer1=11"}, "acc_bits: expected"),
    ({"folding": 3}, "folding: expected"),
])
def test_api_rejects_wrong_argument_types(tmp_path, kwargs, match):
    with pytest.raises(a2qhls.A2QError, match=match):
        a2qhls.build(str(BUNDLED), tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


def test_python_cosim_takes_an_array_and_checks_argument_types(tmp_path):
    import numpy as np

    a2qhls.build(str(BUNDLED), tmp_path / "p")
    x = np.random.default_rng(0).uniform(0, 16, size=(5, 64)).astype(np.float32)
    rep = a2qhls.cosim(tmp_path / "p", inputs=x)
    assert rep["samples"] == 5 and rep["mismatches_cpp_vs_model"] == 0
    with pytest.raises(a2qhls.A2QError, match="random: expected an integer"):
        a2qhls.cosim(tmp_path / "p", random="5")
    with pytest.raises(a2qhls.A2QError, match="inputs: expected"):
        a2qhls.cosim(tmp_path / "p", inputs=[[0.0] * 64])


def test_build_warns_when_the_estimate_exceeds_the_part(tmp_path):
    """A fully parallel folding of the bundled MLP on a small part: one warning names the part,
    the resource and the numbers; the default folding fits and does not warn."""
    import warnings

    from a2qhls.errors import A2QWarning

    fold = {"layer0": {"PE": 32, "SIMD": 64}, "layer1": {"PE": 10, "SIMD": 32}}
    with pytest.warns(A2QWarning, match=r"xc7z020's LUT .* does not fit that part"):
        s = a2qhls.build(str(BUNDLED), tmp_path / "big", part="xc7z020", folding=fold)
    assert s["cost"]["utilization_percent"]["LUT"] > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", A2QWarning)
        s = a2qhls.build(str(BUNDLED), tmp_path / "small", part="xc7z020")
    assert s["cost"]["utilization_percent"]["LUT"] <= 100
