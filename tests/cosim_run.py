"""Shared by end-to-end tests: `a2qhls build` then `a2qhls cosim --json` through the real CLI entry point."""
import json


def build_and_cosim(model_path, out_dir, capsys, *cosim_args) -> tuple:
    """Build ``model_path`` into ``out_dir`` and co-simulate it; returns ``(exit code, JSON report)``."""
    from a2qhls.cli import main

    assert main(["build", str(model_path), "--out", str(out_dir)]) == 0
    capsys.readouterr()
    rc = main(["cosim", str(out_dir), *cosim_args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def assert_exact(rc: int, rep: dict) -> None:
    assert rc == 0 and rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0, rep
