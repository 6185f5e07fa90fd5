"""The wheel ships the templates, and an installed (non-editable) copy finds and uses them."""
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read().strip().splitlines()[-1]
    assert ci in readme


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), ROOT],
                       capture_output=True, text=True)
    if r.returncode != 0:  # no setuptools/wheel in this environment without isolation: build isolated
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (whl,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    return whl


def test_wheel_contains_every_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tdir = os.path.join(ROOT, "templates")
    found = 0
    for folder, _, files in os.walk(tdir):
        for t in files:
            if t.endswith(".j2"):
                rel = os.path.relpath(os.path.join(folder, t), tdir).replace(os.sep, "/")
                assert f"a2qhls/templates/{rel}" in names
                found += 1
    assert "a2qhls/templates/verilog/pe.v.j2" in names and found > 10


def test_installed_copy_generates_a_project(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = os.path.join(ROOT, "examples", "digits_a2qplus_p12.onnx")
    code = ("import sys, a2qhls, a2qhls.codegen as c; from a2qhls.cli import main; "
            "assert a2qhls.__file__.startswith(sys.argv[1]), a2qhls.__file__; "
            "assert str(c.template_dir()).startswith(sys.argv[1]), c.template_dir(); "
            "sys.exit(main(['build', sys.argv[2], '--out', sys.argv[3]]))")
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", code, str(target), model, str(tmp_path / "hls")], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hls" / "firmware" / "a2q_layers.h").exists()
