"""`a2qhls sweep`: a grid of `a2qhls train` runs on local Ray, cached, with results files and plots."""
import csv
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from a2qhls import load_qonnx  # noqa: E402
from a2qhls.cli import main  # noqa: E402
from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend.sweep import (CSV_COLUMNS, SweepGrid, configs, parse_choices, parse_int_list,  # noqa: E402
                                   run_sweep)
from a2qhls.plots import pareto_front  # noqa: E402

PLOTS = ("quality_vs_acc_bits.png", "quality_vs_cost.png", "layer_widths.png")
# digits, 64-16-10 MLP, 2 epochs: about a second per run on one core
TINY = ["--dataset", "digits", "--arch", "16", "--epochs", "2", "--device", "cpu"]


def _sweep(capsys, out, *argv):
    rc = main(["sweep", *TINY, "--out", str(out), "--json", *argv])
    stdout, err = capsys.readouterr()
    return rc, json.loads(stdout), err


def _integers(path):
    """Every weight layer's integer weights and bias, as the importer reads them from the file."""
    m = load_qonnx(str(path))
    return [(op.name, op.weight, op.bias) for op in m.accumulating_ops()]


def test_sweep_on_local_ray_matches_direct_train_caches_and_records_failures(tmp_path, capsys):
    """The issue's CI sweep: 2 quantizers x 2 widths x 1 seed on an embedded local Ray instance."""
    ray = pytest.importorskip("ray")
    out = tmp_path / "sw"
    rc, s, err = _sweep(capsys, out, "--quant", "a2q,a2q+", "--acc-bits", "10,12", "--num-cpus", "2")
    assert rc == 0, err
    assert (s["runs"], s["ran"], s["cached"], s["failed"], s["floats_trained"]) == (4, 4, 0, 0, 1)
    assert not ray.is_initialized()  # the embedded instance is shut down again

    # files exist and parse
    rows = json.loads((out / "results.json").read_text())
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["key"] for r in table] == [r["key"] for r in rows] and len(rows) == 4
    assert list(table[0]) == CSV_COLUMNS
    assert sorted((r["quant"], r["acc_bits"]) for r in rows) == [("a2q", 10), ("a2q", 12), ("a2q+", 10), ("a2q+", 12)]
    for r, t in zip(rows, table):
        assert r["status"] == "ok" and float(t["test_accuracy"]) == r["test_accuracy"]
        assert t["exact_acc_bits"] == ";".join(map(str, r["exact_acc_bits"]))
        assert r["target_acc_bits"] == [r["acc_bits"]] * 2  # every layer constrained
        assert max(r["exact_acc_bits"]) <= r["acc_bits"] and not r["exceeds_target"]
        assert 0 < r["luts"] < r["luts_acc32"] and r["cost_proxy"] > 0  # narrower than 32 bits costs less
    from matplotlib.image import imread

    for name in PLOTS:
        img = imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name

    # each row is what a direct `a2qhls train` with the same options gives (its own float model)
    for r in rows:
        argv = shlex.split(r["command"])
        assert argv[:2] == ["a2qhls", "train"] and argv[-2] == "--out"
        direct = tmp_path / f"direct_{r['key']}.onnx"
        assert main(argv[1:-1] + [str(direct), "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert (d["test_accuracy"], d["float_test_accuracy"]) == (r["test_accuracy"], r["float_test_accuracy"])
        for (na, wa, ba), (nb, wb, bb) in zip(_integers(out / r["onnx"]), _integers(direct), strict=True):
            assert na == nb and np.array_equal(wa, wb) and np.array_equal(ba, bb)

    # a second invocation runs nothing (and starts no Ray)
    rc, s, err = _sweep(capsys, out, "--quant", "a2q,a2q+", "--acc-bits", "10,12")
    assert rc == 0 and (s["ran"], s["cached"]) == (0, 4), s

    # an extended grid runs only the new configurations; an impossible width is a failed row, the sweep goes on
    rc, s, err = _sweep(capsys, out, "--quant", "a2q,a2q+", "--acc-bits", "3,10:12", "--num-cpus", "2")
    assert rc == 1, err
    assert (s["runs"], s["ran"], s["cached"], s["failed"], s["floats_trained"]) == (8, 4, 4, 2, 0), s
    rows2 = json.loads((out / "results.json").read_text())
    old = {r["key"]: r for r in rows}
    for r in rows2:
        if r["key"] in old:
            assert r == old[r["key"]]
        elif r["acc_bits"] == 3:
            assert r["status"] == "failed" and "leaves no l1 budget" in r["error"] and "\n" not in r["error"]
        else:
            assert r["status"] == "ok" and r["acc_bits"] == 11
    assert set(s["errors"]) == {r["key"] for r in rows2 if r["status"] == "failed"}
    # failed configurations are cached too
    rc, s, _ = _sweep(capsys, out, "--quant", "a2q,a2q+", "--acc-bits", "3,10:12", "--no-plots")
    assert (rc, s["ran"], s["cached"], s["failed"]) == (1, 0, 8, 2)


def test_serial_sweep_resumes_only_what_is_missing_and_csv_matches_json(tmp_path):
    """Caching without Ray: a deleted (interrupted) run is the only one run again, from the cached float model."""
    grid = SweepGrid(dataset="digits", arch=[16], quants=["baseline", "a2q+"], acc_bits=[11, 12], epochs=1,
                     device="cpu")
    out = tmp_path / "sw"
    a = run_sweep(grid, str(out), executor="serial", plots=False)
    assert (a.ran, a.cached, a.failed, a.floats_trained) == (3, 0, 0, 1)  # baseline once, not per P
    base = next(r for r in a.rows if r["quant"] == "baseline")
    assert base["acc_bits"] is None and base["init"] is None and base["target_acc_bits"] == [None, None]
    victim = next(r for r in a.rows if r["acc_bits"] == 12)
    os.remove(out / "runs" / f"{victim['key']}.json")
    b = run_sweep(grid, str(out), executor="serial", plots=False)
    assert (b.ran, b.cached, b.floats_trained) == (1, 2, 0)
    def strip(rows):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]

    assert strip(b.rows) == strip(a.rows)  # the same row again (but its time): deterministic on CPU
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    for r, t in zip(b.rows, table, strict=True):
        for c in ("key", "status", "quant", "seed", "test_accuracy", "max_exact_acc_bits", "luts", "cost_proxy", "onnx"):
            assert t[c] == ("" if r.get(c) is None else str(r[c])), c
    assert table[0]["acc_bits"] == "" and table[0]["quant"] == "baseline"


def test_grid_lists_and_ranges():
    assert parse_int_list("9:12", "--acc-bits") == [9, 10, 11, 12]
    assert parse_int_list("9:16:3,4", "--acc-bits") == [4, 9, 12, 15]
    assert parse_choices("a2q+,baseline,a2q+", ("baseline", "a2q", "a2q+"), "--quant") == ["a2q+", "baseline"]
    for bad in ("12:9", "x", "0:3", "", "1:4:0"):
        with pytest.raises(A2QError, match="--acc-bits"):
            parse_int_list(bad, "--acc-bits")
    with pytest.raises(A2QError, match=re.escape("unknown value 'a2q++'")):
        parse_choices("a2q,a2q++", ("baseline", "a2q", "a2q+"), "--quant")
    grid = SweepGrid(quants=["baseline", "a2q", "a2q+"], acc_bits=[9, 10], weight_bits=[3, 4], inits=["ep", "default"],
                     seeds=[0, 1])
    cfgs = configs(grid)
    # per seed and M: 1 baseline + 2 quantizers x 2 inits x 2 widths
    assert len(cfgs) == 2 * 2 * (1 + 2 * 2 * 2)
    assert len({json.dumps(c, sort_keys=True) for c in cfgs}) == len(cfgs)


def test_sweep_quantizers_are_trains_recipes_but_float(tmp_path, capsys):
    """The grid's quantizers are ``a2qhls train``'s (each one a recipe train accepts, in train's order);
    "float" is refused with the reason, by the CLI and by run_sweep, before anything is written; --help
    lists them."""
    from a2qhls.frontend.sweep import QUANTS, parse_quants
    from a2qhls.frontend.train import QUANT_KINDS, check_recipe

    for q in QUANTS:
        check_recipe(q, "all")
    assert "float" in QUANT_KINDS and [q for q in QUANT_KINDS if q in QUANTS] == list(QUANTS)
    assert parse_quants("a2q+, baseline,a2q+") == ["a2q+", "baseline"]
    for text in ("float", "a2q,float"):
        with pytest.raises(A2QError, match="'float' is not a sweep quantizer.*once per seed.*supported: baseline, a2q, a2q\\+$"):
            parse_quants(text)
    out = tmp_path / "sw"
    with pytest.raises(A2QError, match="'float' is not a sweep quantizer"):
        run_sweep(SweepGrid(quants=["a2q", "float"], epochs=0), str(out), executor="serial")
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--quant QUANT quantizers: " + ", ".join(QUANTS) + " (comma separated;" in text


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10, 90.0), (12, 95.0), (11, 89.0), (12, 94.0), (20, 95.0), (25, 97.0), (9, 50.0)]
    assert pareto_front(pts) == [(9, 50.0), (10, 90.0), (12, 95.0), (25, 97.0)]


