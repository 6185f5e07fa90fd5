"""MLP and CNN construction and the training loop behind ``a2qhls train``.

Float and quantized MLPs share one module layout, so a float checkpoint loads
into the quantized model by key:

    0: input quantizer (QuantIdentity; nn.Identity in the float model)
    1: QuantLinear, 2: QuantReLU (nn.ReLU), 3: QuantLinear, ..., last: QuantLinear

Which layers are accumulator-constrained (``constrain``):

* ``"all"`` (default): every layer gets the A2Q/A2Q+ quantizer at ``acc_bits``
  with ``weight_bits`` weights; the input quantizer has ``act_bits`` bits.
  Small MLPs keep their accuracy this way and every accumulator is narrow.
* ``"inner"``: as in the papers, the first and last layers keep 8-bit
  round-to-nearest weights with no accumulator constraint and the network
  input is quantized to 8 bits; only the layers in between are constrained.

CNNs (:func:`build_cnn`) are described by a spec string, see :data:`CNN_SPEC_HELP`.
"""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import A2QError
from .data import Dataset
from .layers import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, QuantResidual, penalty, weight_layers
from .quantizers import A2QWeightQuant, IntWeightQuant

__all__ = ["QUANT_KINDS", "CONSTRAIN_POLICIES", "EDGE_BITS", "check_recipe", "weight_quant", "CNN_SPEC_HELP", "build_mlp",
           "build_cnn", "parse_cnn_spec", "fit", "evaluate", "TrainConfig", "resolve_device"]

QUANT_KINDS = ("float", "baseline", "a2q", "a2q+")
CONSTRAIN_POLICIES = ("all", "inner")
EDGE_BITS = 8  # bit width of unconstrained first/last layers and the input under constrain="inner"


def check_recipe(quant: str, constrain: str) -> None:
    """Raises :class:`A2QError` (one line) for a ``quant`` not in :data:`QUANT_KINDS` or a
    ``constrain`` policy not in :data:`CONSTRAIN_POLICIES`."""
    if quant not in QUANT_KINDS:
        raise A2QError(f"unknown quantizer '{quant}' (supported: {', '.join(QUANT_KINDS)})")
    if constrain not in CONSTRAIN_POLICIES:
        raise A2QError(f"unknown --constrain policy '{constrain}' (supported: {', '.join(CONSTRAIN_POLICIES)})")


def weight_quant(quant: str, weight_bits: int, acc_bits: int, in_bits: int, is_edge: bool = False):
    """The weight quantizer of one layer under the recipe ``quant``: None (float); for an edge
    layer (first or last under ``constrain="inner"``) :class:`IntWeightQuant` of :data:`EDGE_BITS`;
    for ``baseline`` :class:`IntWeightQuant` of ``weight_bits``; else :class:`A2QWeightQuant` of
    ``weight_bits`` bounded for ``acc_bits``-bit accumulation of unsigned ``in_bits``-bit inputs
    (zero-centred for ``a2q+``)."""
    if quant == "float":
        return None
    if quant == "baseline" or is_edge:
        return IntWeightQuant(EDGE_BITS if is_edge else weight_bits)
    return A2QWeightQuant(weight_bits, acc_bits, input_bits=in_bits, input_signed=False, zero_center=(quant == "a2q+"))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise A2QError("--device cuda requested but CUDA is not available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise A2QError(f"unknown device '{name}' (supported: auto, cpu, cuda)")
    return torch.device(name)


def build_mlp(in_features: int, hidden: list, classes: int, quant: str = "a2q+", weight_bits: int = 4,
              act_bits: int = 4, acc_bits: int = 12, constrain: str = "all") -> nn.Sequential:
    """An MLP ``in_features -> hidden... -> classes`` with the quantizers of ``quant``."""
    check_recipe(quant, constrain)
    if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise A2QError(f"--arch must list positive hidden sizes, got {hidden!r}")
    sizes = [int(in_features)] + [int(h) for h in hidden] + [int(classes)]
    n_layers = len(sizes) - 1
    edge = constrain == "inner"
    if quant == "float":
        mods: list = [nn.Identity()]
    else:
        mods = [QuantIdentity(EDGE_BITS if edge else act_bits, signed=False)]
    for i in range(n_layers):
        is_edge = edge and (i == 0 or i == n_layers - 1)
        in_bits = EDGE_BITS if (edge and i == 0) else act_bits
        wq = weight_quant(quant, weight_bits, acc_bits, in_bits, is_edge)
        mods.append(QuantLinear(sizes[i], sizes[i + 1], bias=True, weight_quant=wq))
        if i < n_layers - 1:
            mods.append(nn.ReLU() if quant == "float" else QuantReLU(act_bits))
    return nn.Sequential(*mods)


CNN_SPEC_HELP = (
    "CNN spec 'cnn:TOKEN,TOKEN,...' on the 1xHxW images of the dataset, tokens in order: "
    "cN = 3x3 convolution to N channels (stride 1, padding 1) -> ReLU -> quant; "
    "dw = depthwise 3x3 convolution (groups = channels) -> ReLU -> quant; "
    "p = 2x2 max pooling (stride 2); "
    "a = 2x2 average pooling (stride 2) -> quant; "
    "r = residual block x + body(x) -> ReLU -> quant, body = two 3x3 convolutions keeping the channels, "
    "each -> ReLU -> quant, the last quantizer shared with x (so the sum is exact on integers); "
    "gap = global average pooling -> quant; "
    "fN = fully connected hidden layer of N units -> ReLU -> quant (flattens first). "
    "A final fully connected layer to the classes is appended (after a flatten). "
    "Example: cnn:c8,dw,p,r"
)
_TOKEN = re.compile(r"^(c\d+|dw|p|a|r|gap|f\d+)$")


def parse_cnn_spec(spec: str) -> list:
    """The tokens of ``cnn:TOKEN,...`` (the ``cnn:`` prefix optional); one-line error if malformed."""
    text = spec[4:] if spec.startswith("cnn:") else spec
    tokens = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in tokens):
        raise A2QError(f"--arch '{spec}': empty CNN spec or token (example: cnn:c8,dw,p,r,gap)")
    for t in tokens:
        if not _TOKEN.match(t):
            raise A2QError(f"--arch '{spec}': unknown CNN token '{t}' (tokens: cN, dw, p, a, r, gap, fN)")
        if t[0] in "cf" and int(t[1:]) < 1:
            raise A2QError(f"--arch '{spec}': '{t}' needs a positive size")
    return tokens


