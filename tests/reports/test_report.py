import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from rulab.cli import main
from rulab.config import RunCfg
from rulab.errors import RulabError
from rulab.reports import build_report, mean_table, paper_table_html, plots
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable

pytest.importorskip("matplotlib")

PRESETS = ("fmnist-plain", "fmnist-oe")
SEEDS = (0, 1, 2)
OOD = ("digits", "uniform", "gaussian")
SHIFTS = (
    ("brightness_factor", 0.8),
    ("brightness_factor", 1.2),
    ("gaussian_noise", 1),
    ("gaussian_noise", 3),
    ("gaussian_noise", 5),
    ("fog", 1),
    ("fog", 5),
)
FIGS_PER_METHOD = 6  # ROC/PR, histograms, reliability, far-away curves, severity, training curves
FIGS_COMPARISON = 2  # summary dot plots, accuracy vs severity per method


def acc_of(p: int, seed: int) -> float:
    return 0.90 - 0.02 * p + 0.01 * seed


def make_db(root: Path, presets=PRESETS, seeds=SEEDS, arrays: bool = True) -> Path:
    """A study database as `rulab study` leaves it, with synthetic numbers and evaluation arrays (no training)."""
    store = ResultStore(root / "results.db")
    g = torch.Generator().manual_seed(0)
    for p, preset in enumerate(presets):
        for seed in seeds:
            cfg = RunCfg(name=f"{preset}-s{seed}", preset=preset, seed=seed, out_dir=str(root))
            run_dir = root / cfg.name
            (run_dir / "eval" / "fmnist").mkdir(parents=True)
            rid = store.start_run(
                cfg,
                study="mini",
                checkpoint=str(run_dir / "model.safetensors"),
                meta={
                    "rulab_version": "0.1.0",
                    "torch_version": torch.__version__,
                    "git_commit": "abc123",
                    "device": "cpu:x86_64",
                },
            )
            t = ResultTable()
            acc = acc_of(p, seed)
            t.add_metrics(
                "id",
                {
                    "acc": acc,
                    "nll": 0.3 + p / 10,
                    "ece": 0.05 + 0.01 * seed,
                    "rms": 0.06,
                    "mad": 0.05,
                    "brier": 0.15,
                    "mmc": 0.93,
                },
                dataset="fashion_mnist",
            )
            t.add_metrics(
                "id",
                {"acc": acc, "nll": 0.28, "ece": 0.02, "rms": 0.03, "mad": 0.02},
                dataset="fashion_mnist",
                detector="ts",
            )
            t.add("id", "temperature", 1.4, dataset="fashion_mnist", detector="ts")
            for k, s in enumerate(OOD):
                for det, shift in (("msp", 0.0), ("energy", -0.05)):
                    t.add("ood", "auroc", 0.8 + 0.05 * k + shift + 0.01 * seed, dataset=s, detector=det)
                    t.add("ood", "fpr95_id", 0.5 - 0.1 * k - shift, dataset=s, detector=det)
            for name, level in SHIFTS:
                drop = 0.05 * float(level) if name != "brightness_factor" else abs(1 - float(level)) / 2
                t.add("shift", "acc", acc - drop, dataset="fashion_mnist", shift=name, severity=level)
                t.add("shift", "ece", 0.05 + drop / 2, dataset="fashion_mnist", shift=name, severity=level)
            # the aggregate rows rulab.eval.shift writes beside the cells: per-corruption means and mCE
            for name in {n for n, _ in SHIFTS}:
                t.add("shift", "acc", acc - 0.1, dataset="fashion_mnist", shift=name, severity="mean")
            t.add("shift", "mce_rel", 1.0 + 0.1 * p, dataset="fashion_mnist", shift="", severity="")
            t.add("farconf", "mmc", 0.9 - 0.3 * p, dataset="uniform")
            t.add("farconf", "mmc", 0.99 - 0.3 * p, dataset="adv_noise")
            store.write_results(rid, t)
            if arrays:
                z = torch.randn(300, 10, generator=g) * 3
                y = torch.where(
                    torch.rand(300, generator=g) < acc, z.argmax(1), torch.randint(0, 10, (300,), generator=g)
                )
                t.arrays.update(
                    {
                        "id/logits": z,
                        "id/labels": y,
                        "ts/temperature": torch.tensor([1.4]),
                        "scores/msp/id": torch.rand(300, generator=g) * 0.3 + 0.7,
                    }
                )
                for det in ("msp", "energy"):
                    t.arrays[f"scores/{det}/id"] = torch.randn(300, generator=g) + 2
                    for k, s in enumerate(OOD):
                        t.arrays[f"scores/{det}/{s}"] = torch.randn(500, generator=g) + k / 2
                alphas = torch.logspace(0, 3, 10)
                t.arrays.update(
                    {
                        "farconf/alpha/alphas": alphas,
                        "farconf/alpha/mmc": 1 - 0.5 / alphas,
                        "farconf/adv_noise/conf": torch.rand(200, generator=g),
                        "farconf/adv_noise/steps": torch.tensor(40.0),
                    }
                )  # a scalar: skipped silently
                t.save_arrays(run_dir / "eval" / "fmnist" / "arrays.safetensors")
            store.write_curves(
                rid,
                [
                    {
                        "epoch": e,
                        "train_loss": 1.0 / e + seed / 100,
                        "train_acc": 0.7 + e / 20,
                        "val_acc": 0.72 + e / 25,
                        "val_ece": 0.05,
                        "lr": 0.1,
                    }
                    for e in (1, 2, 3)
                ],
            )
            store.finish_run(rid)
    store.close()
    return root / "results.db"


