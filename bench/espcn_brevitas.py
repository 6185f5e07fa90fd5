"""Brevitas 0.13.4's ESPCN x2 (``brevitas_examples/super_resolution``, unmodified, from its own
``get_model_by_name``: ``quant_espcn_x2_w4a4_a2q_13b`` and ``quant_espcn_x2_w4a4_a2q_plus_13b``, i.e.
A2Q and A2Q+ at P=13) at full size (64/64/32 channels, 3 colour channels) on an ``--hw`` x ``--hw``
image, seeded random weights (tests/espcn_brevitas.py), through each exporter: a2qhls's
``export_brevitas_qonnx`` (the trained integers and the targets; Brevitas's dynamo or TorchScript
exporter underneath) and Brevitas's own ``export_qonnx`` (dynamo, TorchScript) as it writes the file.
Prints every layer's exact accumulator width against its target, then build + cosim (random +
adversarial) mismatches (0 expected), with wall and CPU time and the machine's load.

    .venv/bin/python bench/espcn_brevitas.py [--kinds a2q,a2q+] [--exporters ...] [--hw 32] [--random 4] [--no-cosim]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from timing import timed as _timed  # noqa: E402  (bench/timing.py)

EXPORTERS = ("a2qhls_dynamo", "a2qhls_torchscript", "brevitas_dynamo", "brevitas_torchscript")


def export(model, x, path: str, how: str) -> None:
    from brevitas.export import export_qonnx

    from a2qhls.frontend.brevitas import export_brevitas_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how.startswith("a2qhls"):
            export_brevitas_qonnx(model, x, path, dynamo=how.endswith("dynamo"))
        else:
            export_qonnx(model, x, export_path=path, dynamo=how.endswith("dynamo"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="a2q,a2q+")
    ap.add_argument("--exporters", default=",".join(EXPORTERS))
    ap.add_argument("--hw", type=int, default=32, help="input image height = width (default 32)")
    ap.add_argument("--random", type=int, default=4)
    ap.add_argument("--no-cosim", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import a2qhls
    import espcn_brevitas
    from a2qhls.errors import A2QError

    out = args.out or tempfile.mkdtemp(prefix="a2qhls-espcn-")
    os.makedirs(out, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; CPU = this process's user+sys "
          "(g++ runs in child processes and is not in it)")
    for kind in args.kinds.split(","):
        model, x = espcn_brevitas.make(kind, 13, hw=args.hw)
        for how in args.exporters.split(","):
            path = os.path.join(out, f"espcn_{kind}_{how}.onnx")
            _, t_e, c_e = _timed(lambda: export(model, x, path, how))
            rep, t_i, _ = _timed(lambda: a2qhls.inspect(path))
            print(f"== ESPCN x2 {kind} P=13, {args.hw}x{args.hw} input, {how}: export {t_e:.1f}s wall ({c_e:.1f}s CPU), "
                  f"inspect {t_i:.1f}s")
            # the target of each conv as the torch model states it (a file from Brevitas's export_qonnx has no metadata)
            wanted = espcn_brevitas.targets(model)
            for ly, conv in zip(rep["layers"], ("conv1", "conv2", "conv3", "conv4")):
                t = ly["target_acc_bits"] if ly["target_acc_bits"] is not None else wanted.get(conv)
                flag = "" if t is None else (" OVER" if ly["acc_bits"] > t else " within")
                print(f"   {ly['name'][:22]:22s} K={ly['K']:<4d} in={ly['input_type']:<6s} exact={ly['acc_bits']:>2d} "
                      f"a2q={ly['acc_bits_a2q']:>2d} a2q+={ly['acc_bits_a2qplus']:>2d} dtype={ly['acc_bits_datatype']:>2d} "
                      f"target={'-' if t is None else t}{flag}")
            if args.no_cosim:
                continue
            prj = os.path.join(out, f"espcn_{kind}_{how}_prj")
            try:
                s, t_b, _ = _timed(lambda: a2qhls.build(path, prj, force=True))
                cs, t_c, c_c = _timed(lambda: a2qhls.cosim(prj, random=args.random, adversarial=True))
            except A2QError as e:
                print(f"   build/cosim refused: {e}")
                continue
            d2s = next(u for u in s["units"] if u["kind"] == "d2s")
            print(f"   build {t_b:.1f}s, cosim {t_c:.1f}s wall ({c_c:.1f}s CPU here): {cs['samples']} samples, C++ vs model "
                  f"{cs['mismatches_cpp_vs_model']}, model vs QONNX {cs['mismatches_model_vs_qonnx']} mismatches; "
                  f"{s['cycles_per_image']} cycles/image (d2s unit {d2s['cycles_per_image']}), LUT {s['cost']['total']['LUT']}")
            sys.stdout.flush()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
