"""``a2qhls sweep``: a grid of ``a2qhls train`` runs over quantizers and bit widths, on Ray.

Each configuration is one :func:`a2qhls.frontend.pipeline.train_run` (the function
behind ``a2qhls train``) from a float checkpoint trained once per seed, followed by
an inspection of the exported QONNX (:func:`a2qhls.load_qonnx` +
:func:`a2qhls.size_accumulators`: exact per-layer widths against the target) and a
hardware-cost figure. Runs are Ray tasks (an embedded local Ray instance by default,
or a cluster at ``address`` / ``$RAY_ADDRESS``), or run one after another in this
process (``executor="serial"``).

Caching: a run is keyed by every option that reaches ``a2qhls train`` (a SHA-256 of
its canonical JSON). Its record and QONNX file are written under ``OUT/runs/`` as soon
as it finishes, float checkpoints under ``OUT/float/``; a later sweep over a grid that
includes it loads it instead of running it. A configuration that fails inside
``train`` (e.g. an accumulator too narrow for any weight) is recorded as failed with
its one-line error and cached too (``retry_failed`` runs it again); a task lost to
the executor (a crashed worker) is reported as failed but not cached.

Cost: ``luts``, the estimated LUTs of the design ``a2qhls build`` would generate (default
folding; :func:`a2qhls.estimate_cost`, :mod:`a2qhls.estimate`), and ``luts_acc32``, the same
design with 32-bit accumulators. Also ``cost_proxy``, a model-only figure:
``sum over weight layers of MACs * (M*N + P)`` with ``M``, ``N`` the layer's weight and
input bit widths and ``P`` its exact accumulator width (an ``M x N``-bit multiplier and a
``P``-bit adder per multiply-accumulate); ``MACs`` per inference: ``K * channels`` for a
dense layer, times the output pixels for a convolution.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import A2QError
from ..plots import float_quality, quality, quality_name
from .train import QUANT_KINDS

__all__ = ["QUANTS", "SweepGrid", "SweepResult", "parse_int_list", "parse_choices", "parse_quants", "run_sweep", "configs",
           "config_key", "float_key", "float_task", "run_task", "RAY_MISSING", "CSV_COLUMNS", "summary_table"]

SCHEMA = "a2qhls-sweep-1"
# The grid's quantizers: ``a2qhls train``'s recipes (:data:`~a2qhls.frontend.train.QUANT_KINDS`, in its
# order) but "float". A sweep trains the float model itself, once per seed: every run starts from it and
# reports its quality (float_test_accuracy / float_test_psnr, the table's "float:" line), while a
# "float" run of train saves only a torch checkpoint: no QONNX to inspect, no accumulator, no cost.
QUANTS = tuple(q for q in QUANT_KINDS if q != "float")
INITS = ("ep", "default")
RAY_MISSING = ("a2qhls sweep runs on Ray, which is not installed: pip install 'a2qhls[sweep]' "
               "(or pass --serial to run the grid in this process)")

# results.csv columns, in order (lists are joined with ';')
CSV_COLUMNS = [
    "key", "status", "error", "dataset", "arch", "quant", "weight_bits", "act_bits", "acc_bits", "init", "constrain",
    "seed", "epochs", "float_epochs", "lr", "batch_size", "penalty", "device", "threads",
    "float_test_accuracy", "test_accuracy", "train_accuracy", "train_seconds",
    "task", "upscale", "bicubic_psnr", "float_test_psnr", "test_psnr",
    "target_acc_bits", "exact_acc_bits", "max_exact_acc_bits", "exceeds_target", "macs", "luts", "luts_acc32",
    "cost_proxy",
    "onnx", "command",
]


def parse_int_list(text: str, what: str) -> list:
    """``"9:16"`` (inclusive), ``"9:16:2"``, ``"9,10,12"`` or mixtures ``"3:4,8"`` -> sorted distinct ints."""
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nums = [int(t) for t in part.split(":")]
        except ValueError:
            raise A2QError(f"{what}: '{text}' is not a list of integers or ranges (e.g. 9:16 or 9,10,12)")
        if len(nums) == 1:
            out.add(nums[0])
        elif len(nums) in (2, 3) and (len(nums) == 2 or nums[2] > 0) and nums[0] <= nums[1]:
            out.update(range(nums[0], nums[1] + 1, nums[2] if len(nums) == 3 else 1))
        else:
            raise A2QError(f"{what}: bad range '{part}' (use LO:HI or LO:HI:STEP with LO <= HI, STEP > 0)")
    if not out:
        raise A2QError(f"{what}: empty list '{text}'")
    if min(out) < 1:
        raise A2QError(f"{what}: bit widths must be positive, got {min(out)}")
    return sorted(out)


def parse_choices(text: str, allowed: tuple, what: str) -> list:
    """Comma-separated choices from ``allowed``, in the given order, without repeats."""
    items = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        if t not in allowed:
            raise A2QError(f"{what}: unknown value '{t}' (supported: {', '.join(allowed)})")
        if t not in items:
            items.append(t)
    if not items:
        raise A2QError(f"{what}: empty list '{text}'")
    return items


def _check_quant(q: str, what: str = "--quant") -> None:
    """Raises :class:`A2QError` (one line) for a ``q`` not in :data:`QUANTS`; for "float", why."""
    if q == "float":
        raise A2QError(f"{what}: 'float' is not a sweep quantizer: the sweep trains the float model once per seed "
                       f"and reports it with every run (float_test_accuracy, float_test_psnr); "
                       f"supported: {', '.join(QUANTS)}")
    if q not in QUANTS:
        raise A2QError(f"{what}: unknown value '{q}' (supported: {', '.join(QUANTS)})")


def parse_quants(text: str, what: str = "--quant") -> list:
    """Comma-separated quantizers of :data:`QUANTS` (as :func:`parse_choices`); :class:`A2QError` for
    any other, "float" included (with the reason)."""
    for t in str(text).split(","):
        if t.strip():
            _check_quant(t.strip(), what)
    return parse_choices(text, QUANTS, what)


@dataclass
class SweepGrid:
    """The grid and the ``a2qhls train`` options shared by all its runs."""

    dataset: str = "digits"
    arch: object = field(default_factory=lambda: [64, 32])  # hidden sizes, "cnn:..." or (superres) "espcn..."
    quants: list = field(default_factory=lambda: ["a2q", "a2q+"])
    acc_bits: list = field(default_factory=lambda: [12])
    weight_bits: list = field(default_factory=lambda: [4])
    act_bits: list = field(default_factory=lambda: [4])
    inits: list = field(default_factory=lambda: ["ep"])
    seeds: list = field(default_factory=lambda: [0])
    constrain: str = "all"
    epochs: int = 30
    float_epochs: Optional[int] = None
    lr: float = 1e-2
    batch_size: int = 64
    penalty: float = 1e-3
    device: str = "auto"
    threads: int = 1
    task: str = "classify"  # or "superres": ESPCN at `upscale`, quality = PSNR (dB)
    upscale: int = 2


def _arch_text(arch) -> str:
    from .pipeline import arch_text

    return arch_text(arch)


def configs(grid: SweepGrid) -> list:
    """The grid's run configurations (dicts), in a fixed order, without duplicates.

    A ``baseline`` run has no accumulator target and no A2Q initialization, so it is one
    configuration per (M, N, seed) with ``acc_bits`` and ``init`` None.
    """
    fe = grid.epochs if grid.float_epochs is None else grid.float_epochs
    common = {"dataset": grid.dataset, "arch": _arch_text(grid.arch), "constrain": grid.constrain,
              "epochs": grid.epochs, "float_epochs": fe, "lr": float(grid.lr), "batch_size": grid.batch_size,
              "penalty": float(grid.penalty), "device": grid.device, "threads": grid.threads}
    if grid.task != "classify":  # classification keys stay as they were (cached runs stay valid)
        common.update(task=grid.task, upscale=grid.upscale)
    out, seen = [], set()
    for seed in grid.seeds:
        for quant in grid.quants:
            for m in grid.weight_bits:
                for n in grid.act_bits:
                    for init in (grid.inits if quant != "baseline" else [None]):
                        for p in (grid.acc_bits if quant != "baseline" else [None]):
                            cfg = dict(common, quant=quant, weight_bits=m, act_bits=n, acc_bits=p, init=init,
                                       seed=seed)
                            k = config_key(cfg)
                            if k not in seen:
                                seen.add(k)
                                out.append(cfg)
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps([SCHEMA, obj], sort_keys=True).encode()).hexdigest()[:16]


def config_key(cfg: dict) -> str:
    """The cache key of a run: every option that reaches ``a2qhls train``."""
    return _digest(cfg)


_FLOAT_FIELDS = ("dataset", "arch", "float_epochs", "lr", "batch_size", "seed", "device", "threads")


def float_config(cfg: dict) -> dict:
    """The options that determine a run's float checkpoint."""
    return {k: cfg[k] for k in _FLOAT_FIELDS + ("task", "upscale") if k in cfg}


