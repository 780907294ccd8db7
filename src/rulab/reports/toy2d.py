"""The two-moons toy in the HTML reports (Hein et al. 2019, Section 3.7; W3's ``toy2d.ipynb``): the confidence maps
of plain training, CEDA and ACET at the four scales, drawn from the ``toy2d.safetensors`` that
:func:`rulab.toy2d.run_toy2d` (``rulab toy2d``) writes.

:func:`toy2d_section` is the report section (``""`` when there are no maps); :func:`toy2d_report` writes it as a page of
its own (``rulab toy2d`` does, as ``toy2d.html``); :func:`rulab.reports.build_report` adds the section to a study's
report when ``toy2d/toy2d.safetensors`` lies beside the results database (``rulab toy2d --out <the study's --out>``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rulab.reports import plots
from rulab.reports.blocks import escape, figure_html, write_page
from rulab.toy2d import MAPS_FILE

__all__ = ["MAPS_FILE", "TOY2D_DIR", "toy2d_section", "toy2d_report"]

TOY2D_DIR = "toy2d"
"""Where a study report looks for the toy, relative to the database's directory (``rulab toy2d``'s default output)."""


def _region(label: str) -> tuple[float, float]:
    lo, hi = label.strip("[]").split(",")
    return float(lo), float(hi)


def _maps(path: Path) -> tuple[dict[str, list[tuple[tuple[float, float], Any, Any]]], tuple[Any, Any] | None]:
    from safetensors.torch import load_file

    arrays = load_file(str(path))
    maps: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in arrays.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "toy2d" and parts[3] in ("axis", "conf"):
            maps.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = value.numpy()
    out = {
        model: sorted(
            ((_region(r), v["axis"], v["conf"]) for r, v in regions.items() if len(v) == 2),
            key=lambda t: t[0][1] - t[0][0],
        )
        for model, regions in maps.items()
    }
    points = (
        (arrays["toy2d/points/x"].numpy(), arrays["toy2d/points/y"].numpy()) if "toy2d/points/x" in arrays else None
    )
    return {m: v for m, v in out.items() if v}, points


def toy2d_section(directory: str | os.PathLike[str]) -> str:
    """The report section of the toy run in ``directory`` (``toy2d.safetensors`` and ``toy2d.json``); ``""`` when
    the directory holds no maps or they cannot be read."""
    d = Path(directory)
    path = d / MAPS_FILE
    if not path.is_file():
        return ""
    try:
        maps, points = _maps(path)
    except Exception:  # noqa: BLE001 - a damaged maps file only costs its section
        return ""
    if not maps:
        return ""
    info: dict[str, Any] = {}
    if (d / "toy2d.json").is_file():
        try:
            info = json.loads((d / "toy2d.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    order = [m for m in ("plain", "ceda", "acet") if m in maps] + [
        m for m in maps if m not in ("plain", "ceda", "acet")
    ]
    sub = "plain training, CEDA and ACET on two moons (2,000 points, MLP 2-100-100-2)"
    if info:
        its = info.get("iterations") or {}
        iters = ", ".join(f"{m} {its[m]}" for m in [*order, *(m for m in its if m not in order)] if m in its)
        sub += f"; seed {info.get('seed')}, iterations {iters}" + (
            "; parity: the notebook's no-op PGD" if info.get("parity") else ""
        )
    rows = ""
    if info.get("mean_conf"):
        # smallest region first (toy2d.json's keys may come back sorted as strings)
        regions = sorted(next(iter(info["mean_conf"].values())), key=lambda r: _region(r)[1] - _region(r)[0])
        head = "".join(f'<th class="num">{escape(r)}² (%)</th>' for r in regions)
        body = "".join(
            f'<tr><th scope="row">{escape(m)}</th>'
            + "".join(
                f'<td class="num" data-mean="{v!r}">{100 * v:.1f}</td>'
                for v in (info["mean_conf"][m].get(r, float("nan")) for r in regions)
            )
            + (f'<td class="num">{100 * info["train_acc"][m]:.1f}</td>' if m in (info.get("train_acc") or {}) else "")
            + "</tr>"
            for m in order
            if m in info["mean_conf"]
        )
        rows = (
            '<div class="tw"><table class="results"><caption>mean confidence over each region\'s grid; training '
            f'accuracy in the last column</caption><thead><tr><th>model</th>{head}<th class="num">train acc (%)</th></tr>'
            f"</thead><tbody>{body}</tbody></table></div>"
        )
    fig = figure_html(
        plots.confidence_maps({m: maps[m] for m in order}, points),
        "maximum confidence of each model over [0,1]², [−2,3]², [−5,6]² and [−10,10]² (filled contours 50-100%; "
        "dots: the training points). Plain training is confident almost everywhere; CEDA and ACET bring the confidence "
        "down around the data, yet stay confident far out along some directions, as ReLU networks must "
        "(Hein et al. 2019, Theorem 3.1 and Figure 1)",
        wide=True,
    )
    return (
        f'<section id="toy2d"><h2>Two-moons toy (Hein et al. 2019, §3.7)</h2><p class="sub">{escape(sub)}</p>'
        f'{rows}<div class="figs">{fig}</div></section>'
    )


def toy2d_report(directory: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the toy's section as a page of its own (default ``<directory>/toy2d.html``) and return its path."""
    d = Path(directory)
    section = toy2d_section(d)
    if not section:
        from rulab.errors import InputError

        raise InputError(f"{d} holds no readable {MAPS_FILE}; run `rulab toy2d --out {d}` first")
    return write_page(Path(out) if out is not None else d / "toy2d.html", "rulab: two-moons toy", section)
