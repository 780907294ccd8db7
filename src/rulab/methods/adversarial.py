"""PGD adversarial training (Madry et al., ICLR 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"),
as W1's robustness experiments use it (hendrycks/pre-training ``robustness/adversarial/``).

Per batch, the inner maximisation finds ``x_adv = argmax_{‖δ‖∞ ≤ ε, x + δ ∈ [0,1]^d} CE(f(x + δ), y)`` by PGD
(:func:`rulab.attacks.pgd_ce`: uniform random start in [−ε, ε], signed steps, clamp to [0, 1], the last
iterate; the model in eval mode meanwhile), and the outer minimisation trains on the adversarial examples only::

    L = (1/N) Σ_i CE(f(x_adv_i), y_i)

with the model back in train mode. W1: ε = 8/255, step 2/255, 10 steps for training (20 at test time).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.attacks import pgd_ce
from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.registry import METHODS

__all__ = ["AdversarialTraining"]


@METHODS.register("adversarial")
class AdversarialTraining(Method):
    """Cross-entropy on L∞ PGD adversarial examples (docs/protocols/hendrycks2019.md "Training").

    Args:
        eps: radius of the L∞ ball, [0, 1] pixel units (W1: 8/255).
        steps: PGD steps (W1: 10 for training).
        step_size: PGD step in pixel units (W1: 2/255).
        restarts: PGD random starts per batch; each example trains on the one with the highest cross-entropy (W1: 1).
    """

    batch_spec = "id"

    def __init__(self, eps: float = 8 / 255, steps: int = 10, step_size: float = 2 / 255, restarts: int = 1) -> None:
        if not eps >= 0 or steps < 0 or not step_size > 0 or restarts < 1:
            raise ConfigError(
                f"method parameters need eps >= 0, steps >= 0, step_size > 0 and restarts >= 1, got eps={eps}, "
                f"steps={steps}, step_size={step_size}, restarts={restarts}"
            )
        self.eps = eps
        self.steps = steps
        self.step_size = step_size
        self.restarts = restarts

    def passes_per_image(self) -> float:
        """The training pass (3) plus, per restart, PGD's ``steps`` forward-and-input-gradient passes (3 each) and its
        last forward pass (1)."""
        return 3.0 + self.restarts * (3.0 * self.steps + 1.0)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, y = batch["x"], batch["y"]
        attacked = getattr(model, "module", model)  # input gradients only: bypass a DDP wrapper's gradient hooks
        x_adv, _ = pgd_ce(
            attacked, x, y, self.eps, self.steps, self.step_size, generator=batch["generator"], restarts=self.restarts
        )
        logits = model(x_adv)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}
