"""Train a small MLP with Brevitas 0.13 and export it to QONNX (A2Q+, A2Q or a plain baseline).

This is how a Brevitas user hands a model to a2qhls; the tests use it too.

    python examples/brevitas_mlp.py --quant a2q+ --acc-bits 12 --out digits_a2qplus.onnx
    a2qhls inspect digits_a2qplus.onnx
"""
from __future__ import annotations

import argparse
import warnings


def make_mlp(sizes, quant: str = "a2q+", weight_bits: int = 4, act_bits: int = 4, acc_bits: int = 12,
             input_bits: int = 8, bias: bool = True, per_channel: bool = True):
    """A Brevitas MLP: QuantIdentity(input) -> [QuantLinear -> QuantReLU]* -> QuantLinear."""
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import (
        Int8AccumulatorAwareWeightQuant,
        Int8AccumulatorAwareZeroCenterWeightQuant,
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
    )

    if quant == "a2q+":
        wq, extra = Int8AccumulatorAwareZeroCenterWeightQuant, {"weight_accumulator_bit_width": acc_bits}
    elif quant == "a2q":
        wq, extra = Int8AccumulatorAwareWeightQuant, {"weight_accumulator_bit_width": acc_bits}
    elif quant == "baseline":
        wq, extra = (Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat), {}
    else:
        raise ValueError(f"unknown quant {quant!r}")
    layers = [qnn.QuantIdentity(bit_width=input_bits, return_quant_tensor=True)]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(qnn.QuantLinear(a, b, bias=bias, weight_quant=wq, weight_bit_width=weight_bits, **extra))
        if i < len(sizes) - 2:
            layers.append(qnn.QuantReLU(bit_width=act_bits, return_quant_tensor=True))
    return nn.Sequential(*layers)


def load_digits_split(seed: int = 0):
    """sklearn's bundled 8x8 digits, scaled to [0, 1], fixed 80/20 split."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    n = int(0.8 * len(x))
    return x[idx[:n]], y[idx[:n]], x[idx[n:]], y[idx[n:]]


def train(model, x, y, epochs: int = 10, lr: float = 1e-2, seed: int = 0, batch: int = 64):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    model.eval()
    return model


def accuracy(model, x, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model, path: str, n_in: int, dynamo: bool = False, exact: bool = True) -> None:
    """Export to QONNX. ``exact`` (default) keeps the trained integers of A2Q/A2Q+ layers
    (a2qhls.frontend.brevitas); ``exact=False`` is Brevitas 0.13.4's plain export_qonnx."""
    import torch

    model.eval()
    if exact:
        from a2qhls.frontend.brevitas import export_brevitas_qonnx

        export_brevitas_qonnx(model, torch.zeros(1, n_in), path, dynamo=dynamo)
        return
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, n_in), path, dynamo=dynamo)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quant", default="a2q+", choices=["a2q+", "a2q", "baseline"])
    p.add_argument("--arch", default="64,32,10", help="layer sizes, input first")
    p.add_argument("--weight-bits", type=int, default=4)
    p.add_argument("--act-bits", type=int, default=4)
    p.add_argument("--acc-bits", type=int, default=12)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dynamo", action="store_true", help="use the torch.export (dynamo) ONNX exporter")
    p.add_argument("--plain-export", action="store_true",
                   help="Brevitas's own export_qonnx (A2Q/A2Q+ layers then lose their trained integers)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    import torch

    torch.manual_seed(a.seed)
    sizes = [int(s) for s in a.arch.split(",")]
    xtr, ytr, xte, yte = load_digits_split(a.seed)
    m = make_mlp(sizes, a.quant, a.weight_bits, a.act_bits, a.acc_bits)
    train(m, xtr, ytr, epochs=a.epochs, seed=a.seed)
    print(f"test accuracy {accuracy(m, xte, yte):.4f}")
    export(m, a.out, sizes[0], dynamo=a.dynamo, exact=not a.plain_export)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