def float_key(cfg: dict) -> str:
    return _digest(["float", float_config(cfg)])


def _train_run(cfg: dict, from_: Optional[str], out: str):
    """The :class:`TrainRun` of a configuration (baseline: train's defaults for acc_bits and init)."""
    from .pipeline import TrainRun, parse_arch

    return TrainRun(task=cfg.get("task", "classify"), upscale=cfg.get("upscale", 2), dataset=cfg["dataset"],
                    arch=parse_arch(cfg["arch"]), quant=cfg["quant"],
                    weight_bits=cfg["weight_bits"], act_bits=cfg["act_bits"],
                    acc_bits=cfg["acc_bits"] if cfg["acc_bits"] is not None else TrainRun.acc_bits,
                    constrain=cfg["constrain"], init=cfg["init"] or TrainRun.init, epochs=cfg["epochs"],
                    float_epochs=cfg["float_epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                    penalty=cfg["penalty"], seed=cfg["seed"], device=cfg["device"], threads=cfg["threads"],
                    from_=from_, out=out)


def train_command(cfg: dict, out: str = "model.onnx") -> str:
    """The ``a2qhls train`` command line that trains ``cfg`` directly (its own float model)."""
    import shlex

    from .pipeline import train_argv

    return " ".join(shlex.quote(a) for a in ["a2qhls", "train", *train_argv(_train_run(cfg, None, out))])


def float_task(fcfg: dict) -> bytes:
    """Train the float model of ``fcfg`` (:func:`float_config`); the checkpoint file's bytes."""
    from .pipeline import TrainRun, parse_arch, train_run

    with tempfile.TemporaryDirectory(prefix="a2qhls-float-") as d:
        path = os.path.join(d, "float.pt")
        train_run(TrainRun(task=fcfg.get("task", "classify"), upscale=fcfg.get("upscale", 2),
                           dataset=fcfg["dataset"], arch=parse_arch(fcfg["arch"]), quant="float",
                           epochs=fcfg["float_epochs"], float_epochs=fcfg["float_epochs"], lr=fcfg["lr"],
                           batch_size=fcfg["batch_size"], seed=fcfg["seed"], device=fcfg["device"],
                           threads=fcfg["threads"], out=path))
        with open(path, "rb") as f:
            return f.read()


def _one_line(e: BaseException) -> str:
    """The first line of an error; a user error (A2QError) without its type name."""
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(e, A2QError) and first else f"{type(e).__name__}: {first}".rstrip(": ")


def inspect_layers(path: str) -> list:
    """Per weight layer of a QONNX file: name, op, K, channels, MACs, M, N and the four widths."""
    from .. import load_qonnx, size_accumulators
    from ..ir import Conv, Dense

    model = size_accumulators(load_qonnx(path))
    layers = []
    for op in model.accumulating_ops():
        if not isinstance(op, (Dense, Conv)):
            continue
        macs = op.K * op.channels
        if isinstance(op, Conv):
            oh, ow, _ = op.out_shape
            macs *= oh * ow
        in_type = model.tensors[op.inputs[0]].dtype
        layers.append({"name": op.name, "op": op.source_op, "K": op.K, "channels": op.channels, "macs": int(macs),
                       "weight_bits": op.weight_type.bits, "input_bits": in_type.bits,
                       "quant": op.quant_kind, "target_acc_bits": op.target_acc_bits,
                       "acc_bits_datatype": op.acc.datatype_bits, "acc_bits_a2q": op.acc.a2q_bits,
                       "acc_bits_a2qplus": op.acc.a2qplus_bits, "acc_bits": op.acc.acc_bits,
                       "exceeds_target": bool(op.acc.exceeds_target)})
    return layers


def layer_cost(layer: dict) -> int:
    """The cost proxy of one layer: ``MACs * (M*N + P)`` with ``P`` its exact accumulator width."""
    return int(layer["macs"] * (layer["weight_bits"] * layer["input_bits"] + layer["acc_bits"]))


def estimate_luts(path: str) -> dict:
    """``{"luts", "luts_acc32"}``: estimated LUTs of the design built from a QONNX file at the
    default folding, and of the same design with 32-bit accumulators (:func:`a2qhls.estimate_cost`)."""
    from .. import estimate_cost

    try:
        cost = estimate_cost(path)["cost"]
    except A2QError as e:  # a model the build does not cover: no LUTs
        return {"luts": None, "luts_acc32": None, "luts_error": _one_line(e)}
    return {"luts": int(cost["total"]["LUT"]), "luts_acc32": int(cost["total_acc32"]["LUT"])}


def _with_cost(row: dict, out_dir: str) -> dict:
    """The row with ``cost_proxy``; a cached row from before the estimator also gets ``luts``
    (from its QONNX file; written back to its record)."""
    if row.get("status") != "ok":
        return row
    row = dict(row, cost_proxy=sum(layer_cost(r) for r in row["layers"]))
    if row.get("luts") is None and row.get("onnx") and not row.get("luts_error"):
        row.update(estimate_luts(os.path.join(out_dir, row["onnx"])))
        stored = {k: v for k, v in row.items() if k != "cost_proxy"}
        _write_atomic(os.path.join(out_dir, "runs", row["key"] + ".json"), json.dumps(stored, indent=1).encode())
    return row


def run_task(cfg: dict, checkpoint: bytes) -> dict:
    """Train, export and inspect one configuration from a float checkpoint's bytes.

    Returns ``{"row": dict, "onnx": bytes or None}``; a configuration that fails is a row
    with ``status == "failed"`` and a one-line ``error``. Runs on any worker: it reads and
    writes only a temporary directory.
    """
    from .pipeline import train_run

    row = dict(cfg, key=config_key(cfg), status="ok", error="", command=train_command(cfg))
    with tempfile.TemporaryDirectory(prefix="a2qhls-run-") as d:
        ck, path = os.path.join(d, "float.pt"), os.path.join(d, "model.onnx")
        with open(ck, "wb") as f:
            f.write(checkpoint)
        try:
            res = train_run(_train_run(cfg, ck, path))
            layers = inspect_layers(path)
            est = estimate_luts(path)
        except Exception as e:  # noqa: BLE001 - any failure of this configuration is recorded, the sweep goes on
            row.update(status="failed", error=_one_line(e))
            return {"row": row, "onnx": None}
        with open(path, "rb") as f:
            onnx_bytes = f.read()
    if res.get("task") == "superres":
        row.update({"bicubic_psnr": res["bicubic_psnr"], "float_test_psnr": res["float_psnr"],
                    "test_psnr": res["psnr"], "float_test_accuracy": None, "test_accuracy": None,
                    "train_accuracy": None})
    else:
        row.update({"float_test_accuracy": res["float_test_accuracy"], "test_accuracy": res["test_accuracy"],
                    "train_accuracy": res["train_accuracy"]})
    row.update({
        "train_seconds": res["train_seconds"],
        "layers": layers,
        "target_acc_bits": [r["target_acc_bits"] for r in layers],
        "exact_acc_bits": [r["acc_bits"] for r in layers],
        "max_exact_acc_bits": max(r["acc_bits"] for r in layers),
        "exceeds_target": any(r["exceeds_target"] for r in layers),
        "macs": sum(r["macs"] for r in layers),
        **est,
    })
    return {"row": row, "onnx": onnx_bytes}


@dataclass
class SweepResult:
    rows: list  # one per configuration of the grid, in grid order
    ran: int  # configurations run by this call
    cached: int  # configurations loaded from OUT/runs
    failed: int  # rows with status "failed"
    floats_trained: int
    seconds: float
    files: list  # results.csv, results.json and the plots written


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _csv_text(rows: list) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join("" if x is None else str(x) for x in v) if isinstance(v, list) else
                        ("" if v is None else v)) for k, v in ((c, r.get(c)) for c in CSV_COLUMNS)})
    return buf.getvalue()


