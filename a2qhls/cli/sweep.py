"""``a2qhls sweep``: ``a2qhls train`` over a grid of quantizers and bit widths, on Ray, with plots."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import A2QError
from .train import HelpFormatter, arch_arg, task_default


def add_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from ..frontend.sweep import QUANTS
    except ImportError as e:
        raise A2QError(f"a2qhls sweep needs the front-end extras (torch): pip install 'a2qhls[torch]' ({e})")
    p.formatter_class = HelpFormatter
    p.description = (
        "Train, export and inspect every configuration of a grid, each exactly as 'a2qhls train' with the same "
        "options would (from a float checkpoint trained once per seed). Writes OUT/results.csv, OUT/results.json "
        "(one row per run: configuration, accuracies, exact per-layer accumulator widths vs target, cost) and PNG "
        "plots; runs are cached in OUT/runs by configuration, so a repeated or extended sweep runs only what is "
        "missing. Lists take values and ranges: 9:16 (inclusive), 9:16:2, 9,10,12.")
    g = p.add_argument_group("grid")
    g.add_argument("--quant", default="a2q,a2q+",
                   help=f"quantizers: {', '.join(QUANTS)} (comma separated; the float model is trained once per seed "
                        "and reported with every run)")
    g.add_argument("--acc-bits", default="9:12", help="target accumulator widths P (not used by baseline)")
    g.add_argument("--weight-bits", default="4", help="weight bit widths M")
    g.add_argument("--act-bits", default="4", help="activation bit widths N")
    g.add_argument("--init", default="ep", help="A2Q/A2Q+ initializations: ep (Euclidean projection), default (A2Q's)")
    g.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1); one float checkpoint per seed")
    t = p.add_argument_group("training (as in a2qhls train)")
    t.add_argument("--task", choices=("classify", "superres"), default="classify",
                   help="classify (--dataset, quality = accuracy) or superres (ESPCN x--upscale on bundled "
                        "photographs, quality = PSNR in dB), as in a2qhls train")
    t.add_argument("--upscale", type=int, default=2, help="super-resolution factor (--task superres)")
    t.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    t.add_argument("--arch", type=arch_arg, default=None,
                   help="MLP hidden sizes (e.g. 64,64) or cnn:SPEC; with --task superres espcn or espcn:A,B,C "
                        + task_default("arch"))
    t.add_argument("--constrain", choices=("all", "inner"), default=None, help=task_default("constrain"))
    t.add_argument("--epochs", type=int, default=None, help=task_default("epochs"))
    t.add_argument("--float-epochs", type=int, default=None,
                   help="when unset: --epochs if --epochs is given, else the task's "
                        + task_default("float_epochs").replace("None for classify", "--epochs for classify"))
    t.add_argument("--lr", type=float, default=None, help=task_default("lr"))
    t.add_argument("--batch-size", type=int, default=None, help=task_default("batch_size"))
    t.add_argument("--penalty", type=float, default=1e-3)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    r = p.add_argument_group("execution")
    r.add_argument("--out", default="sweep_out", help="directory of results, plots and the run cache")
    r.add_argument("--address", default=None,
                   help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray instance); "
                        "a2qhls with its torch extra must be installed on the cluster's nodes")
    r.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    r.add_argument("--cpus-per-run", type=float, default=1, help="CPUs each run requests from Ray")
    r.add_argument("--gpus-per-run", type=float, default=None,
                   help="GPUs each run requests (default: 1 where the Ray cluster has GPUs, else 0)")
    r.add_argument("--serial", action="store_true", help="run the grid in this process, one run after another (no Ray)")
    r.add_argument("--retry-failed", action="store_true", help="run configurations cached as failed again")
    r.add_argument("--no-plots", action="store_true", help="write results.csv and results.json only")
    r.add_argument("--json", action="store_true", help="print one JSON summary object (no progress bar, no table)")


def run(args) -> int:
    from ..frontend.sweep import INITS, SweepGrid, parse_choices, parse_int_list, parse_quants, run_sweep, summary_table

    if args.seeds < 1:
        raise A2QError(f"--seeds must be at least 1, got {args.seeds}")
    if args.cpus_per_run <= 0:
        raise A2QError(f"--cpus-per-run must be positive, got {args.cpus_per_run}")
    from ..frontend.pipeline import TrainRun

    # the task's defaults for what was not given, exactly as `a2qhls train` resolves them
    run = TrainRun(task=args.task, arch=args.arch, constrain=args.constrain, epochs=args.epochs,
                   float_epochs=args.float_epochs, lr=args.lr, batch_size=args.batch_size)
    arch = run.arch
    grid = SweepGrid(
        task=args.task, upscale=args.upscale, dataset=args.dataset, arch=arch, quants=parse_quants(args.quant),
        acc_bits=parse_int_list(args.acc_bits, "--acc-bits"), weight_bits=parse_int_list(args.weight_bits, "--weight-bits"),
        act_bits=parse_int_list(args.act_bits, "--act-bits"), inits=parse_choices(args.init, INITS, "--init"),
        seeds=list(range(args.seeds)), constrain=run.constrain, epochs=run.epochs, float_epochs=run.float_epochs,
        lr=run.lr, batch_size=run.batch_size, penalty=args.penalty, device=args.device, threads=args.threads)
    res = run_sweep(grid, args.out, executor="serial" if args.serial else "ray", address=args.address,
                    num_cpus=args.num_cpus, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                    retry_failed=args.retry_failed, progress=(not args.json) and sys.stderr.isatty(),
                    plots=not args.no_plots)
    failed = [r for r in res.rows if r["status"] == "failed"]
    if args.json:
        print(json.dumps({"runs": len(res.rows), "ran": res.ran, "cached": res.cached, "failed": res.failed,
                          "floats_trained": res.floats_trained, "seconds": round(res.seconds, 3), "files": res.files,
                          "errors": {r["key"]: r["error"] for r in failed}}))
    else:
        print(summary_table(res.rows))
        for r in failed:
            print(f"failed: {r['quant']} M={r['weight_bits']} N={r['act_bits']} P={r['acc_bits']} seed {r['seed']}: "
                  f"{r['error']}")
        print(f"{len(res.rows)} runs: {res.ran} run now, {res.cached} cached, {res.failed} failed "
              f"({res.seconds:.1f} s); wrote " + ", ".join(res.files))
    return 1 if failed else 0
