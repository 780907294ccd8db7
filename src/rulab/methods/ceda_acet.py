"""CEDA and ACET (Hein, Andriushchenko, Bitterwolf, CVPR 2019, "Why ReLU networks yield high-confidence predictions
far away from the training data and how to mitigate the problem"; code max-andr/relu_networks_overconfident).

Per batch of N clean examples ``(x_i, y_i)`` and ``M = ⌊at_frac·N⌋`` noise images ``z_j`` (W3's ``train.py``;
docs/protocols/hein2019.md)::

    L = [ Σ_i CE(f(x_i), y_i) + Σ_j log max_k p_k(ẑ_j) ] / (N + M)

normalised by the TOTAL count N + M as in the reference code (with M = N the clean cross-entropy weighs half of plain
training's). The noise (:func:`rulab.data.synthetic.hein_noise`): the first ``⌊frac_perm·M⌋`` images are the clean
batch's images with permuted pixels, the rest uniform noise, then one low-pass filter with ``σ ~ U[1, 2.5]`` for the
batch and per-image min-max rescaling. CEDA uses ``ẑ = z``; ACET maximises the confidence within the L∞ ball of
radius ε around z (:func:`rulab.attacks.pgd_confidence`: BatchNorm in eval mode, random start, signed
steps, keep-best; paper: ε = 0.3, 40 steps of ε/40). The training pass runs in train mode on the CONCATENATED batch
``[noise; clean]``, so BatchNorm's batch statistics mix both (as in W3's code; kept by design, see the register of
convention 5 in docs/conventions.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.attacks import log_max_confidence, pgd_confidence
from rulab.data.synthetic import hein_noise
from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.registry import METHODS

__all__ = ["CEDA", "ACET", "ceda_loss"]


def ceda_loss(logits_clean: torch.Tensor, y: torch.Tensor, logits_noise: torch.Tensor) -> torch.Tensor:
    """``[Σ_i CE(clean_i, y_i) + Σ_j log max_k softmax(noise_j)_k] / (N + M)`` (W3's objective); ``[N, K], [N], [M, K] → []``."""
    total = F.cross_entropy(logits_clean, y, reduction="sum") + log_max_confidence(logits_noise).sum()
    return total / (len(logits_clean) + len(logits_noise))


@METHODS.register("ceda")
class CEDA(Method):
    """Confidence enhancing data augmentation: low confidence on W3's noise as is (Hein et al. 2019, CEDA).

    Args:
        at_frac: noise images per clean image, ``M = ⌊at_frac·N⌋`` (paper: 1).
        frac_perm: fraction of permuted-pixel noise among the M images (paper: 0.5; the rest is uniform noise).
        sigma_range: range of the per-batch low-pass σ in pixels (paper: 1 to 2.5).
    """

    batch_spec = "id"

    def __init__(
        self, at_frac: float = 1.0, frac_perm: float = 0.5, sigma_range: tuple[float, ...] = (1.0, 2.5)
    ) -> None:
        if not at_frac >= 0:
            raise ConfigError(f"method parameter 'at_frac' must be >= 0, got {at_frac}")
        if not 0.0 <= frac_perm <= 1.0:
            raise ConfigError(f"method parameter 'frac_perm' must lie in [0, 1], got {frac_perm}")
        if len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]:
            raise ConfigError(
                f"method parameter 'sigma_range' must be two numbers 0 < low <= high, got {list(sigma_range)}"
            )
        self.at_frac = at_frac
        self.frac_perm = frac_perm
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def passes_per_image(self) -> float:
        """A forward and backward pass of the ID image and of ``at_frac`` noise images."""
        return 3.0 * (1.0 + self.at_frac)

    def noise(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The M noise images ẑ for the clean batch ``x: [N, C, H, W]`` in [0, 1] → ``[M, C, H, W]`` in [0, 1]."""
        m = int(self.at_frac * len(x))
        with torch.autocast(x.device.type, enabled=False):  # the low-pass filter in full precision under AMP
            return hein_noise(x.detach().float(), generator, self.frac_perm, m=m, sigma_range=self.sigma_range)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, y = batch["x"], batch["y"]
        z = self.noise(model, x, batch["generator"]).to(x.dtype)
        logits = model(torch.cat([z, x]))
        clean, noisy = logits[len(z) :], logits[: len(z)]
        out = {"loss": ceda_loss(clean, y, noisy), "logits": clean}
        if len(z):
            out["noise_conf"] = log_max_confidence(noisy.detach()).exp().mean()
        return out


@METHODS.register("acet")
class ACET(CEDA):
    """Adversarial confidence enhancing training: low confidence on the worst noise in an L∞ ball (Hein et al. 2019, ACET).

    Args:
        at_frac: as :class:`CEDA`.
        frac_perm: as :class:`CEDA`.
        sigma_range: as :class:`CEDA`.
        eps: radius of the L∞ ball around each noise image, [0, 1] pixel units (paper: 0.3).
        steps: signed-gradient PGD steps (paper: 40).
        step_size: PGD step in pixel units (default ε / steps, the paper's 0.0075).
    """

    def __init__(
        self,
        at_frac: float = 1.0,
        frac_perm: float = 0.5,
        sigma_range: tuple[float, ...] = (1.0, 2.5),
        eps: float = 0.3,
        steps: int = 40,
        step_size: float | None = None,
    ) -> None:
        super().__init__(at_frac, frac_perm, sigma_range)
        if not eps >= 0 or steps < 0 or (step_size is not None and not step_size > 0):
            raise ConfigError(
                f"method parameters need eps >= 0, steps >= 0 and step_size > 0, got eps={eps}, steps={steps}, step_size={step_size}"
            )
        self.eps = eps
        self.steps = steps
        self.step_size = step_size

    def passes_per_image(self) -> float:
        """CEDA's passes plus PGD on the ``at_frac`` noise images: ``steps`` forward-and-input-gradient passes (3 each)
        and a last forward pass."""
        return super().passes_per_image() + self.at_frac * (3.0 * self.steps + 1.0)

    def noise(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """CEDA's noise moved by PGD to the most confident point within ε (the model's BN in eval mode meanwhile)."""
        z = super().noise(model, x, generator)
        if len(z) == 0:
            return z
        attacked = getattr(model, "module", model)  # input gradients only: bypass a DDP wrapper's gradient hooks
        u, _ = pgd_confidence(attacked, z, self.eps, self.steps, self.step_size, generator=generator)
        return u
