"""The model contract every registered classifier follows.

A classifier takes images in [0, 1] (convention 1 in docs/conventions.md); its first layer is :class:`Normalize`, so ε
and corruption severities are pixel units everywhere. It exposes the split that OOD detectors and
fine-tuning need (as timm's ``forward_features`` / ``reset_classifier`` do):

* ``features(x) -> [B, D]``: the penultimate representation (after global pooling),
* ``head(z) -> [B, K]``: the classifier on top,
* ``reset_head(K)``: a fresh ``Linear(D, K)`` (PyTorch default init), for fine-tuning,
* ``feature_layers``: the dotted names of its intermediate blocks, input to output (``("stages.0", "stages.1",
  "stages.2")`` for ``fastcnn``), whose outputs the multi-layer detectors read (Gram matrices, RankFeat):
  :meth:`Classifier.layer_outputs` returns them from one forward pass and :meth:`Classifier.forward_with` runs the
  network with a layer's output replaced by an edited copy. Both are written once here, with forward hooks on the
  named modules held only for the call; a model only names its layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rulab.errors import ConfigError, InputError

__all__ = ["Normalize", "Classifier", "LayerEdit", "WrapsInner"]

LayerEdit = Callable[[torch.Tensor], torch.Tensor]
"""An edit of a layer's output for :meth:`Classifier.forward_with`: ``[B, ...]`` → a tensor of the same shape."""


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a layer; ``mean`` and ``std`` are buffers saved with the weights.

    Args:
        mean: per-channel mean in [0, 1] pixel units, length C (a single value is broadcast).
        std: per-channel standard deviation, length C.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C, H, W]`` in [0, 1] → normalised ``[B, C, H, W]``."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Classifier(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` with ``x`` in [0, 1].

    Subclasses build ``self.normalize`` (a :class:`Normalize`), a backbone used by :meth:`forward_features`
    and ``self.fc`` (the ``Linear(D, K)`` head), set ``num_classes`` and ``feature_dim``, and name their
    intermediate blocks in :attr:`feature_layers`.

    Attributes:
        feature_layers: dotted module names (``model.get_submodule(name)``) of the intermediate blocks, input to
            output, each run exactly once per forward pass; the last is the block whose output the penultimate
            features are pooled or flattened from (or, for a pre-activation network, its input before the final
            normalisation). Empty: the model names none, and multi-layer detectors refuse it with a message.
    """

    num_classes: int
    feature_dim: int
    fc: nn.Linear
    normalize: Normalize
    feature_layers: tuple[str, ...] = ()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input ``[B, C, H, W]`` → pooled features ``[B, D]``. Implemented by subclasses."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → penultimate features ``[B, D]``."""
        return self.forward_features(self.normalize(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → logits ``[B, K]``."""
        return self.fc(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → logits ``[B, K]``."""
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised ``Linear(D, num_classes)`` on the same device and dtype."""
        ref = self.fc.weight
        self.fc = nn.Linear(self.feature_dim, num_classes).to(device=ref.device, dtype=ref.dtype)
        self.num_classes = num_classes

    # ------------------------------------------------------------------ intermediate layers (one implementation)
    def _layer_modules(self, names: Sequence[str] | None) -> dict[str, nn.Module]:
        known = tuple(self.feature_layers)
        if not known:
            raise ConfigError(
                f"{type(self).__name__} names no feature layers, which multi-layer detectors (Gram, RankFeat) read; set its "
                "feature_layers to the dotted names of its blocks (see print(model)), e.g. model.feature_layers = ('layer3', 'layer4')"
            )
        wanted = known if names is None else tuple(names)
        out = {}
        for name in wanted:
            try:
                out[name] = self.get_submodule(name)
            except AttributeError:
                raise ConfigError(
                    f"{type(self).__name__} has no layer '{name}'; its feature layers are {', '.join(known)}"
                ) from None
        return out

    @contextmanager
    def _layer_hooks(
        self, modules: Mapping[str, nn.Module], edits: Mapping[str, LayerEdit]
    ) -> Iterator[dict[str, list[torch.Tensor]]]:
        """Forward hooks on ``modules`` for one call: each records its output (after the edit, if one is given)."""
        seen: dict[str, list[torch.Tensor]] = {name: [] for name in modules}

        def hook(name: str) -> Callable[..., torch.Tensor]:
            def record(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
                if not isinstance(output, torch.Tensor):
                    raise ConfigError(
                        f"layer '{name}' returns a {type(output).__name__}, not a tensor; name a layer that returns one"
                    )
                if name in edits:
                    edited = edits[name](output)
                    if edited.shape != output.shape:
                        raise InputError(
                            f"the edit of layer '{name}' changed its output shape {tuple(output.shape)} to {tuple(edited.shape)}"
                        )
                    output = edited
                else:
                    output = output.clone()  # the next module may work in place (ReLU(inplace=True))
                seen[name].append(output)
                return output

            return record

        handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
        try:
            yield seen
        finally:
            for h in handles:
                h.remove()
        for name, outs in seen.items():
            if len(outs) != 1:
                raise ConfigError(
                    f"layer '{name}' of {type(self).__name__} ran {len(outs)} times in one forward pass; a feature layer must run "
                    "exactly once (name a block that is not shared or skipped)"
                )

    def layer_outputs(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass that also returns the outputs of the named intermediate layers.

        Args:
            x: images in [0, 1], ``[B, C, H, W]``.
            layers: names from :attr:`feature_layers` (default: all of them).

        Returns:
            ``(logits [B, K], {name: output})``, each output as the layer returned it (``[B, C_l, H_l, W_l]`` for a
            convolutional block, ``[B, D_l]`` for a fully connected one).

        Raises:
            ConfigError: the model names no feature layers, an unknown name, or a layer that does not run once.
        """
        modules = self._layer_modules(layers)
        with self._layer_hooks(modules, {}) as seen:
            logits = self(x)
        return logits, {name: outs[0] for name, outs in seen.items()}

    def forward_with(self, x: torch.Tensor, edits: Mapping[str, LayerEdit]) -> torch.Tensor:
        """Logits of a forward pass in which the output of each named layer is replaced by ``edit(output)``
        (RankFeat's rank-1 removal, activation shaping inside the network).

        Args:
            x: images in [0, 1], ``[B, C, H, W]``.
            edits: ``{layer name: edit}``; an edit maps the layer's output to a tensor of the same shape.

        Returns:
            ``[B, K]``.
        """
        modules = self._layer_modules(list(edits))
        with self._layer_hooks(modules, edits):
            return self(x)

    @property
    def mean(self) -> list[float]:
        return self.normalize.mean.flatten().tolist()

    @property
    def std(self) -> list[float]:
        return self.normalize.std.flatten().tolist()


class WrapsInner:
    """Mixin for a classifier that wraps another one, held as ``self.inner`` (flip TTA, MC dropout): its linear head
    ``fc`` and its input normalisation are the wrapped model's, so detectors that read the head's weights see them.
    List it before the classifier base: ``class FlipTTA(WrapsInner, Classifier)``."""

    inner: nn.Module

    @property
    def fc(self) -> nn.Module | None:
        """The wrapped model's linear head, or None when it has none."""
        return getattr(self.inner, "fc", None)

    @property
    def normalize(self) -> nn.Module:
        """The wrapped model's input normalisation."""
        return self.inner.normalize