def build_cnn(spec: str, input_shape: tuple, classes: int, quant: str = "a2q+", weight_bits: int = 4,
              act_bits: int = 4, acc_bits: int = 12, constrain: str = "all") -> nn.Sequential:
    """A CNN from ``spec`` (see :data:`CNN_SPEC_HELP`) on ``input_shape = (C, H, W)`` images.

    Float and quantized models share the module layout (activation quantizers are
    ``nn.Identity``/``nn.ReLU`` in the float one), so a float checkpoint loads by key.
    ``constrain`` works as for :func:`build_mlp`: under ``"inner"`` the first
    convolution and the classifier keep 8-bit unconstrained weights and the input is
    quantized to 8 bits.
    """
    check_recipe(quant, constrain)
    tokens = parse_cnn_spec(spec)
    C, H, W = (int(d) for d in input_shape)
    is_float = quant == "float"
    edge = constrain == "inner"
    n_weight = sum(t[0] in "cf" or t == "dw" for t in tokens) + 2 * tokens.count("r") + 1
    state = {"layer": 0, "in_bits": EDGE_BITS if edge else act_bits}

    def wquant(is_last: bool):
        i = state["layer"]
        state["layer"] += 1
        return weight_quant(quant, weight_bits, acc_bits, state["in_bits"], edge and (i == 0 or is_last))

    def act(shared=None):
        state["in_bits"] = act_bits
        if is_float:
            return nn.ReLU()
        return QuantReLU(quant=shared) if shared is not None else QuantReLU(act_bits)

    def requant():  # after an average: the mean is non-negative
        state["in_bits"] = act_bits
        return nn.Identity() if is_float else QuantIdentity(act_bits, signed=False)

    def conv(cin, cout, groups=1):
        return QuantConv2d(cin, cout, 3, stride=1, padding=1, groups=groups, bias=True,
                           weight_quant=wquant(state["layer"] == n_weight - 1))

    mods: list = [nn.Identity() if is_float else QuantIdentity(state["in_bits"], signed=False)]
    last_act = mods[0]
    flat = False
    for t in tokens:
        if flat and t[0] != "f":
            raise A2QError(f"--arch '{spec}': '{t}' cannot follow a fully connected layer")
        if t[0] == "c":
            n = int(t[1:])
            mods += [conv(C, n), act()]
            C = n
        elif t == "dw":
            mods += [conv(C, C, groups=C), act()]
        elif t in ("p", "a"):
            if H < 2 or W < 2:
                raise A2QError(f"--arch '{spec}': '{t}' on a {H}x{W} feature map (pooling needs at least 2x2)")
            if t == "p":
                mods.append(nn.MaxPool2d(2))
            else:
                mods += [nn.AvgPool2d(2), requant()]
            H, W = H // 2, W // 2
        elif t == "r":
            if is_float:
                body = nn.Sequential(conv(C, C), act(), conv(C, C), act())
            else:
                shared = last_act.quant
                body = nn.Sequential(conv(C, C), act(), conv(C, C), act(shared))
            mods.append(QuantResidual(body, act()))
        elif t == "gap":
            mods += [nn.AdaptiveAvgPool2d(1), requant()]
            H = W = 1
        else:  # fN
            n = int(t[1:])
            if not flat:
                mods.append(nn.Flatten())
                C, flat = C * H * W, True
            mods += [QuantLinear(C, n, bias=True, weight_quant=wquant(False)), act()]
            C = n
        last = mods[-1]
        if isinstance(last, QuantResidual):
            last = last.post
        if isinstance(last, (QuantReLU, QuantIdentity)):
            last_act = last
    if not flat:
        mods.append(nn.Flatten())
        C = C * H * W
    mods.append(QuantLinear(C, classes, bias=True, weight_quant=wquant(True)))
    return nn.Sequential(*mods)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 0.0
    penalty_weight: float = 1e-3
    seed: int = 0
    progress: bool = False
    desc: str = "train"


