"""ODIN: temperature scaling plus input preprocessing (Liang, Li & Srikant, ICLR 2018, "Enhancing the reliability of
out-of-distribution image detection in neural networks", arXiv:1706.02690); details in docs/protocols/odin.md.

The score (the paper's temperature scaling and input preprocessing) is ``max_k S_k(x̃; T)`` with ``S(x; T) = softmax(f(x) / T)`` and one signed-gradient step that
raises the temperature-scaled confidence of the predicted class ŷ = argmax f(x):

    x̃ = x - ε · sign(-∇_x log S_ŷ(x; T)) = x - ε · sign(∇_x CE(f(x) / T, ŷ)).

Faithful to the reference code (``code/calData.py``) where it matters, fixed where it is wrong (the register of
convention 5 and the evaluation hygiene in docs/conventions.md):

* **pixel units**: inputs are [0, 1] pixels and the model normalises itself (convention 1), so the step is
  taken in pixel space with ε in pixel units. The original steps in normalised space with the gradient divided by the
  channel std σ_c, which is the same step (``tests/detectors/test_odin.py`` checks this against a per-image
  normalised-space reference).
* **sign rule**: ``g = 2 · (1[∇ ≥ 0] - 0.5)``, so a zero gradient gives +1 (``torch.sign`` would give 0).
* **no clipping**: x̃ is not clipped to [0, 1] after the step, as in the original (parity; the step is at most
  0.004, about one grey level).
* **eval mode**: the model runs in eval mode (the original never calls ``eval()``); batched instead of one
  image at a time (identical in eval mode, where images do not interact).

Tuning (Liang et al. 2018; the grid is our reading of the paper, unverified, docs/protocols/odin.md): T ∈ {1, 2, 5, …, 1000} × 21 values of ε in [0, 0.004], choosing the pair with the lowest mean
``fpr95_id`` over the validation-OOD sets, on validation ID data (the run's held-out split) and the benchmark's
validation-OOD sets, never on a test set. The sign of the gradient does not depend on ε, so the gradient is computed
once per temperature and every ε reuses it; the ε sweep is batched, and when an image's sign map at one temperature
equals its map at the previous temperature the perturbed logits are reused (exactly the same inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.detectors.base import Detector, Extracted, need, tuning_objective
from rulab.errors import ConfigError, InputError, RulabError
from rulab.metrics.ood import auroc
from rulab.registry import DETECTORS

__all__ = [
    "ODIN_TEMPERATURES",
    "ODIN_EPSILONS",
    "ODIN_GRIDS",
    "odin_sign",
    "odin_signs",
    "odin_perturb",
    "odin_score_from_logits",
    "odin_score",
    "odin_grid_scores",
    "ODIN",
]

ODIN_TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
"""ODIN's temperature grid (docs/protocols/odin.md "Hyperparameters"; unverified against the paper)."""
ODIN_EPSILONS: tuple[float, ...] = tuple(round(0.0002 * i, 6) for i in range(21))
"""ODIN's 21 step sizes, ``linspace(0, 0.004, 21)`` in [0, 1]-pixel units (docs/protocols/odin.md; unverified against the paper)."""
ODIN_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "paper": {"t": ODIN_TEMPERATURES, "eps": ODIN_EPSILONS},
    "coarse": {"t": (1.0, 10.0, 100.0, 1000.0), "eps": (0.0, 0.001, 0.002, 0.003, 0.004)},
}
"""Tuning grids: ``paper`` (10 T × 21 ε: 10 gradient passes and 210 forward passes over the validation sets) and
``coarse`` (4 T × 5 ε over the same ranges: 4 gradient and 20 forward passes, 24× cheaper; the CPU studies' choice)."""


