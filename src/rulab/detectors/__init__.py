"""OOD detectors (confidence scores, higher = more in-distribution) and logit post-processors.

Every module of this package is imported on the first lookup in :data:`rulab.registry.DETECTORS`, and each built-in
detector registers itself there (``rulab list detectors``; the documentation's detector table is generated from the
registry). Their score functions (``msp_score``, ``energy_score``, ...) are exported here in the form of
:mod:`rulab.detectors.functional`: they take NumPy arrays or torch tensors. A new detector is one module here and its
test; this file does not name it.
"""

from rulab.detectors import functional
from rulab.detectors.base import Detector, Extracted
from rulab.detectors.functional import *  # noqa: F403  (every detector's public functions, NumPy-compatible)
from rulab.detectors.scaled import TemperatureScaled, create_detector
from rulab.detectors.temperature import TemperatureScaler

__all__ = ["Detector", "Extracted", "TemperatureScaled", "TemperatureScaler", "create_detector", *functional.FUNCTIONS]
