"""Figures of the HTML report, each returned as a ``data:image/png;base64,...`` URI (inlined, no external files).

matplotlib is imported lazily (``pip install 'rulab[report]'``) and used through its object API with the Agg
canvas, so no global backend or pyplot state is touched. Figures are small (dpi 90) and curves are downsampled to
a few hundred points, so a report of 15 runs renders in seconds. Values are fractions; axes show percent where
the report tables do.

One concern, kept in one file: the report's matplotlib figures, one function each, sharing the figure helpers at the
top.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rulab.errors import RulabError
from rulab.metrics.catalog import is_percent
from rulab.results.aggregate import Pivot, Stat

__all__ = [
    "DPI",
    "figure",
    "to_data_uri",
    "downsample",
    "roc_pr",
    "score_histograms",
    "reliability",
    "severity",
    "shift_by_method",
    "training_curves",
    "comparison_bars",
    "farconf_curves",
    "tuning_grids",
    "image_grid",
    "confidence_maps",
]

DPI = 90
_ID_COLOR = "#7f7f7f"
_X_NAMES = (
    "alphas",
    "alpha",
    "x",
    "eps",
    "epsilons",
    "epsilon",
    "steps",
    "step",
    "levels",
    "severity",
    "sigmas",
    "factors",
)


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Any, np.ndarray]:
    """A matplotlib ``Figure`` (Agg canvas) and its axes as a 2-D array ``[nrows, ncols]``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RulabError("the report's figures need matplotlib; install it with: pip install 'rulab[report]'") from None
    fig = Figure(figsize=(width, height))  # no layout engine: it doubles the drawing time; savefig crops instead
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    fig.subplots_adjust(wspace=0.32, hspace=0.5)
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25, linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def to_data_uri(fig: Any, dpi: int = DPI) -> str:
    """Render ``fig`` as PNG and return it as a base64 data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def downsample(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced points of ``n``, always keeping the first and last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _pct(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def roc_pr(scores: Mapping[str, tuple[Any, Any]], detector: str, max_points: int = 400) -> str:
    """ROC and precision-recall curves (ID = positive, higher score = more in-distribution), one line per OOD set.

    Args:
        scores: ``{ood_set: (s_id [N_id], s_ood [N_ood])}``.
        detector: named in the titles.
    """
    from rulab.metrics.ood import auroc, roc_curve

    fig, axes = figure(8.4, 3.5, 1, 2)
    roc, pr = axes[0]
    colors = _palette(len(scores))
    base = None
    for (name, (s_id, s_ood)), color in zip(scores.items(), colors):
        fpr, tpr, _ = roc_curve(s_id, s_ood)
        fpr, tpr = fpr.cpu().numpy(), tpr.cpu().numpy()
        n_id, n_ood = len(s_id), len(s_ood)
        idx = downsample(len(fpr), max_points)
        roc.plot(fpr[idx], tpr[idx], color=color, lw=1.3, label=f"{name} ({100 * auroc(s_id, s_ood):.1f})")
        tps, fps = tpr[1:] * n_id, fpr[1:] * n_ood
        prec = tps / np.maximum(tps + fps, 1e-12)
        idx = downsample(len(prec), max_points)
        pr.plot(tpr[1:][idx], prec[idx], color=color, lw=1.3, label=name)
        base = n_id / (n_id + n_ood)
    roc.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--")
    roc.set(
        xlabel="false positive rate (OOD accepted)",
        ylabel="true positive rate (ID accepted)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    roc.set_title(f"ROC, {detector} (legend: AUROC %)", fontsize=9)
    roc.legend(fontsize=7, loc="lower right", frameon=False)
    if base is not None:
        pr.axhline(base, color="#bbbbbb", lw=0.8, ls="--")
    pr.set(xlabel="recall (ID)", ylabel="precision (ID)", xlim=(0, 1), ylim=(0, 1.01))
    pr.set_title(f"precision-recall, {detector} (ID positive)", fontsize=9)
    for ax in (roc, pr):
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    return to_data_uri(fig)


def score_histograms(s_id: Any, s_ood: Mapping[str, Any], detector: str, bins: int = 40, ncols: int = 4) -> str:
    """Histograms of the detector score, ID (grey) against each OOD set, one panel per set (densities)."""
    names = list(s_ood)
    nrows = max(1, math.ceil(len(names) / ncols))
    cols = min(ncols, max(len(names), 1))
    fig, axes = figure(2.45 * cols + 0.3, 1.9 * nrows + 0.2, nrows, cols)
    sid = np.asarray(s_id, dtype=np.float64)
    colors = _palette(len(names))
    for ax, name, color in zip(axes.flat, names, colors):
        so = np.asarray(s_ood[name], dtype=np.float64)
        both = np.concatenate([sid[np.isfinite(sid)], so[np.isfinite(so)]])
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        ax.hist(sid, bins=edges, density=True, color=_ID_COLOR, alpha=0.45, label="ID")
        ax.hist(so, bins=edges, density=True, histtype="step", color=color, lw=1.4, label=name)
        ax.set_title(name, fontsize=8)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if names:
        axes.flat[0].legend(fontsize=7, frameon=False)
    fig.suptitle(
        f"{detector} score: ID (grey) vs OOD set (higher = more in-distribution)",
        fontsize=9,
        y=1.0 + 0.25 / fig.get_figheight(),
    )
    return to_data_uri(fig)


def reliability(logits: Any, labels: Any, temperature: float | None = None, n_bins: int = 15) -> str:
    """Reliability diagrams (15 uniform bins) before and, with ``temperature``, after temperature scaling.

    Args:
        logits: ``[N, K]`` ID test logits.
        labels: ``[N]``.
        temperature: fitted on held-out ID data (``ts/temperature`` in the evaluation arrays).
    """
    import torch

    from rulab.metrics.calibration import calibration_error, reliability_bins

    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    panels = [("before temperature scaling", z)]
    if temperature is not None and math.isfinite(temperature) and temperature > 0:
        panels.append((f"after temperature scaling (T = {temperature:.2f})", z / temperature))
    fig, axes = figure(3.6 * len(panels) + 0.3, 3.4, 1, len(panels))
    for ax, (title, zz) in zip(axes[0], panels):
        conf, pred = zz.softmax(1).max(1)
        correct = (pred == y).double()
        b = reliability_bins(conf, correct, "uniform", n_bins=n_bins)
        ece = float(calibration_error(conf, correct, norm="l1", binning="uniform", n_bins=n_bins))
        lo, hi = b.lower.numpy(), b.upper.numpy()
        acc, mc, cnt = b.accuracy.numpy(), b.mean_conf.numpy(), b.count.numpy()
        ok = cnt > 0
        width = (hi - lo)[ok]
        ax.bar(lo[ok], acc[ok], width=width, align="edge", color="#4c72b0", edgecolor="white", lw=0.5, label="accuracy")
        ax.bar(
            lo[ok],
            (mc - acc)[ok],
            bottom=acc[ok],
            width=width,
            align="edge",
            color="#dd8452",
            alpha=0.45,
            edgecolor="none",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], color="#444444", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.set_title(f"{title}\nECE {100 * ece:.2f}%", fontsize=8.5)
    axes[0][0].legend(fontsize=7, loc="upper left", frameon=False)
    return to_data_uri(fig)


def _is_level_grid(severities: Sequence[str]) -> bool:
    try:
        vals = [float(s) for s in severities]
    except ValueError:
        return False
    return all(v.is_integer() and 1 <= v <= 5 for v in vals)


def severity(
    stats: Mapping[str, Mapping[str, Mapping[str, Stat]]],
    clean: Mapping[str, Stat] | None = None,
    metrics: Sequence[str] = ("acc", "ece"),
) -> str:
    """Accuracy and calibration against shift severity: one line per corruption, mean ± std over seeds.

    Corruptions with severities 1–5 share a panel; each other grid (W2's brightness factor, blur sigma) has its
    own panel with its own x axis. The clean (unshifted) value is a dashed line.

    Args:
        stats: ``{shift: {severity: {metric: Stat}}}``.
        clean: ``{metric: Stat}`` on the unshifted test set.
    """
    level_shifts = [s for s in stats if _is_level_grid(list(stats[s]))]
    groups: list[tuple[str, list[str]]] = []
    if level_shifts:
        groups.append(("severity", level_shifts))
    groups += [(s, [s]) for s in stats if s not in level_shifts]
    metrics = [m for m in metrics if any(m in cell for s in stats.values() for cell in s.values())]
    ncols = len(groups)
    fig, axes = figure(
        min(3.3 * ncols + (1.6 if level_shifts else 0.3), 13.0), 2.6 * len(metrics) + 0.2, len(metrics), ncols
    )
    colors = dict(zip(level_shifts, _palette(len(level_shifts))))
    for j, (xlabel, shifts) in enumerate(groups):
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            f = _pct(metric)
            for s in shifts:
                cells = sorted(
                    ((float(sev), st[metric]) for sev, st in stats[s].items() if metric in st), key=lambda t: t[0]
                )
                if not cells:
                    continue
                x = [c[0] for c in cells]
                y = np.array([c[1].mean for c in cells]) * f
                e = np.array([0.0 if math.isnan(c[1].std) else c[1].std for c in cells]) * f
                color = colors.get(s, "#333333")  # a grid panel has one corruption: no legend colour needed
                ax.errorbar(x, y, yerr=e, color=color, lw=1.2, marker="o", ms=2.5, capsize=2, label=s)
            if clean and metric in clean and not math.isnan(clean[metric].mean):
                ax.axhline(clean[metric].mean * f, color="#444444", lw=0.9, ls="--", label="clean")
            ax.set_ylabel(f"{metric}{' (%)' if f == 100.0 else ''}", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel(xlabel.replace("_", " "), fontsize=8)
            if xlabel == "severity":
                ax.set_xticks([1, 2, 3, 4, 5])
            if i == 0:
                ax.set_title(
                    "corruptions, severity 1-5" if xlabel == "severity" else xlabel.replace("_", " "), fontsize=9
                )
    if level_shifts:
        fig.legend(
            *axes[0][0].get_legend_handles_labels(),
            fontsize=6.5,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(0.91, 0.89),
        )
    return to_data_uri(fig)


def shift_by_method(stats: Mapping[str, Mapping[float, Stat]], metric: str = "acc") -> str:
    """Mean accuracy over the severity-1–5 corruptions against severity (0 = clean), one line per method.

    Args:
        stats: ``{method: {severity: Stat}}``.
    """
    fig, axes = figure(5.0, 3.2)
    ax = axes[0][0]
    f = _pct(metric)
    for (name, cells), color in zip(stats.items(), _palette(len(stats))):
        xs = sorted(cells)
        y = np.array([cells[x].mean for x in xs]) * f
        e = np.array([0.0 if math.isnan(cells[x].std) else cells[x].std for x in xs]) * f
        ax.errorbar(xs, y, yerr=e, color=color, lw=1.4, marker="o", ms=3, capsize=2, label=name)
    ax.set(xlabel="severity (0 = clean test set)", ylabel=f"{metric}{' (%)' if f == 100.0 else ''}")
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"mean {metric} over the severity-graded corruptions", fontsize=9)
    return to_data_uri(fig)


def training_curves(
    points: Mapping[str, Mapping[str, Mapping[int, list[float]]]],
    metrics: Sequence[str] = ("loss", "acc", "nll", "ece"),
) -> str | None:
    """Training and validation curves: thin lines per seed, a thick line for the mean.

    Args:
        points: ``{metric: {split: {epoch: [value per seed]}}}`` (from the ``curves`` table).
    """
    metrics = [m for m in metrics if m in points]
    if not metrics:
        return None
    fig, axes = figure(2.9 * len(metrics) + 0.3, 2.6, 1, len(metrics))
    colors = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
    for ax, metric in zip(axes[0], metrics):
        f = _pct(metric)
        for split, by_epoch in points[metric].items():
            epochs = sorted(by_epoch)
            per_seed = max(len(v) for v in by_epoch.values())
            color = colors.get(split, "#8172b3")
            for k in range(per_seed):
                xs = [e for e in epochs if len(by_epoch[e]) > k]
                if len(xs) > 1 and per_seed > 1:
                    ax.plot(xs, [by_epoch[e][k] * f for e in xs], color=color, lw=0.6, alpha=0.35)
            ax.plot(
                epochs,
                [float(np.nanmean(by_epoch[e])) * f for e in epochs],
                color=color,
                lw=1.8,
                marker="o" if len(epochs) < 12 else None,
                ms=3,
                label=split,
            )
        ax.set_title(f"{metric}{' (%)' if f == 100.0 else ''}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        all_epochs = sorted({e for by_epoch in points[metric].values() for e in by_epoch})
        if len(all_epochs) == 1:
            ax.set_xlim(all_epochs[0] - 1, all_epochs[0] + 1)
        ax.legend(fontsize=7, frameon=False)
    return to_data_uri(fig)


def comparison_bars(p: Pivot, ncols: int = 4) -> str | None:
    """One small dot plot per summary measure: a point per method at its mean, error bar = std over seeds.

    Points rather than bars, so the axis need not start at zero to show differences of a few tenths of a percent.
    """
    if not p.columns or not p.rows:
        return None
    n = len(p.columns)
    cols = min(ncols, n)
    nrows = math.ceil(n / cols)
    fig, axes = figure(2.9 * cols + 0.6, 0.32 * len(p.rows) * nrows + 1.0 * nrows + 0.3, nrows, cols, sharey=True)
    colors = _palette(len(p.rows))
    y = np.arange(len(p.rows))[::-1]
    for ax, (label, metric) in zip(axes.flat, p.columns):
        f = _pct(metric)
        for yi, row, color in zip(y, p.rows, colors):
            st = p.cells.get((row, label))
            if st is None or st.n == 0 or not math.isfinite(st.mean):
                continue
            err = 0.0 if math.isnan(st.std) else st.std * f
            ax.errorbar([st.mean * f], [yi], xerr=[err], fmt="o", color=color, ms=5, capsize=3, lw=1.2)
        ax.set_yticks(y)
        ax.set_yticklabels(p.rows, fontsize=7.5)
        ax.set_ylim(-0.6, len(p.rows) - 0.4)
        ax.margins(x=0.15)
        ax.set_title(f"{label}{' (%)' if f == 100.0 else ''}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return to_data_uri(fig)


def farconf_curves(arrays: Mapping[str, Any], max_points: int = 400, ncols: int = 2) -> str | None:
    """Far-away / worst-case confidence arrays (``farconf/<group>/<name>``) as a grid of legible panels.

    Panels, in order, ``ncols`` per row (each 5 × 3.5 inches, about 390 × 260 pixels once the margins are cropped at
    the report's 90 dpi; the figure spans the page, so a reader sees every panel at that size):

    * a line panel per group with an x array (``alphas``, ``eps``, ``steps``, ...): every other array of the same
      length (``[T]``, or ``[T, M]`` averaged over M) against it, log x when it spans two decades (α-scaling: mean
      confidence against α, with the 99.9% threshold dashed);
    * PGD progress: the ``pgd_conf`` curve of every attacked group (mean keep-best confidence after each step);
    * confidence histograms of the ``scores`` arrays: the noise as generated beside the ID test set, then everything
      after an attack (adversarial noise, adversarial samples) beside the ID test set;
    * any other 1-D array of a group (at least 10 values) as a histogram panel of its own.

    Scalars, boolean masks and arrays that fit none of these are skipped. Returns ``None`` when nothing can be drawn.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        parts = key.split("/")
        if len(parts) < 3 or parts[0] != "farconf":
            continue
        if hasattr(value, "dtype") and str(value.dtype).endswith("bool"):
            continue
        v = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
        groups.setdefault(parts[1], {})["/".join(parts[2:])] = v
    panels: list[tuple[str, Any]] = []
    pgd: dict[str, np.ndarray] = {}
    start: dict[str, np.ndarray] = {}
    attacked: dict[str, np.ndarray] = {}
    for g, arrs in groups.items():
        xname = next((n for n in _X_NAMES if n in arrs and arrs[n].ndim == 1 and arrs[n].size > 1), None)
        if xname is not None:
            x = arrs[xname]
            lines = {
                n: (a if a.ndim == 1 else a.reshape(a.shape[0], -1).mean(axis=1))
                for n, a in arrs.items()
                if n != xname and a.ndim in (1, 2) and a.shape[0] == x.size
            }
            if lines:
                panels.append((g.replace("_", " "), ("lines", xname, x, lines, g == "alpha")))
                continue
        if "pgd_conf" in arrs and arrs["pgd_conf"].ndim == 1 and arrs["pgd_conf"].size > 1:
            pgd[g] = arrs["pgd_conf"]
        if "scores" in arrs and arrs["scores"].ndim == 1 and arrs["scores"].size:
            (attacked if g.startswith("adv_") else start)[g] = arrs["scores"]
        hists = {
            n: a for n, a in arrs.items() if n not in ("scores", "pgd_conf", "trials") and a.ndim == 1 and a.size >= 10
        }
        if hists:
            panels.append((g.replace("_", " "), ("hist", hists, None)))
    if pgd:
        panels.append(("PGD on noise: mean confidence per step (keep-best)", ("pgd", pgd)))
    ref = start.pop("id", None)
    for title, sets in (
        ("confidence (MSP): ID test set vs noise", start),
        ("confidence (MSP) after the attack", attacked),
    ):
        if sets:
            panels.append((title, ("hist", sets, ref)))
    if not panels:
        return None
    cols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = figure(5.0 * cols + 0.3, 3.5 * nrows + 0.2, nrows, cols)
    fig.subplots_adjust(wspace=0.28, hspace=0.55)
    for ax, (title, spec) in zip(axes.flat, panels):
        if spec[0] == "lines":
            _, xname, x, lines, alpha = spec
            order = np.argsort(x)
            idx = order[downsample(len(order), max_points)]
            for (n, y), color in zip(lines.items(), _palette(len(lines))):
                ax.plot(x[idx], y[idx], lw=1.4, color=color, label=n.replace("_", " "))
            if np.all(x > 0) and x.max() / x.min() > 100:
                ax.set_xscale("log")
            if alpha:
                ax.axhline(0.999, color="#999999", lw=0.8, ls="--", label="99.9%")
                ax.set_ylabel("mean confidence", fontsize=8)
                title = "alpha scaling: mean confidence on α·u"
            ax.set_xlabel("α" if xname in ("alphas", "alpha") else xname, fontsize=8)
        elif spec[0] == "pgd":
            for (n, y), color in zip(spec[1].items(), _palette(len(spec[1]))):
                steps = np.arange(len(y)) - 1  # index 0: the noise itself, 1: the random start, 1 + k: after step k
                ax.plot(steps, y, lw=1.4, color=color, label=n.replace("_", " "))
            ax.set_xlabel("PGD step (−1: the noise, 0: random start)", fontsize=8)
            ax.set_ylabel("mean confidence", fontsize=8)
        else:
            hists, reference = spec[1], spec[2]
            values = [a[np.isfinite(a)] for a in hists.values()] + (
                [reference[np.isfinite(reference)]] if reference is not None else []
            )
            both = np.concatenate(values) if values else np.zeros(0)
            edges = np.linspace(float(both.min()), float(both.max()) + 1e-9, 31) if both.size else 30
            if reference is not None:
                ax.hist(reference, bins=edges, density=True, color=_ID_COLOR, alpha=0.45, label="ID test set")
            for (n, a), color in zip(hists.items(), _palette(len(hists))):
                ax.hist(a, bins=edges, density=True, histtype="step", lw=1.4, color=color, label=n.replace("_", " "))
            ax.set_xlabel("value" if reference is None else "max. softmax probability", fontsize=8)
            ax.set_yticks([])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return to_data_uri(fig)


def tuning_grids(grids: Mapping[str, Mapping[str, Any]], detector: str = "odin") -> str | None:
    """How ODIN's temperature T and step ε move detection (Liang et al. 2018, Figures 3-4), from the tuning grid.

    A 2 × 2 figure: FPR at 95% TPR (top) and AUROC (bottom) against T (left, log axis, at each source's chosen ε)
    and against ε (right, at each source's chosen T); one line per tuning source (an OOD set under ``odin-paper``,
    or the validation-OOD sets), its chosen point circled; one legend beside the panels.

    Args:
        grids: ``{source: {"t": [nT], "eps": [nE], "fpr95_id": [nT, nE], "auroc": [nT, nE]}}`` (the arrays
            ``tuning/<detector>/<source>/...`` of an evaluation).
        detector: named in the titles.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    usable = {k: g for k, g in grids.items() if all(n in g for n in ("t", "eps", "fpr95_id", "auroc"))}
    if not usable:
        return None
    fig, axes = figure(8.6, 5.8, 2, 2)
    fig.subplots_adjust(wspace=0.3, hspace=0.42, right=0.78)
    colors = _palette(len(usable))
    handles = []
    for (src, g), color in zip(usable.items(), colors):
        t = np.asarray(g["t"], dtype=np.float64).reshape(-1)
        eps = np.asarray(g["eps"], dtype=np.float64).reshape(-1)
        fpr = np.asarray(g["fpr95_id"], dtype=np.float64).reshape(len(t), len(eps))
        au = np.asarray(g["auroc"], dtype=np.float64).reshape(len(t), len(eps))
        ti, ei = np.unravel_index(int(np.argmin(fpr)), fpr.shape)  # the tuning's choice: the first grid minimum
        for row, values in enumerate((fpr, au)):
            ax_t, ax_e = axes[row]
            (line,) = ax_t.plot(t, 100 * values[:, ei], color=color, lw=1.4, marker="o", ms=2.5)
            ax_t.plot([t[ti]], [100 * values[ti, ei]], "o", mfc="none", mec=color, ms=8, mew=1.2)
            ax_e.plot(eps, 100 * values[ti, :], color=color, lw=1.4, marker="o", ms=2.5)
            ax_e.plot([eps[ei]], [100 * values[ti, ei]], "o", mfc="none", mec=color, ms=8, mew=1.2)
            if row == 0:
                line.set_label(f"{src}: T = {t[ti]:g}, ε = {eps[ei]:g}")
                handles.append(line)
    first_t = np.asarray(next(iter(usable.values()))["t"], dtype=np.float64)
    for row, name in enumerate(("FPR at 95% TPR (%)", "AUROC (%)")):
        ax_t, ax_e = axes[row]
        if np.all(first_t > 0) and first_t.max() / first_t.min() > 10:
            ax_t.set_xscale("log")
        ax_t.set_ylabel(name, fontsize=8)
        ax_e.xaxis.set_major_locator(MaxNLocator(5))
        ax_e.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axes[1][0].set_xlabel("temperature T (at the chosen ε)", fontsize=8)
    axes[1][1].set_xlabel("step ε in [0, 1] pixels (at the chosen T)", fontsize=8)
    axes[0][0].set_title(f"{detector}: detection against T", fontsize=9)
    axes[0][1].set_title(f"{detector}: detection against ε", fontsize=9)
    fig.legend(
        handles=handles,
        loc="center left",
        bbox_to_anchor=(0.8, 0.5),
        fontsize=7,
        frameon=False,
        title="tuned on (choice circled)",
        title_fontsize=7.5,
    )
    return to_data_uri(fig)


def image_grid(images: Mapping[str, tuple[Any, Any]], ncols: int = 8) -> str | None:
    """The most confident images of some sets, one row per set (W3's figures of the noise and adversarial noise
    the models are most confident on): each image titled with its confidence in percent.

    Args:
        images: ``{set: (x [k, C, H, W] in [0, 1], conf [k])}``, highest confidence first.
        ncols: images per row (the first ``ncols`` of each set).
    """
    rows = [
        (name, np.asarray(x, dtype=np.float64), np.asarray(c, dtype=np.float64))
        for name, (x, c) in images.items()
        if len(x)
    ]
    if not rows:
        return None
    cols = min(ncols, max(len(x) for _, x, _ in rows))
    fig, axes = figure(1.15 * cols + 1.2, 1.35 * len(rows) + 0.2, len(rows), cols)
    fig.subplots_adjust(wspace=0.08, hspace=0.45)
    for r, (name, x, conf) in enumerate(rows):
        for j in range(cols):
            ax = axes[r][j]
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ("left", "bottom"):
                ax.spines[side].set_visible(False)
            if j >= len(x):
                ax.set_visible(False)
                continue
            img = np.clip(x[j], 0.0, 1.0)
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(np.transpose(img[:3], (1, 2, 0)), interpolation="nearest")
            ax.set_title(f"{100 * conf[j]:.1f}%", fontsize=7)
        axes[r][0].set_ylabel(name.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center", labelpad=8)
        axes[r][0].yaxis.label.set_visible(True)
    return to_data_uri(fig)


def confidence_maps(
    maps: Mapping[str, Sequence[tuple[tuple[float, float], Any, Any]]], points: tuple[Any, Any] | None = None
) -> str | None:
    """Two-moons confidence maps (W3's ``toy2d.ipynb``): one row per model, one panel per region ``[lo, hi]²``,
    filled contours of the maximum softmax probability at 50-100%.

    Args:
        maps: ``{model: [((lo, hi), axis [R], conf [R, R]), ...]}``.
        points: the training points ``(x [N, 2], y [N])`` drawn on every panel.
    """
    if not maps:
        return None
    names = list(maps)
    ncols = max(len(v) for v in maps.values())
    fig, axes = figure(2.7 * ncols + 0.9, 2.55 * len(names) + 0.2, len(names), ncols)
    levels = [0.5 + 0.05 * i for i in range(11)]
    cs = None
    for r, name in enumerate(names):
        for j, (region, axis, conf) in enumerate(maps[name]):
            ax = axes[r][j]
            ax.grid(False)
            a = np.asarray(axis, dtype=np.float64)
            c = np.clip(np.asarray(conf, dtype=np.float64), 0.5, 1.0)
            cs = ax.contourf(a, a, c, levels=levels, cmap="viridis", vmin=0.5, vmax=1.0)
            if points is not None:
                px, py = np.asarray(points[0]), np.asarray(points[1])
                ax.scatter(px[:, 0], px[:, 1], c=py, s=0.8, cmap="coolwarm", linewidths=0)
            ax.set_xlim(*region)
            ax.set_ylim(*region)
            ax.set_aspect("equal")
            ax.set_title(
                f"{name}: [{region[0]:g}, {region[1]:g}]², mean {100 * float(np.mean(np.asarray(conf))):.1f}%",
                fontsize=8,
            )
    if cs is not None:
        fig.colorbar(cs, ax=list(axes.flat), fraction=0.02, pad=0.02, label="max. confidence")
    return to_data_uri(fig)