class _Doc(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.scripts, self.cells = [], [], 0, []
        self._td = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("a", "link"):
            self.links.append(a.get("href", ""))
        if tag == "script":
            self.scripts += 1
        if tag == "td" and "data-mean" in a:
            self._td = [a["data-mean"], ""]

    def handle_data(self, data):
        if self._td is not None:
            self._td[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self.cells.append(tuple(self._td))
            self._td = None


def parse(path: Path) -> _Doc:
    d = _Doc()
    d.feed(path.read_text(encoding="utf-8"))
    return d


def test_report_is_self_contained_and_complete(tmp_path):
    db = make_db(tmp_path)
    out = build_report(db, study="mini", out=tmp_path / "report.html")
    doc = parse(out)
    assert len(doc.imgs) == FIGS_COMPARISON + FIGS_PER_METHOD * len(PRESETS)
    for src in doc.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc.scripts == 0 and all(h.startswith("#") for h in doc.links)
    text = out.read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//|/)""", text)
    # the tables hold the stored numbers: acc of fmnist-plain over seeds 0, 1, 2 is 0.90, 0.91, 0.92
    assert any(abs(float(m) - 0.91) < 1e-12 and t == "91.00 ± 1.00" for m, t in doc.cells)
    stored = ResultStore(db).results(preset="fmnist-oe", kind="ood", detector="msp", dataset="uniform", metric="auroc")
    want = sum(r["value"] for r in stored) / len(stored)
    assert any(abs(float(m) - want) < 1e-12 and t == f"{100 * want:.2f} ± 1.00" for m, t in doc.cells)
    for section in (
        "Comparison of methods",
        "fmnist-plain",
        "fmnist-oe",
        "Accuracy and calibration on the ID test set",
        "OOD detection: AUROC (%)",
        "OOD detection: FPR at 95% TPR (%)",
        "Far-away and worst-case confidence",
        "abc123",
    ):
        assert section in text


def test_missing_arrays_cost_only_their_figures(tmp_path):
    db = make_db(tmp_path)
    for seed in SEEDS:  # no arrays at all for fmnist-oe
        (tmp_path / f"fmnist-oe-s{seed}" / "eval" / "fmnist" / "arrays.safetensors").unlink()
    (tmp_path / "fmnist-plain-s0" / "eval" / "fmnist" / "arrays.safetensors").write_bytes(b"damaged")
    (tmp_path / "fmnist-plain-s1" / "eval" / "fmnist" / "arrays.safetensors").unlink()
    out = build_report(db, study="mini", out=tmp_path / "r.html")
    doc = parse(out)
    # fmnist-plain draws seed 2 (seed 0 unreadable, seed 1 missing); fmnist-oe keeps the figures from the DB
    assert len(doc.imgs) == FIGS_COMPARISON + FIGS_PER_METHOD + 2
    assert "(seed 2)" in out.read_text() and "(seed 0)" not in out.read_text()


def test_lowest_seed_with_arrays_is_drawn(tmp_path):
    db = make_db(tmp_path, presets=("fmnist-plain",))
    (tmp_path / "fmnist-plain-s0" / "eval" / "fmnist" / "arrays.safetensors").unlink()
    text = build_report(db, out=tmp_path / "r.html").read_text()
    assert "(seed 1)" in text and "(seed 0)" not in text


def test_paper_table_hook_and_mean_table(tmp_path):
    db = make_db(tmp_path, arrays=False)
    recs = ResultStore(db).results(preset="fmnist-plain")
    mt = mean_table(recs, {"method": "fmnist-plain"})
    assert mt.value(kind="id", metric="acc", detector="") == pytest.approx(0.91)
    assert mt.filter(kind="id", metric="acc", detector="").records()[0]["extra"]["seeds"] == 3

    def auroc_table(t: ResultTable) -> str:
        return paper_table_html(
            t.filter(kind="ood", detector="msp"), rows="dataset", cols="metric", title=f"Table X ({t.meta['method']})"
        )

    text = build_report(db, study="mini", out=tmp_path / "r.html", paper_tables=[auroc_table]).read_text()
    assert "Table X (fmnist-plain)" in text and "Table X (fmnist-oe)" in text and "Paper tables" in text
    assert "81.00 ± 1.00" in text  # digits AUROC of fmnist-plain: 0.80, 0.81, 0.82


def test_report_errors_and_cli(tmp_path, capsys):
    with pytest.raises(RulabError, match="no results database"):
        build_report(tmp_path / "none.db")
    db = make_db(tmp_path, presets=("fmnist-plain",), seeds=(0,), arrays=False)
    with pytest.raises(RulabError, match="studies in it: mini"):
        build_report(db, study="other")
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "cli.html")]) == 0
    assert (tmp_path / "cli.html").exists() and "wrote" in capsys.readouterr().out


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


