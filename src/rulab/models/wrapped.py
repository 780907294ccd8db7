"""Any image classifier as a rulab model: :class:`WrappedClassifier` and the ``torchvision`` model entry.

rulab's evaluation reads a model through the contract of :mod:`rulab.models.base` (images in [0, 1] pixels,
``features(x) -> [B, D]``, ``head(z) -> [B, K]``). :class:`WrappedClassifier` gives that contract to a module that
maps images to logits and knows nothing of rulab (a torchvision network you trained yourself, a timm model, an
``nn.Sequential``):

* **Normalisation** is a :class:`~rulab.models.base.Normalize` first layer built from the ``mean`` / ``std`` the
  network was trained with, so every tensor rulab passes around stays in [0, 1] pixels and ODIN's ε, adversarial ε
  and corruption severities are pixel units (convention 1 in docs/conventions.md). ``mean=None`` means the network itself takes
  [0, 1] pixels (the layer is then the identity: mean 0, std 1).
* **Logits** are the network's own output: ``forward(x) = net(normalize(x))``.
* **Features** for the feature detectors (Mahalanobis, KNN, ReAct, ViM) come from one of

  1. the **input of the final linear layer** (default): a forward pre-hook on the last ``nn.Linear`` of the network
     (or the module named by ``head``) records what it receives, flattened to ``[B, D]``. The head's weights are
     then exposed as :attr:`WrappedClassifier.fc`, so ReAct and ViM work too. On the first call rulab checks that
     ``head(features) == output``; a network whose output is not that layer's output is refused with a message
     saying to name a ``feature_layer``;
  2. a **named layer** (``feature_layer="layer4"``): a node of the traced graph, extracted with torchvision's
     ``create_feature_extractor`` (list the names with
     ``torchvision.models.feature_extraction.get_graph_node_names(net)``); 4-D outputs ``[B, C, H, W]`` are
     global-average-pooled to ``[B, C]``, others flattened;
  3. a **function** ``feature_layer=f`` with ``f(x) -> [B, D]``, called with the network's input (after the
     normalisation).

  With 2 and 3 the logits still come from the full network (one traced pass returns both for 2); the head's
  weights are unknown, so ReAct and ViM are not available.

* **Feature layers** (for the multi-layer detectors, :meth:`~rulab.models.base.Classifier.layer_outputs`): the
  modules named by ``layers`` (dotted names inside the network, e.g. ``("layer3", "layer4")``), by default the
  network's top-level blocks that hold parameters and not the head (:func:`default_feature_layers`: ``layer1`` …
  ``layer4`` of a ResNet, the children of ``features`` of a MobileNet).

The registered ``torchvision`` model builds any torchvision classifier by name (``arch``) inside the wrapper, so a
checkpoint converted with ``rulab convert weights.pt --model torchvision:mobilenet_v3_small`` rebuilds exactly that
architecture from its metadata, and ``model.name=torchvision`` with ``model.kwargs.arch=...`` trains one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import IMAGENET_MEAN, IMAGENET_STD, input_shape, resolve_stats
from rulab.registry import MODELS

__all__ = [
    "WrappedClassifier",
    "wrap_model",
    "torchvision_model",
    "replace_first_conv",
    "find_head",
    "default_feature_layers",
]

FeatureSource = str | Callable[[torch.Tensor], torch.Tensor] | None


def find_head(net: nn.Module, head: str | None = None) -> str | None:
    """The dotted name of the network's final linear layer: ``head`` if given (checked), else the last
    ``nn.Linear`` in registration order (``fc`` of a ResNet, ``classifier.3`` of a MobileNetV3), else None."""
    if head is not None:
        try:
            module = net.get_submodule(head)
        except AttributeError:
            raise ConfigError(f"the model has no layer '{head}'; name its final nn.Linear (see print(model))") from None
        if not isinstance(module, nn.Linear):
            raise ConfigError(
                f"layer '{head}' of the model is a {type(module).__name__}, not an nn.Linear; name the final linear layer"
            )
        return head
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def default_feature_layers(net: nn.Module, head: str | None = None) -> tuple[str, ...]:
    """The network's blocks, input to output: its top-level children that hold parameters, have children of their own
    and do not hold the head (``layer1`` … ``layer4`` of a torchvision ResNet); when that is a single
    ``nn.Sequential`` (``features`` of a MobileNet or VGG), its children; when no child has children (a plain
    ``nn.Sequential`` of layers), every child with parameters but the head. Names are relative to ``net``."""
    top = head.split(".")[0] if head else None
    kids = [(n, m) for n, m in net.named_children() if n != top and _has_params(m)]
    blocks = [(n, m) for n, m in kids if next(m.children(), None) is not None]
    if len(blocks) == 1 and isinstance(blocks[0][1], nn.Sequential):
        name, seq = blocks[0]
        return tuple(f"{name}.{n}" for n, m in seq.named_children() if _has_params(m))
    return tuple(n for n, _ in (blocks or kids))


def replace_first_conv(net: nn.Module, in_channels: int) -> None:
    """Rebuild the first ``nn.Conv2d`` of ``net`` for ``in_channels`` input channels (same kernel, stride, padding,
    bias; Kaiming-normal init as torchvision's ResNets). This is how a grey (1-channel) stem is made from an RGB
    architecture, e.g. ``resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)``."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            if module.groups != 1:
                raise ConfigError(
                    f"the first convolution '{name}' is grouped; in_channels={in_channels} cannot be applied to it"
                )
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                1,
                module.bias is not None,
                module.padding_mode,
            )
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            if new.bias is not None:
                nn.init.zeros_(new.bias)
            parent_name, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, attr, new)
            return
    raise ConfigError(f"the model has no nn.Conv2d, so in_channels={in_channels} cannot be applied")