@dataclass
class TrainResult:
    test_accuracy: float
    train_accuracy: float
    seconds: float
    losses: list = field(default_factory=list)


@torch.no_grad()
def _calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Set uncalibrated activation scales from one large batch (train-mode forward)."""
    model.train()
    model(x)


def training_setup(model: nn.Module, cfg, n_train: int, weight_decay: float = 0.0):
    """Adam with a cosine schedule over ``cfg.epochs`` epochs of ``n_train`` samples, whether the
    model has an A2Q penalty, and a progress bar (or None): ``(opt, sched, steps_per_epoch,
    has_penalty, bar)``. Shared by :func:`fit` and the super-resolution task."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = max(cfg.epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    has_penalty = any(isinstance(m, A2QWeightQuant) for m in model.modules())
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=cfg.desc, file=sys.stderr, leave=False)
    return opt, sched, steps_per_epoch, has_penalty, bar


def fit(model: nn.Module, data: Dataset, cfg: TrainConfig, device: torch.device | None = None) -> TrainResult:
    """Adam with cosine learning-rate decay, cross-entropy plus ``penalty_weight * penalty(model)``.

    Deterministic on CPU for a fixed ``cfg.seed``.
    """
    device = device or torch.device("cpu")
    model.to(device)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    calib = torch.randperm(len(xtr), generator=gen)[:1024]
    _calibrate(model, xtr[calib.to(device)])
    opt, sched, steps_per_epoch, has_penalty, bar = training_setup(model, cfg, len(xtr), cfg.weight_decay)
    t0 = time.perf_counter()
    losses = []
    _epochs(model, opt, sched, xtr, ytr, gen, cfg, has_penalty, steps_per_epoch, losses, bar, device)
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    return TrainResult(
        test_accuracy=evaluate(model, data.x_test.to(device), data.y_test.to(device)),
        train_accuracy=evaluate(model, xtr, ytr),
        seconds=secs,
        losses=losses,
    )


def _epochs(model, opt, sched, xtr, ytr, gen, cfg, has_penalty, steps_per_epoch, losses, bar, device) -> None:
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        run = 0.0
        for i in range(0, len(xtr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            if has_penalty and cfg.penalty_weight:
                loss = loss + cfg.penalty_weight * penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach())
        losses.append(run / steps_per_epoch)
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)


def layer_report(model: nn.Module) -> list:
    """Per weight layer: kind, K, channels, target, and the trained integer weights' A2Q/A2Q+ widths."""
    from .. import bounds

    rows = []
    for i, m in enumerate(weight_layers(model)):
        wq = m.weight_quant
        row = {"index": i, "K": m.K, "channels": int(m.weight.shape[0]),
               "quant": "float" if wq is None else wq.kind}
        if wq is not None:
            q = m.int_weight().cpu().numpy()
            row["weight_bits"] = wq.bits
            row["max_l1"] = int(abs(q).sum(axis=1).max())
            row["zero_fraction"] = float((q == 0).mean())
            if isinstance(wq, A2QWeightQuant):
                row["target_acc_bits"] = wq.acc_bits
                row["input_bits"] = wq.input_bits
                row["l1_budget"] = wq.budget
                if wq.zero_center:
                    row["acc_bits_bound"] = int(bounds.a2qplus_acc_bits(int(bounds.a2qplus_effective_l1(q).max()),
                                                                         wq.input_bits))
                else:
                    row["acc_bits_bound"] = int(bounds.a2q_acc_bits(row["max_l1"], wq.input_bits, wq.input_signed))
        rows.append(row)
    return rows
