"""``resnet18`` / ``resnet50``: torchvision ResNets wrapped into the rulab model contract (W2 report §6.1-6.2).

The wrapper keeps torchvision's module names (``conv1``, ``bn1``, ``layer1`` … ``layer4``, ``fc``), so a torchvision
state_dict loads key for key; rulab adds only the ``normalize.*`` buffers. ``features(x)`` is the global-average-
pooled ``[B, 512]`` (ResNet-18) or ``[B, 2048]`` (ResNet-50) vector.

Stems:
    ``stem="imagenet"``: torchvision's 7×7/2 conv + 3×3/2 max-pool, what W2 fed its 28×28 pathMNIST images to.
    ``stem="cifar"``: a 3×3/1 conv and no max-pool (the usual choice for 32×32 inputs trained from scratch).

Pretrained weights (``pretrained=<path>``): rulab never downloads. Make a safetensors file once on a machine with
internet access, e.g. supervised ImageNet weights::

    python -c "import torchvision, safetensors.torch as st; \\
    m = torchvision.models.resnet18(weights='IMAGENET1K_V1'); st.save_file(m.state_dict(), 'resnet18_in1k.safetensors')"

or Barlow Twins weights (facebookresearch/barlowtwins, the ResNet-50 W2 used; it has no ``fc``)::

    python -c "import torch, safetensors.torch as st; \\
    m = torch.hub.load('facebookresearch/barlowtwins:main', 'resnet50'); st.save_file(m.state_dict(), 'resnet50_bt.safetensors')"

Loading rules: every backbone tensor must be present with the right shape; ``fc`` is loaded only when its shape
matches ``num_classes`` (otherwise the head stays freshly initialised, as in W2's fine-tuning); with
``in_channels=1`` the RGB kernels of ``conv1`` are summed (exact for grey images replicated to three channels);
with ``stem="cifar"`` the 7×7 ``conv1`` weights cannot be used and the 3×3 stem stays freshly initialised
(a warning says so). Any other mismatch raises :class:`~rulab.errors.CheckpointError`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from rulab.errors import CheckpointError, ConfigError, RulabWarning
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import IMAGENET_MEAN, IMAGENET_STD, input_shape, resolve_stats
from rulab.registry import MODELS

__all__ = ["TorchvisionResNet", "load_torchvision_weights", "resnet18", "resnet50", "STEMS"]

STEMS = ("imagenet", "cifar")


class TorchvisionResNet(Classifier):
    """A torchvision ResNet split into ``features`` (up to the global average pool) and ``head`` (``fc``).

    Args:
        builder: ``torchvision.models.resnet18`` or ``resnet50`` (any torchvision ResNet builder).
        num_classes: K.
        in_channels: C.
        stem: ``"imagenet"`` (7×7/2 conv + max-pool) or ``"cifar"`` (3×3/1 conv, no max-pool).
        zero_init_residual: zero the last BN γ of every residual block (torchvision option; Barlow Twins uses it).
        mean: Normalize mean, [0, 1] pixel units.
        std: Normalize standard deviation.

    Feature layers: the four stages ``layer1`` … ``layer4`` (``layer4``'s output is what the average pool reads).
    """

    feature_layers = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        builder: Callable[..., nn.Module],
        num_classes: int,
        in_channels: int,
        stem: str,
        zero_init_residual: bool,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ConfigError(f"resnet stem must be one of {', '.join(STEMS)}, got '{stem}'")
        net = builder(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
        self.normalize = Normalize(mean, std)
        self.stem = stem
        if stem == "cifar":
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if stem == "cifar" or in_channels != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's rule
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = net.avgpool
        self.fc = net.fc
        self.feature_dim = net.fc.in_features
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → pooled ``[B, 512]`` (ResNet-18) / ``[B, 2048]`` (ResNet-50)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def load_torchvision_weights(model: TorchvisionResNet, path: str | os.PathLike[str]) -> TorchvisionResNet:
    """Load a torchvision ResNet state_dict from a safetensors file into ``model`` (rules in the module docstring).

    Args:
        model: the wrapped ResNet, already built with its stem, ``in_channels`` and ``num_classes``.
        path: a ``.safetensors`` file holding a torchvision ResNet state_dict (an optional ``module.`` prefix
            from DataParallel is stripped).

    Returns:
        ``model``, with the weights loaded in place.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"pretrained weights file {p} does not exist; create it with the command in the rulab.models.resnet_tv "
            "docstring (torchvision weights saved as safetensors) and pass its path"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read {p} as a safetensors file ({err}); pass a torchvision state_dict saved with safetensors"
        ) from None
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    fresh_stem = False

    w = state.get("conv1.weight")
    if w is not None and w.shape != own["conv1.weight"].shape:
        if model.stem == "cifar":
            warnings.warn(
                f"{p}: the 7×7 ImageNet stem cannot be used with stem='cifar'; conv1 stays freshly initialised",
                RulabWarning,
                stacklevel=3,
            )
            del state["conv1.weight"]
            fresh_stem = True
        elif (
            w.ndim == 4
            and w.shape[1] == 3
            and own["conv1.weight"].shape[1] == 1
            and w.shape[2:] == own["conv1.weight"].shape[2:]
        ):
            state["conv1.weight"] = w.sum(dim=1, keepdim=True)
        else:
            raise CheckpointError(
                f"{p}: conv1 has shape {tuple(w.shape)} but the model needs {tuple(own['conv1.weight'].shape)}; "
                "build the model with in_channels=1 or 3"
            )
    if "fc.weight" in state and state["fc.weight"].shape != own["fc.weight"].shape:
        state.pop("fc.weight")
        state.pop("fc.bias", None)

    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(
        k
        for k in own
        if k not in state
        and not k.startswith(("normalize.", "fc."))
        and not k.endswith("num_batches_tracked")
        and not (fresh_stem and k == "conv1.weight")
    )
    if unexpected or missing:
        names = ", ".join((missing or unexpected)[:3])
        kind = "lacks" if missing else "has unknown"
        raise CheckpointError(
            f"{p} {kind} ResNet weights ({names}, ...); pass a state_dict of the same torchvision architecture "
            f"(a ResNet with {model.feature_dim}-d features)"
        )
    wrong = [k for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(
            f"{p}: tensor {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, the model needs {tuple(own[wrong[0]].shape)}; pass weights of the same architecture"
        )
    model.load_state_dict(state, strict=False)
    return model


def _build(
    name: str,
    builder: Callable[..., nn.Module],
    num_classes: int,
    in_channels: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    stem: str,
    pretrained: str | None,
    zero_init_residual: bool,
) -> TorchvisionResNet:
    m, s = resolve_stats(mean, std, in_channels, IMAGENET_MEAN, IMAGENET_STD, name)
    model = TorchvisionResNet(builder, num_classes, in_channels, stem, zero_init_residual, m, s)
    if pretrained is not None:
        load_torchvision_weights(model, pretrained)
    return model


@MODELS.register("resnet18")
@input_shape(3, 28, 28)
def resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    stem: str = "imagenet",
    pretrained: str | None = None,
    zero_init_residual: bool = False,
) -> TorchvisionResNet:
    """torchvision ResNet-18 (11.2M parameters; W2's pathMNIST model with ``stem="imagenet"``, W2's ``utils/utils.py``).

    Default normalisation: ImageNet (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), averaged for grey input.
    ``pretrained``: path to a safetensors file of torchvision weights (see the module docstring).
    """
    from torchvision.models import resnet18 as builder  # lazy: torchvision's model zoo takes a second to import

    return _build("resnet18", builder, num_classes, in_channels, mean, std, stem, pretrained, zero_init_residual)


@MODELS.register("resnet50")
@input_shape(3, 32, 32)
def resnet50(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    stem: str = "imagenet",
    pretrained: str | None = None,
    zero_init_residual: bool = False,
) -> TorchvisionResNet:
    """torchvision ResNet-50 (23.5M parameters + head; W2's Oxford-Pets model and the Barlow Twins backbone, W2 report §6.2).

    Default normalisation: ImageNet statistics. ``zero_init_residual=True`` matches Barlow Twins pre-training.
    """
    from torchvision.models import resnet50 as builder

    return _build("resnet50", builder, num_classes, in_channels, mean, std, stem, pretrained, zero_init_residual)
