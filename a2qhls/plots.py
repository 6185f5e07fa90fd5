"""PNG plots of sweeps and of ``a2qhls inspect`` (matplotlib, Agg; no torch).

matplotlib is imported only when a plot is drawn; figures are
:class:`matplotlib.figure.Figure` objects rendered by the Agg canvas, so no GUI
backend and no pyplot state are touched.
"""
from __future__ import annotations

import os
import statistics

from .errors import A2QError
from .escape import display

__all__ = ["sweep_plots", "plot_quality_vs_acc_bits", "plot_quality_vs_cost", "plot_layer_widths", "plot_inspect",
           "pareto_front", "MATPLOTLIB_MISSING"]

MATPLOTLIB_MISSING = "plots need matplotlib, which is not installed: pip install 'a2qhls[plot]'"
_COLORS = {"baseline": "#7f7f7f", "a2q": "#1f77b4", "a2q+": "#d62728"}
_NAMES = {"baseline": "baseline (no constraint)", "a2q": "A2Q", "a2q+": "A2Q+"}
_INIT_NAMES = {"ep": ", EP-init", "default": ", A2Q's init"}


def _txt(name, limit: int = 40) -> str:
    """A name from a model file as plot text: control characters escaped, cut to ``limit``
    characters, and ``$`` escaped so matplotlib does not read it as math."""
    s = display(name, limit=None)
    if len(s) > limit:
        s = s[:limit - 3] + "..."
    return s.replace("$", "\\$")


def _figure(w: float, h: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise A2QError(MATPLOTLIB_MISSING)
    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _ok(rows: list) -> list:
    return [r for r in rows if r.get("status") == "ok"]


def _series_label(quant: str, init, mn, many_mn: bool, many_init: bool) -> str:
    lab = _NAMES.get(quant, quant)
    if init is not None and many_init:
        lab += _INIT_NAMES.get(init, f", {init} init")
    if many_mn:
        lab += f" (M={mn[0]}, N={mn[1]})"
    return lab


def quality(row: dict) -> float:
    """A run's quality in display units: test PSNR in dB (superres) or test accuracy in %."""
    return row["test_psnr"] if row.get("task") == "superres" else 100 * row["test_accuracy"]


def float_quality(row: dict) -> float:
    """The float model's quality in the units of :func:`quality`."""
    return row["float_test_psnr"] if row.get("task") == "superres" else 100 * row["float_test_accuracy"]


def quality_name(rows: list) -> str:
    """The axis/table label of :func:`quality` for ``rows``."""
    return "test PSNR (dB)" if any(r.get("task") == "superres" for r in rows) else "test accuracy (%)"


def _title(rows: list) -> str:
    r = rows[0]
    arch = r["arch"]
    if r.get("task") == "superres":
        return f"x{r['upscale']} super-resolution, {arch}, {r['epochs']} epochs"
    net = arch if arch.startswith("cnn:") else f"MLP, hidden {arch.replace(',', '-')}"
    return f"{r['dataset']} {net}, {r['epochs']} epochs"


def plot_quality_vs_acc_bits(rows: list, path: str) -> str:
    """Test accuracy vs target accumulator width P, one line per (quantizer, init, M, N).

    Line: mean over seeds; band: min..max over seeds. The baseline (no target) is a
    horizontal band, the float model a dotted line.
    """
    ok = _ok(rows)
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    mns = sorted({(r["weight_bits"], r["act_bits"]) for r in ok})
    inits = {r["init"] for r in ok if r["init"] is not None}
    ps = sorted({r["acc_bits"] for r in ok if r["acc_bits"] is not None})
    lo_p, hi_p = (min(ps), max(ps)) if ps else (0, 1)
    styles = ["-", "--", ":", "-."]
    keys = sorted({(r["quant"], r["init"], (r["weight_bits"], r["act_bits"])) for r in ok},
                  key=lambda k: (["baseline", "a2q", "a2q+"].index(k[0]), str(k[1]), k[2]))
    for quant, init, mn in keys:
        sub = [r for r in ok if (r["quant"], r["init"], (r["weight_bits"], r["act_bits"])) == (quant, init, mn)]
        label = _series_label(quant, init, mn, len(mns) > 1, len(inits) > 1)
        color = _COLORS.get(quant)
        ls = styles[(mns.index(mn) + (1 if init == "default" else 0)) % len(styles)]
        if quant == "baseline":
            accs = [quality(r) for r in sub]
            ax.axhline(statistics.mean(accs), color=color, ls="-.", lw=1.2, label=label)
            if len(accs) > 1:
                ax.axhspan(min(accs), max(accs), color=color, alpha=0.12, lw=0)
            continue
        xs = sorted({r["acc_bits"] for r in sub})
        per = [[quality(r) for r in sub if r["acc_bits"] == p] for p in xs]
        ax.plot(xs, [statistics.mean(a) for a in per], ls, color=color, marker="o", ms=4, label=label)
        if any(len(a) > 1 for a in per):
            ax.fill_between(xs, [min(a) for a in per], [max(a) for a in per], color=color, alpha=0.18, lw=0)
    floats = sorted({float_quality(r) for r in ok})
    if floats:
        ax.axhline(statistics.mean(floats), color="black", ls=":", lw=1, label="float")
    bicubic = sorted({r["bicubic_psnr"] for r in ok if r.get("task") == "superres"})
    if bicubic:
        ax.axhline(statistics.mean(bicubic), color="gray", ls="--", lw=1, label="bicubic")
    nseeds = len({r["seed"] for r in ok})
    ax.set_xlabel("target accumulator width P (bits)")
    ax.set_ylabel(quality_name(ok))
    if ps:
        ax.set_xticks(ps)
        ax.set_xlim(lo_p - 0.3, hi_p + 0.3)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{_title(ok)}: accuracy vs accumulator width\n"
                 f"(mean over {nseeds} seed{'s' if nseeds > 1 else ''}"
                 f"{', band = min..max' if nseeds > 1 else ''})", fontsize=10)
    fig.savefig(path)
    return path


