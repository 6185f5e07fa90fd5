"""Shared by the benchmarks: best-of-n wall time."""
import time


def best_of(fn, n: int = 3) -> float:
    """The fastest of ``n`` calls of ``fn``, in seconds."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)
