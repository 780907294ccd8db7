"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian approximation: representing model uncertainty in deep
learning", ICML, arXiv:1506.02142, §3 and Eq. 8): keep dropout on at test time and average the predictive over ``T``
stochastic forward passes, ``p̄(y|x) = (1/T) Σ_t softmax(f^{ω_t}(x))`` with ``ω_t`` the weights under mask ``t``.

:class:`MCDropout` wraps a trained classifier that has dropout layers (``nn.Dropout``, ``nn.Dropout1d/2d/3d``)
and is a :class:`~rulab.models.ensemble.MemberAverage` whose ``T`` members are the passes, so the evaluation treats
it like a deep ensemble: the logits give the mean predictive (calibration, shift and the far-away tests act on it),
and the per-pass logits feed mutual information and disagreement.

Design decisions:

* **Only the dropout layers are stochastic.** Each dropout module of a copy of the network is replaced by a
  :class:`SeededDropout`, which drops units whatever the module's mode; everything else (BatchNorm included)
  stays in eval mode with its running statistics. The wrapped model itself is not modified.
* **Seeded, fixed masks.** Pass ``t`` of dropout layer ``i`` uses one mask over the layer's units (the shape of one
  example's activations; ``[C, 1, 1]`` for channel dropout), drawn from a generator seeded by ``(seed, i, t)`` and
  shared by every image. The MC predictive is then a fixed function of the image: the same for any batch size, batch
  order or cache state, reproducible from the seed, and differentiable, so ODIN and the far-away PGD attack a
  well-defined predictor (the average of ``T`` thinned networks). For each image this is an unbiased ``T``-sample
  estimate of Gal & Ghahramani's predictive, as with masks drawn per image; only the errors of different images are
  correlated.
* **Features**: when no dropout layer acts inside ``features`` (dropout only before the head, as in ``fastcnn``
  with ``dropout > 0``), the features are computed once and only the head runs ``T`` times, so MC dropout costs about
  one forward pass; otherwise the features are the mean over the passes and the network runs ``T`` times.
  ``fc`` is the wrapped model's head, so head-reading detectors see the deterministic head on those features.
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.base import WrapsInner
from rulab.models.ensemble import MemberAverage

__all__ = ["SeededDropout", "MCDropout", "dropout_layers"]

_SUPPORTED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _mask_seed(seed: int, layer: int, t: int) -> int:
    digest = hashlib.blake2b(f"rulab.mc_dropout:{int(seed)}:{layer}:{t}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def dropout_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(dotted name, module)]`` of the dropout modules of ``model`` (``nn.Dropout`` and ``nn.Dropout1d/2d/3d``), in
    module order.

    Raises:
        ConfigError: ``model`` has a dropout variant MC dropout does not support (alpha dropout).
    """
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
            raise ConfigError(
                f"layer '{name}' is {type(m).__name__}, which MC dropout does not support; use nn.Dropout"
            )
        if isinstance(m, _SUPPORTED):
            out.append((name, m))
    return out


class SeededDropout(nn.Module):
    """Dropout with one fixed mask per MC pass, active in train and eval mode (module docstring).

    Args:
        p: drop probability in [0, 1).
        channelwise: drop whole channels (``nn.Dropout1d/2d/3d``): the mask is ``[C, 1, ...]``.
        seed: the MC seed.
        index: this layer's position among the model's dropout layers.

    Attributes:
        pass_index: the pass ``t`` whose mask the next call uses (set by :class:`MCDropout`).
        calls: forward calls since the counter was last reset (tells :class:`MCDropout` where the layer sits).
    """

    def __init__(self, p: float, channelwise: bool, seed: int, index: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = float(p)
        self.channelwise = bool(channelwise)
        self.seed = int(seed)
        self.index = int(index)
        self.pass_index = 0
        self.calls = 0
        self._masks: dict[tuple[int, tuple[int, ...], str, torch.dtype], torch.Tensor] = {}

    def mask(self, unit_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The mask of the current pass for activations of one example of shape ``unit_shape``: ``0`` (dropped) or
        ``1 / (1 - p)`` (kept, inverted-dropout scaling as ``nn.Dropout`` in training)."""
        shape = (unit_shape[0], *([1] * (len(unit_shape) - 1))) if self.channelwise else tuple(unit_shape)
        key = (self.pass_index, shape, str(device), dtype)
        if key not in self._masks:
            g = torch.Generator().manual_seed(_mask_seed(self.seed, self.index, self.pass_index))
            keep = torch.rand(shape, generator=g, dtype=torch.float64) >= self.p
            self._masks[key] = (keep.to(torch.float64) / (1.0 - self.p)).to(device=device, dtype=dtype)
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.p == 0.0:
            return x
        if x.ndim < 2:
            raise InputError(f"dropout input must be [B, ...], got shape {tuple(x.shape)}")
        return x * self.mask(tuple(x.shape[1:]), x.device, x.dtype)

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, channelwise={self.channelwise}, seed={self.seed}, index={self.index}, pass={self.pass_index}"
        )