_PROBE = """<script>window.addEventListener('load', function () {
  var ims = Array.prototype.slice.call(document.images);
  var ok = ims.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement('div'); d.id = 'probe';
  d.setAttribute('data-total', ims.length); d.setAttribute('data-ok', ok);
  d.setAttribute('data-overflow', document.documentElement.scrollWidth > window.innerWidth ? 1 : 0);
  document.body.appendChild(d);
});</script>"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium); the report's browser check needs it"
        )
    db = make_db(tmp_path)
    out = build_report(db, study="mini", out=tmp_path / "report.html")
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    flags = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=1400,3000",
    ]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r'id="probe" data-total="(\d+)" data-ok="(\d+)" data-overflow="(\d)"', dom)
    assert m, "the probe did not run in Chromium"
    total, ok, overflow = map(int, m.groups())
    assert total == ok == FIGS_COMPARISON + FIGS_PER_METHOD * len(PRESETS)  # every figure decoded and has a size
    assert overflow == 0  # nothing wider than a 1400-px window
    assert "91.00 ± 1.00" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000


# --------------------------------------------------------------------------------------------- W3 / W4 figures and layout


def _add_w3_w4_arrays(root: Path, preset: str = "fmnist-plain", seeds=SEEDS) -> None:
    """Give every run's arrays what a real evaluation writes for the far-away section (rulab.eval.farconf) and for
    ODIN's per-set tuning (rulab.eval.evaluate): PGD curves, scores, the most confident images, the tuning grid."""
    g = torch.Generator().manual_seed(5)
    for seed in seeds:
        path = root / f"{preset}-s{seed}" / "eval" / "fmnist" / "arrays.safetensors"
        arrays = ResultTable.load_arrays(path)
        arrays.update(
            {
                "farconf/id/scores": torch.rand(300, generator=g) * 0.2 + 0.8,
                "farconf/alpha/alphas": torch.logspace(0, 20, 21, dtype=torch.float64),
                "farconf/alpha/conf": torch.linspace(0.5, 1.0, 21, dtype=torch.float64),
                "farconf/alpha/trials": torch.rand(50, generator=g, dtype=torch.float64) * 100,
                "farconf/noise/scores": torch.rand(64, generator=g) * 0.5 + 0.3,
                "farconf/adv_noise/scores": torch.rand(64, generator=g) * 0.2 + 0.8,
                "farconf/adv_noise/pgd_conf": torch.linspace(0.5, 0.99, 12, dtype=torch.float64),
                "farconf/adv_noise_200/scores": torch.rand(64, generator=g) * 0.1 + 0.9,
                "farconf/adv_noise_200/pgd_conf": torch.linspace(0.5, 0.995, 22, dtype=torch.float64),
                "farconf/adv_samples/scores": torch.rand(64, generator=g),
                "farconf/adv_samples/resisted": torch.rand(64, generator=g) < 0.3,
                "farconf_top/adv_noise/images": torch.randint(0, 256, (8, 1, 28, 28), generator=g, dtype=torch.uint8),
                "farconf_top/adv_noise/conf": torch.linspace(0.99, 0.9, 8),
                "farconf_top/digits/images": torch.randint(0, 256, (8, 1, 28, 28), generator=g, dtype=torch.uint8),
                "farconf_top/digits/conf": torch.linspace(0.97, 0.8, 8),
            }
        )
        for src in ("digits", "uniform"):
            arrays.update(
                {
                    f"tuning/odin/{src}/t": torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64),
                    f"tuning/odin/{src}/eps": torch.tensor([0.0, 0.001, 0.002, 0.003, 0.004], dtype=torch.float64),
                    f"tuning/odin/{src}/fpr95_id": torch.rand(4, 5, generator=g, dtype=torch.float64),
                    f"tuning/odin/{src}/auroc": torch.rand(4, 5, generator=g, dtype=torch.float64),
                }
            )
        ResultTable(arrays=arrays).save_arrays(path)


