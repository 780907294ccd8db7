"""Batched inference: logits (and penultimate features) of a model on uint8 images, in eval mode, no grad.

This is the one forward pass of convention 6 (docs/conventions.md); :mod:`rulab.eval.extract` caches its output per
(checkpoint, dataset) so that every detector and metric reads it instead of running the network again.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rulab.distributed import dist_info, gather_rows, shard_batches, unwrap_model
from rulab.errors import InputError
from rulab.models.ensemble import MemberAverage, average_logits

__all__ = ["predict", "predict_distributed", "model_device", "check_images"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def check_images(model: nn.Module, x: torch.Tensor) -> None:
    """Raise :class:`~rulab.errors.InputError` when the batch ``x`` cannot be what ``model`` takes.

    For a convolutional model (its first ``Conv2d`` comes before any ``Linear``) ``x`` must be ``[N, C, H, W]`` with
    ``C`` that convolution's input channels; without this check a grey batch would broadcast silently through a
    colour model's ``Normalize`` layer. For a model that starts with a ``Linear`` (the MLP), each example must have as
    many values as that layer's inputs.
    """
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d):
        if x.ndim != 4:
            raise InputError(
                f"images must be [N, C, H, W], got shape {tuple(x.shape)}; add the channel axis, e.g. x.unsqueeze(1) for grey images"
            )
        if first.in_channels != x.shape[1]:
            c, h, w = first.in_channels, x.shape[2], x.shape[3]
            raise InputError(
                f"the images have {x.shape[1]} channels but the model takes {c}; convert them with "
                f"rulab.data.ood.to_shape(x, ({c}, {h}, {w})) (ITU-R 601-2 grey or replicated colour)"
            )
    elif isinstance(first, nn.Linear) and x.ndim >= 2 and first.in_features != math.prod(x.shape[1:]):
        raise InputError(  # the shape, not x[0]: an empty split (no image to index) is checked too
            f"each input has {math.prod(x.shape[1:])} values (shape {tuple(x.shape[1:])}) but the model takes {first.in_features}; "
            "give inputs of the shape it was built for"
        )


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 256,
    features: bool = False,
    channels_last: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``model`` over ``x`` in batches.

    Args:
        model: a :class:`~rulab.models.base.Classifier` (``features`` needs its ``features``/``head`` split).
        x: ``uint8 [N, C, H, W]`` (pixels 0..255) or float ``[N, C, H, W]`` in [0, 1], any device.
        batch_size: images per forward pass.
        features: also return the penultimate features.

    Returns:
        ``{"logits": float32 [N, K]}`` (and ``"features": float32 [N, D]``), on the CPU; for an averaged predictive
        (:class:`~rulab.models.ensemble.MemberAverage`: a deep ensemble, MC dropout) also ``"members": float32
        [N, M, K]``, the members' logits of the same forward passes, whose average the logits are.

    Raises:
        InputError: ``x`` is not ``[N, C, H, W]`` with the model's channel count (:func:`check_images`).
    """
    check_images(model, x)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = model.training
    model.eval()
    dev = model_device(model)
    averaged = isinstance(model, MemberAverage)
    logits, feats, members = [], [], []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev)
            xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if averaged:
                z, m = model.member_forward(xb, features=features)
                logits.append(average_logits(m).float().cpu())
                members.append(m.float().cpu())
                if z is not None:
                    feats.append(z.float().cpu())
            elif features:
                z = model.features(xb)
                logits.append(model.head(z).float().cpu())
                feats.append(z.float().cpu())
            else:
                logits.append(model(xb).float().cpu())
    finally:
        model.train(was_training)
    out = {"logits": torch.cat(logits) if logits else torch.zeros(0, 0)}
    if features:
        out["features"] = torch.cat(feats) if feats else torch.zeros(0, 0)
    if averaged:
        out["members"] = torch.cat(members) if members else torch.zeros(0, 0, 0)
    return out


@torch.no_grad()
def predict_distributed(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 256,
    features: bool = False,
    channels_last: bool = False,
) -> dict[str, torch.Tensor]:
    """:func:`predict` split over the ranks of ``torch.distributed`` and gathered in order on every rank.

    Each rank runs a contiguous shard of whole batches (:func:`rulab.distributed.shard_batches`), i.e.
    exactly the forward passes a single process would run, so the result equals :func:`predict` up to the
    kernels' thread-count rounding. Without an initialised process group this is :func:`predict`. Every rank
    must call it (it is a collective); a DistributedDataParallel wrapper is unwrapped (evaluation needs no
    gradient synchronisation).

    Args:
        model, x, batch_size, features, channels_last: as :func:`predict`; ``x`` is the WHOLE set on every rank.

    Returns:
        ``{"logits": float32 [N, K]}`` (and ``"features": float32 [N, D]``), on the CPU, on every rank.
    """
    info = dist_info()
    if not info.enabled:
        return predict(model, x, batch_size, features, channels_last)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = unwrap_model(model)
    lo, hi = shard_batches(len(x), batch_size, info)
    if hi > lo:
        out = predict(model, x[lo:hi], batch_size, features, channels_last)
    else:  # more ranks than batches: contribute 0 rows of the right width
        out = {k: v[:0] for k, v in predict(model, x[:1], batch_size, features, channels_last).items()}
    dev = model_device(model)  # NCCL gathers GPU tensors; gloo CPU ones
    return {k: gather_rows(v.to(dev)).cpu() for k, v in out.items()}
