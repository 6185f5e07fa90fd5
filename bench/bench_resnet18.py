"""Benchmark (not a test): how a2qhls scales with the model (issue 12).

    .venv/bin/python bench/bench_resnet18.py [--widths 256,512,1024,2048,4096] [--resnets 2,4,8,18] [--n-csim 4]

For each model, through the CLI in subprocesses (so the wall times are what a user sees):
``a2qhls inspect`` and ``a2qhls build`` wall time and peak memory (ru_maxrss of the child), the
generated C++ + data size (firmware/ and tb/), the g++ compile of the C simulation (the calls of
``codegen.csim_commands``, one compiler per core, as ``a2qhls cosim`` runs them): wall time and
the peak memory of the largest compiler process, and the C simulation's time per image.
MLPs are random QONNX graphs (tests/qonnx_graphs.py: 8-bit input, 4-bit weights and
activations) of two hidden layers of the given width; ResNets are Brevitas's quant_resnet18
(A2Q+, P=16, 4-bit) cut to N weight layers by bench/paper_nets.py's ``export_resnet(path, layers=N)``
(stem + 2 per basic block + linear; 18 is the whole net), built with ``--input-quant uint8:0.00392``.
Times are best of --repeat. For the models named by --cosim (default: resnet18), also the whole
``a2qhls cosim --random 20 --adversarial`` (compile, C simulation, numpy model, QONNX reference): wall,
CPU (children included) and peak memory (issue 12 goal: <= 5 min).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
A2Q = str(Path(sys.executable).parent / "a2qhls")


def _child(cmd: list) -> tuple:
    """Run ``cmd`` under /usr/bin/time; returns (wall s, peak RSS MB of the command itself, CPU s).
    (Not ru_maxrss from wait4: a forked child inherits this process's RSS before exec.)"""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name, *cmd], stdout=subprocess.DEVNULL, stderr=err)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} failed: {err.read()[-400:]}")
        mem, user, sys_ = rss.read().split()[-3:]
        return dt, int(mem) / 1024, float(user) + float(sys_)


def _best(cmd: list, n: int) -> tuple:
    """(best wall s, peak MB, best CPU s): on a loaded machine the CPU time is the steadier figure."""
    runs = [_child(cmd) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs), min(r[2] for r in runs)


def _size_mb(prj: Path) -> float:
    return sum(p.stat().st_size for d in ("firmware", "tb") for p in (prj / d).rglob("*") if p.is_file()) / 1e6


def _compile(prj: Path, obj: Path) -> tuple:
    """The C simulation build (codegen.csim_commands), one compiler per core: (wall s, max MB per
    process, binary, total compiler CPU s: the fairer figure on a loaded machine)."""
    from a2qhls import codegen
    from a2qhls.headers import find_cxx, find_headers

    *compiles, link = codegen.csim_commands(prj, include=find_headers(), cxx=find_cxx(), obj=obj, binary=obj / "csim")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = list(pool.map(_child, compiles))
    runs.append(_child(link))
    return time.perf_counter() - t0, max(r[1] for r in runs), obj / "csim", sum(r[2] for r in runs)


def _csim_per_image(prj: Path, binary: Path, n: int, work: Path) -> float:
    from a2qhls.cosimulation import run_csim

    ints = np.loadtxt(prj / "tb_data" / "inputs.txt", dtype=np.int64, ndmin=2)
    ints = np.resize(ints, (n, ints.shape[1]))
    t0 = time.perf_counter()
    run_csim(binary, ints, work)
    return (time.perf_counter() - t0) / n


def measure(name: str, onnx_path: str, params: int, macs: int, extra: list, args, work: Path) -> dict:
    t_insp, m_insp, c_insp = _best([A2Q, "inspect", onnx_path, *extra], args.repeat)
    prj = work / f"prj_{name}"
    t_build, m_build, c_build = _best([A2Q, "build", onnx_path, "--out", str(prj), "--force", *extra], args.repeat)
    size = _size_mb(prj)
    best = None
    for _ in range(args.repeat):
        obj = Path(tempfile.mkdtemp(dir=work))
        r = _compile(prj, obj)
        best = r if best is None or r[0] < best[0] else best
    t_cc, m_cc, binary, cpu_cc = best
    t_img = _csim_per_image(prj, binary, args.n_csim, work)
    r = dict(model=name, params=params, macs=macs, inspect_s=t_insp, inspect_mb=m_insp, build_s=t_build, build_mb=m_build,
             inspect_cpu=c_insp, build_cpu=c_build,
             cpp_mb=size, gxx_s=t_cc, gxx_cpu=cpu_cc, gxx_mb=m_cc, csim_s=t_img)
    if name in args.cosim:  # the whole `a2qhls cosim --random N --adversarial` as a user runs it (compile included)
        load = os.getloadavg()[0]
        r["cosim_s"], r["cosim_mb"], r["cosim_cpu"] = _child([A2Q, "cosim", str(prj), "--random", str(args.random), "--adversarial"])
        print(f"{name:10s} cosim --random {args.random} --adversarial: {r['cosim_s']:6.1f} s wall (goal <= 300 s), CPU {r['cosim_cpu']:6.1f} s "
              f"(compiles included), {r['cosim_mb']:5.0f} MB peak, load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    return r


def mlp_models(widths, work: Path):
    import qonnx_graphs

    for w in widths:
        sizes = (w, w, w, 10)
        model, _, _ = qonnx_graphs.mlp(sizes, seed=0, batch=1)
        path = qonnx_graphs.save(model, work / f"mlp{w}.onnx")
        n = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        yield f"mlp{w}", path, n, n, []


def resnet_models(depths, work: Path):
    try:
        from paper_nets import export_resnet  # bench/paper_nets.py (Brevitas quant_resnet18)
    except ImportError:
        print("(ResNet rows skipped: no bench/paper_nets.py with export_resnet in this checkout)")
        return
    for d in depths:
        path, params, macs = export_resnet(work / f"resnet{d}.onnx", layers=d)
        yield f"resnet{d}", str(path), params, macs, ["--input-quant", "uint8:0.00392"]  # its input is a float image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="256,512,1024,2048,4096")
    ap.add_argument("--resnets", default="2,4,8,18")
    ap.add_argument("--n-csim", type=int, default=4, help="images for the C simulation time per image")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cosim", default="resnet18", help="models (comma-separated) also run through `a2qhls cosim --random N --adversarial`")
    ap.add_argument("--random", type=int, default=20, help="random samples of that cosim")
    args = ap.parse_args()
    args.cosim = [c for c in args.cosim.split(",") if c]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory(prefix="a2q-bench-") as d:
        work = Path(d)
        models = list(mlp_models([int(w) for w in args.widths.split(",") if w], work))
        models += list(resnet_models([int(x) for x in args.resnets.split(",") if x], work))
        for name, path, params, macs, extra in models:
            r = measure(name, path, params, macs, extra, args, work)
            rows.append(r)
            print(
                f"{name:10s} params {params/1e6:7.2f}M MACs {macs/1e6:8.2f}M | inspect {r['inspect_s']:5.2f} s (CPU {r['inspect_cpu']:5.2f} s) "
                f"{r['inspect_mb']:5.0f} MB | build {r['build_s']:6.2f} s (CPU {r['build_cpu']:6.2f} s) {r['build_mb']:5.0f} MB | C++ {r['cpp_mb']:6.2f} MB | g++ {r['gxx_s']:6.2f} s "
                f"(CPU {r['gxx_cpu']:6.2f} s) "
                f"{r['gxx_mb']:5.0f} MB/proc | csim {r['csim_s']*1e3:8.1f} ms/image",
                flush=True,
            )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        k = b["params"] / a["params"]
        print(f"growth {a['model']} -> {b['model']}: params x{k:.1f}, build x{b['build_s']/a['build_s']:.1f}, "
              f"C++ x{b['cpp_mb']/a['cpp_mb']:.1f}, g++ x{b['gxx_s']/a['gxx_s']:.1f}, build memory x{b['build_mb']/a['build_mb']:.1f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
