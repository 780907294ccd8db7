"""Optimizers and learning-rate schedules as pure functions of the step.

Schedules (``lr_at``) take the optimizer step (0-based) and the total number of steps and return the learning
rate; the loop sets it before every step, so no scheduler state needs saving and a resumed run continues exactly.

* ``cosine``: W1 (``uncertainty/CIFAR/baseline.py``, ``tune.py``) — LambdaLR per iteration, ``lr(t) = floor + (lr - floor) · ½(1 + cos(π t / T))`` so the
  rate anneals from ``lr`` to exactly ``lr_floor`` (1e-6). The original stepped the scheduler before the
  optimizer (first update at ``t = 1``); ``parity=True`` reproduces that shift.
* ``step``: W3's training code — piecewise constant: ``lr · gamma^k`` after each milestone fraction (0.5, 0.75, 0.9).
* ``onecycle``: linear warm-up to ``lr`` over ``warmup_frac`` of the steps, then linear decay to ``lr_floor``.
* ``constant``: ``lr`` (after an optional linear warm-up).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rulab.config import OptimCfg

__all__ = ["lr_at", "build_optimizer", "param_groups"]


def lr_at(step: int, total: int, cfg: OptimCfg, parity: bool = False) -> float:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total``.

    Args:
        step: the step about to be taken.
        total: the number of steps of the whole run (epochs · batches per epoch).
        cfg: schedule parameters.
        parity: W1's scheduler-before-optimizer order (the first update already uses ``t = 1``).
    """
    total = max(total, 1)
    t = min(step + (1 if parity else 0), total)
    base, floor = cfg.lr, cfg.lr_floor
    warm = int(round(cfg.warmup_frac * total))
    if cfg.schedule == "cosine":
        if warm and t < warm:
            return base * (t + 1) / warm
        frac = (t - warm) / max(total - warm, 1)
        return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if cfg.schedule == "step":
        k = sum(1 for m in cfg.milestones if t >= m * total)
        return base * cfg.gamma**k
    if cfg.schedule == "onecycle":
        if warm and t < warm:
            return base * (t + 1) / warm
        frac = (t - warm) / max(total - warm, 1)
        return base + (floor - base) * frac
    if warm and t < warm:
        return base * (t + 1) / warm
    return base


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def param_groups(model: nn.Module, cfg: OptimCfg, extra: list[nn.Parameter] | None = None) -> list[dict]:
    """Parameter groups with per-group ``lr_mult`` (head 1, backbone ``backbone_lr_mult``) and weight decay.

    The head is the model's ``fc`` (the contract's Linear head); extra parameters (e.g. a Barlow Twins projector)
    train at the full rate. Parameters with ``requires_grad=False`` (frozen BN) are left out.
    """
    head_ids = {id(p) for p in model.fc.parameters()} if hasattr(model, "fc") else set()
    norm_ids = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        mult = 1.0 if id(p) in head_ids else cfg.backbone_lr_mult
        wd = 0.0 if (cfg.no_decay_norm and id(p) in norm_ids) else cfg.weight_decay
        groups.setdefault((mult, wd), []).append(p)
    for p in extra or []:
        groups.setdefault((1.0, cfg.weight_decay), []).append(p)
    return [{"params": ps, "lr_mult": m, "weight_decay": wd} for (m, wd), ps in groups.items() if m > 0]


def build_optimizer(model: nn.Module, cfg: OptimCfg, extra: list[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, coupled L2) or AdamW (decoupled decay) over :func:`param_groups`."""
    groups = param_groups(model, cfg, extra)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
