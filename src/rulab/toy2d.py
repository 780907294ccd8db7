"""Hein et al.'s two-moons toy (W3's ``toy2d.ipynb``; docs/protocols/hein2019.md): plain vs CEDA vs ACET confidence maps.

Three ReLU MLPs 2–100–100–2 (``MODELS["mlp"]``), the same initialisation, Adam (lr 0.01), full batch on the 2,000
two-moons points:

* ``plain``: 400 iterations of mean cross-entropy;
* ``ceda``: 3,000 iterations of ``mean CE(clean) + mean log p_max(noise)`` with 4,000 fresh ``U[0,1]²`` points per
  iteration (the two terms averaged separately, unlike the CNN objective's ``1/(N+M)``);
* ``acet``: as CEDA, with the noise replaced by PGD on ``log p_max``: ε = 0.025, 4 steps of 0.02, uniform random
  start in ``[−ε, ε]²``, last iterate, BN-free model. The default uses the corrected projection
  ``u ← clip(u + α·sign(g), 0, 1); u ← z + clip(u − z, −ε, ε)`` (:func:`rulab.attacks.pgd`);
  ``parity=True`` reproduces the notebook's bug, where the projection restores the pre-step point so every step
  is undone (the step 0.02 is below ε): the "ACET" noise is then the random start, i.e. CEDA on jittered noise.

The maps are the MSP over a 200×200 grid on ``[0,1]²``, ``[−2,3]²``, ``[−5,6]²`` and ``[−10,10]²`` with filled
contours at 50–100%. :func:`run_toy2d` trains the three models, writes one PNG per model, a JSON of the numbers and
``toy2d.safetensors`` with every map (what the HTML report draws: ``rulab toy2d`` writes ``toy2d.html``, and a study
report shows the maps when ``toy2d/`` lies beside its database, see :func:`rulab.reports.toy2d_section`).
scikit-learn (the data) and matplotlib (the figures) are imported only when needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.attacks import log_max_confidence, pgd
from rulab.errors import InputError, RulabError
from rulab.io import atomic_path, atomic_write_json, ensure_writable_dir
from rulab.registry import MODELS

__all__ = [
    "REGIONS",
    "ToyModel",
    "TOY_MODELS",
    "TOY_EPS",
    "TOY_STEPS",
    "TOY_STEP_SIZE",
    "two_moons",
    "toy_attack",
    "train_toy",
    "confidence_map",
    "run_toy2d",
    "MAPS_FILE",
]

REGIONS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (-2.0, 3.0), (-5.0, 6.0), (-10.0, 10.0))
"""The square regions ``[lo, hi]²`` of the confidence maps (as in ``toy2d.ipynb``)."""
TOY_EPS = 0.025
TOY_STEPS = 4
TOY_STEP_SIZE = 0.02
N_NOISE = 4000
"""Fresh uniform noise points per iteration."""
LR = 0.01
MAPS_FILE = "toy2d.safetensors"
"""The maps :func:`run_toy2d` keeps: ``toy2d/<model>/<region>/axis [R]`` and ``.../conf [R, R]`` (region labels as
``"[-2,3]"``), the training points ``toy2d/points/x [N, 2]`` and ``toy2d/points/y [N]``."""


@dataclass(frozen=True)
class ToyModel:
    """One of the toy's three training recipes.

    Attributes:
        name: ``plain``, ``ceda`` or ``acet``.
        iterations: full-batch Adam steps at ``iterations_scale = 1``.
        noise: add the ``mean log p_max(noise)`` term.
        adversarial: replace the noise by PGD on ``log p_max`` (ACET).
    """

    name: str
    iterations: int
    noise: bool
    adversarial: bool


TOY_MODELS: tuple[ToyModel, ...] = (
    ToyModel("plain", 400, noise=False, adversarial=False),
    ToyModel("ceda", 3000, noise=True, adversarial=False),
    ToyModel("acet", 3000, noise=True, adversarial=True),
)


def _region_label(region: tuple[float, float]) -> str:
    lo, hi = region
    return f"[{lo:g},{hi:g}]"


def two_moons(n: int = 2000, noise: float = 0.02, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The toy's data: scikit-learn ``make_moons(n, noise)`` rescaled into ≈[0, 1]² (as in ``toy2d.ipynb``).

    ``X ← (X + 1.6)/4``, then ``X₀ ← X₀ − 0.035`` and ``X₁ ← (X₁ − 0.17)·1.75``.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added by ``make_moons``.
        seed: ``random_state`` of ``make_moons``.

    Returns:
        ``(x float32 [n, 2], y int64 [n])``.

    Raises:
        RulabError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import make_moons
    except ImportError:
        raise RulabError(
            "the two-moons toy needs scikit-learn; install it with: pip install 'rulab[datasets]'"
        ) from None
    xs, ys = make_moons(n_samples=int(n), noise=float(noise), random_state=int(seed))
    x = (torch.as_tensor(xs, dtype=torch.float64) + 1.6) / 4
    x[:, 0] -= 0.035
    x[:, 1] = (x[:, 1] - 0.17) * 1.75
    return x.float(), torch.as_tensor(ys, dtype=torch.int64)


def toy_attack(
    model: nn.Module,
    z: torch.Tensor,
    generator: torch.Generator,
    parity: bool = False,
    eps: float = TOY_EPS,
    steps: int = TOY_STEPS,
    step_size: float = TOY_STEP_SIZE,
) -> torch.Tensor:
    """The toy's ACET noise: PGD on ``log p_max`` from uniform points ``z: [M, 2]`` (as in ``toy2d.ipynb``).

    Uniform random start ``clip(z + δ, 0, 1)``, ``δ ~ U[−ε, ε]²``, then ``steps`` signed-gradient steps with the
    corrected projection; the last iterate is returned (the notebook keeps no best iterate).

    ``parity=True``: the notebook's projection undoes each step whose size is below ε, so the result is the
    random start itself (drawn from ``generator`` exactly as in the corrected run); no gradient is computed.

    Returns:
        ``[M, 2]`` points in [0, 1]² within ε of ``z``.
    """
    if parity and not step_size < eps:
        raise InputError(
            f"the notebook's projection bug only undoes steps smaller than eps; got step {step_size} >= eps {eps}"
        )
    objective = log_max_confidence
    u, _ = pgd(
        model, z, objective, eps, 0 if parity else steps, step_size, generator, random_start="uniform", keep_best=False
    )
    return u


def train_toy(
    recipe: ToyModel,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int = 0,
    iterations_scale: float = 1.0,
    parity: bool = False,
) -> nn.Module:
    """Train one toy MLP 2–100–100–2 with ``recipe`` (full batch, Adam lr 0.01).

    The initialisation depends only on ``seed`` (the same for every recipe); the noise points on ``seed`` and the
    recipe. The global RNG is left untouched.

    Args:
        recipe: one of :data:`TOY_MODELS`.
        x: ``[N, 2]`` training points; y: ``[N]`` labels.
        seed: seed of the initialisation and the noise.
        iterations_scale: multiply the recipe's iterations (at least 1 iteration).
        parity: ACET with the notebook's no-op PGD (see :func:`toy_attack`).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = MODELS.create("mlp", num_classes=2, in_features=2)
    model = model.to(x.device)
    g = torch.Generator().manual_seed(int(seed) * 7919 + len(recipe.name) * 104729 + sum(map(ord, recipe.name)))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    iterations = max(1, round(recipe.iterations * iterations_scale))
    model.train()
    for _ in range(iterations):
        loss = F.cross_entropy(model(x), y)
        if recipe.noise:
            z = torch.rand(N_NOISE, 2, generator=g).to(x.device)
            if recipe.adversarial:
                z = toy_attack(model, z, g, parity)
            loss = loss + log_max_confidence(model(z)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def confidence_map(
    model: nn.Module, region: tuple[float, float], resolution: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSP of ``model`` on a ``resolution × resolution`` grid over ``[lo, hi]²``.

    Returns:
        ``(axis [R], conf [R, R])``: the grid coordinates (the same on both axes) and ``conf[i, j]`` at the point
        ``(axis[j], axis[i])`` (row = second coordinate, as ``matplotlib.contourf`` expects).
    """
    lo, hi = region
    axis = torch.linspace(float(lo), float(hi), int(resolution))
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        conf = model(pts.to(dev)).float().softmax(dim=1).amax(dim=1).cpu()
    finally:
        model.train(was_training)
    return axis, conf.view(len(axis), len(axis))


def _plot(
    path: Path,
    name: str,
    maps: Sequence[tuple[tuple[float, float], torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RulabError("the toy's figures need matplotlib; install it with: pip install 'rulab[report]'") from None
    fig = Figure(figsize=(4.2 * len(maps), 4.0))
    FigureCanvasAgg(fig)
    levels = [0.5 + 0.05 * i for i in range(11)]  # 50%, 55%, ..., 100%
    for k, (region, axis, conf) in enumerate(maps):
        ax = fig.add_subplot(1, len(maps), k + 1)
        cs = ax.contourf(
            axis.numpy(), axis.numpy(), conf.clamp(0.5, 1.0).numpy(), levels=levels, cmap="viridis", vmin=0.5, vmax=1.0
        )
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=1.5, cmap="coolwarm", linewidths=0)
        ax.set_title(f"{name}: {_region_label(region)}², mean {float(conf.mean()):.3f}", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlim(*region)
        ax.set_ylim(*region)
    fig.colorbar(cs, ax=fig.axes, fraction=0.02, pad=0.02, label="max. confidence")
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=80, format="png")


def run_toy2d(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    iterations_scale: float = 1.0,
    parity: bool = False,
    resolution: int = 200,
    figures: bool = True,
) -> dict[str, Any]:
    """Train plain, CEDA and ACET on two moons and map their confidence (W3's ``toy2d.ipynb``).

    Writes ``<out_dir>/toy2d_<model>.png`` (one panel per region, filled contours 50–100%),
    ``<out_dir>/toy2d.json`` (the returned numbers) and ``<out_dir>/toy2d.safetensors`` (:data:`MAPS_FILE`: every
    map and the training points), atomically.

    Args:
        out_dir: output directory (created).
        seed: data, initialisation and noise seed.
        iterations_scale: multiply every recipe's iterations (tests use a fraction; 1.0 = the notebook).
        parity: ACET with the notebook's no-op PGD steps.
        resolution: grid points per axis.
        figures: write the PNGs (needs matplotlib).

    Returns:
        ``{"figures": {model: path}, "mean_conf": {model: {region: mean MSP}}, "far_conf": {model: mean MSP on
        [−10,10]²}, "train_acc": {model: accuracy}, "iterations": {model: n}, "seed", "parity", "maps": path}``.
    """
    if not (isinstance(iterations_scale, (int, float)) and math.isfinite(iterations_scale) and iterations_scale > 0):
        raise InputError(f"iterations_scale must be a positive number, got {iterations_scale!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError(f"resolution must be an integer number of grid points >= 2, got {resolution!r}")
    out = ensure_writable_dir(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 4,000 × 100 matrices: one thread is faster, and immune to a busy machine
    try:
        return _run(out, seed, iterations_scale, parity, resolution, figures)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, seed: int, iterations_scale: float, parity: bool, resolution: int, figures: bool) -> dict[str, Any]:
    x, y = two_moons(seed=seed)
    result: dict[str, Any] = {
        "figures": {},
        "mean_conf": {},
        "far_conf": {},
        "train_acc": {},
        "iterations": {},
        "seed": int(seed),
        "parity": bool(parity),
    }
    arrays: dict[str, torch.Tensor] = {"toy2d/points/x": x, "toy2d/points/y": y}
    for recipe in TOY_MODELS:
        model = train_toy(recipe, x, y, seed, iterations_scale, parity)
        with torch.no_grad():
            result["train_acc"][recipe.name] = float((model(x).argmax(dim=1) == y).float().mean())
        maps = [(region, *confidence_map(model, region, resolution)) for region in REGIONS]
        for region, axis, conf in maps:
            arrays[f"toy2d/{recipe.name}/{_region_label(region)}/axis"] = axis.contiguous()
            arrays[f"toy2d/{recipe.name}/{_region_label(region)}/conf"] = conf.contiguous()
        result["mean_conf"][recipe.name] = {_region_label(r): float(c.mean()) for r, _, c in maps}
        result["far_conf"][recipe.name] = float(maps[-1][2].mean())
        result["iterations"][recipe.name] = max(1, round(recipe.iterations * iterations_scale))
        if figures:
            path = out / f"toy2d_{recipe.name}.png"
            _plot(path, recipe.name, maps, x, y)
            result["figures"][recipe.name] = str(path)
    from safetensors.torch import save_file

    with atomic_path(out / MAPS_FILE) as tmp:
        save_file(arrays, str(tmp))
    result["maps"] = str(out / MAPS_FILE)
    atomic_write_json(out / "toy2d.json", result)
    return result
