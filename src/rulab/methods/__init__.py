"""Training objectives, registered in ``rulab.registry.METHODS`` (importing this package registers them).

``erm`` (plain cross-entropy), ``mixup``, ``oe`` (Outlier Exposure), ``ceda`` and ``acet`` (Hein et al.),
``barlow_twins`` (self-supervised pre-training) and ``adversarial`` (PGD adversarial training).
"""

from rulab.methods import adversarial, barlow_twins, ceda_acet, erm, mixup, outlier_exposure  # noqa: F401
from rulab.methods.base import Method

__all__ = ["Method"]
