"""One training run, as ``a2qhls train`` does it: float model -> A2Q/A2Q+ model -> QONNX.

:func:`train_run` is the single implementation behind both ``a2qhls train`` and
each configuration of ``a2qhls sweep``, so a sweep row is by construction what
``a2qhls train`` with the same options gives. :func:`train_argv` writes the
``a2qhls train`` command line of a :class:`TrainRun`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from typing import Optional, Union

from ..errors import A2QError

TASKS = ("classify", "superres")

__all__ = ["TASKS", "TASK_DEFAULTS", "TrainRun", "train_run", "train_argv", "arch_text", "parse_arch", "save_float"]

#: What ``None`` means for the options whose good value depends on the task (the ``a2qhls train``
#: defaults). ``superres`` is the recipe measured in the README: the papers' ESPCN setting (8-bit
#: first/last layers and input, 4-bit inside at P = 13), Adam at Brevitas's 1e-3 for float and QAT.
TASK_DEFAULTS = {
    "classify": {"arch": [64, 32], "epochs": 30, "float_epochs": None, "lr": 1e-2, "batch_size": 64,
                 "acc_bits": 12, "constrain": "all"},
    "superres": {"arch": "espcn:32,32,16", "epochs": 16, "float_epochs": 40, "lr": 1e-3, "batch_size": 16,
                 "acc_bits": 13, "constrain": "inner"},
}


@dataclass
class TrainRun:
    """The options of one ``a2qhls train`` invocation (same names and defaults as its flags).

    ``task`` is ``"classify"`` (``dataset``) or ``"superres"`` (ESPCN at ``upscale`` on the
    bundled photographs, :mod:`a2qhls.frontend.superres`; quality in PSNR dB).
    ``arch`` is a list of MLP hidden sizes, a CNN spec string ``"cnn:..."``, or for
    ``superres`` an ESPCN spec ``"espcn"`` / ``"espcn:A,B,C"`` or a UNet spec ``"unet"`` / ``"unet:A,B"``.
    ``from_`` is a float checkpoint to start from (``--from``); ``out`` the QONNX
    file (or, with ``quant="float"``, the float checkpoint) to write.
    ``arch``, ``acc_bits``, ``constrain``, ``epochs``, ``lr`` and ``batch_size`` left ``None``
    take the task's :data:`TASK_DEFAULTS` (and ``float_epochs`` too when ``epochs`` was left unset).
    """

    task: str = "classify"
    upscale: int = 2
    dataset: str = "digits"
    arch: Union[list, str] = None  # type: ignore[assignment]
    quant: str = "a2q+"
    weight_bits: int = 4
    act_bits: int = 4
    acc_bits: int = None  # type: ignore[assignment]
    constrain: str = None  # type: ignore[assignment]
    init: str = "ep"
    epochs: int = None  # type: ignore[assignment]
    float_epochs: Optional[int] = None
    lr: float = None  # type: ignore[assignment]
    batch_size: int = None  # type: ignore[assignment]
    penalty: float = 1e-3
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    from_: Optional[str] = None
    save_float: Optional[str] = None
    out: str = "model.onnx"

    def __post_init__(self):
        defaults = TASK_DEFAULTS.get(self.task, TASK_DEFAULTS["classify"])
        unset = [name for name in ("arch", "acc_bits", "constrain", "epochs", "lr", "batch_size")
                 if getattr(self, name) is None]
        for name in unset:
            setattr(self, name, list(defaults[name]) if isinstance(defaults[name], list) else defaults[name])
        if "epochs" in unset and self.float_epochs is None:
            self.float_epochs = defaults["float_epochs"]

    @classmethod
    def from_args(cls, args) -> "TrainRun":
        """From the parsed arguments of ``a2qhls train``."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def parse_arch(text: str):
    """``"64,32"`` -> ``[64, 32]``; ``"cnn:..."`` and ``"espcn..."`` are returned as is. ValueError if malformed."""
    if text.startswith("cnn:") or text.startswith("espcn") or text.startswith("unet"):
        return text
    sizes = [int(t) for t in text.split(",") if t.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--arch takes positive hidden sizes, got '{text}'")
    return sizes


def arch_text(arch) -> str:
    """The ``--arch`` text of ``arch`` (inverse of :func:`parse_arch`)."""
    return arch if isinstance(arch, str) else ",".join(str(int(h)) for h in arch)


def train_argv(run: TrainRun) -> list:
    """The ``a2qhls train`` arguments (after ``train``) that perform ``run``."""
    argv = ["--task", run.task, "--upscale", str(run.upscale)] if run.task != "classify" else []
    argv += ["--dataset", run.dataset, "--arch", arch_text(run.arch), "--quant", run.quant,
            "--weight-bits", str(run.weight_bits), "--act-bits", str(run.act_bits), "--acc-bits", str(run.acc_bits),
            "--constrain", run.constrain, "--init", run.init, "--epochs", str(run.epochs)]
    if run.float_epochs is not None:
        argv += ["--float-epochs", str(run.float_epochs)]
    argv += ["--lr", repr(float(run.lr)), "--batch-size", str(run.batch_size), "--penalty", repr(float(run.penalty)),
             "--seed", str(run.seed), "--device", run.device, "--threads", str(run.threads)]
    if run.from_:
        argv += ["--from", run.from_]
    if run.save_float:
        argv += ["--save-float", run.save_float]
    return argv + ["--out", run.out]


def _is_cnn(arch) -> bool:
    return isinstance(arch, str)


def _arch_key(arch):
    return arch if _is_cnn(arch) else list(arch)


def _describe(arch, features: int, classes: int) -> str:
    if _is_cnn(arch):
        return f"{arch} CNN ({features} inputs, {classes} classes)"
    return f"{features}-{'-'.join(map(str, arch))}-{classes} MLP"


def _build(run: TrainRun, data, quant: str):
    from .train import build_cnn, build_mlp

    if _is_cnn(run.arch):
        return build_cnn(run.arch, data.sample_shape, data.classes, quant, run.weight_bits, run.act_bits,
                         run.acc_bits, run.constrain)
    return build_mlp(data.features, run.arch, data.classes, quant, run.weight_bits, run.act_bits,
                     run.acc_bits, run.constrain)


def save_float(path: str, model, run: TrainRun, features: int, classes: int) -> None:
    """Write the float checkpoint that ``--from`` reads."""
    import torch

    torch.save({"a2qhls_float": 1, "dataset": run.dataset, "arch": _arch_key(run.arch), "features": features,
                "classes": classes, "state_dict": model.state_dict()}, path)


def _load_float(path: str, run: TrainRun, data, features: int, classes: int):
    import torch

    if not os.path.exists(path):
        raise A2QError(f"--from: no such file: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise A2QError(f"--from: cannot read {path} as a float checkpoint ({type(e).__name__})")
    if not isinstance(ck, dict) or ck.get("a2qhls_float") != 1:
        raise A2QError(f"--from: {path} is not an a2qhls float checkpoint (write one with --quant float)")
    if ck["features"] != features or ck["classes"] != classes or ck["arch"] != _arch_key(run.arch):
        raise A2QError(f"--from: {path} is a {_describe(ck['arch'], ck['features'], ck['classes'])}, "
                       f"but this run builds a {_describe(run.arch, features, classes)}")
    model = _build(run, data, "float")
    model.load_state_dict(ck["state_dict"])
    return model


# accepted ranges of the integer options (checked before any data is loaded or any training runs)
RANGES = {"weight_bits": (2, 16), "act_bits": (1, 16), "acc_bits": (2, 32), "epochs": (0, 100_000),
          "batch_size": (1, 1_000_000), "threads": (1, 1024)}


def _check_out_file(path, flag: str) -> None:
    """``path`` can be written as a file: not a folder or special file, in an existing writable folder."""
    import stat

    if not path or not str(path).strip():
        raise A2QError(f"{flag}: empty path")
    if os.path.lexists(path):
        if not os.path.exists(path):
            raise A2QError(f"{flag} {path}: a dangling symbolic link")
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise A2QError(f"{flag} {path}: is a folder; name the file to write")
        if not stat.S_ISREG(mode):
            raise A2QError(f"{flag} {path}: not a regular file (a FIFO, socket or device)")
    out_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(out_dir):
        raise A2QError(f"{flag}: directory does not exist: {out_dir}")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise A2QError(f"{flag}: cannot write in {out_dir} (permission denied)")


def validate(run: TrainRun) -> None:
    """One-line errors for options that can be checked before any training: integer options in
    :data:`RANGES`, a finite positive ``lr``, a finite ``penalty >= 0``, a seed in 0..2^63-1,
    files to write that can be written (not a folder), a ``--from`` that is a regular file,
    a known ``task`` and (superres) an ESPCN spec and ``upscale >= 2``."""
    import math

    if run.task not in TASKS:
        raise A2QError(f"--task: unknown task '{run.task}' (supported: {', '.join(TASKS)})")

    for name, (lo, hi) in RANGES.items():
        v = getattr(run, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise A2QError(f"--{name.replace('_', '-')} {v}: must be in {lo}..{hi}")
    if run.float_epochs is not None and not 0 <= run.float_epochs <= RANGES["epochs"][1]:
        raise A2QError(f"--float-epochs {run.float_epochs}: must be in 0..{RANGES['epochs'][1]}")
    if not (isinstance(run.lr, (int, float)) and math.isfinite(run.lr) and run.lr > 0):
        raise A2QError(f"--lr {run.lr}: must be a finite positive number")
    if not (isinstance(run.penalty, (int, float)) and math.isfinite(run.penalty) and run.penalty >= 0):
        raise A2QError(f"--penalty {run.penalty}: must be a finite number >= 0")
    if not isinstance(run.seed, int) or not 0 <= run.seed < 2**63:
        raise A2QError(f"--seed {run.seed}: must be in 0..2^63-1")
    _check_out_file(run.out, "--out")
    if run.save_float:
        _check_out_file(run.save_float, "--save-float")
    if run.from_:
        from ..files import regular_file

        regular_file(run.from_, "float checkpoint (.pt)")
    if run.task == "superres":
        from .superres import parse_superres_arch

        if isinstance(run.upscale, bool) or not isinstance(run.upscale, int) or not 2 <= run.upscale <= 8:
            raise A2QError(f"--upscale {run.upscale}: must be in 2..8")
        parse_superres_arch(run.arch if isinstance(run.arch, str) else arch_text(run.arch))
    elif isinstance(run.arch, str) and (run.arch.startswith("espcn") or run.arch.startswith("unet")):
        raise A2QError(f"--arch '{run.arch}' is a super-resolution model: use it with --task superres")
    elif _is_cnn(run.arch):
        from .train import parse_cnn_spec

        parse_cnn_spec(run.arch)  # a malformed spec is an error before any training


def train_run(run: TrainRun, progress: bool = False) -> dict:
    """Train (or load) the float model, then the quantized one, and export it; the result as a dict.

    Keys: ``dataset``, ``quant``, ``seed``, ``device``, ``arch``, ``float_test_accuracy``
    (and ``float_train_seconds`` when trained here), ``test_accuracy``, ``out``; for a
    quantized run also ``train_accuracy``, ``train_seconds``, the bit widths, ``constrain``,
    ``init`` and ``layers`` (:func:`a2qhls.frontend.train.layer_report`).
    Deterministic on CPU for a fixed configuration. Raises :class:`A2QError` on bad options.
    """
    validate(run)
    if run.task == "superres":
        return _train_superres(run, progress)
    import torch

    from .data import load_dataset
    from .export import export_qonnx
    from .init import init_from_float
    from .train import TrainConfig, evaluate, fit, layer_report, resolve_device

    torch.set_num_threads(run.threads)
    device = resolve_device(run.device)
    data = load_dataset(run.dataset, run.seed)
    features = data.features
    if _is_cnn(run.arch):
        data = data.as_images()
    result = {"dataset": run.dataset, "quant": run.quant, "seed": run.seed, "device": str(device)}
    if _is_cnn(run.arch):
        result.update({"arch": run.arch, "input_shape": list(data.sample_shape)})
    else:
        result["arch"] = [data.features] + list(run.arch) + [data.classes]

    float_epochs = run.epochs if run.float_epochs is None else run.float_epochs
    if run.from_:
        fmodel = _load_float(run.from_, run, data, features, data.classes)
        result["float_test_accuracy"] = evaluate(fmodel, data.x_test, data.y_test)
    else:
        torch.manual_seed(run.seed)
        fmodel = _build(run, data, "float")
        r = fit(fmodel, data, TrainConfig(epochs=float_epochs, lr=run.lr, batch_size=run.batch_size,
                                          seed=run.seed, progress=progress, desc="float"), device)
        result["float_test_accuracy"] = r.test_accuracy
        result["float_train_seconds"] = round(r.seconds, 3)
    fmodel.cpu()
    if run.save_float:
        save_float(run.save_float, fmodel, run, features, data.classes)

    if run.quant == "float":
        save_float(run.out, fmodel, run, features, data.classes)
        result["test_accuracy"] = result["float_test_accuracy"]
        result["out"] = run.out
        return result
    torch.manual_seed(run.seed)
    qmodel = _build(run, data, run.quant)
    init_from_float(qmodel, fmodel, run.init)
    r = fit(qmodel, data, TrainConfig(epochs=run.epochs, lr=run.lr, batch_size=run.batch_size,
                                      penalty_weight=run.penalty, seed=run.seed, progress=progress,
                                      desc=run.quant), device)
    qmodel.cpu()
    export_qonnx(qmodel, run.out, data.sample_shape)
    result.update({"test_accuracy": r.test_accuracy, "train_accuracy": r.train_accuracy,
                   "train_seconds": round(r.seconds, 3), "out": run.out,
                   "weight_bits": run.weight_bits, "act_bits": run.act_bits, "acc_bits": run.acc_bits,
                   "constrain": run.constrain, "init": run.init, "layers": layer_report(qmodel)})
    return result


def _train_superres(run: TrainRun, progress: bool) -> dict:
    """:func:`train_run` for ``task == "superres"``: ESPCN float, then A2Q/A2Q+ from it; PSNR in dB."""
    import torch

    from .export import export_qonnx
    from .init import init_from_float
    from .superres import build_superres, fit_superres, load_superres, mean_psnr, psnr_per_image
    from .train import TrainConfig, layer_report, resolve_device

    torch.set_num_threads(run.threads)
    device = resolve_device(run.device)
    data = load_superres(run.upscale, run.seed)

    def build(quant):
        return build_superres(run.arch, run.upscale, quant, run.weight_bits, run.act_bits, run.acc_bits, run.constrain)

    # each model runs over the held-out images once: the means are of the per-image values
    bicubic_per_image = psnr_per_image(None, data)
    bicubic = mean_psnr(bicubic_per_image)
    result = {"task": "superres", "dataset": "skimage+sklearn", "upscale": run.upscale, "quant": run.quant,
              "seed": run.seed, "device": str(device), "arch": run.arch, "input_shape": list(data.sample_shape),
              "test_images": list(data.test_names), "bicubic_psnr": round(bicubic, 4),
              "bicubic_psnr_per_image": _rounded(bicubic_per_image)}
    float_epochs = run.epochs if run.float_epochs is None else run.float_epochs
    key = {"a2qhls_float": 1, "task": "superres", "arch": run.arch, "upscale": run.upscale}
    if run.from_:
        if not os.path.exists(run.from_):
            raise A2QError(f"--from: no such file: {run.from_}")
        try:
            ck = torch.load(run.from_, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
            raise A2QError(f"--from: cannot read {run.from_} as a float checkpoint ({type(e).__name__})")
        if not isinstance(ck, dict) or any(ck.get(k) != v for k, v in key.items()):
            raise A2QError(f"--from: {run.from_} is not an a2qhls float checkpoint of {run.arch} x{run.upscale} "
                           "super-resolution (write one with --task superres --quant float)")
        fmodel = build("float")
        fmodel.load_state_dict(ck["state_dict"])
        float_per_image = psnr_per_image(fmodel, data)
        result["float_psnr"] = round(mean_psnr(float_per_image), 4)
    else:
        torch.manual_seed(run.seed)
        fmodel = build("float")
        r = fit_superres(fmodel, data, TrainConfig(epochs=float_epochs, lr=run.lr, batch_size=run.batch_size,
                                                   seed=run.seed, progress=progress, desc="float"), device)
        float_per_image = r.test_psnr_per_image
        result["float_psnr"] = round(r.test_psnr, 4)
        result["float_train_seconds"] = round(r.seconds, 3)
    fmodel.cpu()
    result["float_psnr_per_image"] = _rounded(float_per_image)
    ck = dict(key, state_dict=fmodel.state_dict())
    if run.save_float:
        torch.save(ck, run.save_float)
    if run.quant == "float":
        torch.save(ck, run.out)
        result.update({"psnr": result["float_psnr"], "psnr_per_image": result["float_psnr_per_image"],
                       "out": run.out})
        return result
    torch.manual_seed(run.seed)
    qmodel = build(run.quant)
    init_from_float(qmodel, fmodel, run.init)
    r = fit_superres(qmodel, data, TrainConfig(epochs=run.epochs, lr=run.lr, batch_size=run.batch_size,
                                               penalty_weight=run.penalty, seed=run.seed, progress=progress,
                                               desc=run.quant), device)
    qmodel.cpu()
    export_qonnx(qmodel, run.out, data.sample_shape)
    result.update({"psnr": round(r.test_psnr, 4), "psnr_per_image": _rounded(r.test_psnr_per_image),
                   "psnr_vs_bicubic": round(r.test_psnr - bicubic, 4),
                   "psnr_vs_float": round(r.test_psnr - result["float_psnr"], 4), "train_mse": r.train_loss,
                   "train_seconds": round(r.seconds, 3), "out": run.out, "weight_bits": run.weight_bits,
                   "act_bits": run.act_bits, "acc_bits": run.acc_bits, "constrain": run.constrain,
                   "init": run.init, "layers": layer_report(qmodel)})
    return result


def _rounded(d: dict) -> dict:
    return {k: round(float(v), 4) for k, v in d.items()}


def progress_wanted(json_output: bool) -> bool:
    """Progress bars only on an interactive terminal and not with ``--json``."""
    return (not json_output) and sys.stderr.isatty()
