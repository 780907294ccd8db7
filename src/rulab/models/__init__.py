"""Classifiers that follow the contract of :mod:`rulab.models.base`, registered in :data:`rulab.registry.MODELS`.

The registry imports every module of this package on its first lookup (``rulab list models``); rulab's own
entrypoints are:

=====================  ======================================================  ======================
name                   what                                                    default input
=====================  ======================================================  ======================
``fastcnn``            the default fast CPU CNN (Fashion-MNIST)                1×28×28
``lenet``              Hein et al.'s MNIST LeNet (W3 ``models.py``)            1×28×28
``preact_resnet_hein`` Hein et al.'s ``resnet_small`` (W3 ``models.py``)       3×32×32
``wrn`` / ``wrn40_2``  wide ResNets of W1 and ODIN (docs/protocols/)           3×32×32
``wrn28_10``
``densenet_bc100``     ODIN's DenseNet-BC-100 (Liang et al. 2018)              3×32×32
``resnet18/50``        torchvision ResNets (W2 report §6.1-6.2)                3×28×28 / 3×32×32
``mlp``                two-moons MLP (W3 ``toy2d.ipynb``)                      2-d vectors
``torchvision``        any torchvision classifier by name (``arch=``)          3×32×32
=====================  ======================================================  ======================

Wrappers (not registered; they average trained classifiers): :class:`Ensemble` (a deep ensemble,
:mod:`rulab.models.ensemble`) and :class:`MCDropout` (MC dropout, :mod:`rulab.models.mc_dropout`).

Example:
    >>> import torch
    >>> from rulab.models import create_model
    >>> model = create_model("wrn40_2", num_classes=10)
    >>> model.features(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

from typing import Any

from rulab.models.base import Classifier, Normalize
from rulab.models.ensemble import Ensemble, MemberAverage
from rulab.models.heads import BarlowTwinsProjector
from rulab.models.mc_dropout import MCDropout
from rulab.models.spec import count_parameters, default_input_shape
from rulab.registry import MODELS

__all__ = [
    "Classifier",
    "Normalize",
    "BarlowTwinsProjector",
    "Ensemble",
    "MemberAverage",
    "MCDropout",
    "create_model",
    "list_models",
    "count_parameters",
    "default_input_shape",
]


def create_model(name: str, **kwargs: Any) -> Classifier:
    """Build the model registered as ``name`` (``MODELS.create``); unknown names or keywords give a clear error."""
    return MODELS.create(name, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally those containing ``pattern``."""
    return MODELS.list(pattern)