def test_far_away_tuning_and_top_image_figures(tmp_path):
    db = make_db(tmp_path, presets=("fmnist-plain",))
    _add_w3_w4_arrays(tmp_path)
    text = build_report(db, study="mini", out=tmp_path / "r.html").read_text()
    doc = parse(tmp_path / "r.html")
    assert len(doc.imgs) == FIGS_COMPARISON + FIGS_PER_METHOD + 2  # + ODIN's T/ε plots + the most confident inputs
    assert "odin: FPR at 95% TPR and AUROC on the tuning images against T and ε" in text
    assert "the most confident inputs of every noise, attack and OOD set" in text
    # the far-away and the new figures span the page's width (class "wide"), not half a grid cell
    for caption in ("far-away confidence", "odin: FPR at 95% TPR", "the most confident inputs"):
        i = text.index(f'alt="{caption}')
        assert text.rfind('<figure class="wide">', 0, i) > text.rfind("<figure>", 0, i), caption


def test_far_away_panels_are_laid_out_in_a_grid_of_legible_size():
    """Every panel of the far-away figure is drawn 5 × 3.5 inches in a grid of at most two columns, however many
    attacked sets the evaluation has (the old layout put them all in one row of a half-width figure)."""
    import io

    from PIL import Image

    g = torch.Generator().manual_seed(0)
    arrays = {
        "farconf/id/scores": torch.rand(100, generator=g),
        "farconf/alpha/alphas": torch.logspace(0, 20, 21, dtype=torch.float64),
        "farconf/alpha/conf": torch.linspace(0.5, 1, 21, dtype=torch.float64),
    }
    for name in ("noise", "noise_uniform"):
        arrays[f"farconf/{name}/scores"] = torch.rand(50, generator=g)
        for adv in (f"adv_{name}", f"adv_{name}_200"):
            arrays[f"farconf/{adv}/scores"] = torch.rand(50, generator=g)
            arrays[f"farconf/{adv}/pgd_conf"] = torch.linspace(0.1, 0.9, 10, dtype=torch.float64)
    arrays["farconf/adv_samples/scores"] = torch.rand(50, generator=g)
    uri = plots.farconf_curves(arrays)
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    # four panels (alpha scaling, PGD progress, noise vs ID, attacked vs ID) in 2 × 2, at the report's 90 dpi
    assert 750 <= img.width <= 950 and 560 <= img.height <= 720, img.size  # ~400 × 300 pixels per panel


