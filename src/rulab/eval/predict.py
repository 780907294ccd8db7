"""Batched inference: logits (and penultimate features) of a model on uint8 images, in eval mode, no grad.

This is the one forward pass of DESIGN.md Convention 6; :mod:`rulab.eval.extract` caches its output per
(checkpoint, dataset) so that every detector and metric reads it instead of running the network again.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["predict", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
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
        ``{"logits": float32 [N, K]}`` (and ``"features": float32 [N, D]``), on the CPU.
    """
    was_training = model.training
    model.eval()
    dev = model_device(model)
    logits, feats = [], []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev)
            xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if features:
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
    return out
