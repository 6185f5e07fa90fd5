"""Training step and export time of a2qhls's front end vs Brevitas 0.13.4, in one run.

Same model (MLP 784-64-64-10, 4-bit unsigned inputs/activations, 4-bit A2Q+
weights, P=12), same batch, same optimizer (Adam), same thread count. A step is
forward + cross-entropy (+ a2qhls's penalty) + backward + optimizer step.

    /tmp/venv/bin/python bench/bench_train.py [--steps 200] [--threads 1] [--batch 64] [--json]

Prints per-step milliseconds for both and the ratio (goal: a2qhls <= 0.7x
Brevitas), then the QONNX export time of both and that ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from a2qhls.frontend.export import export_qonnx  # noqa: E402
from a2qhls.frontend.layers import penalty  # noqa: E402
from a2qhls.frontend.train import build_mlp  # noqa: E402

SIZES = [784, 64, 64, 10]
W_BITS, A_BITS, P = 4, 4, 12


def brevitas_mlp():
    import brevitas.nn as qnn
    from brevitas.quant import Int8AccumulatorAwareZeroCenterWeightQuant, Uint8ActPerTensorFloat

    mods = [qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=A_BITS, return_quant_tensor=True)]
    for i in range(len(SIZES) - 1):
        mods.append(qnn.QuantLinear(SIZES[i], SIZES[i + 1], bias=True,
                                    weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant,
                                    weight_bit_width=W_BITS, weight_accumulator_bit_width=P))
        if i < len(SIZES) - 2:
            mods.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=A_BITS, return_quant_tensor=True))
    return torch.nn.Sequential(*mods)


def ours_mlp():
    return build_mlp(SIZES[0], SIZES[1:-1], SIZES[-1], "a2q+", W_BITS, A_BITS, P)


def time_steps(model, x, y, steps, with_penalty):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        out = model(x)
        loss = F.cross_entropy(out, y)
        if with_penalty:
            loss = loss + 1e-3 * penalty(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, SIZES[0])
    y = torch.randint(0, SIZES[-1], (args.batch,))
    torch.manual_seed(0)
    ours = ours_mlp()
    torch.manual_seed(0)
    brev = brevitas_mlp()

    ours_t, brev_t = [], []
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both
        ours_t.append(time_steps(ours, x, y, args.steps, True))
        brev_t.append(time_steps(brev, x, y, args.steps, False))
    o_step, b_step = statistics.median(ours_t), statistics.median(brev_t)

    from brevitas.export import export_qonnx as brevitas_export

    ours.eval()
    brev.eval()
    o_exp, b_exp = [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeats):
            t0 = time.perf_counter()
            export_qonnx(ours, os.path.join(d, f"ours{i}.onnx"), SIZES[0])
            o_exp.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            brevitas_export(brev, x[:1], os.path.join(d, f"brevitas{i}.onnx"))
            b_exp.append(time.perf_counter() - t0)
    o_e, b_e = statistics.median(o_exp), statistics.median(b_exp)
    res = {
        "model": "-".join(map(str, SIZES)), "batch": args.batch, "threads": args.threads, "steps": args.steps,
        "a2qhls_step_ms": round(o_step * 1e3, 3), "brevitas_step_ms": round(b_step * 1e3, 3),
        "step_ratio": round(o_step / b_step, 3),
        "a2qhls_export_ms": round(o_e * 1e3, 2), "brevitas_export_ms": round(b_e * 1e3, 2),
        "export_ratio": round(o_e / b_e, 4),
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"model {res['model']} A2Q+ W{W_BITS}A{A_BITS} P={P}, batch {args.batch}, {args.threads} thread(s)")
        print(f"train step: a2qhls {res['a2qhls_step_ms']:.3f} ms, brevitas {res['brevitas_step_ms']:.3f} ms, "
              f"ratio {res['step_ratio']:.3f} (goal <= 0.7)")
        print(f"export:     a2qhls {res['a2qhls_export_ms']:.2f} ms, brevitas {res['brevitas_export_ms']:.2f} ms, "
              f"ratio {res['export_ratio']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