def _pool(z: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → global average ``[B, C]``; any other shape → ``[B, prod(rest)]``."""
    return z.mean(dim=(2, 3)) if z.ndim == 4 else z.flatten(1)


class WrappedClassifier(Classifier):
    """A network that maps images to logits, wrapped into the rulab model contract (see the module docstring).

    Args:
        net: the network; it receives ``normalize(x)`` and returns logits ``[B, K]``.
        mean: per-channel mean the network's input was normalised with, in [0, 1] pixel units (None: the network
            takes [0, 1] pixels).
        std: per-channel standard deviation (None together with ``mean``).
        feature_layer: where features come from: None (the input of the final linear layer), a graph node name
            (torchvision's ``create_feature_extractor``) or a function ``f(x) -> [B, D]``.
        head: dotted name of the final ``nn.Linear`` (default: the last one in the network).
        layers: dotted names (inside ``net``) of the blocks the multi-layer detectors read, input to output
            (default: :func:`default_feature_layers`). They are exposed as ``feature_layers`` with a ``net.`` prefix.

    Raises:
        ConfigError: ``mean`` without ``std`` (or the reverse), an unknown or non-linear ``head``.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        feature_layer: FeatureSource = None,
        head: str | None = None,
        layers: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError(
                "give both mean and std of the normalisation the model was trained with, or neither (for a model that takes [0, 1] pixels)"
            )
        m = [0.0] if mean is None else _floats(mean, "mean")
        s = [1.0] if std is None else _floats(std, "std")
        if len(m) != len(s) and 1 not in (len(m), len(s)):
            raise ConfigError(f"mean has {len(m)} values and std {len(s)}; give one value per channel for both")
        if any(v <= 0 for v in s):
            raise ConfigError(f"every std value must be > 0, got {s}")
        self.normalize = Normalize(m, s)
        ref = next(net.parameters(), None)
        if ref is not None:  # a network already on a GPU: its first layer goes there too
            self.normalize.to(ref.device)
        self.net = net
        self.feature_layer = feature_layer
        self.head_name = find_head(net, head)
        lin = self._head_module()
        self.feature_dim = lin.in_features if (lin is not None and feature_layer is None) else 0
        self.num_classes = lin.out_features if lin is not None else 0
        self._verified = False
        names = default_feature_layers(net, self.head_name) if layers is None else tuple(layers)
        for name in names:
            try:
                net.get_submodule(name)
            except AttributeError:
                raise ConfigError(
                    f"the model has no layer '{name}'; name blocks of the network (see print(model))"
                ) from None
        self.feature_layers = tuple(f"net.{name}" for name in names)

    # ------------------------------------------------------------------ the contract
    def _head_module(self) -> nn.Linear | None:
        return None if self.head_name is None else self.net.get_submodule(self.head_name)  # type: ignore[return-value]

    @property
    def fc(self) -> nn.Linear | None:  # type: ignore[override]
        """The final linear layer when the features are its input (ReAct and ViM read its weights); else None."""
        return self._head_module() if self.feature_layer is None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → the network's logits ``[B, K]``."""
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → features ``[B, D]`` (see the module docstring for the source)."""
        x = self.normalize(x)
        if self.feature_layer is None:
            return self._hooked(x)
        if callable(self.feature_layer):
            z = self.feature_layer(x)
            if not isinstance(z, torch.Tensor) or z.ndim < 2 or z.shape[0] != x.shape[0]:
                raise InputError(
                    f"the feature function must return a tensor [B, D] with B = {x.shape[0]}, got {getattr(z, 'shape', type(z))}"
                )
            self._stash(_pool(z), self.net(x))
        else:
            out = self._extractor()(x)
            self._stash(_pool(out["features"]), out["logits"])
        return self.__dict__["_stashed"][0]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → logits ``[B, K]``: the final linear layer, or, for a named layer or function, the
        logits of the pass that produced ``z``."""
        stashed = self.__dict__.pop("_stashed", None)
        if stashed is not None and stashed[0] is z:
            return stashed[1]
        lin = self.fc
        if lin is None:
            raise InputError(
                "logits cannot be computed from features taken at a named layer or by a function; call the model on images instead"
            )
        return lin(z)

    def reset_head(self, num_classes: int) -> None:
        """Replace the final linear layer by a fresh ``Linear(D, num_classes)`` (fine-tuning)."""
        lin = self._head_module()
        if lin is None:
            raise ConfigError("the model has no nn.Linear head to reset; pass head= naming its final linear layer")
        new = nn.Linear(lin.in_features, num_classes, bias=lin.bias is not None).to(
            device=lin.weight.device, dtype=lin.weight.dtype
        )
        parent_name, _, attr = self.head_name.rpartition(".")  # type: ignore[union-attr]
        setattr(self.net.get_submodule(parent_name) if parent_name else self.net, attr, new)
        self.num_classes = num_classes
        self.__dict__.pop("_graph", None)

    # ------------------------------------------------------------------ feature sources
    def _hooked(self, x: torch.Tensor) -> torch.Tensor:
        lin = self._head_module()
        if lin is None:
            raise ConfigError(
                "the model has no nn.Linear layer to take features from; pass feature_layer= (a node name from "
                "torchvision.models.feature_extraction.get_graph_node_names(model)) or a function x -> [B, D]"
            )
        seen: list[torch.Tensor] = []
        handle = lin.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            out = self.net(x)
        finally:
            handle.remove()
        if not seen:
            raise ConfigError(f"layer '{self.head_name}' did not run in the forward pass; pass head= or feature_layer=")
        z = seen[-1].flatten(1)
        if not self._verified:
            with torch.no_grad():
                same = out.shape == (z.shape[0], lin.out_features) and torch.allclose(
                    lin(z).float(), out.float(), rtol=1e-4, atol=1e-4
                )
            if not same:
                raise ConfigError(
                    f"the model's output is not the output of its last linear layer '{self.head_name}'; pass head= naming the "
                    "final layer, or feature_layer= (a node name or a function) to take features elsewhere"
                )
            self._verified = True
        return z

    def _extractor(self) -> nn.Module:
        graph = self.__dict__.get("_graph")
        if graph is None:
            from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

            _train_nodes, eval_nodes = get_graph_node_names(self.net)
            layer = str(self.feature_layer)
            if layer not in eval_nodes:
                shown = ", ".join(eval_nodes[:12]) + (", ..." if len(eval_nodes) > 12 else "")
                raise ConfigError(
                    f"the model has no graph node '{layer}'; valid nodes include: {shown} "
                    "(all: torchvision.models.feature_extraction.get_graph_node_names(model))"
                )
            graph = create_feature_extractor(self.net, return_nodes={layer: "features", eval_nodes[-1]: "logits"})
            self.__dict__["_graph"] = graph  # not a submodule: it shares the network's parameters
        graph.train(self.training)
        return graph

    def _stash(self, z: torch.Tensor, logits: torch.Tensor) -> None:
        self.__dict__["_stashed"] = (z, logits)

    def extra_repr(self) -> str:
        src = (
            "head input"
            if self.feature_layer is None
            else (f"node '{self.feature_layer}'" if isinstance(self.feature_layer, str) else "function")
        )
        return f"features from {src}, head={self.head_name!r}"


def _floats(values: Sequence[float] | float, what: str) -> list[float]:
    if isinstance(values, (int, float)):
        return [float(values)]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number or a list of numbers, got {values!r}") from None
    if not out:
        raise ConfigError(f"{what} must not be empty")
    return out


def wrap_model(
    model: nn.Module,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    feature_layer: FeatureSource = None,
    head: str | None = None,
    layers: Sequence[str] | None = None,
) -> Classifier:
    """``model`` as a rulab :class:`~rulab.models.base.Classifier`: a rulab model (already one) is returned as it
    is, anything else is wrapped in a :class:`WrappedClassifier` (arguments as there)."""
    if isinstance(model, Classifier) and mean is None and feature_layer is None and head is None and layers is None:
        return model
    if isinstance(model, Classifier) and mean is not None:
        raise ConfigError("a rulab model normalises its input itself (its first layer); do not pass mean/std for it")
    return WrappedClassifier(model, mean, std, feature_layer, head, layers)


@MODELS.register("torchvision")
@input_shape(3, 32, 32)
def torchvision_model(
    arch: str = "resnet18",
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    head: str | None = None,
    feature_layer: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    layers: Sequence[str] | None = None,
) -> WrappedClassifier:
    """Any torchvision classifier by name, untrained, inside a :class:`WrappedClassifier`.

    The network is ``torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)``; with
    ``in_channels != 3`` its first convolution is rebuilt for that many channels (:func:`replace_first_conv`). Its
    state_dict keys are the torchvision ones under ``net.`` (plus ``normalize.mean`` / ``normalize.std``).

    Args:
        arch: a torchvision classification model name (``resnet18``, ``mobilenet_v3_small``, ``shufflenet_v2_x0_5``,
            ...; ``torchvision.models.list_models(module=torchvision.models)`` lists them).
        num_classes: K.
        in_channels: C.
        mean: normalisation mean in [0, 1] pixel units (default: ImageNet's, averaged for grey input).
        std: normalisation standard deviation.
        head: the final linear layer's name (default: the last ``nn.Linear``).
        feature_layer: a graph node to take features from (default: the head's input).
        kwargs: further keyword arguments of the torchvision builder (``dropout``, ``width_mult``, ...).
        layers: the blocks multi-layer detectors read (default: :func:`default_feature_layers`).
    """
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        import difflib

        close = difflib.get_close_matches(arch, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"torchvision has no classification model '{arch}'{hint}; see torchvision.models.list_models(module=torchvision.models)"
        )
    try:
        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **dict(kwargs or {}))
    except TypeError as err:
        raise ConfigError(
            f"torchvision model '{arch}' does not accept these arguments ({err}); fix model.kwargs.kwargs"
        ) from None
    if in_channels != 3:
        replace_first_conv(net, in_channels)
    m, s = resolve_stats(mean, std, in_channels, IMAGENET_MEAN, IMAGENET_STD, f"torchvision:{arch}")
    return WrappedClassifier(net, m, s, feature_layer, head, layers)