def test_the_clean_reference_is_a_line_not_a_panel():
    from rulab.reports.blocks import shift_stats

    recs = [
        {
            "kind": "shift",
            "shift": "clean",
            "severity": "0",
            "metric": "acc",
            "value": 0.9,
            "detector": "",
            "run_id": "a",
        },
        {
            "kind": "shift",
            "shift": "brightness_factor",
            "severity": "0.5",
            "metric": "acc",
            "value": 0.8,
            "detector": "",
            "run_id": "a",
        },
        {
            "kind": "id",
            "shift": "",
            "severity": "",
            "metric": "acc",
            "value": 0.9,
            "detector": "",
            "run_id": "a",
            "dataset": "x",
        },
    ]
    stats, clean = shift_stats(recs)
    assert set(stats) == {"brightness_factor"} and clean["acc"].mean == pytest.approx(0.9)


def test_toy2d_maps_beside_the_database_join_the_report(tmp_path):
    """`rulab toy2d --out <study out>/toy2d` puts the two-moons maps at the four scales into the study's report."""
    from safetensors.torch import save_file

    db = make_db(tmp_path, presets=("fmnist-plain",), seeds=(0,), arrays=False)
    toy = tmp_path / "toy2d"
    toy.mkdir()
    maps = {"toy2d/points/x": torch.rand(50, 2), "toy2d/points/y": torch.arange(50) % 2}
    for model in ("plain", "ceda", "acet"):
        for label, (lo, hi) in {"[0,1]": (0, 1), "[-2,3]": (-2, 3), "[-5,6]": (-5, 6), "[-10,10]": (-10, 10)}.items():
            maps[f"toy2d/{model}/{label}/axis"] = torch.linspace(lo, hi, 10)
            maps[f"toy2d/{model}/{label}/conf"] = torch.full((10, 10), 0.75)
    save_file(maps, str(toy / "toy2d.safetensors"))
    text = build_report(db, out=tmp_path / "r.html").read_text()
    assert '<section id="toy2d">' in text and 'href="#toy2d"' in text
    assert "[−10,10]²" in text
    # the numbers table: regions smallest first and each value under its own region, although toy2d.json's keys
    # are written sorted as strings ("[-10,10]" before "[0,1]")
    from rulab.io import atomic_write_json

    conf = {"[0,1]": 0.6, "[-2,3]": 0.7, "[-5,6]": 0.8, "[-10,10]": 0.9}
    atomic_write_json(
        toy / "toy2d.json",
        {
            "mean_conf": {"plain": conf},
            "train_acc": {"plain": 1.0},
            "seed": 0,
            "iterations": {"plain": 400, "acet": 3000, "ceda": 3000},
        },
    )
    text = build_report(db, out=tmp_path / "r1.html").read_text()
    heads = re.findall(r'<th class="num">(\[[^<]*)² \(%\)</th>', text)
    assert heads == ["[0,1]", "[-2,3]", "[-5,6]", "[-10,10]"]
    assert re.findall(r'<td class="num"[^>]*>([\d.]+)</td>', text[text.index('<section id="toy2d">') :])[:5] == [
        "60.0",
        "70.0",
        "80.0",
        "90.0",
        "100.0",
    ]
    assert "iterations plain 400, ceda 3000, acet 3000" in text
    (toy / "toy2d.safetensors").write_bytes(b"damaged")
    assert '<section id="toy2d">' not in build_report(db, out=tmp_path / "r2.html").read_text()


_SIZE_PROBE = """<script>window.addEventListener('load', function () {
  var out = Array.prototype.slice.call(document.images).map(function (i) {
    var r = i.getBoundingClientRect();
    return [i.alt.slice(0, 40), Math.round(r.width), Math.round(r.height), i.naturalWidth, i.naturalHeight];
  });
  var d = document.createElement('pre'); d.id = 'sizes'; d.textContent = JSON.stringify(out);
  document.body.appendChild(d);
});</script>"""


