"""Single-image super-resolution: ESPCN on luminance patches of images that ship in installed packages.

Data (nothing downloaded): the photographs bundled with scikit-image (``skimage.data``)
and scikit-learn (``load_sample_images``), converted to the luminance channel Y of
ITU-R BT.601 YCbCr (as the super-resolution literature evaluates; ``skimage.color.rgb2ycbcr``),
scaled to ``[0, 1]``. A fixed set of images is held out for testing (:data:`TEST_IMAGES`);
training uses random patches of the others. The held-out set is natural photographs and a
document page, like the papers' BSD300; scikit-image's ``moon`` is not used: it is nearly flat
(bicubic 42.9 dB on its 128x128 crop) and its mean-of-dB weight let one image decide the
comparison (4-bit activations cost it 6 to 13 dB, the other images about 1 to 2).

Degradation: the low-resolution input is the high-resolution image downsampled by
``r`` with antialiased bicubic interpolation; the baseline is bicubic upsampling of
that input back to full size. Both through ``torch.nn.functional.interpolate``.

Quality: PSNR in dB, ``10 log10(1 / MSE)`` on ``[0, 1]`` luminance clipped to ``[0, 1]``,
with ``r`` pixels shaved off each border (the usual convention), averaged over the
held-out images.

Model (:func:`build_espcn`, Shi et al., CVPR 2016, as in Brevitas' ``brevitas_examples``):
``conv 5x5 -> ReLU -> conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> conv 3x3 to C*r^2 -> PixelShuffle(r)``,
with the quantizers of :func:`a2qhls.frontend.train.build_cnn`'s policies (the hidden activation
quantizers calibrated at the :data:`ACT_INIT_PERCENTILE` percentile of the first batch): under
``constrain="all"`` every convolution is accumulator-constrained at ``acc_bits`` with
``weight_bits`` weights and the input is quantized to ``act_bits``; under ``"inner"`` the
first and last convolutions keep 8-bit unconstrained weights and the input is 8 bits.
The output is the last convolution's (float) output rearranged by the pixel shuffle,
exported as ONNX ``DepthToSpace(mode="CRD")``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import A2QError
from .layers import QuantConcatSkip, QuantConv2d, QuantIdentity, QuantReLU
from .train import EDGE_BITS, check_recipe, weight_quant

__all__ = ["TRAIN_IMAGES", "TEST_IMAGES", "SRData", "load_superres", "build_espcn", "parse_espcn", "psnr",
           "evaluate_psnr", "mean_psnr", "psnr_per_image", "bicubic_up", "ESPCN_HELP", "DEFAULT_ESPCN", "build_unet", "parse_unet",
           "UNET_HELP", "build_superres", "parse_superres_arch", "SUPERRES_HELP"]

# skimage.data images that are files inside the package (no pooch download), and sklearn's two
TRAIN_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "coins", "china")
TEST_IMAGES = ("camera", "motorcycle", "flower", "page")
DEFAULT_ESPCN = (64, 64, 32)  # hidden channels of Brevitas' ESPCN
ESPCN_HELP = ("ESPCN spec 'espcn' (64,64,32 hidden channels, as Brevitas' example) or 'espcn:A,B,C' "
              "(conv 5x5 to A -> conv 3x3 to B -> conv 3x3 to C -> conv 3x3 to r^2 -> PixelShuffle(r))")
_SPEC = re.compile(r"^espcn(?::(\d+),(\d+),(\d+))?$")
DEFAULT_UNET = (16, 32)
UNET_HELP = ("UNet spec 'unet' (16,32 channels) or 'unet:A,B' (conv 3x3 to A -> skip[max pool 2 -> conv 3x3 to B -> "
             "upsample x2 (nearest) -> conv 3x3 to A] concatenated with its input -> conv 3x3 to A -> upsample xr "
             "(nearest) -> conv 3x3 to 1)")
SUPERRES_HELP = ESPCN_HELP + ", or a " + UNET_HELP
_UNET = re.compile(r"^unet(?::(\d+),(\d+))?$")
#: the hidden activation quantizers' scales start at this percentile of the calibration batch
#: (not its maximum): measured on A2Q+ at P=13 from the same float model, 1,000 QAT steps in,
#: 25.37 dB against 24.95 dB with max calibration (bicubic 25.36)
ACT_INIT_PERCENTILE = 99.9


def parse_espcn(spec: str) -> tuple:
    """Hidden channels of ``espcn`` / ``espcn:A,B,C``; one-line error if malformed."""
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise A2QError(f"--arch '{spec}': the superres task takes 'espcn' or 'espcn:A,B,C' (e.g. espcn:16,16,8)")
    if m.group(1) is None:
        return DEFAULT_ESPCN
    ch = tuple(int(g) for g in m.groups())
    if min(ch) < 1:
        raise A2QError(f"--arch '{spec}': channel counts must be positive")
    return ch


def parse_unet(spec: str) -> tuple:
    """Channels ``(A, B)`` of ``unet`` / ``unet:A,B``; one-line error if malformed."""
    m = _UNET.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise A2QError(f"--arch '{spec}': a UNet spec is 'unet' or 'unet:A,B' (e.g. unet:8,16)")
    if m.group(1) is None:
        return DEFAULT_UNET
    ch = tuple(int(g) for g in m.groups())
    if min(ch) < 1:
        raise A2QError(f"--arch '{spec}': channel counts must be positive")
    return ch


def parse_superres_arch(spec: str) -> tuple:
    """``("espcn", channels)`` or ``("unet", channels)``; one-line error naming both forms."""
    if isinstance(spec, str) and spec.strip().startswith("unet"):
        return "unet", parse_unet(spec)
    if isinstance(spec, str) and spec.strip().startswith("espcn"):
        return "espcn", parse_espcn(spec)
    raise A2QError(f"--arch '{spec}': the superres task takes 'espcn', 'espcn:A,B,C', 'unet' or 'unet:A,B'")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2ycbcr

    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        y = rgb.astype(np.float64)
        return (y / 255.0 if rgb.dtype == np.uint8 else y).astype(np.float32)
    rgb = rgb[..., :3]
    return (rgb2ycbcr(rgb)[..., 0] / 255.0).astype(np.float32)


def _image(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return _luminance(load_sample_image(f"{name}.jpg"))
    import skimage.data

    if name == "motorcycle":  # the left view of the bundled stereo pair (the right one is not used)
        return _luminance(skimage.data.stereo_motorcycle()[0])
    return _luminance(getattr(skimage.data, name)())


def _crop(img: np.ndarray, r: int, max_side: int) -> np.ndarray:
    """A centred crop at most ``max_side`` square, sides divisible by ``r``."""
    h, w = img.shape
    ch, cw = min(h, max_side), min(w, max_side)
    ch, cw = ch - ch % r, cw - cw % r
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return img[y0:y0 + ch, x0:x0 + cw]


def downsample(hr: torch.Tensor, r: int) -> torch.Tensor:
    """``[n, 1, H, W]`` -> ``[n, 1, H/r, W/r]`` by antialiased bicubic interpolation, clipped to [0, 1]."""
    return F.interpolate(hr, scale_factor=1 / r, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def bicubic_up(lr: torch.Tensor, r: int) -> torch.Tensor:
    """Bicubic upsampling by ``r`` (the baseline), clipped to [0, 1]."""
    return F.interpolate(lr, scale_factor=r, mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass
class SRData:
    """Training patches and held-out images; tensors ``[n, 1, h, w]`` in [0, 1]."""

    upscale: int
    x_train: torch.Tensor  # low-resolution patches
    y_train: torch.Tensor  # their high-resolution patches
    test_lr: list  # one [1, 1, h, w] tensor per held-out image
    test_hr: list
    test_names: tuple

    @property
    def sample_shape(self) -> tuple:
        return tuple(int(d) for d in self.x_train.shape[1:])


def load_superres(upscale: int, seed: int = 0, patches: int = 4096, patch: int = 32,
                  test_side: int = 128) -> SRData:
    """Random ``patch``-pixel HR patches (``patch/upscale`` LR) of :data:`TRAIN_IMAGES`; held-out
    :data:`TEST_IMAGES` as centred crops of at most ``test_side`` pixels. Deterministic for ``seed``."""
    if upscale < 2:
        raise A2QError(f"--upscale must be at least 2, got {upscale}")
    if patch % upscale:
        patch += upscale - patch % upscale
    rng = np.random.default_rng(seed)
    imgs = [_image(n) for n in TRAIN_IMAGES]
    per = [patches // len(imgs) + (1 if i < patches % len(imgs) else 0) for i in range(len(imgs))]
    hr = []
    for img, n in zip(imgs, per):
        h, w = img.shape
        ys = rng.integers(0, h - patch + 1, n)
        xs = rng.integers(0, w - patch + 1, n)
        flips = rng.integers(0, 4, n)
        for y, x, f in zip(ys, xs, flips):
            p = img[y:y + patch, x:x + patch]
            p = p[::-1] if f & 1 else p
            p = p[:, ::-1] if f & 2 else p
            hr.append(np.ascontiguousarray(p))
    y_train = torch.from_numpy(np.stack(hr)[:, None])
    x_train = downsample(y_train, upscale)
    test_hr = [torch.from_numpy(np.ascontiguousarray(_crop(_image(n), upscale, test_side)))[None, None]
               for n in TEST_IMAGES]
    test_lr = [downsample(t, upscale) for t in test_hr]
    return SRData(upscale, x_train, y_train, test_lr, test_hr, TEST_IMAGES)


def psnr(pred: torch.Tensor, ref: torch.Tensor, shave: int = 0) -> float:
    """PSNR in dB of ``pred`` (clipped to [0, 1]) against ``ref``, ``shave`` border pixels left out."""
    p = pred.clamp(0, 1).double()
    t = ref.double()
    if shave:
        p, t = p[..., shave:-shave, shave:-shave], t[..., shave:-shave, shave:-shave]
    mse = float(((p - t) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def psnr_per_image(model, data: SRData, device=None) -> dict:
    """PSNR (dB) of ``model`` on each held-out image, by name (``model=None``: bicubic upsampling)."""
    vals = {}
    if model is not None:
        model.eval()
    for name, lr, hr in zip(data.test_names, data.test_lr, data.test_hr):
        if model is None:
            out = bicubic_up(lr, data.upscale)
        else:
            out = model(lr.to(device) if device is not None else lr).cpu()
        vals[name] = psnr(out, hr, shave=data.upscale)
    return vals


def mean_psnr(per_image: dict) -> float:
    """The mean (dB) of :func:`psnr_per_image`'s values."""
    return float(np.mean(list(per_image.values())))


