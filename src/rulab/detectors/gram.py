"""Gram matrices (Sastry & Oore, ICML 2020, "Detecting out-of-distribution examples with Gram matrices",
arXiv:1912.12510).

The paper's method section: the feature map ``F_l ∈ R^{C_l × H_l W_l}`` of layer ``l`` has higher-order Gram matrices
``G_l^p = (F_l^p F_l^{pᵀ})^{1/p}`` (powers taken entrywise, sign kept); as in the authors' notebooks (``G_p``), each
is stored as its row sums, a vector of ``C_l`` values. Fitting records, for every predicted class ``c``, layer and
order ``p``, the minimum and maximum of every entry over the TRAINING images the network assigns to ``c``. An image
predicted as ``c`` deviates from them by

    δ(min, max, g) = 0 if min ≤ g ≤ max,  (min − g) / |min|  if g < min,  (g − max) / |max|  if g > max

(with ``10⁻⁶`` added to the denominators), summed over entries and orders to a layer deviation ``δ_l(x)``. The
total deviation normalises each layer by its expected deviation on held-out ID data and, as the authors' code does,
divides by the image's maximum softmax probability:

    Δ(x) = Σ_l [δ_l(x) / MSP(x)] / E_val[δ_l / MSP],    confidence s(x) = −Δ(x).

Deviations from the authors' code, and why: their expected deviation is the mean over a random 10% of the ID TEST set
(a test-set leak); rulab uses the run's VALIDATION split (the held-out ID data ``fit`` receives), or a seeded 10% of
the training images held out from the bounds when none is given. Their layers are every convolution, activation and
shortcut output inside each residual block; rulab uses the model's named feature layers (block outputs,
:attr:`rulab.models.base.Classifier.feature_layers`), read through the model contract in one forward pass
(:meth:`~rulab.models.base.Classifier.layer_outputs`). Orders p = 1…10, as the authors. Everything is computed in
float64 (the 10th powers of activations overflow float32 easily).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rulab.detectors.base import Detector, Extracted, eval_mode, image_batches, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["gram_rows", "gram_bounds", "gram_deviation", "gram_statistics", "Gram"]

POLES: tuple[int, ...] = tuple(range(1, 11))
"""The Gram orders p of the authors' code (``POWERS=range(1, 11)``)."""


def gram_rows(maps: torch.Tensor, p: int) -> torch.Tensor:
    """Row sums of the order-p Gram matrix, ``sign(G) |G|^{1/p}`` with ``G = Σ_j (F^p F^{pᵀ})_{ij}``.

    Args:
        maps: ``[B, C, ...]`` a layer's output (``[B, C, H, W]``; a ``[B, D]`` output counts as ``D`` channels of
            one position).
        p: order ≥ 1.

    Returns:
        ``float64 [B, C]``.
    """
    f = maps.to(torch.float64).reshape(maps.shape[0], maps.shape[1], -1) ** p
    g = (f @ f.transpose(1, 2)).sum(dim=2)
    return g.sign() * g.abs() ** (1.0 / p)


def gram_statistics(outputs: Mapping[str, torch.Tensor], poles: Sequence[int] = POLES) -> dict[str, torch.Tensor]:
    """``{layer: [B, P, C_l]}``: the row sums of every order for every layer output."""
    return {name: torch.stack([gram_rows(t, p) for p in poles], dim=1) for name, t in outputs.items()}


