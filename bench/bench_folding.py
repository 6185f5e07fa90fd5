"""Benchmark (not a test): the LUT ratio at derived accumulator widths vs 32-bit, and folding to a
throughput target (--target-fps) or a LUT budget (--lut-budget), on the bundled digits MLP, a
digits CNN and the A2Q+ paper's ResNet18 at full size (bench/paper_nets.py, 4-bit weights and
activations, 12-bit target, seeded weights).

    .venv/bin/python bench/bench_folding.py [--cnn CNN.onnx] [--resnet R18.onnx] [--nets mlp,cnn,resnet18]

Each net: the default folding (cycles per image, LUT/BRAM18 as derived and with every
accumulator at 32 bits, their ratio); then ``--target-fps`` at 1/4, 1 and 4 times the default's
images/s (200 MHz) and ``--lut-budget`` at 1/2, 1 and 2 times the default's LUTs, each with the
cycles and LUTs the chosen folding gets (or the one-line refusal). Everything through
``a2qhls.estimate_cost`` (the build's steps up to folding, then the summary; nothing written).
A missing --cnn is trained (``a2qhls train --arch cnn:c8,dw,p,r,a``, 3 epochs); a missing
--resnet is exported (paper_nets.make_net, a few minutes). Prints wall and CPU time per net and
the machine's load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

CLOCK_MHZ = 200.0


def _row(label: str, s: dict) -> str:
    c = s["cost"]
    return (f"  {label:<28} {s['cycles_per_image']:>9} cyc {CLOCK_MHZ * 1e6 / s['cycles_per_image']:>11.1f} fps "
            f"LUT {c['total']['LUT']:>9} BRAM18 {c['total']['BRAM18']:>6}  LUT@32b {c['total_acc32']['LUT']:>9} "
            f"x{c['lut_ratio_acc32']:.2f}")


def run_net(name: str, path: str, input_quant) -> None:
    import a2qhls
    from a2qhls.errors import A2QError

    t0, c0 = time.perf_counter(), time.process_time()
    base = a2qhls.estimate_cost(path, input_quant=input_quant)
    layers = base["layers"]
    widths = [ly["acc_bits"] for ly in layers]
    print(f"== {name}: {len(layers)} accumulating units, accumulators {min(widths)}..{max(widths)} bits")
    print(_row("default folding", base))
    fps0 = CLOCK_MHZ * 1e6 / base["cycles_per_image"]
    for k in (0.25, 1.0, 4.0):
        try:
            s = a2qhls.estimate_cost(path, input_quant=input_quant, target_fps=fps0 * k, clock_mhz=CLOCK_MHZ)
            print(_row(f"--target-fps {fps0 * k:.1f}", s))
        except A2QError as e:
            print(f"  --target-fps {fps0 * k:.1f}: refused: {e}")
    lut0 = base["cost"]["total"]["LUT"]
    for k in (0.5, 1.0, 2.0):
        try:
            s = a2qhls.estimate_cost(path, input_quant=input_quant, budget={"LUT": int(lut0 * k)})
            print(_row(f"--lut-budget {int(lut0 * k)}", s))
        except A2QError as e:
            print(f"  --lut-budget {int(lut0 * k)}: refused: {e}")
    if base["cost"]["utilization_percent"].get("BRAM18", 0) > 100:
        s = a2qhls.estimate_cost(path, input_quant=input_quant, stream_weights="auto")
        print(_row("--stream-weights auto", s) + f"  streams {len(s['stream_weights'])} layers: {', '.join(s['stream_weights'])}")
    print(f"  ({time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU for these estimates; load {os.getloadavg()[0]:.1f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="mlp,cnn,resnet18")
    ap.add_argument("--cnn", default=None, help="a digits CNN .onnx (default: trained here, 3 epochs)")
    ap.add_argument("--resnet", default=None, help="ResNet18 A2Q+ .onnx (default: exported here from paper_nets)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="a2qhls-bench-folding-"))
    nets = args.nets.split(",")
    if "mlp" in nets:
        run_net("digits MLP (examples/digits_a2qplus_p12.onnx)", str(HERE.parent / "examples" / "digits_a2qplus_p12.onnx"), None)
    if "cnn" in nets:
        cnn = args.cnn
        if cnn is None:
            cnn = str(work / "cnn.onnx")
            subprocess.run([str(Path(sys.executable).parent / "a2qhls"), "train", "--dataset", "digits", "--arch", "cnn:c8,dw,p,r,a",
                            "--quant", "a2q+", "--acc-bits", "12", "--epochs", "3", "--seed", "0", "--device", "cpu", "--out", cnn],
                           check=True, stdout=subprocess.DEVNULL)
        run_net("digits CNN (cnn:c8,dw,p,r,a, A2Q+ P=12)", cnn, None)
    if "resnet18" in nets:
        r18 = args.resnet
        if r18 is None:
            import paper_nets

            r18 = str(work / "resnet18_a2qplus_12.onnx")
            model, shape, _ = paper_nets.make_net("resnet18_a2qplus_12")
            err = paper_nets.export(model, shape, r18, "a2qhls_torchscript")
            if err:
                print(f"ResNet18 export failed: {err}")
                return 1
        run_net(f"ResNet18 ({Path(r18).stem}, full size, 32x32, paper_nets: seeded weights, not trained)", r18,
                paper_nets_input_quant())
    return 0


def paper_nets_input_quant() -> str:
    import paper_nets

    return paper_nets.INPUT_QUANT["resnet18"]


if __name__ == "__main__":
    sys.exit(main())