@pytest.mark.browser
def test_far_away_figure_renders_legibly_in_headless_chromium(tmp_path):
    """As a reader sees it in a 1400 × 900 window: the far-away figure is drawn at its own size (not shrunk into half
    a grid cell), so each of its panels is about 390 × 260 screen pixels; the T/ε plots and the most confident
    inputs are not shrunk either. Also a screenshot at that window size, as a reader's first screen."""
    import json

    exe = _chromium()
    if exe is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium); the report's browser check needs it"
        )
    db = make_db(tmp_path, presets=("fmnist-plain",))
    _add_w3_w4_arrays(tmp_path)
    out = build_report(db, study="mini", out=tmp_path / "report.html")
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", _SIZE_PROBE + "</body>"), encoding="utf-8")
    flags = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=1400,900",
    ]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r'<pre id="sizes">(.*?)</pre>', dom, re.S)
    assert m, "the probe did not run in Chromium"
    sizes = {alt: (w, h, nw, nh) for alt, w, h, nw, nh in json.loads(m.group(1).replace("&quot;", '"'))}

    def size(prefix):
        (hit,) = [v for k, v in sizes.items() if k.startswith(prefix)]
        return hit

    w, h, nw, nh = size("far-away confidence")
    assert (w, h) == (nw, nh)  # drawn at its natural size: nothing scaled down
    # five panels here (alpha scaling, PGD progress, noise vs ID, attacked vs ID, the generic adv-noise histogram) in
    # two columns and three rows, each at least 360 × 230 screen pixels (the old layout: ~110 px wide panels)
    assert w >= 2 * 360 and h >= 3 * 230, (w, h)
    for prefix in ("odin: FPR at 95% TPR", "the most confident inputs"):
        w, h, nw, nh = size(prefix)
        assert w == nw and h == nh, prefix
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    assert Image.open(shot).size == (1400, 900)


def test_tuning_grids_and_image_grid_inputs():
    """The T/ε figure takes only complete grids (t, eps, fpr95_id, auroc) per detector and source; the image grid has
    one row of at most 8 images per set, so two sets draw a figure about twice as tall as one."""
    import io

    from PIL import Image

    from rulab.reports.blocks import tuning_grids

    t, e = torch.tensor([1.0, 1000.0]), torch.tensor([0.0, 0.002, 0.004])
    full = {"t": t, "eps": e, "fpr95_id": torch.rand(2, 3), "auroc": torch.rand(2, 3)}
    arrays = {f"tuning/odin/digits/{k}": v for k, v in full.items()}
    arrays |= {
        "tuning/odin/uniform/t": t,
        "tuning/odin/uniform/eps": e,
        "tuning/odin/uniform/id_scores": torch.rand(5),
        "tuning/energy/x/t": t,
    }
    got = tuning_grids(arrays)
    assert list(got) == ["odin"] and list(got["odin"]) == ["digits"] and set(got["odin"]["digits"]) == set(full)
    assert tuning_grids({}) == {} and plots.tuning_grids({}) is None

    def height(n_sets):
        imgs = {f"s{i}": (torch.rand(10, 1, 28, 28), torch.linspace(1, 0.5, 10)) for i in range(n_sets)}
        uri = plots.image_grid(imgs)
        return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size

    (w1, h1), (w2, h2) = height(1), height(2)
    assert abs(w1 - w2) <= 10 and 1.6 * h1 < h2 < 2.4 * h1  # same width (8 columns), one row more
    assert plots.image_grid({"empty": (torch.zeros(0, 1, 28, 28), torch.zeros(0))}) is None


def test_report_shows_intervals_and_paired_differences(tmp_path):
    """Every table of the report has a 95% CI row under each row, and the comparison section holds each method's
    paired difference to the first method (fmnist-oe's accuracy is 2 points below fmnist-plain's on every seed)."""
    from rulab.metrics.bootstrap import t_quantile

    db = make_db(tmp_path, arrays=False)
    text = build_report(db, study="mini", out=tmp_path / "r.html").read_text()
    assert "Paired differences to fmnist-plain" in text and "fmnist-oe − fmnist-plain" in text
    assert '<td class="num sig"' in text and "[-2.00, -2.00] *" in text  # the interval excludes 0: bold and starred
    # the summary's accuracy cell of fmnist-plain: 0.90, 0.91, 0.92 -> 91.00 ± 1.00, t interval ± t(0.975, 2) · 1 / sqrt(3)
    half = t_quantile(0.975, 2) * 1.0 / 3**0.5
    assert f"[{91 - half:.2f}, {91 + half:.2f}]" in text and "Student t over 3 seeds" in text
    assert text.count('<tr class="ci">') >= 2 * 2  # the summary and the comparison, two methods each
