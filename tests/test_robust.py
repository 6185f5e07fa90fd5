"""Issue 9, sections 2-6: every hostile input is one line on stderr, exit 2, no traceback, and
nothing written (README, "Limits" and "Build")."""
from __future__ import annotations

import json
import os
import stat
import sys
import time

import numpy as np
import onnx
import pytest

import qonnx_graphs as qg
from robust_cases import BUILD_ONLY, MODEL_CASES, listing, run_cli, valid_model


def assert_one_line(rc, err, needle=None):
    assert rc == 2, err
    assert err.startswith("a2qhls: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    if needle is not None:
        assert needle in err, err


def save(m, path):
    onnx.save(m, str(path))
    return str(path)


# ----------------------------------------------------------------------------- sections 4, 5: models


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_hostile_model_is_refused_in_one_line(tmp_path, case):
    mutate, needle = MODEL_CASES[case]
    m = valid_model(bias="float")
    mutate(m)
    path = save(m, tmp_path / "m.onnx")
    before = listing(tmp_path)
    for argv in (["build", path, "--out", tmp_path / "out"], ["inspect", path])[: 1 if case in BUILD_ONLY else 2]:
        rc, _, err = run_cli(argv)
        assert_one_line(rc, err, needle)
    assert listing(tmp_path) == before  # nothing written


def test_nodes_out_of_order_are_sorted_and_build(tmp_path):
    m = valid_model()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    rc, _, err = run_cli(["build", save(m, tmp_path / "m.onnx"), "--out", tmp_path / "out"])
    assert rc == 0, err
    rc, _, err = run_cli(["build", save(valid_model(), tmp_path / "r.onnx"), "--out", tmp_path / "ref"])
    assert rc == 0, err
    files = [p for p in listing(tmp_path / "ref") if (tmp_path / "ref" / p).is_file() and p != "model.onnx"]
    assert "firmware/a2q_top.cpp" in files or len(files) > 5
    for p in files:  # the sorted graph generates the same project
        assert (tmp_path / "out" / p).read_bytes() == (tmp_path / "ref" / p).read_bytes(), p


def test_acc_bits_takes_ascii_digits_only(tmp_path):
    path = save(valid_model(), tmp_path / "m.onnx")
    for spec in ["layer٠=١٢", "layer0=١٢", "٠=12", "layer0=12.0", "layer0=+12", "layer0= 12"]:
        rc, _, err = run_cli(["build", path, "--out", tmp_path / "o", "--acc-bits", spec])
        assert_one_line(rc, err, "--acc-bits")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text,needle", [
    ('{"layer0": {"PE": NaN}}', "NaN"),
    ('{"layer0": {"PE": Infinity}}', "Infinity"),
    ('{"layer0": {"PE": "2"}}', 'PE="2"'),
    ('{"layer0": {"PE": [2]}}', "PE=[2]"),
    ('{"layer0": {"PE": 2', "not valid JSON"),
    ("[" * 50000 + "]" * 50000, "nested deeper"),
    ('[1, 2]', "expected a JSON object"),
])
def test_bad_folding_file_is_one_line(tmp_path, text, needle):
    path = save(valid_model(), tmp_path / "m.onnx")
    (tmp_path / "f.json").write_text(text)
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "o", "--folding", tmp_path / "f.json"])
    assert_one_line(rc, err, needle)
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- section 5: external data


def _external(tmp_path, name="m.onnx"):
    m = valid_model()
    path = str(tmp_path / name)
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=name + ".data", size_threshold=0)
    return path


def test_external_data_model_builds_a_self_contained_project(tmp_path):
    path = _external(tmp_path)
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "prj"])
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path / "prj")) == ["a2qhls.json", "build_csim.sh", "firmware", "model.onnx", "tb", "tb_data", "vitis_hls.tcl"]
    # the copy carries its weights: move the project away from the data file and simulate it
    os.rename(tmp_path / "prj", tmp_path / "moved")
    os.remove(tmp_path / "m.onnx.data")
    rc, out, err = run_cli(["cosim", tmp_path / "moved", "--random", "20", "--json"])
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["samples"] == 20 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0


