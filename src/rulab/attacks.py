"""Projected gradient ascent (PGD, L∞) in pixel space, for ACET, adversarial training and worst-case evaluation.

Two objectives:

* :func:`pgd_confidence` — Hein et al. 2019 (ACET; W3's ``gen_adv_main``): maximise ``log max_k p_k(u)`` over
  ``‖u − z‖_∞ ≤ ε``, ``u ∈ [0,1]^d`` starting from noise ``z``; random start ``clip(z + s·δ)`` with
  ``s ~ U[0,1]`` per example and ``δ ~ U[−ε, ε]^d``; step ``u ← u + α·sign(∇_u Σ loss)``; projection: clip to
  [0,1], then clip ``u − z`` to [−ε, ε]; keep-best over {z, start, all iterates} with strict ``>``.
* :func:`pgd_ce` — Madry-style PGD on the cross-entropy of the true label (W1's ``robustness/adversarial/``: ε = 8/255, step 2/255,
  10 steps, uniform random start in [−ε, ε], clamp to [0,1]; W3 "adversarial samples").

Both run the model in eval mode (BatchNorm uses its running statistics, as in W3's PGD) and restore its mode after; only
the input gradient is computed (``torch.autograd.grad`` with respect to the input: no weight gradients are
accumulated and no graph is kept between steps). ε and step sizes are in [0,1] pixel units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pgd_confidence", "pgd_ce", "log_max_confidence", "pgd"]


def log_max_confidence(logits: torch.Tensor) -> torch.Tensor:
    """``log max_k softmax(logits)_k`` per example, ``[B, K] → [B]`` (= −CE to the argmax label)."""
    return logits.log_softmax(1).max(1).values


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def pgd(
    model: nn.Module,
    start_from: torch.Tensor,
    objective: Callable[[torch.Tensor], torch.Tensor],
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    random_start: str = "hein",
    keep_best: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``objective(model(u))`` (per-example ``[B]``) over the L∞ ball of radius ``eps`` around ``start_from``.

    Args:
        model: maps ``[B, C, H, W]`` in [0,1] to logits.
        start_from: the centre ``z`` of the ball, ``[B, C, H, W]`` in [0, 1].
        objective: per-example loss from logits, ``[B, K] → [B]``; higher is better for the attacker.
        eps: L-inf radius in pixel units.
        step_size: step in pixel units.
        steps: number of signed-gradient steps (0 = no attack; with ``random_start`` only the start is tried).
        generator: randomness of the start.
        random_start: ``"hein"`` (z + s·δ, s ~ U[0,1] per example), ``"uniform"`` (z + δ), or ``"none"``.
        keep_best: return the best iterate seen (including z and the start) instead of the last one.

    Returns:
        ``(u, value)``: the adversarial inputs ``[B, C, H, W]`` and their objective ``[B]`` (detached).
    """
    was_training = model.training
    model.eval()
    z = start_from.detach()
    try:
        with torch.no_grad():
            best = z.clone()
            best_val = objective(model(z)).detach()
            u = z.clone()
            if eps > 0 and random_start != "none":
                delta = (_rand(tuple(z.shape), generator, z.device) * 2 - 1) * eps
                if random_start == "hein":
                    delta = delta * _rand((len(z),) + (1,) * (z.ndim - 1), generator, z.device)
                u = (z + delta).clamp_(0, 1)
        for i in range(steps + 1):
            u.requires_grad_(True)
            with torch.enable_grad():
                val = objective(model(u))
                grad = torch.autograd.grad(val.sum(), u)[0] if i < steps else None
            with torch.no_grad():
                val = val.detach()
                if keep_best:
                    better = val > best_val
                    best = torch.where(better.view(-1, *([1] * (z.ndim - 1))), u.detach(), best)
                    best_val = torch.where(better, val, best_val)
                else:
                    best, best_val = u.detach(), val
                if grad is None:
                    break
                u = u.detach() + step_size * grad.sign()
                u = u.clamp_(0, 1)
                u = z + (u - z).clamp_(-eps, eps)
    finally:
        model.train(was_training)
    return best.detach(), best_val.detach()


def pgd_confidence(
    model: nn.Module,
    z: torch.Tensor,
    eps: float = 0.3,
    steps: int = 40,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    keep_best: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial noise (Hein et al. 2019, ACET): maximise the log max-confidence around noise ``z``.

    Defaults are the paper's training setting: ε = 0.3, 40 steps, step ε/40 = 0.0075.

    Returns:
        ``(u, log_max_conf)`` with ``u: [B, C, H, W]`` in [0, 1] and ``‖u − z‖_∞ ≤ ε``.
    """
    step = eps / max(steps, 1) if step_size is None else step_size
    return pgd(model, z, log_max_confidence, eps, steps, step, generator, random_start="hein", keep_best=keep_best)


def pgd_ce(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float = 2 / 255,
    generator: torch.Generator | None = None,
    keep_best: bool = False,
    restarts: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial examples: maximise the cross-entropy of the true label ``y`` (W1's ``robustness/adversarial/`` defaults).

    With ``restarts > 1`` PGD runs again from fresh uniform random starts (Madry et al. 2018, Section 3) and each
    example keeps the result with the highest cross-entropy over the restarts (the first on ties).

    Returns:
        ``(x_adv, ce)`` with ``x_adv: [B, C, H, W]`` in [0, 1], ``‖x_adv − x‖_∞ ≤ ε``, and the per-example CE.
    """
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")

    def objective(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    best_x, best_ce = pgd(
        model, x, objective, eps, steps, step_size, generator, random_start="uniform", keep_best=keep_best
    )
    for _ in range(restarts - 1):
        x_adv, ce = pgd(
            model, x, objective, eps, steps, step_size, generator, random_start="uniform", keep_best=keep_best
        )
        better = ce > best_ce
        best_x = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x_adv, best_x)
        best_ce = torch.where(better, ce, best_ce)
    return best_x, best_ce