class MCDropout(WrapsInner, MemberAverage):
    """A classifier's MC-dropout predictive over ``passes`` seeded dropout masks (module docstring).

    Args:
        model: a trained :class:`~rulab.models.base.Classifier` with at least one dropout module; it is copied, not
            modified.
        passes: T ≥ 1 stochastic forward passes.
        seed: seeds the masks (the same seed gives the same predictive).

    Attributes:
        inner: the copy of ``model`` whose dropout modules are :class:`SeededDropout`.
        layers: the dotted names of the replaced dropout modules.
        deterministic_features: after the first call, whether ``features`` is free of dropout (then computed once).

    Raises:
        ConfigError: the model has no dropout module, ``passes < 1``, or an unsupported dropout variant.
    """

    def __init__(self, model: nn.Module, passes: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ConfigError(
                f"MC dropout needs passes >= 1 (the number of stochastic forward passes T), got {passes!r}"
            )
        found = dropout_layers(model)
        if not found:
            raise ConfigError(
                f"{type(model).__name__} has no dropout layer (nn.Dropout), so MC dropout has nothing to sample; evaluate a model "
                "trained with dropout (e.g. the fmnist-dropout preset, or model.kwargs.dropout=0.3 for fastcnn/wrn) or drop --mc-dropout"
            )
        inner = copy.deepcopy(model)
        self.layers = tuple(name for name, _ in found)
        for i, name in enumerate(self.layers):
            old = inner.get_submodule(name)
            new = SeededDropout(float(old.p), not isinstance(old, nn.Dropout), seed, i)
            parent, _, attr = name.rpartition(".")
            setattr(inner.get_submodule(parent) if parent else inner, attr, new)
        self.inner = inner.eval()
        self.passes = passes
        self.seed = int(seed)
        self.num_members = passes
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.feature_dim = int(getattr(model, "feature_dim", 0))
        self.deterministic_features: bool | None = None
        # T and the seed change the function: keep them in the state dict, so the weights hash of the evaluation's
        # extraction cache differs from the deterministic model's
        self.register_buffer("mc_passes_seed", torch.tensor([passes, self.seed], dtype=torch.int64))

    def train(self, mode: bool = True) -> MCDropout:
        """Set the wrapper's flag only: the wrapped network stays in eval mode (BatchNorm keeps its running
        statistics), and its dropout layers drop units in either mode."""
        super().train(mode)
        self.inner.eval()
        return self

    def _seeded_layers(self) -> list[SeededDropout]:
        # modules(), not the list built in __init__: a deep copy (the evaluation's inference copy) has its own layers
        return [m for m in self.inner.modules() if isinstance(m, SeededDropout)]

    @property
    def feature_layers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"inner.{n}" for n in getattr(self.inner, "feature_layers", ()))

    def _set_pass(self, layers: list[SeededDropout], t: int) -> None:
        for m in layers:
            m.pass_index = t
            m.calls = 0

    def member_forward(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(features [B, D] or None, per-pass logits [B, T, K])``; the features are the mean over the passes (the
        one deterministic value when no dropout acts before the head)."""
        layers = self._seeded_layers()
        self._set_pass(layers, 0)
        z0 = self.inner.features(x)
        stochastic = any(m.calls for m in layers)
        self.deterministic_features = not stochastic
        zs, logits = [z0], [self.inner.head(z0)]
        for t in range(1, self.passes):
            self._set_pass(layers, t)
            z = self.inner.features(x) if stochastic else z0
            zs.append(z)
            logits.append(self.inner.head(z))
        feats = (torch.stack(zs).mean(dim=0) if stochastic else z0) if features else None
        return feats, torch.stack(logits, dim=1)

    def member_head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → per-pass logits ``[B, T, K]`` (the dropout inside the head varies with the pass)."""
        layers = self._seeded_layers()
        out = []
        for t in range(self.passes):
            self._set_pass(layers, t)
            out.append(self.inner.head(z))
        return torch.stack(out, dim=1)

    def extra_repr(self) -> str:
        return f"passes={self.passes}, seed={self.seed}, layers={list(self.layers)}"
