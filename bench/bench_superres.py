"""PSNR of the default ``a2qhls train --task superres`` recipe: bicubic, float, A2Q and A2Q+ at P=13.

The quantized half of the issue's goal ("ESPCN trained on bundled images at P=13 beats bicubic PSNR
with A2Q+ >= A2Q") takes minutes of CPU, more than a CI test may; this script runs it with the
train defaults (float once, then A2Q and A2Q+ from that checkpoint with EP-init, in two processes
side by side, each exactly ``a2qhls train --task superres --quant Q``) and records the result:

    .venv/bin/python bench/bench_superres.py [--from FLOAT_PT] [--out bench/results/superres_p13.json]

Prints PSNR (dB) per held-out image and their mean, wall and CPU (user+sys) seconds per run and
the load average (the machine may be shared), and exits 1 unless A2Q+ > bicubic and A2Q+ >= A2Q.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from a2qhls.frontend.pipeline import TrainRun, train_run  # noqa: E402
from timing import timed  # noqa: E402  (bench/timing.py)


QUANTS = ("a2q", "a2q+")


def _timed(run: TrainRun) -> tuple:
    r, wall, cpu = timed(lambda: train_run(run))
    return r, {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="from_", default=None, help="float checkpoint to reuse (default: train one)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--seeds", type=int, default=1,
                    help="QAT seeds per quantizer (from the one float model); the table shows seed 0, "
                         "the summary every seed's mean PSNR and the A2Q+ - A2Q difference per seed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ck = args.from_ or os.path.join(tmp, "float.pt")
        rows = {}
        if not args.from_:
            rows["float"] = _timed(TrainRun(task="superres", quant="float", out=ck))
        keys = [(q, s) for s in range(args.seeds) for q in QUANTS]
        runs = [TrainRun(task="superres", quant=q, from_=ck, seed=s, out=os.path.join(tmp, f"{q}_{s}.onnx"))
                for q, s in keys]
        with ProcessPoolExecutor(len(QUANTS)) as pool:  # one process per run (each trains on one thread)
            by_seed = dict(zip(keys, pool.map(_timed, runs)))
        rows.update({q: by_seed[(q, 0)] for q in QUANTS})
    ref = rows["a2q+"][0]
    run = TrainRun(task="superres")
    names = ref["test_images"]
    table = {"bicubic": ref["bicubic_psnr_per_image"], "float": ref["float_psnr_per_image"],
             "a2q": rows["a2q"][0]["psnr_per_image"], "a2q+": ref["psnr_per_image"]}
    mean = {"bicubic": ref["bicubic_psnr"], "float": ref["float_psnr"], "a2q": rows["a2q"][0]["psnr"],
            "a2q+": ref["psnr"]}
    print(f"ESPCN {run.arch} x{run.upscale}, P={run.acc_bits}, constrain={run.constrain}, "
          f"float {run.float_epochs} + QAT {run.epochs} epochs, lr {run.lr}, batch {run.batch_size}")
    print(f"{'':8s}" + "".join(f"{n:>12s}" for n in names) + f"{'mean':>10s}")
    for k in table:
        print(f"{k:8s}" + "".join(f"{table[k][n]:12.2f}" for n in names) + f"{mean[k]:10.2f}")
    for k, (_, t) in rows.items():
        print(f"{k}: wall {t['wall_s']} s, cpu {t['cpu_s']} s, load {t['load']}")
    widths = {q: [row.get("acc_bits_bound") for row in rows[q][0]["layers"]] for q in ("a2q", "a2q+")}
    print("A2Q/A2Q+ per-layer accumulator bound (bits):", widths)
    seeds = {q: [by_seed[(q, s)][0]["psnr"] for s in range(args.seeds)] for q in QUANTS}
    if args.seeds > 1:
        for q in QUANTS:
            print(f"{q} mean PSNR per seed: " + ", ".join(f"{v:.2f}" for v in seeds[q]))
        print("A2Q+ - A2Q per seed (dB): " + ", ".join(f"{b - a:+.2f}" for a, b in zip(seeds["a2q"], seeds["a2q+"])))
    ok = mean["a2q+"] > mean["bicubic"] and mean["a2q+"] >= mean["a2q"]
    print("A2Q+ beats bicubic and A2Q+ >= A2Q:", ok)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"recipe": {"arch": run.arch, "upscale": run.upscale, "acc_bits": run.acc_bits,
                                  "constrain": run.constrain, "weight_bits": run.weight_bits,
                                  "act_bits": run.act_bits, "float_epochs": run.float_epochs,
                                  "epochs": run.epochs, "lr": run.lr, "batch_size": run.batch_size,
                                  "init": run.init, "float_from": args.from_},
                       "test_images": names, "psnr_per_image": table, "psnr_mean": mean,
                       "timing": {k: t for k, (_, t) in rows.items()}, "acc_bits_bound": widths,
                       "psnr_mean_per_seed": seeds, "ok": ok},
                      f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
