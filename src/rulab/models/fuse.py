"""An inference copy of a classifier: BatchNorm folded into the preceding convolution, pooling before ReLU,
channels-last weights, eval mode, no parameter gradients.

Evaluation runs the same network hundreds of thousands of times (extraction, 38 shift cells, ODIN's tuning grid,
PGD attacks) and always in eval mode, where a BatchNorm layer is a fixed per-channel affine map. Two rewrites make
those passes cheaper without changing the function the network computes:

* **Conv → BN folding** (``torch.nn.utils.fusion.fuse_conv_bn_eval``): ``BN(conv(x)) = conv'(x)`` with
  ``w' = w·γ/√(σ²+ε)`` and ``b' = β + (b − μ)·γ/√(σ²+ε)``; likewise Linear → BatchNorm1d. Exact in real arithmetic;
  in float32 the logits move at rounding level (about 1e-6 relative).
* **Conv → MaxPool → BN folding** (fastcnn's pool-first stages): when every channel's scale ``γ/√(σ²+ε)`` is
  positive the BN is an increasing affine map per channel, which commutes with taking a maximum, so
  ``BN(maxpool(conv(x))) = maxpool(conv'(x))`` exactly; a BN with any non-positive scale is left in place.
* **ReLU → MaxPool swap**: ``maxpool(relu(x)) = relu(maxpool(x))`` exactly (both are ``max(0, max over the
  window)``, also with padding), and the ReLU then runs on a quarter of the values.

Measured with ``benchmarks/inference_copy.py`` (docs/performance.md; fastcnn, 1×28×28, 2 CPU cores): on rulab 0.1's
conv–BN–ReLU–pool fastcnn the copy ran the forward pass 1.6× and the forward + input-gradient pass (ODIN, PGD) 1.9×
as fast as the channels-last model (batch 1,000); on the pool-first fastcnn, whose BN and ReLU already run on pooled
values, it gains 6% (batch 256), and 3.0× / 1.9× over the model as trained in the default memory format.
Only ``nn.Sequential`` containers are rewritten (the pattern must be visible as consecutive children); other
modules are copied unchanged, so any classifier works, merely without the speed-up where nothing matches.

The copy has the same class and attributes as the original, so ``features``/``head`` (the model contract) still
work and ``copy.fc`` is the original head's values. It must not be trained: its parameters do not require grad.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = ["inference_copy", "fold_batchnorm"]


def _foldable(bn: nn.Module) -> bool:
    return isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats and bn.running_mean is not None


def _positive_scale(bn: nn.Module) -> bool:
    """Every channel of the eval-mode BN multiplies by a positive number (``γ/√(σ²+ε) > 0``)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    return bool((gamma / torch.sqrt(bn.running_var + bn.eps) > 0).all())


def fold_batchnorm(seq: nn.Sequential) -> int:
    """Fold every ``Conv2d → BatchNorm2d`` and ``Linear → BatchNorm1d`` pair of ``seq``'s children in place (the BN
    becomes ``nn.Identity``), and every ``Conv2d → MaxPool2d → BatchNorm2d`` triple whose BN scales are all
    positive; then move every ``MaxPool2d`` that directly follows a ReLU in front of it.

    The modules must be in eval mode (folding uses the running statistics). Returns the number of rewrites.
    """
    children = list(seq._modules.items())
    changed = 0
    for (name_a, a), (name_b, b) in zip(children, children[1:]):
        if not _foldable(b) or b.training or a.training:
            continue
        if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and a.out_channels == b.num_features:
            seq._modules[name_a] = fuse_conv_bn_eval(a, b)
        elif isinstance(a, nn.Linear) and isinstance(b, nn.BatchNorm1d) and a.out_features == b.num_features:
            seq._modules[name_a] = fuse_linear_bn_eval(a, b)
        else:
            continue
        seq._modules[name_b] = nn.Identity()
        changed += 1
    # Conv2d → MaxPool2d → BatchNorm2d: fold through the pooling when BN is increasing in every channel
    for (name_a, a), (_, p), (name_b, b) in zip(children, children[1:], children[2:]):
        if (
            isinstance(a, nn.Conv2d)
            and isinstance(p, nn.MaxPool2d)
            and not p.return_indices
            and isinstance(b, nn.BatchNorm2d)
            and _foldable(b)
            and not (a.training or b.training)
            and a.out_channels == b.num_features
            and _positive_scale(b)
        ):
            seq._modules[name_a] = fuse_conv_bn_eval(a, b)
            seq._modules[name_b] = nn.Identity()
            changed += 1
    # ReLU directly followed by MaxPool2d (Identity modules left by folding are skipped over)
    names = [n for n, m in seq._modules.items() if not isinstance(m, nn.Identity)]
    for name_a, name_b in zip(names, names[1:]):
        a, b = seq._modules[name_a], seq._modules[name_b]
        if isinstance(a, nn.ReLU) and isinstance(b, nn.MaxPool2d) and not b.return_indices:
            seq._modules[name_a], seq._modules[name_b] = b, a
            changed += 1
    return changed


def inference_copy(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """A frozen, eval-mode copy of ``model`` that computes the same function faster (module docstring).

    Args:
        model: any ``nn.Module`` (typically a :class:`~rulab.models.base.Classifier`); it is not modified.
        channels_last: convert 4-D weights to channels-last memory format (about 2× faster convolutions on CPUs);
            default: when the model has a ``Conv2d``.

    Returns:
        The copy, in eval mode, with ``requires_grad=False`` on every parameter (input gradients still flow).
        ``copy.folded`` holds the number of rewrites made.
    """
    net = copy.deepcopy(model).eval()
    folded = 0
    with torch.no_grad():
        for module in list(net.modules()):
            if isinstance(module, nn.Sequential):
                folded += fold_batchnorm(module)
    for p in net.parameters():
        p.requires_grad_(False)
    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in net.modules())
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.folded = folded
    return net
