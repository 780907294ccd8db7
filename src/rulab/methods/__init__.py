"""Training objectives, registered in ``rulab.registry.METHODS`` by their modules (``rulab list methods``).

``erm`` (plain cross-entropy), ``mixup``, ``oe`` (Outlier Exposure), ``ceda`` and ``acet`` (Hein et al.),
``barlow_twins`` (self-supervised pre-training) and ``adversarial`` (PGD adversarial training). The registry imports
every module of this package on its first lookup, so a new method is its module (a :class:`Method` subclass
registered with ``@METHODS.register("<name>")``) and its test; nothing here changes.
"""

from rulab.methods.base import Method

__all__ = ["Method"]
