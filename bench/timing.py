"""Shared by the benchmarks: best-of-n wall time, and best-of-n rounds of several functions interleaved."""
import time


def best_of(fn, n: int = 3) -> float:
    """The fastest of ``n`` calls of ``fn``, in seconds."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def best_interleaved(fns, n: int) -> list:
    """``[(best wall s, best CPU s of this process)]`` per function over ``n`` rounds, the functions
    interleaved in each round (a slow spell of a shared machine then hits both sides alike): on a loaded
    machine the CPU time of a single-threaded run is the steadier figure."""
    walls, cpus = [[] for _ in fns], [[] for _ in fns]
    for _ in range(n):
        for k, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
    return [(min(w), min(c)) for w, c in zip(walls, cpus)]


def timed(fn):
    """``(fn(), wall s, CPU s of this process)`` of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0