@pytest.mark.parametrize("damage,needle", [
    ("truncate", "too short"),
    ("missing", "not found"),
    ("length", "needs"),
    ("escape", "next to the model"),
])
def test_damaged_external_data_is_one_line(tmp_path, damage, needle):
    path = _external(tmp_path)
    data = tmp_path / "m.onnx.data"
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:-10])
    elif damage == "missing":
        data.unlink()
    else:
        m = onnx.load(path, load_external_data=False)
        t = m.graph.initializer[-1]
        for e in t.external_data:
            if damage == "length" and e.key == "length":
                e.value = str(int(e.value) - 4)
            if damage == "escape" and e.key == "location":
                e.value = "../m.onnx.data"
        onnx.save(m, path)
    before = listing(tmp_path)
    for argv in (["build", path, "--out", tmp_path / "o"], ["inspect", path]):
        rc, _, err = run_cli(argv)
        assert_one_line(rc, err, needle)
    assert listing(tmp_path) == before


def test_missing_data_for_declared_dims_is_one_line(tmp_path):
    m = valid_model()
    t = next(t for t in m.graph.initializer if t.name == "w0")
    t.raw_data = t.raw_data[:-8]
    path = save(m, tmp_path / "m.onnx")
    rc, _, err = run_cli(["inspect", path])
    assert_one_line(rc, err, "damaged")


# ----------------------------------------------------------------------------- section 2: --out and --force


def _project(tmp_path):
    path = save(valid_model(), tmp_path / "in" / "model.onnx") if (tmp_path / "in").mkdir() is None else None
    return path


def test_force_never_deletes_the_input_model_or_foreign_files(tmp_path, monkeypatch):
    path = _project(tmp_path)
    (tmp_path / "in" / "notes.txt").write_text("mine")
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "in", "--force"])
    assert_one_line(rc, err, "input file")
    assert sorted(os.listdir(tmp_path / "in")) == ["model.onnx", "notes.txt"]
    # a folder that is not an a2qhls project is never replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    rc, _, err = run_cli(["build", path, "--out", other, "--force"])
    assert_one_line(rc, err, "neither")
    # an a2qhls project is replaced, but not a file a2qhls did not write
    prj = tmp_path / "prj"
    assert run_cli(["build", path, "--out", prj])[0] == 0
    (prj / "vitis_hls.log").write_text("hours of synthesis")
    rc, _, err = run_cli(["build", path, "--out", prj, "--force"])
    assert_one_line(rc, err, "'vitis_hls.log'")
    assert (prj / "vitis_hls.log").exists()
    (prj / "vitis_hls.log").unlink()
    (prj / "firmware" / "stale_w.h").write_text("old layer")
    assert run_cli(["build", path, "--out", prj, "--force"])[0] == 0
    assert not (prj / "firmware" / "stale_w.h").exists()
    # an empty folder is used as it is
    (tmp_path / "empty").mkdir()
    assert run_cli(["build", path, "--out", tmp_path / "empty"])[0] == 0