def evaluate_psnr(model, data: SRData, device=None) -> float:
    """Mean PSNR (dB) of ``model`` on the held-out images (``model=None``: bicubic upsampling)."""
    return mean_psnr(psnr_per_image(model, data, device))


def build_espcn(spec: str, upscale: int, quant: str = "a2q+", weight_bits: int = 4, act_bits: int = 4,
                acc_bits: int = 12, constrain: str = "all", channels: int = 1) -> nn.Sequential:
    """ESPCN ``spec`` (see :data:`ESPCN_HELP`) for ``upscale`` on ``channels``-channel images.

    Float and quantized models share the module layout (float: ``nn.Identity``/``nn.ReLU``
    in place of the activation quantizers), so a float checkpoint loads by key.
    """
    check_recipe(quant, constrain)
    a, b, c = parse_espcn(spec)
    is_float = quant == "float"
    edge = constrain == "inner"
    in_bits = EDGE_BITS if edge else act_bits
    sizes = [(channels, a, 5), (a, b, 3), (b, c, 3), (c, channels * upscale * upscale, 3)]
    mods: list = [nn.Identity() if is_float else QuantIdentity(in_bits, signed=False)]
    for i, (cin, cout, k) in enumerate(sizes):
        wq = weight_quant(quant, weight_bits, acc_bits, in_bits, edge and i in (0, len(sizes) - 1))
        mods.append(QuantConv2d(cin, cout, k, stride=1, padding=k // 2, bias=True, weight_quant=wq))
        if i < len(sizes) - 1:
            mods.append(nn.ReLU() if is_float else QuantReLU(act_bits, init_percentile=ACT_INIT_PERCENTILE))
            in_bits = act_bits
    mods.append(nn.PixelShuffle(upscale))
    return nn.Sequential(*mods)


def build_unet(spec: str, upscale: int, quant: str = "a2q+", weight_bits: int = 4, act_bits: int = 4,
               acc_bits: int = 12, constrain: str = "all", channels: int = 1) -> nn.Sequential:
    """A small UNet-style super-resolution net ``spec`` (see :data:`UNET_HELP`) for ``upscale``:
    an encoder convolution, a skip block (:class:`~a2qhls.frontend.layers.QuantConcatSkip`: max pool,
    convolution, nearest upsampling x2, convolution whose activation quantizer is shared with the
    block input's, so the channel concatenation has one scale), a decoder convolution, nearest
    upsampling by ``upscale`` and an output convolution. Inputs must have even height and width.
    Quantizers and ``constrain`` policies as :func:`build_espcn`; float and quantized models share
    the module layout."""
    check_recipe(quant, constrain)
    a, b = parse_unet(spec)
    is_float = quant == "float"
    edge = constrain == "inner"
    in_bits = EDGE_BITS if edge else act_bits

    def conv(cin, cout, first_or_last=False, bits_in=act_bits):
        wq = weight_quant(quant, weight_bits, acc_bits, bits_in, edge and first_or_last)
        return QuantConv2d(cin, cout, 3, stride=1, padding=1, bias=True, weight_quant=wq)

    def act(shared=None):
        return nn.ReLU() if is_float else QuantReLU(act_bits, quant=shared.quant if shared is not None else None)

    act1 = act()
    body = nn.Sequential(nn.MaxPool2d(2), conv(a, b), act(), nn.Upsample(scale_factor=2, mode="nearest"),
                         conv(b, a), act(act1 if not is_float else None))
    mods = [nn.Identity() if is_float else QuantIdentity(in_bits, signed=False),
            conv(channels, a, True, in_bits), act1, QuantConcatSkip(body),
            conv(2 * a, a), act(), nn.Upsample(scale_factor=upscale, mode="nearest"),
            conv(a, channels, True)]
    return nn.Sequential(*mods)


def build_superres(spec: str, upscale: int, *args, **kw) -> nn.Sequential:
    """:func:`build_espcn` or :func:`build_unet` by the spec's name."""
    kind, _ = parse_superres_arch(spec)
    return (build_unet if kind == "unet" else build_espcn)(spec, upscale, *args, **kw)


@dataclass
class SRTrainResult:
    test_psnr: float  # the mean of test_psnr_per_image
    train_loss: float
    seconds: float
    losses: list
    test_psnr_per_image: dict  # held-out image name -> PSNR (dB) after training


def fit_superres(model: nn.Module, data: SRData, cfg, device: torch.device | None = None) -> SRTrainResult:
    """Adam with cosine decay on the mean squared error of the upscaled patches plus
    ``cfg.penalty_weight * penalty(model)`` (as :func:`a2qhls.frontend.train.fit`, with
    MSE in place of cross-entropy). Deterministic on CPU for a fixed ``cfg.seed``."""
    import time

    from .layers import penalty

    device = device or torch.device("cpu")
    model.to(device)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    calib = torch.randperm(len(xtr), generator=gen)[:256]
    with torch.no_grad():  # activation scales from one batch
        model.train()
        model(xtr[calib.to(device)])
    from .train import training_setup

    opt, sched, steps_per_epoch, has_penalty, bar = training_setup(model, cfg, len(xtr))
    t0 = time.perf_counter()
    losses = []
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        run = 0.0
        for i in range(0, len(xtr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            mse = F.mse_loss(model(xtr[idx]), ytr[idx])
            loss = mse + cfg.penalty_weight * penalty(model) if has_penalty and cfg.penalty_weight else mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(mse.detach())
        losses.append(run / steps_per_epoch)
        if bar is not None:
            bar.set_postfix(mse=f"{losses[-1]:.5f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    per_image = psnr_per_image(model, data, device)
    return SRTrainResult(mean_psnr(per_image), losses[-1] if losses else float("nan"), secs, losses, per_image)
