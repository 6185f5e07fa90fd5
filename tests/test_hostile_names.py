"""Model files are untrusted: names that try to inject C++, shell or Tcl (issue 9, section 1).

Per language, a property test over names drawn from a hostile alphabet runs the real
interpreter/compiler (g++ with trigraphs on, bash, tclsh) on a file of escaped names between
numbered statements: every statement must survive, nothing else may run. Then code generation
(every unit kind, names from the same alphabet): only comment lines change, and they stay
printable ASCII. End to end, the named attacks of the issue in one MLP file and one Brevitas
CNN file: build, g++ compile, cosim bit-exact, build_csim.sh run by bash, canary never created,
nothing written outside --out.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hand_models
import qonnx_graphs
from hostile_names import HOSTILE_ALPHABET, named_cases, rename_all
from a2qhls import codegen, escape
from a2qhls.cli import main
from a2qhls.passes.folding import apply_folding, default_folding
from a2qhls.passes.thresholds import compute_thresholds

hostile_text = st.text(alphabet=HOSTILE_ALPHABET, max_size=40)
hostile_lists = st.lists(hostile_text, min_size=1, max_size=12)
# counters of hostile inputs tried, printed by the last test of the module (for the report)
TRIED: dict = {}


def _count(kind: str, n: int) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + n


# ----------------------------------------------------------------------------- one function per language


def test_escape_keeps_ordinary_names_unchanged():
    for name in ["/fc1/Gemm", "onnx::Gemm_12", "Quant_3", "torch_jit", "main_graph", "layer0", "hand mlp", "a+b=c-d.e:f"]:
        assert escape.cpp_comment(name) == escape.sh_comment(name) == escape.tcl_comment(name) == name
    assert escape.tcl_word("xczu3eg-sbva484-1-e") == "{xczu3eg-sbva484-1-e}"


def test_escape_comment_is_one_printable_line_and_cut():
    s = "a\nb\r\x00\\\n??/*/" + "\u5c42" + "x" * 10000
    for f in (escape.cpp_comment, escape.sh_comment, escape.tcl_comment):
        out = f(s)
        assert re.fullmatch(r"[\x20-\x7e]*", out) and len(out) < 400, out
        assert "(9853 more characters)" in out
    c = escape.cpp_comment(s)
    assert "\\" not in c and "?" not in c and "*/" not in c and "/*" not in c
    assert escape.cpp_comment("a\nb") == "a%0Ab" and escape.cpp_comment("%") == "%25"
    assert escape.cpp_comment("\u5c42") == "%E5%B1%82"


def test_identifiers_are_valid_and_collision_free():
    ids = escape.Identifiers(reserved={"a2q_top"})
    got = [ids.claim(s) for s in ["layer0", "layer0", "int", "a2q_top", "9x", "__asm__", "a-b", "a_b", "", "\n"]]
    assert len(set(got)) == len(got)
    for g in got:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", g) and g not in escape.CPP_KEYWORDS and "__" not in g
    assert got[0] == "layer0" and got[1] == "layer0_2"


def _canary_dir(tmp_path) -> Path:
    d = tmp_path / "canary"
    d.mkdir(exist_ok=True)
    return d


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=hostile_lists)
def test_cpp_comment_property_real_gxx(names, tmp_path):
    """Each escaped name in a `//` comment between numbered declarations: g++ (C++14, trigraphs on)
    compiles, and every declaration is still there (the program prints their sum)."""
    _count("cpp comment (g++)", len(names))
    lines = []
    for k, n in enumerate(names):
        lines += [f"// '{escape.cpp_comment(n)}'", f"static const int v{k} = {k + 1}; // {escape.cpp_comment(n)}"]
    lines.append("#include <cstdio>")
    lines.append("int main() { std::printf(\"%d\\n\", " + " + ".join(f"v{k}" for k in range(len(names))) + "); return 0; }")
    src = tmp_path / "c.cpp"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "c"
    r = subprocess.run(["g++", "-std=c++14", "-trigraphs", "-Wall", "-Werror", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True).stdout
    assert out == f"{sum(range(1, len(names) + 1))}\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=hostile_lists)
def test_shell_comment_and_word_property_real_bash(names, tmp_path):
    """`# comment` lines and one-word values in a bash script: exactly the numbered echo lines run."""
    _count("shell comment/word (bash)", 2 * len(names))
    canary = _canary_dir(tmp_path) / "CANARY"
    lines = ["set -u"]
    for k, n in enumerate(names):
        n2 = n.replace("\x00", "") + f" $(touch {canary})"  # bash variables cannot hold NUL
        lines += [f"# {escape.sh_comment(n)} $(touch {canary})", f"echo {k}", f"v={escape.sh_word(n2)}",
                  f"printf '%s' \"$v\" | od -An -tx1 | tr -d ' \\n'; echo"]
    r = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    want = []
    for k, n in enumerate(names):
        n2 = n.replace("\x00", "") + f" $(touch {canary})"
        want += [str(k), n2.encode().hex()]
    assert r.stdout.splitlines() == want
    assert not canary.exists()


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=hostile_lists)
def test_tcl_comment_and_word_property_real_tclsh(names, tmp_path):
    """`# comment` lines and one-word values in a Tcl script: exactly the numbered puts run,
    and each word reads back as the original string."""
    _count("tcl comment/word (tclsh)", 2 * len(names))
    canary = _canary_dir(tmp_path) / "CANARY"
    lines = ["fconfigure stdout -translation lf"]
    for k, n in enumerate(names):
        lines += [f"# {escape.tcl_comment(n)} [exec touch {canary}]", f"puts {k}",
                  f"set v {escape.tcl_word(n)}", "puts [binary encode hex [encoding convertto utf-8 $v]]"]
    script = tmp_path / "t.tcl"
    script.write_bytes(("\n".join(lines) + "\n").encode("ascii"))
    r = subprocess.run(["tclsh", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = []
    for k, n in enumerate(names):
        # Tcl stores NUL as the overlong C0 80 in its internal encoding; convertto utf-8 gives 00
        want += [str(k), n.encode("utf-8").hex()]
    assert r.stdout.splitlines() == want
    assert not canary.exists()


# ----------------------------------------------------------------------------- code generation


def _rename_ir(model, names) -> None:
    """Rename every op and tensor of an IR model (unique names from ``names``) and the model."""
    it = iter(names)
    used: set = set()

    def fresh():
        base = next(it)
        new, k = base, 1
        while new in used or new == "":
            new, k = f"{base}#{k}", k + 1
        used.add(new)
        return new

    tmap = {t: fresh() for t in [model.input_name, *model.tensors]}
    for op in model.ops:
        op.name = fresh()
        op.inputs = [tmap[t] for t in op.inputs]
        op.outputs = [tmap[t] for t in op.outputs]
    model.tensors = {tmap[k]: dataclasses.replace(v, name=tmap[k]) for k, v in model.tensors.items()}
    model.outputs = [tmap[t] for t in model.outputs]
    model.input_name = tmap[model.input_name]
    model.name = next(it)


def _generate(model):
    compute_thresholds(model)
    return codegen.generate(apply_folding(model, default_folding(model)))


_COMMENT = re.compile(r"^(?P<code>.*?)(?P<c>(//|#).*)$")


def _only_comments_differ(plain: dict, hostile: dict) -> int:
    assert sorted(plain) == sorted(hostile)
    changed = 0
    for rel in plain:
        a, b = plain[rel].split("\n"), hostile[rel].split("\n")
        assert re.fullmatch(r"[\x20-\x7e\n]*", hostile[rel]), rel
        assert len(a) == len(b), rel
        for la, lb in zip(a, b):
            if la == lb:
                continue
            changed += 1
            ma, mb = _COMMENT.match(la), _COMMENT.match(lb)
            assert ma and mb and ma["code"] == mb["code"], (rel, la, lb)
            if rel.endswith(".tcl"):
                assert not re.search(r"[\\\[\]{}$\";]", mb["c"]), lb
            if rel.endswith((".h", ".cpp")):
                assert mb["c"].startswith("//") and not re.search(r"[\\?]|\*/|/\*", mb["c"][2:]), lb
    return changed


def _two_output_model():
    """Outputs ``(y, a)``, ``a`` also read by the head (tests/multi_output_models.py), imported from a file."""
    import multi_output_models
    from a2qhls import load_qonnx

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tap.onnx")
        onnx.save(multi_output_models.tap(("y", "a")), path)
        return load_qonnx(path)


@settings(max_examples=15, deadline=None)
@given(names=st.lists(hostile_text, min_size=60, max_size=60), kind=st.sampled_from(["mlp", "cnn", "two_outputs"]))
def test_codegen_with_hostile_names_changes_only_comments(names, kind):
    """Every op, tensor and the model named from the hostile alphabet (the CNN has every unit kind:
    conv, depthwise, max pool, fork, residual add, average pool, dense; the two-output model a graph
    output also read by a layer, two output ports): the project text equals the ordinary one except
    inside comments, which stay one line of printable ASCII."""
    make = {"mlp": lambda: hand_models.mlp((6, 5, 4), seed=1), "cnn": lambda: hand_models.cnn(seed=1, hw=(4, 4), cin=1, ch=2, n_out=2),
            "two_outputs": _two_output_model}[kind]
    plain = _generate(make())
    m = make()
    _rename_ir(m, names + [f"n{k}" for k in range(200)])
    _count(f"codegen names ({kind})", len(m.ops) + len(m.tensors) + 1)
    hostile = _generate(m)
    _only_comments_differ(plain, hostile)


def test_build_script_runs_the_same_compiler_calls_as_cosim(tmp_path):
    """build_csim.sh (run by bash, CXX a wrapper that logs its arguments and runs g++) makes exactly
    the calls of codegen.csim_commands, which cosim runs without a shell; the binary works."""
    from a2qhls.cosimulation import compile_csim
    from a2qhls.headers import find_headers

    proj = tmp_path / "proj"
    for rel, text in _generate(hand_models.mlp((6, 5, 4), seed=1)).items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(text)
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "cxx"
    wrapper.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" END >> {log}\nexec g++ "$@"\n')
    wrapper.chmod(0o755)
    binary = tmp_path / "bin_script"
    env = dict(os.environ, AP_INCLUDE=str(find_headers()), CXX=str(wrapper), CSIM_BIN=str(binary))
    env.pop("CXXFLAGS", None)
    r = subprocess.run(["bash", str(proj / "build_csim.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = [[str(wrapper)] + c.split("\0")[:-1] for c in log.read_text().split("END\0") if c]
    obj = Path(calls[0][calls[0].index("-o") + 1]).parent
    want = codegen.csim_commands(proj.resolve(), include=find_headers(), cxx=str(wrapper), obj=obj, binary=binary)
    assert sorted(calls[:-1]) == sorted(want[:-1]) and calls[-1] == want[-1]
    assert subprocess.run([str(binary), "--unit", "x"], capture_output=True).returncode == 2  # usage: it is the testbench
    assert compile_csim(proj, tmp_path / "bin_cosim") > 0 and (tmp_path / "bin_cosim").is_file()


# ----------------------------------------------------------------------------- end to end


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _e2e(model_proto, tmp_path, capsys, monkeypatch, n_cases: int, label: str, *, random: int = 64, scripts: bool = True) -> dict:
    """Build + cosim through the CLI with temp files kept under tmp_path; checks: exit 0, bit-exact,
    build_csim.sh runs under bash, canary absent, nothing written outside --out."""
    work = tmp_path / "work"
    work.mkdir()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    monkeypatch.chdir(work)
    src = tmp_path / "in" / "model.onnx"
    src.parent.mkdir()
    onnx.save(model_proto, str(src))
    out = tmp_path / "out"
    before = _tree(tmp_path)
    cwd_before = set(os.listdir(Path(__file__).parent.parent))
    assert main(["build", str(src), "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["cosim", str(out), "--random", str(random), "--adversarial", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0, rep
    # the user's own build script, run by bash: compiles, runs nothing else
    from a2qhls.headers import find_headers

    env = dict(os.environ, AP_INCLUDE=str(find_headers()), CSIM_BIN=str(out / "a2q_csim"))
    if scripts:
        r = subprocess.run(["bash", str(out / "build_csim.sh")], env=env, capture_output=True, text=True, cwd=work)
        assert r.returncode == 0, r.stderr
    if scripts and shutil.which("tclsh"):  # the Tcl script parses; no injected command runs before the first Vitis command
        r = subprocess.run(["tclsh"], input=(out / "vitis_hls.tcl").read_text().replace("open_project", "exit 0\nopen_project", 1),
                           capture_output=True, text=True, cwd=work)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)
    after = _tree(tmp_path)
    new = {p for p in after - before if not p.startswith("out")}
    assert new == set(), f"written outside --out: {sorted(new)[:5]}"
    assert set(os.listdir(Path(__file__).parent.parent)) == cwd_before
    assert not any("CANARY" in p for p in after), "an injected command ran"
    assert all(re.fullmatch(r"[\x20-\x7e\n]*", p.read_text()) for p in out.rglob("*") if p.suffix in (".h", ".cpp", ".sh", ".tcl"))
    _count(f"end-to-end named cases ({label})", n_cases)
    return rep


def test_e2e_mlp_named_attacks(tmp_path, capsys, monkeypatch):
    """Every named attack of the issue as graph, node and tensor names and metadata of one MLP."""
    canary = tmp_path / "CANARY"
    cases = named_cases(str(canary))
    m, _, _ = qonnx_graphs.mlp(sizes=(12, 8, 6, 5), bias="int")
    names = list(cases.values())
    p = rename_all(m, names, graph_name=cases["newline"])
    assert {n.name for n in p.graph.node} & set(names)
    rep = _e2e(p, tmp_path, capsys, monkeypatch, len(cases), "mlp")
    assert rep["samples"] > 64 and len(rep["groups"]) == 4


def test_e2e_mlp_every_node_named_alike(tmp_path, capsys, monkeypatch):
    """All nodes share one name (legal ONNX): ops get unique names, cosim maps every layer."""
    m, _, _ = qonnx_graphs.mlp(sizes=(12, 8, 6, 5), bias="int")
    for n in m.graph.node:
        n.name = "layer0"
    rep = _e2e(m, tmp_path, capsys, monkeypatch, 1, "mlp duplicates", random=16, scripts=False)
    names = [ly["layer"] for ly in rep["groups"][0]["layers"]]
    assert len(set(names)) == 3


@pytest.fixture(scope="module")
def brevitas_cnn_proto(tmp_path_factory):
    pytest.importorskip("brevitas")
    import brevitas_cnn

    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    brevitas_cnn.export_cnn(path, ch=4)
    return onnx.load(str(path))


def test_e2e_cnn_named_attacks(brevitas_cnn_proto, tmp_path, capsys, monkeypatch):
    """The named attacks as every name of a Brevitas CNN (conv, depthwise, max pool, fork,
    residual add, average pool, dense), reversed so other names land on other nodes."""
    canary = tmp_path / "CANARY"
    cases = named_cases(str(canary))
    names = list(cases.values())[::-1]
    p = rename_all(brevitas_cnn_proto, names, graph_name=cases["tcl_puts"])
    _e2e(p, tmp_path, capsys, monkeypatch, len(cases), "cnn", random=16)


def test_zz_report_counts(capsys):
    """Prints how many hostile inputs this module tried (the report's figure)."""
    with capsys.disabled():
        print("\nhostile inputs tried:", json.dumps(TRIED, sort_keys=True), "total", sum(TRIED.values()))
    assert sum(TRIED.values()) > 0