@pytest.mark.parametrize("argv,needle", [
    (["--acc-bits", "12:9"], "--acc-bits: bad range"),
    (["--quant", "a2q,fp8"], "--quant: unknown value 'fp8'"),
    (["--quant", "a2q,float"], "--quant: 'float' is not a sweep quantizer"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--arch", "cnn:c8,zz"], "unknown CNN token 'zz'"),
    (["--out", "/nonexistent/dir/sw"], "directory does not exist"),
])
def test_bad_sweep_options_are_one_line_errors(capsys, argv, needle):
    assert main(["sweep", "--serial", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and needle in captured.err and captured.err.count("\n") == 1


def test_without_ray_sweep_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from a2qhls.cli import main; "
            "sys.exit(main(['sweep', '--dataset', 'digits', '--arch', '8', '--epochs', '0', '--out', sys.argv[1]]))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sw")], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'a2qhls[sweep]'" in r.stderr and "--serial" in r.stderr
    assert not (tmp_path / "sw").exists()  # no partial output


def test_inspect_plot_draws_a_png_without_torch(tmp_path):
    model = os.path.join(os.path.dirname(__file__), "..", "examples", "digits_a2qplus_p12.onnx")
    png = tmp_path / "widths.png"
    code = ("import sys; from a2qhls.cli import main; rc = main(['inspect', sys.argv[1], '--plot', sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, model, str(png)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from matplotlib.image import imread

    assert imread(png).shape[1] >= 600
    # without --plot, matplotlib is not imported either
    code = ("import sys; from a2qhls.cli import main; rc = main(['inspect', sys.argv[1]]); "
            "assert 'matplotlib' not in sys.modules; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("target,needle", [("widths.svg", "must name a .png file"),
                                           ("nodir/widths.png", "directory does not exist")])
def test_inspect_plot_bad_target_is_one_line_error(tmp_path, capsys, target, needle):
    model = os.path.join(os.path.dirname(__file__), "..", "examples", "digits_a2qplus_p12.onnx")
    assert main(["inspect", model, "--plot", str(tmp_path / target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and needle in captured.err and captured.err.count("\n") == 1


def test_inspect_plot_of_hostile_layer_names(tmp_path):
    """Names from the model file reach the PNG escaped and cut (no mathtext, no control characters)."""
    import onnx
    from matplotlib.image import imread

    from hostile_names import named_cases, rename_all

    model = os.path.join(os.path.dirname(__file__), "..", "examples", "digits_a2qplus_p12.onnx")
    hostile = list(named_cases(str(tmp_path / "canary")).values())
    mathtext = ["$x^$", "$\\nosuchsymbol{$", "$\\frac{1}$"]  # broken TeX if read as math
    for k, names in enumerate((hostile, mathtext)):
        path, png = tmp_path / f"hostile{k}.onnx", tmp_path / f"h{k}.png"
        onnx.save(rename_all(onnx.load(model), names), str(path))
        assert main(["inspect", str(path), "--plot", str(png)]) in (0, 1)
        assert imread(png).shape[1] >= 600
    assert not (tmp_path / "canary").exists()