def pareto_front(points: list) -> list:
    """The points ``(cost, quality, ...)`` not dominated by another (lower or equal cost and
    higher or equal quality, one of them strictly), sorted by cost."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p[0], -p[1])):
        if p[1] > best:
            front.append(p)
            best = p[1]
    return front


def _cost(row: dict):
    return row["luts"] if row.get("luts") is not None else row["cost_proxy"]


def plot_quality_vs_cost(rows: list, path: str) -> str:
    """Test accuracy (mean over seeds) vs estimated LUTs (``luts``) per configuration (M, N, P,
    quantizer, init), with the Pareto front (cheapest configuration for each accuracy level) marked.
    Rows without an estimate use ``cost_proxy``."""
    ok = _ok(rows)
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    groups = {}
    for r in ok:
        k = (r["quant"], r["init"], r["weight_bits"], r["act_bits"], r["acc_bits"])
        groups.setdefault(k, []).append(r)
    pts = []
    for k, sub in groups.items():
        pts.append((statistics.mean(_cost(r) for r in sub), statistics.mean(quality(r) for r in sub), k))
    many_mn = len({(k[2], k[3]) for k in groups}) > 1
    many_init = len({k[1] for k in groups if k[1] is not None}) > 1
    front = pareto_front(pts)
    on_front = {id(p) for p in front}
    seen = set()
    for p in sorted(pts, key=lambda p: (["baseline", "a2q", "a2q+"].index(p[2][0]), str(p[2][1]))):
        cost, acc, k = p
        quant, init = k[0], k[1]
        label = _series_label(quant, init, None, False, many_init)
        ax.scatter([cost], [acc], color=_COLORS.get(quant), marker="s" if init == "default" else "o", s=28,
                   label=None if label in seen else label, zorder=3)
        seen.add(label)
        if id(p) not in on_front and quant != "baseline":
            continue  # only the front (and the baseline) is labelled, to stay legible
        if k[4] is not None:
            tag = f"P={k[4]}"
        else:  # the baseline has no target: its exact widths decide its cost
            tag = f"exact P={max(r['max_exact_acc_bits'] for r in groups[k])}"
        tag += f" M{k[2]}N{k[3]}" if many_mn else ""
        ax.annotate(tag, (cost, acc), textcoords="offset points", xytext=(5, -10), fontsize=7, color="#333333")
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", lw=1, alpha=0.7,
                zorder=2)
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=110, facecolors="none", edgecolors="black",
                   lw=1.2, label="Pareto front", zorder=4)
    ax.margins(x=0.12, y=0.08)
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(places=1))
    if all(r.get("luts") is not None for r in ok):
        ax.set_xlabel("estimated LUTs (a2qhls estimate, default folding, exact P per layer)")
    else:
        ax.set_xlabel("cost proxy: sum over layers of MACs * (M*N + P)")
    ax.set_ylabel(quality_name(ok))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{_title(ok)}: accuracy vs cost", fontsize=10)
    fig.savefig(path)
    return path


def plot_layer_widths(rows: list, path: str) -> str:
    """Per layer: exact accumulator width (max over seeds) vs the target P, one panel per
    (quantizer, init) with a target (A2Q, A2Q+).

    The dashed diagonal is ``exact == target``: A2Q/A2Q+ layers must lie on or below it.
    Dotted lines: the baseline's exact widths, where the sweep has a baseline.
    """
    from matplotlib.ticker import MaxNLocator

    ok = _ok(rows)
    panels = sorted({(r["quant"], r["init"]) for r in ok if r["quant"] != "baseline"},
                    key=lambda k: (["a2q", "a2q+"].index(k[0]) if k[0] in ("a2q", "a2q+") else 9, str(k[1])))
    many_init = len({k[1] for k in panels}) > 1
    n = max(len(panels), 1)
    ncols = min(n, 2)
    nrows = (n + ncols - 1) // ncols
    fig = _figure(max(5.6, 3.8 * ncols + 0.6), 3.0 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True, sharex=True).ravel()
    ps = sorted({r["acc_bits"] for r in ok if r["acc_bits"] is not None})
    names = []
    for r in ok:
        for lay in r.get("layers", []):
            if lay["name"] not in names:
                names.append(lay["name"])
    markers = "osD^v<>p*h"
    base = [r for r in ok if r["quant"] == "baseline"]
    for ax, (quant, init) in zip(axes, panels):
        sub = [r for r in ok if (r["quant"], r["init"]) == (quant, init)]
        if ps:
            ax.plot([ps[0], ps[-1]], [ps[0], ps[-1]], color="#999999", ls="--", lw=3, alpha=0.5,
                    label="exact = target", zorder=1)
            ax.set_xticks(ps)
        for i, name in enumerate(names):
            xs, ys = [], []
            for p in ps:
                ws = [lay["acc_bits"] for r in sub if r["acc_bits"] == p for lay in r["layers"] if lay["name"] == name]
                if ws:
                    xs.append(p)
                    ys.append(max(ws))
            if xs:
                k = next(lay for r in sub for lay in r["layers"] if lay["name"] == name)
                ax.plot(xs, ys, marker=markers[i % len(markers)], ms=4, lw=1, color=f"C{i}",
                        label=f"{_txt(name)} (K={k['K']}, {k['channels']} ch)")
            bw = [lay["acc_bits"] for r in base for lay in r["layers"] if lay["name"] == name]
            if bw and ps:
                ax.axhline(max(bw), color=f"C{i}", ls=":", lw=1, alpha=0.8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(_series_label(quant, init, None, False, many_init), fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("target accumulator width P (bits)")
    for ax in axes[::ncols]:
        ax.set_ylabel("exact width (bits)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{_title(ok)}: exact accumulator width per layer (max over seeds)"
                 + ("\ndotted: the baseline's exact widths" if base else ""), fontsize=9)
    fig.savefig(path)
    return path


def sweep_plots(rows: list, out_dir: str) -> list:
    """The three sweep plots as PNGs in ``out_dir``; their paths (none without a successful run)."""
    if not _ok(rows):
        return []
    return [plot_quality_vs_acc_bits(rows, os.path.join(out_dir, "quality_vs_acc_bits.png")),
            plot_quality_vs_cost(rows, os.path.join(out_dir, "quality_vs_cost.png")),
            plot_layer_widths(rows, os.path.join(out_dir, "layer_widths.png"))]


def plot_inspect(records: list, path: str, title: str = "") -> str:
    """Grouped bars per layer: the data-type, A2Q, A2Q+ and exact widths, and the target when present.

    ``records`` are ``a2qhls inspect --json`` layer records.
    """
    if not records:
        raise A2QError("--plot: the model has no layer with an accumulator")
    fig = _figure(max(6.4, 1.2 + 1.4 * len(records)), 4.0)
    ax = fig.add_subplot()
    series = [("acc_bits_datatype", "data type", "#bbbbbb"), ("acc_bits_a2q", "A2Q bound", "#1f77b4"),
              ("acc_bits_a2qplus", "A2Q+ bound", "#d62728"), ("acc_bits", "exact", "#2ca02c"),
              ("target_acc_bits", "target", "#ff7f0e")]
    series = [s for s in series if any(r.get(s[0]) is not None for r in records)]
    w = 0.8 / len(series)
    for j, (key, label, color) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * w for i, r in enumerate(records) if r.get(key) is not None]
        vs = [r[key] for r in records if r.get(key) is not None]
        bars = ax.bar(xs, vs, w, label=label, color=color)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(range(len(records)))
    ax.set_xticklabels([f"{_txt(r['name'], 24)}\n{r['op']} K={r['K']}\n{r['input_type']}"
                        + (f" x {r['weight_type']}" if r["weight_type"] != "-" else "") for r in records], fontsize=8)
    ax.set_ylabel("accumulator width (bits)")
    top = max(r[k] for r in records for k, _, _ in series if r.get(k) is not None)
    ax.set_ylim(0, top * 1.15)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(fontsize=8, ncols=len(series), loc="outside lower center", frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    over = [_txt(r["name"], 24) for r in records if r["exceeds_target"]]
    ax.set_title((_txt(title, 60) + ": " if title else "") + "accumulator widths per layer"
                 + (f" (exact > target in {', '.join(over)})" if over else ""), fontsize=10)
    fig.savefig(path)
    return path