def gram_bounds(stats: torch.Tensor, groups: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group entrywise minima and maxima.

    Args:
        stats: ``[N, ...]`` statistics of the fitting images.
        groups: ``[N]`` class of each image (the predicted class, in the paper).
        num_classes: C.

    Returns:
        ``(mins, maxs)``, each ``[C, ...]``; a class without images gets ``+inf`` / ``-inf`` (every value deviates).
    """
    shape = (num_classes, *stats.shape[1:])
    mins = torch.full(shape, float("inf"), dtype=stats.dtype, device=stats.device)
    maxs = torch.full(shape, float("-inf"), dtype=stats.dtype, device=stats.device)
    idx = groups.to(stats.device).view(-1, *([1] * (stats.ndim - 1))).expand_as(stats)
    mins.scatter_reduce_(0, idx, stats, reduce="amin")
    maxs.scatter_reduce_(0, idx, stats, reduce="amax")
    return mins, maxs


def gram_deviation(g: torch.Tensor, mins: torch.Tensor, maxs: torch.Tensor) -> torch.Tensor:
    """``Σ relu(min − g) / |min + 10⁻⁶| + relu(g − max) / |max + 10⁻⁶|`` over all but the first axis.

    Args:
        g: ``[B, ...]`` statistics; mins, maxs: the bounds of each image's class, same shape.

    Returns:
        ``[B]``.
    """
    low = torch.relu(mins - g) / (mins + 1e-6).abs()
    high = torch.relu(g - maxs) / (maxs + 1e-6).abs()
    low = torch.nan_to_num(low, nan=0.0, posinf=torch.finfo(low.dtype).max)
    high = torch.nan_to_num(high, nan=0.0, posinf=torch.finfo(high.dtype).max)
    return (low + high).flatten(1).sum(dim=1)


@DETECTORS.register("gram")
class Gram(Detector):
    """Deviation of the layers' higher-order Gram matrices from their per-class range on training data (Sastry & Oore
    2020, ICML, arXiv:1912.12510, method section). Goes back to the model, in ``fit`` and in ``score``.

    Args:
        layers: feature-layer names (default: all of the model's feature layers).
        poles: Gram orders p (authors: 1…10).
        batch_size: images per forward pass.
        seed: seeds the 10% of training images held out for the expected deviation when no validation split is given.
    """

    requires = frozenset({"logits", "model"})
    formula = (
        "`−Σ_l δ_l(x) / MSP(x) / E_val[δ_l / MSP]`, δ_l: deviation of the Gram row sums from the predicted class's "
        "training range"
    )
    fits_on = "training images (per-class ranges), validation images (expected deviation)"
    paper = "Sastry & Oore 2020, ICML, arXiv:1912.12510"

    def __init__(
        self, layers: Sequence[str] | None = None, poles: Sequence[int] = POLES, batch_size: int = 256, seed: int = 0
    ) -> None:
        if not poles or min(poles) < 1 or batch_size < 1:
            raise InputError(
                f"Gram needs orders p >= 1 and batch_size >= 1, got poles={list(poles)}, batch_size={batch_size}"
            )
        self.layers = tuple(layers) if layers else None
        self.poles = tuple(int(p) for p in poles)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.mins: dict[str, torch.Tensor] = {}
        self.maxs: dict[str, torch.Tensor] = {}
        self.expected: torch.Tensor | None = None

    def _layer_names(self, model: nn.Module) -> tuple[str, ...]:
        if self.layers:
            return self.layers
        names = tuple(getattr(model, "feature_layers", ()))
        if not names:
            raise RulabError(
                f"Gram reads the model's feature layers, but {type(model).__name__} names none; set "
                "model.feature_layers (see rulab.models.base.Classifier) or pass Gram(layers=...)"
            )
        return names

    def statistics(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits [N, K], {layer: [N, P, C_l]})`` of images ``x`` (one forward pass per batch, eval mode, CPU)."""
        names = self._layer_names(model)
        logits, stats = [], {n: [] for n in names}
        with eval_mode(model):
            for xb in image_batches(model, x, self.batch_size):
                lo, outs = model.layer_outputs(xb, names)
                logits.append(lo.float().cpu())
                for n, s in gram_statistics(outs, self.poles).items():
                    stats[n].append(s.cpu())
        return torch.cat(logits), {n: torch.cat(v) for n, v in stats.items()}

    def layer_deviations(self, logits: torch.Tensor, stats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[N, L]``: each layer's deviation ``δ_l(x) / MSP(x)`` from the bounds of the predicted class."""
        if not self.mins:
            raise RulabError("detector 'gram' is not fitted; call fit(train, model=model) on the training split first")
        pred = logits.argmax(dim=1)
        msp = logits.to(torch.float64).softmax(dim=1).amax(dim=1)
        dev = [gram_deviation(stats[n], self.mins[n][pred], self.maxs[n][pred]) for n in self.mins]
        return torch.stack(dev, dim=1) / msp.unsqueeze(1)

    def fit(
        self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None, model: nn.Module | None = None
    ) -> Gram:
        if model is None:
            raise RulabError(
                "detector 'gram' reads the model's feature layers and needs the model; call fit(train, model=model)"
            )
        x = need(train, "x", self.name)
        logits, stats = self.statistics(model, x)
        self.mins, self.maxs = {}, {}
        held: torch.Tensor | None = None
        keep = torch.arange(len(x))
        if val_id is None or val_id.x is None:  # hold out a seeded 10% of the training images for the normaliser
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(len(x), generator=g)
            n_held = max(1, len(x) // 10)
            held, keep = perm[:n_held].sort().values, perm[n_held:].sort().values
        pred = logits.argmax(dim=1)
        k = train.num_classes
        for name, s in stats.items():
            mins, maxs = gram_bounds(s[keep], pred[keep], k)
            # a class the network never predicts on the fitting images falls back to its true-label images
            empty = torch.isinf(mins.flatten(1)[:, 0])
            if bool(empty.any()):
                tmins, tmaxs = gram_bounds(s[keep], train.labels[keep].cpu(), k)
                mins[empty], maxs[empty] = tmins[empty], tmaxs[empty]
            self.mins[name], self.maxs[name] = mins, maxs
        if held is not None:
            dev = self.layer_deviations(logits[held], {n: s[held] for n, s in stats.items()})
        else:
            assert val_id is not None
            v_logits, v_stats = self.statistics(model, need(val_id, "x", self.name))
            dev = self.layer_deviations(v_logits, v_stats)
        self.expected = dev.mean(dim=0) + 1e-7  # the authors' normaliser, with their 10⁻⁷
        return self

    def score(self, ex: Extracted, model: nn.Module | None = None) -> torch.Tensor:
        if model is None:
            raise RulabError(
                "detector 'gram' reads the model's feature layers and needs the model; call score(ex, model=model)"
            )
        if self.expected is None:
            raise RulabError("detector 'gram' is not fitted; call fit(train, model=model) on the training split first")
        logits, stats = self.statistics(model, need(ex, "x", self.name))
        dev = self.layer_deviations(logits, stats) / self.expected
        return (-dev.sum(dim=1)).to(ex.logits.device)