class _Local:
    """Runs tasks one after another in this process."""

    def run(self, floats: dict, runs: list, ckpts: dict, on_float: Callable, on_run: Callable) -> None:
        errors = {}
        for fk, fcfg in floats.items():
            try:
                ckpts[fk] = float_task(fcfg)
                on_float(fk, ckpts[fk])
            except Exception as e:  # noqa: BLE001
                errors[fk] = _one_line(e)
                on_float(fk, None)
        for cfg in runs:
            fk = float_key(cfg)
            if fk in errors:
                on_run(cfg, None, f"float model: {errors[fk]}")
            else:
                on_run(cfg, run_task(cfg, ckpts[fk]), None)


class _Ray:
    """Runs each float model and each configuration as a Ray task."""

    def __init__(self, address: Optional[str], num_cpus: Optional[int], cpus_per_run: float,
                 gpus_per_run: Optional[float]):
        try:
            import ray
        except ImportError:
            raise A2QError(RAY_MISSING)
        import logging

        self.ray = ray
        self.owned = False
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kw)
            except Exception as e:  # noqa: BLE001 - e.g. no cluster at that address
                raise A2QError(f"cannot start Ray{' at ' + address if address else ''}: {_one_line(e)}")
            self.owned = True
        if gpus_per_run is None:
            gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.cpus, self.gpus = cpus_per_run, gpus_per_run

    def run(self, floats: dict, runs: list, ckpts: dict, on_float: Callable, on_run: Callable) -> None:
        ray = self.ray
        opts = dict(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        ftask = ray.remote(float_task).options(**opts)
        rtask = ray.remote(run_task).options(**opts)
        refs = {fk: ray.put(b) for fk, b in ckpts.items()}
        pending = {}
        for fk, fcfg in floats.items():
            refs[fk] = ftask.remote(fcfg)
            pending[refs[fk]] = ("float", fk)
        for cfg in runs:
            pending[rtask.remote(cfg, refs[float_key(cfg)])] = ("run", cfg)
        failed_floats = set()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                kind, what = pending.pop(done[0])
                try:
                    value, err = ray.get(done[0]), None
                except Exception as e:  # noqa: BLE001 - a lost task: report, do not cache
                    value, err = None, _one_line(getattr(e, "cause", None) or e)
                if kind == "float":
                    if value is None:
                        failed_floats.add(what)
                    on_float(what, value)
                else:
                    on_run(what, value, err and ("float model: " + err if float_key(what) in failed_floats
                                                 else err))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def run_sweep(grid: SweepGrid, out_dir: str, executor: str = "ray", address: Optional[str] = None,
              num_cpus: Optional[int] = None, cpus_per_run: float = 1, gpus_per_run: Optional[float] = None,
              retry_failed: bool = False, progress: bool = False, plots: bool = True) -> SweepResult:
    """Run the grid's missing configurations, then write ``results.csv``, ``results.json`` and the plots.

    ``out_dir`` is created if its parent exists. ``executor`` is ``"ray"`` (a local Ray
    instance with ``num_cpus`` CPUs, or the cluster at ``address``/``$RAY_ADDRESS``; each run
    requests ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, default 1 where the cluster has
    GPUs) or ``"serial"`` (this process). Raises :class:`A2QError` on bad options or when Ray
    is missing; failed configurations are rows, not exceptions.
    """
    from .pipeline import TrainRun, parse_arch, validate

    t0 = time.perf_counter()
    if executor not in ("ray", "serial"):
        raise A2QError(f"unknown executor '{executor}' (supported: ray, serial)")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise A2QError(f"--out: directory does not exist: {parent}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise A2QError(f"--out: {out_dir} is a file, not a directory")
    if not grid.seeds:
        raise A2QError("--seeds must be at least 1")
    for q in grid.quants:
        _check_quant(q)
    # options shared by every run are checked once, before anything runs
    validate(TrainRun(task=grid.task, upscale=grid.upscale, dataset=grid.dataset,
                      arch=parse_arch(_arch_text(grid.arch)), epochs=grid.epochs,
                      float_epochs=grid.float_epochs, batch_size=grid.batch_size, threads=grid.threads,
                      out=os.path.join(parent, "x.onnx")))
    if grid.task == "classify" and grid.dataset not in ("digits", "mnist"):
        raise A2QError(f"--dataset: unknown dataset '{grid.dataset}' (supported: digits, mnist)")
    if executor == "ray":
        try:
            import ray  # noqa: F401 - checked before anything is written
        except ImportError:
            raise A2QError(RAY_MISSING)
    cfgs = configs(grid)
    runs_dir, float_dir = os.path.join(out_dir, "runs"), os.path.join(out_dir, "float")
    os.makedirs(runs_dir, exist_ok=True)
    os.makedirs(float_dir, exist_ok=True)

    rows, todo = {}, []
    for cfg in cfgs:
        k = config_key(cfg)
        path = os.path.join(runs_dir, k + ".json")
        if os.path.exists(path):
            with open(path) as f:
                row = json.load(f)
            if not (retry_failed and row.get("status") == "failed"):
                rows[k] = row
                continue
        todo.append(cfg)
    ckpts, floats = {}, {}
    for cfg in todo:
        fk = float_key(cfg)
        if fk in ckpts or fk in floats:
            continue
        path = os.path.join(float_dir, fk + ".pt")
        if os.path.exists(path):
            with open(path, "rb") as f:
                ckpts[fk] = f.read()
        else:
            floats[fk] = float_config(cfg)

    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(floats) + len(todo), desc="sweep", unit="run", dynamic_ncols=True)

    def on_float(fk, data):
        if data is not None:
            _write_atomic(os.path.join(float_dir, fk + ".pt"), data)
        if bar is not None:
            bar.set_postfix_str(f"float seed {floats[fk]['seed']}")
            bar.update(1)

    def on_run(cfg, value, err):
        k = config_key(cfg)
        if value is None:  # lost to the executor: reported, not cached
            row = dict(cfg, key=k, status="failed", error=err, command=train_command(cfg))
        else:
            row = value["row"]
            if value["onnx"] is not None:
                onnx_path = os.path.join(runs_dir, k + ".onnx")
                _write_atomic(onnx_path, value["onnx"])
                row["onnx"] = os.path.relpath(onnx_path, out_dir)
            _write_atomic(os.path.join(runs_dir, k + ".json"), json.dumps(row, indent=1).encode())
        rows[k] = row
        if bar is not None:
            ok = row.get("status") == "ok"
            bar.set_postfix_str(f"{cfg['quant']} M{cfg['weight_bits']} N{cfg['act_bits']} P{cfg['acc_bits']} "
                                f"seed {cfg['seed']}: " + (f"{quality(row):.2f}" if ok else "failed"))
            bar.update(1)

    ran = len(todo)
    if todo:
        ex = _Local() if executor == "serial" else _Ray(address, num_cpus, cpus_per_run, gpus_per_run)
        try:
            ex.run(floats, todo, ckpts, on_float, on_run)
        finally:
            if bar is not None:
                bar.close()
            if isinstance(ex, _Ray):
                ex.close()
    ordered = [_with_cost(rows[config_key(c)], out_dir) for c in cfgs]
    files = [os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.json")]
    _write_atomic(files[0], _csv_text(ordered).encode())
    _write_atomic(files[1], json.dumps(ordered, indent=1).encode())
    if plots:
        from ..plots import sweep_plots

        files += sweep_plots(ordered, out_dir)
    return SweepResult(rows=ordered, ran=ran, cached=len(cfgs) - ran,
                       failed=sum(r["status"] == "failed" for r in ordered), floats_trained=len(floats),
                       seconds=time.perf_counter() - t0, files=files)


def _label(row: dict) -> str:
    return row["quant"] + ("" if row["init"] is None else f"/{row['init']}")


def summary_table(rows: list) -> str:
    """Mean test quality (accuracy in %, or PSNR in dB for superres; and seed spread) per quantizer
    and target P, as a text table.

    One block per (M, N); columns are ``quantizer/init``; the baseline has no target and is
    listed at P ``-``.
    """
    import statistics

    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return "no successful runs"
    out = []
    sr = any(r.get("task") == "superres" for r in ok)
    dec = 2 if sr else 1
    for m, n in sorted({(r["weight_bits"], r["act_bits"]) for r in ok}):
        sub = [r for r in ok if (r["weight_bits"], r["act_bits"]) == (m, n)]
        labels = sorted({_label(r) for r in sub}, key=lambda s: (QUANTS.index(s.split("/")[0]), s))
        ps = sorted({r["acc_bits"] for r in sub if r["acc_bits"] is not None}, reverse=True)
        if any(r["acc_bits"] is None for r in sub):
            ps.append(None)
        header = [f"M={m} N={n}  P"] + labels
        lines = [header]
        for p in ps:
            cells = ["-" if p is None else str(p)]
            for lab in labels:
                accs = [quality(r) for r in sub if _label(r) == lab and r["acc_bits"] == p]
                if not accs:
                    cells.append("")
                elif len(accs) == 1:
                    cells.append(f"{accs[0]:.{dec}f}")
                else:
                    cells.append(f"{statistics.mean(accs):.{dec}f} ±{statistics.pstdev(accs):.{dec}f}")
            lines.append(cells)
        widths = [max(len(l[i]) for l in lines) for i in range(len(header))]
        out += ["  ".join(c.rjust(w) for c, w in zip(l, widths)) for l in lines]
        fl = sorted({float_quality(r) for r in sub})
        line = f"float: {', '.join(f'{f:.{dec}f}' for f in fl)}"
        if sr:
            line += f"; bicubic: {', '.join(f'{b:.2f}' for b in sorted({r['bicubic_psnr'] for r in sub}))}"
        out.append(line + f"  ({quality_name(sub)}, mean ± std over seeds)")
        out.append("")
    return "\n".join(out).rstrip()
