"""The A2Q+ paper's image classifiers as Brevitas 0.13.4 defines them in ``brevitas_examples``, through
a2qhls: export (Brevitas's ``export_qonnx`` and a2qhls's ``export_brevitas_qonnx``), inspect, and
optionally build + cosim; prints every targeted layer's exact accumulator width against its target.

* ``quant_resnet18`` (``imagenet_classification/a2q/resnet.py``) with A2Q
  (``CommonIntAccumulatorAwareWeightQuant``) or A2Q+ (``CommonIntAccumulatorAwareZeroCenterWeightQuant``)
  4-bit weights, 4-bit activations, at a 12- or 16-bit target, built as ``a2q/utils.py`` builds them;
  its input is an unquantized 8-bit image, so a2qhls gets ``--input-quant uint8:0.00392``.
* ``quant_mobilenet_v1`` 4-bit (``imagenet_classification/models``, cfg ``quant_mobilenet_v1_4b``) on
  224x224 inputs (its ``TruncAvgPool2d(7)`` needs a 7x7 final map; 32x32 leaves 1x1), input declared
  ``int8:0.03125``.

Weights are seeded random (no download), activation scales calibrated on a few random batches, and
BatchNorm statistics perturbed so they are not the identity. Not run in CI (full size takes minutes);
``--reduced`` uses the reduced nets of the tests.

    .venv/bin/python bench/paper_nets.py [--nets resnet18_a2q_12,...] [--reduced] [--cosim] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

NETS = ("resnet18_a2q_12", "resnet18_a2q_16", "resnet18_a2qplus_12", "resnet18_a2qplus_16", "mobilenet_v1_4b")
INPUT_QUANT = {"resnet18": "uint8:0.00392", "mobilenet": "int8:0.03125"}


def calibrate(model, shape, seed: int = 0, batches: int = 2, batch: int = 8):
    import torch

    torch.manual_seed(seed)
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bn:  # keep the statistics set above while the activation quantizers calibrate
        m.eval()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand((batch,) + tuple(shape[1:])))
    model.eval()
    return model


def make_net(name: str, reduced: bool = False, calibrated: bool = True):
    """``(model, example input shape, input_quant)``; ``calibrated=False``: before :func:`calibrate`."""
    import torch

    torch.manual_seed(0)
    if name.startswith("resnet18"):
        from brevitas_examples.imagenet_classification.a2q.quant import (
            CommonIntAccumulatorAwareWeightQuant, CommonIntAccumulatorAwareZeroCenterWeightQuant)
        from brevitas_examples.imagenet_classification.a2q.resnet import quant_resnet18

        _, kind, bits = name.split("_")
        wq = CommonIntAccumulatorAwareZeroCenterWeightQuant if kind == "a2qplus" else CommonIntAccumulatorAwareWeightQuant
        if not reduced:  # exactly as a2q/utils.py builds the paper's models
            model = quant_resnet18(act_bit_width=4, acc_bit_width=int(bits), weight_bit_width=4, weight_quant=wq)
            shape = (1, 3, 32, 32)
        else:  # the same blocks, one per stage
            from brevitas.quant import Int8WeightPerChannelFloat
            from brevitas_examples.bnn_pynq.models.resnet import QuantBasicBlock, QuantResNet

            model = QuantResNet(block_impl=QuantBasicBlock, num_blocks=[1, 1, 1, 1], num_classes=10, act_bit_width=4,
                                weight_bit_width=4, weight_quant=wq.let(accumulator_bit_width=int(bits)),
                                last_layer_weight_quant=Int8WeightPerChannelFloat, first_maxpool=False,
                                zero_init_residual=False, round_average_pool=False)
            shape = (1, 3, 32, 32)
        return (calibrate(model, shape) if calibrated else model), shape, INPUT_QUANT["resnet18"]
    if reduced:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
        import paper_nets

        return paper_nets.mobilenet(), (1, 3, 16, 16), INPUT_QUANT["mobilenet"]
    from brevitas_examples.imagenet_classification.models import model_with_cfg

    model, _ = model_with_cfg("quant_mobilenet_v1_4b", pretrained=None)
    # 224x224: the net's TruncAvgPool2d(7) needs a 7x7 final map (a 32x32 input leaves 1x1, which torch refuses)
    shape = (1, 3, 224, 224)
    return calibrate(model, shape, batch=2), shape, INPUT_QUANT["mobilenet"]


def truncate_resnet(model, layers: int):
    """``quant_resnet18`` cut to ``layers`` weight layers (stem conv + 2 per basic block + linear, shortcut
    convs not counted; 18 is the whole net): the first ``(layers - 2) / 2`` blocks in order, the rest
    removed, and the final 8-bit linear layer re-made for the feature count that is left (the 4x4 average
    pool then sees a larger map). Same quantizers as the full net."""
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerTensorFloat
    from brevitas.quant.scaled_int import Int32Bias

    if layers < 2 or layers % 2 or layers > 18:
        raise ValueError(f"layers={layers}: an even number 2..18")
    keep = (layers - 2) // 2
    chans, hw = 64, 32
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, name)
        blocks = list(stage)[:keep]
        keep -= len(blocks)
        for b in blocks:
            chans = b.conv2.out_channels
            hw //= b.conv1.stride[0]
        setattr(model, name, nn.Sequential(*blocks))
    if layers < 18:
        model.linear = qnn.QuantLinear(chans * (hw // 4) ** 2, 10, weight_bit_width=8, bias=True, bias_quant=Int32Bias,
                                       weight_quant=Int8WeightPerTensorFloat)
    return model


def params_and_macs(model, shape) -> tuple:
    """Weights of the Conv2d/Linear layers and their multiply-accumulates for one input of ``shape``."""
    import torch
    import torch.nn as nn

    macs = []

    def hook(m, inp, out):
        k = m.weight[0].numel()  # in_channels / groups * kh * kw, or in_features
        macs.append(out.value.numel() if hasattr(out, "value") else out.numel())
        macs[-1] *= k

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        model(torch.rand(shape))
    for h in hooks:
        h.remove()
    return sum(m.weight.numel() for m in layers), sum(macs)


def export_resnet(path, layers: int = 18, name: str = "resnet18_a2qplus_16"):
    """Export ``name`` (full size) cut to ``layers`` weight layers (:func:`truncate_resnet`) to QONNX at
    ``path`` with a2qhls's exporter; returns ``(path, parameters, MACs per image)`` (a2qhls then needs
    ``--input-quant uint8:0.00392``)."""
    model, shape, _ = make_net(name, calibrated=False)
    model = calibrate(truncate_resnet(model, layers), shape)
    err = export(model, shape, path, "a2qhls_torchscript")
    if err:
        raise RuntimeError(f"export of {name} cut to {layers} layers failed: {err}")
    params, macs = params_and_macs(model, shape)
    return path, params, macs


def export(model, shape, path, how: str) -> str:
    """Export; returns "" or the one-line reason the exporter failed."""
    import torch

    x = torch.rand(shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "brevitas_dynamo":
                from brevitas.export import export_qonnx

                export_qonnx(model, x, export_path=str(path), dynamo=True)
            elif how == "brevitas_torchscript":
                from brevitas.export import export_qonnx

                export_qonnx(model, x, export_path=str(path), dynamo=False)
            else:
                from a2qhls.frontend.brevitas import export_brevitas_qonnx

                export_brevitas_qonnx(model, x, str(path), dynamo=how.endswith("dynamo"))
    except Exception as e:  # report and go on with the other exporters
        import re

        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch's colour codes
        cause = next((ln.strip() for ln in text.splitlines() if ln.startswith("<class '")), "")  # torch.export's summary
        msg = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:200] + (f" [{cause[:200]}]" if cause else "")
        if "Perform add among QuantTensors" in text:
            msg += "\n   reason: " + DYNAMO_RESNET_REASON
        return msg
    return ""


# what Brevitas 0.13.4's dynamo export_qonnx does with quant_resnet18 (measured: bench/paper_nets.py, README "From Brevitas")
DYNAMO_RESNET_REASON = (
    "torch.export (strict=False) traces QuantBasicBlock.forward (brevitas_examples/bnn_pynq/models/resnet.py:105), whose "
    "`assert isinstance(out, QuantTensor), \"Perform add among QuantTensors\"` fails: under Brevitas's dynamo export "
    "the activation quantizers return plain torch tensors, not QuantTensors; export_brevitas_qonnx and the TorchScript "
    "exporter (dynamo=False) export it")
MOBILENET_32_REASON = (
    "quant_mobilenet_v1 (cfg quant_mobilenet_v1_4b) cannot run at 32x32: its final TruncAvgPool2d(kernel_size=7) "
    "(mobilenetv1.py, avg_pool_kernel_size=7) gets a 1024x1x1 map and torch raises 'Given input size: (1024x1x1). "
    "Calculated output size: (1024x-5x-5). Output size is too small'; run at 224x224")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--exporters", default="a2qhls_torchscript,a2qhls_dynamo,brevitas_torchscript,brevitas_dynamo")
    ap.add_argument("--reduced", action="store_true")
    ap.add_argument("--cosim", action="store_true", help="also build and cosim (random + adversarial)")
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import a2qhls
    from a2qhls.errors import A2QError

    out = args.out or tempfile.mkdtemp(prefix="a2qhls-paper-nets-")
    os.makedirs(out, exist_ok=True)
    for name in args.nets.split(","):
        model, shape, iq = make_net(name, args.reduced)
        if name.startswith("mobilenet") and not args.reduced:
            print(f"-- note: {MOBILENET_32_REASON}")
        for how in args.exporters.split(","):
            path = os.path.join(out, f"{name}_{how}.onnx")
            t0 = time.perf_counter()
            err = export(model, shape, path, how)
            t_exp = time.perf_counter() - t0
            print(f"== {name} ({'reduced' if args.reduced else 'full size'}), {how}: ", end="")
            if err:
                print(f"export failed ({t_exp:.1f}s): {err}")
                continue
            try:
                t0 = time.perf_counter()
                rep = a2qhls.inspect(path, input_quant=iq)
                t_ins = time.perf_counter() - t0
            except A2QError as e:
                print(f"inspect refused: {e}")
                continue
            lys = rep["layers"]
            tgt = [ly for ly in lys if ly["target_acc_bits"] is not None]
            over = [ly["name"] for ly in tgt if ly["exceeds_target"]]
            print(f"export {t_exp:.1f}s, inspect {t_ins:.1f}s, {len(lys)} accumulating ops, {len(tgt)} with a target, "
                  f"{len(over)} over target")
            for ly in lys:
                t = ly["target_acc_bits"]
                print(f"   {ly['name'][:48]:48s} {ly['op']:>18s} K={ly['K']:<5d} in={ly['input_type']:<6s} "
                      f"exact={ly['acc_bits']:>2d} a2q={ly['acc_bits_a2q']:>2d} a2q+={ly['acc_bits_a2qplus']:>2d} "
                      f"dtype={ly['acc_bits_datatype']:>2d} target={'-' if t is None else t}{' OVER' if ly['exceeds_target'] else ''}")
            if args.cosim:
                prj = os.path.join(out, f"{name}_{how}_prj")
                try:
                    t0 = time.perf_counter()
                    a2qhls.build(path, prj, force=True, input_quant=iq)
                    t_b = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    cs = a2qhls.cosim(prj, random=args.random, adversarial=True)
                    t_c = time.perf_counter() - t0
                    print(f"   build {t_b:.1f}s, cosim {t_c:.1f}s: {cs['samples']} samples, C++ vs model "
                          f"{cs['mismatches_cpp_vs_model']}, model vs QONNX {cs['mismatches_model_vs_qonnx']} mismatches")
                except A2QError as e:
                    print(f"   build/cosim refused: {e}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