@pytest.mark.parametrize("out,needle", [
    (".", "current folder"),
    ("..", "ancestor of the current folder"),
    ("", "empty path"),
    ("/", "root folder"),
    ("~", "home folder"),
    ("/proc/a2qhls-test", "/proc"),
])
def test_out_refuses_dangerous_folders(tmp_path, monkeypatch, out, needle):
    path = _project(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    target = os.path.expanduser(out) if out == "~" else out
    before = listing(tmp_path)
    rc, _, err = run_cli(["build", path, "--out", target, "--force"])
    assert_one_line(rc, err, needle)
    assert listing(tmp_path) == before


def test_out_under_a_file_or_unwritable_is_one_line(tmp_path):
    path = _project(tmp_path)
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "afile" / "sub" / "prj"])
    assert_one_line(rc, err, "is a file")
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "afile"])
    assert_one_line(rc, err, "not a folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, _, err = run_cli(["build", path, "--out", ro / "prj"])
        if os.geteuid() != 0:  # root writes anywhere
            assert_one_line(rc, err, "permission denied")
    finally:
        ro.chmod(0o700)
    assert sorted(os.listdir(tmp_path)) == sorted(["in", "afile", "ro"] + (["ro"] if False else []))


def test_nested_out_is_created_and_removed_on_failure(tmp_path):
    path = _project(tmp_path)
    rc, _, err = run_cli(["build", path, "--out", tmp_path / "a" / "b" / "prj", "--acc-bits", "layer0=65"])
    assert_one_line(rc, err, "--acc-bits")
    assert not (tmp_path / "a").exists()
    assert run_cli(["build", path, "--out", tmp_path / "a" / "b" / "prj"])[0] == 0


# ----------------------------------------------------------------------------- section 6: special files, scale


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_inputs_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = save(valid_model(), tmp_path / "m.onnx")
    for argv, needle in [
        (["inspect", fifo], "not a regular file"),
        (["build", fifo, "--out", tmp_path / "o"], "not a regular file"),
        (["build", path, "--out", tmp_path / "o", "--folding", fifo], "not a regular file"),
    ]:
        rc, _, err = run_cli(argv)
        assert_one_line(rc, err, needle)


def test_long_identity_chain_imports(tmp_path):
    """A legal chain of 20,000 Identity nodes imports (linear-time walk; see bench/bench_import_scale.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from bench_import_scale import identity_chain

    path = save(identity_chain(20_000), tmp_path / "chain.onnx")
    rc, out, err = run_cli(["inspect", path, "--json"])
    assert rc == 0, err
    assert [r["name"] for r in json.loads(out)["layers"]] == ["fc"]


# ----------------------------------------------------------------------------- cosim arguments and projects


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("prj")
    path = save(valid_model(), d / "m.onnx")
    assert run_cli(["build", path, "--out", d / "prj"])[0] == 0
    return d / "prj"


def _npy(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return p


def test_cosim_bad_arguments_are_one_line(project, tmp_path):
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as f:  # a header claiming 2^40 x 12 float32 values, and no data
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 12)})
    short = tmp_path / "short.npy"
    with open(short, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10, 12)})
        f.write(b"\0" * 40)
    cases = [
        (["--random", str(10**12)], "--random"),
        (["--random", "10000000"], "--random"),
        (["--seed", "-1", "--random", "4"], "--seed -1"),
        (["--inputs", _npy(tmp_path, "empty.npy", np.zeros((0, 12), np.float32))], "no samples"),
        (["--inputs", _npy(tmp_path, "complex.npy", np.ones((2, 12), np.complex64))], "complex"),
        (["--inputs", _npy(tmp_path, "nan.npy", np.full((2, 12), np.nan))], "nan"),
        (["--inputs", _npy(tmp_path, "big.npy", np.full((2, 12), 1e300))], "finite float32"),
        (["--inputs", _npy(tmp_path, "obj.npy", np.array([[1, 2]], dtype=np.int64).astype(bool))], "bool"),
        (["--inputs", huge], "above the limit"),
        (["--inputs", short], "shorter"),
        (["--inputs", tmp_path / "none.npy"], "no such file"),
    ]
    for extra, needle in cases:
        t0 = time.perf_counter()
        rc, _, err = run_cli(["cosim", project, *extra])
        assert_one_line(rc, err, needle)
        assert time.perf_counter() - t0 < 60


def test_cosim_refuses_a_damaged_summary(project, tmp_path):
    import shutil

    good = json.loads((project / "a2qhls.json").read_text())
    for name, text, needle in [
        ("deep", "[" * 100000 + "]" * 100000, "nested deeper"),
        ("nan", json.dumps(good).replace('"acc_bits_overrides": {}', '"acc_bits_overrides": {"layer0": NaN}'), "NaN"),
        ("inf_override", json.dumps(dict(good, acc_bits_overrides={"layer0": 1e400})), "Infinity"),
        ("str_override", json.dumps(dict(good, acc_bits_overrides={"layer0": "12"})), "'12'"),
        ("model_path", json.dumps(dict(good, model="../../etc/passwd")), "model.onnx"),
        ("folding", json.dumps(dict(good, folding={"layer0": {"PE": 3}})), "PE=3"),
        ("edited", json.dumps(dict(good, cycles_per_image=good["cycles_per_image"] + 7)), "rebuild"),
        ("list", "[]", "not an a2qhls build summary"),
    ]:
        d = tmp_path / name
        shutil.copytree(project, d)
        (d / "a2qhls.json").write_text(text)
        rc, _, err = run_cli(["cosim", d, "--random", "2"])
        assert_one_line(rc, err, needle)


# ----------------------------------------------------------------------------- train arguments


@pytest.mark.parametrize("argv,needle", [
    (["--lr", "nan"], "--lr nan"),
    (["--lr", "inf"], "--lr inf"),
    (["--penalty", "nan"], "--penalty nan"),
    (["--weight-bits", "64"], "--weight-bits 64"),
    (["--seed", "-1"], "--seed -1"),
    (["--out", "."], "is a folder"),
])
def test_train_refuses_bad_arguments_before_training(tmp_path, monkeypatch, argv, needle):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    rc, _, err = run_cli(["train", *argv] + ([] if "--out" in argv else ["--out", "m.onnx"]))
    assert_one_line(rc, err, needle)
    assert os.listdir(tmp_path) == []