def _as_float(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    x = x.to(device)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _conv(model: nn.Module) -> bool:
    """Whether the model has 2-D convolutions (then channels-last batches run faster on CPUs; values are the same)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def odin_signs(
    model: nn.Module, x: torch.Tensor, temperatures: Sequence[float]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The ODIN step directions ``g_T = sign≥(∇_x CE(f(x)/T, ŷ))`` (zero → +1) for several temperatures.

    One forward pass, then one backward pass per temperature through the retained graph (the logits do not depend
    on T). The model must already be in eval mode (:func:`odin_score` and :class:`ODIN` take care of it). Only the
    input gradient is computed (``torch.autograd.grad``); parameter gradients are neither computed nor accumulated.

    Args:
        model: a classifier taking [0, 1] pixels.
        x: ``float [B, C, H, W]`` in [0, 1].
        temperatures: the temperatures T > 0.

    Returns:
        ``(signs, logits)``: one ``float [B, C, H, W]`` tensor of ±1 per temperature, and the unperturbed logits
        ``[B, K]``.
    """
    xg = x.detach().requires_grad_(True)
    signs = []
    with torch.enable_grad():
        logits = model(xg)
        pred = logits.argmax(dim=1)
        for i, t in enumerate(temperatures):
            # summed over the batch: each image's gradient is its own (eval mode: no interaction between images)
            loss = F.cross_entropy(logits / t, pred, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg, retain_graph=i + 1 < len(temperatures))
            signs.append((grad >= 0).to(x.dtype).mul_(2.0).sub_(1.0))
    return signs, logits.detach()


def odin_sign(model: nn.Module, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ODIN step direction at one temperature, ``g = 2 · (1[∇_x CE(f(x)/T, ŷ) ≥ 0] - 0.5)``; see :func:`odin_signs`.

    Returns:
        ``(g, logits)``: ``g`` ``float [B, C, H, W]`` of ±1 and the unperturbed logits ``[B, K]``.
    """
    signs, logits = odin_signs(model, x, (t,))
    return signs[0], logits


def odin_perturb(x: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    """``x - ε · g`` in pixel units, NOT clipped to [0, 1] (parity with ODIN's ``code/calData.py``)."""
    return x - eps * g


def odin_score_from_logits(logits: torch.Tensor, t: float) -> torch.Tensor:
    """``max_k softmax(logits / T)_k`` for logits of (perturbed) inputs: ``[B, K]`` → ``[B]``."""
    return (logits / t).softmax(dim=1).amax(dim=1)


def odin_score(model: nn.Module, x: torch.Tensor, t: float, eps: float, batch_size: int = 256) -> torch.Tensor:
    """ODIN scores of images at one ``(T, ε)``: one gradient pass and one perturbed forward pass per batch.

    Args:
        model: a classifier taking [0, 1] pixels (put in eval mode for the call, then restored).
        x: ``uint8 [N, C, H, W]`` (0..255) or ``float [N, C, H, W]`` in [0, 1].
        t: temperature T > 0.
        eps: step size ε ≥ 0 in [0, 1]-pixel units.
        batch_size: images per pass.

    Returns:
        ``[N]`` on the CPU; higher = more in-distribution.
    """
    _check(t, eps)
    was_training = model.training
    model.eval()
    dev, cl = _device(model), _conv(model)
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = _as_float(x[i : i + batch_size], dev, cl)
            if eps == 0:
                with torch.no_grad():
                    out.append(odin_score_from_logits(model(xb), t).cpu())
                continue
            g, _ = odin_sign(model, xb, t)
            with torch.no_grad():
                out.append(odin_score_from_logits(model(odin_perturb(xb, g, eps)), t).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def odin_grid_scores(
    model: nn.Module,
    x: torch.Tensor,
    temperatures: Sequence[float] = ODIN_TEMPERATURES,
    epsilons: Sequence[float] = ODIN_EPSILONS,
    batch_size: int = 256,
) -> torch.Tensor:
    """ODIN scores of ``x`` at every ``(T, ε)`` of a grid, with one gradient pass per (batch, T).

    The sign map depends on T but not on ε, so it is computed once per temperature (one forward pass per batch, one
    backward pass per temperature, :func:`odin_signs`); the perturbed copies for all ε are stacked into forward passes
    of about ``batch_size`` images; ε = 0 reuses the unperturbed logits; and when an image's sign map equals the one
    at the previous temperature, its perturbed logits are reused (same inputs, same outputs). Each entry equals :func:`odin_score` at that ``(T, ε)``.

    Args:
        model: a classifier taking [0, 1] pixels.
        x: ``uint8 [N, C, H, W]`` or ``float [N, C, H, W]`` in [0, 1].
        temperatures: the T grid.
        epsilons: the ε grid (pixel units).
        batch_size: images per gradient pass and (approximately) per perturbed forward pass.

    Returns:
        ``float32 [len(temperatures), len(epsilons), N]`` on the CPU.
    """
    for t in temperatures:
        for e in epsilons:
            _check(t, e)
    nt, ne = len(temperatures), len(epsilons)
    scores = torch.empty(nt, ne, len(x))
    nonzero = [j for j, e in enumerate(epsilons) if e != 0]
    was_training = model.training
    model.eval()
    dev, cl = _device(model), _conv(model)
    try:
        for i in range(0, len(x), batch_size):
            xb = _as_float(x[i : i + batch_size], dev, cl)
            b = len(xb)
            prev_g: torch.Tensor | None = None
            pert_logits: torch.Tensor | None = None  # [len(nonzero), b, K] logits of the perturbed copies
            signs, logits0 = odin_signs(model, xb, temperatures)
            for ti, (t, g) in enumerate(zip(temperatures, signs)):
                for j, e in enumerate(epsilons):
                    if e == 0:
                        scores[ti, j, i : i + b] = odin_score_from_logits(logits0, t).cpu()
                if not nonzero:
                    continue
                if prev_g is None or pert_logits is None:
                    todo = torch.arange(b, device=dev)
                    pert_logits = torch.empty(len(nonzero), b, logits0.shape[1], dtype=logits0.dtype, device=dev)
                else:
                    todo = torch.nonzero(~(g == prev_g).flatten(1).all(dim=1)).flatten()
                prev_g = g
                if len(todo):
                    _perturbed_logits(
                        model, xb[todo], g[todo], [epsilons[j] for j in nonzero], batch_size, pert_logits, todo
                    )
                with torch.no_grad():
                    s = (pert_logits / t).softmax(dim=2).amax(dim=2).cpu()  # [len(nonzero), b]
                for jj, j in enumerate(nonzero):
                    scores[ti, j, i : i + b] = s[jj]
    finally:
        model.train(was_training)
    return scores


@torch.no_grad()
def _perturbed_logits(
    model: nn.Module,
    x: torch.Tensor,
    g: torch.Tensor,
    eps: Sequence[float],
    batch_size: int,
    out: torch.Tensor,
    rows: torch.Tensor,
) -> None:
    """Write ``model(x - ε g)`` for every ε into ``out[ε index, rows]``, stacking ε copies into passes of ~batch_size."""
    n = len(x)
    per_pass = max(1, batch_size // max(n, 1))  # ε copies of the n images per pass (n <= batch_size)
    for k in range(0, len(eps), per_pass):
        chunk = eps[k : k + per_pass]
        e = torch.tensor(chunk, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
        xs = (x.unsqueeze(0) - e * g.unsqueeze(0)).flatten(0, 1)  # [len(chunk) * n, C, H, W], no clipping
        out[k : k + len(chunk), rows] = model(xs).view(len(chunk), n, -1).to(out.dtype)


def _check(t: float, eps: float) -> None:
    if not t > 0:
        raise InputError(f"the ODIN temperature must be positive, got {t}")
    if not eps >= 0:
        raise InputError(f"the ODIN step size must be >= 0 (pixel units), got {eps}")


@DETECTORS.register("odin")
class ODIN(Detector):
    """ODIN score: temperature-scaled MSP after a signed-gradient input step (Liang et al. 2018, arXiv:1706.02690, §3:
    temperature scaling Eq. 1, input preprocessing Eq. 2).

    Goes back to the model (``requires`` has ``"model"``): pass ``model=`` to :meth:`score` and keep the images in
    ``Extracted.x``. With ``eps = 0`` it reduces to ``max softmax(logits / T)`` on the cached logits.

    Args:
        t: temperature T (paper: 1000 for every model).
        eps: step size ε in [0, 1]-pixel units (ODIN's README: 0–0.0048, per model and OOD set).
        batch_size: images per gradient pass.
        search: the (T, ε) grid :meth:`tune` searches, a key of :data:`ODIN_GRIDS` (``"paper"`` or ``"coarse"``).
    """

    requires = frozenset({"logits", "model"})
    formula = "`max_k softmax(f(x̃)/T)_k` with `x̃ = x − ε · sign(−∇_x log max_k softmax(f(x)/T)_k)`, ε in pixel units"
    paper = "Liang et al. 2018, arXiv:1706.02690 (W4)"
    grid = ODIN_GRIDS["paper"]

    def __init__(self, t: float = 1000.0, eps: float = 0.0014, batch_size: int = 256, search: str = "paper") -> None:
        _check(t, eps)
        if batch_size < 1:
            raise InputError(f"ODIN needs batch_size >= 1, got {batch_size}")
        if search not in ODIN_GRIDS:
            raise ConfigError(f"ODIN's search grid must be one of {', '.join(ODIN_GRIDS)}, got '{search}'")
        self.grid = ODIN_GRIDS[search]
        self.t = float(t)
        self.eps = float(eps)
        self.batch_size = int(batch_size)

    def score(self, ex: Extracted, model: nn.Module | None = None) -> torch.Tensor:
        if self.eps == 0:
            return odin_score_from_logits(ex.logits, self.t)
        if model is None:
            raise RulabError("detector 'odin' perturbs the input and needs the model; call score(ex, model=model)")
        s = odin_score(model, need(ex, "x", self.name), self.t, self.eps, self.batch_size)
        return s.to(ex.logits.device)

    def tune(self, model: nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]) -> dict[str, Any]:
        """Grid search of (T, ε) minimising the mean ``fpr95_id`` over the given OOD sets (Liang et al. 2018), batched.

        ``val_id`` / ``val_ood`` are the tuning images: the run's validation split and the benchmark's validation-OOD
        sets by default, or, under the ``odin-paper`` protocol, the first 1,000 images of the ID test set and of one
        test OOD set (the paper's choice; those images are then never scored).

        Returns:
            ``{"t", "eps", "objective", "grid"}``: the chosen pair, its mean ``fpr95_id``, and the whole grid for the
            paper's plots of detection against T and ε: ``grid`` has ``"t"`` (nT values), ``"eps"`` (nE values),
            ``"fpr95_id"`` and ``"auroc"`` (nT lists of nE floats each; means over the tuning OOD sets).
        """
        if model is None:
            raise RulabError("detector 'odin' tunes T and ε by perturbing validation images and needs the model")
        if not val_ood:
            raise RulabError(
                "detector 'odin' tunes T and ε on validation-OOD data, but none was given; add val_ood to the benchmark"
            )
        temps, epss = self.grid["t"], self.grid["eps"]
        parts = [need(val_id, "x", self.name)] + [need(e, "x", self.name) for e in val_ood.values()]
        scores = odin_grid_scores(model, torch.cat([p.cpu() for p in parts]), temps, epss, self.batch_size)
        bounds = torch.tensor([0] + [len(p) for p in parts]).cumsum(0).tolist()
        best: tuple[float, int, int] | None = None
        fpr_grid = [[0.0] * len(epss) for _ in temps]
        auroc_grid = [[0.0] * len(epss) for _ in temps]
        for ti in range(len(temps)):
            for ei in range(len(epss)):
                s = scores[ti, ei]
                s_id = s[: bounds[1]]
                s_oods = {n: s[bounds[k + 1] : bounds[k + 2]] for k, n in enumerate(val_ood)}
                obj = tuning_objective(s_id, s_oods)
                fpr_grid[ti][ei] = obj
                auroc_grid[ti][ei] = sum(auroc(s_id, so) for so in s_oods.values()) / len(s_oods)
                if best is None or obj < best[0]:
                    best = (obj, ti, ei)
        assert best is not None
        self.t, self.eps = float(temps[best[1]]), float(epss[best[2]])
        grid = {
            "t": [float(t) for t in temps],
            "eps": [float(e) for e in epss],
            "fpr95_id": fpr_grid,
            "auroc": auroc_grid,
        }
        return {"t": self.t, "eps": self.eps, "objective": best[0], "grid": grid}
