"""Temperature scaling as a post-processor for any logit detector, and :func:`create_detector`.

``create_detector("energy", temperature_scaled=True)`` wraps the detector in :class:`TemperatureScaled`, which fits a
:class:`~rulab.detectors.temperature.TemperatureScaler` on the held-out ID split in :meth:`TemperatureScaled.fit` and
divides every logit tensor by that temperature before the inner detector sees it (Guo et al. 2017,
arXiv:1706.04599; convention 4 in docs/conventions.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.detectors.temperature import TemperatureScaler
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["TemperatureScaled", "create_detector"]


class TemperatureScaled(Detector):
    """A logit detector applied to ``logits / T`` with T fitted on held-out ID data.

    Args:
        detector: a detector that reads only logits (``requires == {"logits"}``).
        scaler: a scaler; fitted in :meth:`fit` unless it already has a temperature.
    """

    requires = frozenset({"logits"})

    def __init__(self, detector: Detector, scaler: TemperatureScaler | None = None) -> None:
        if set(detector.requires) != {"logits"}:
            raise InputError(
                f"temperature scaling applies to logit detectors only; '{detector.name}' needs {sorted(detector.requires)}"
            )
        self.detector = detector
        self.scaler = scaler or TemperatureScaler()

    @property
    def name(self) -> str:
        return f"{self.detector.name}+ts"

    @property
    def grid(self) -> dict[str, tuple[Any, ...]]:  # type: ignore[override]
        return self.detector.grid

    def _scaled(self, ex: Extracted | None) -> Extracted | None:
        return None if ex is None else ex.with_logits(self.scaler(ex.logits))

    def fit(
        self, train: Extracted, val_id: Extracted | None = None, val_ood: Mapping[str, Extracted] | None = None
    ) -> TemperatureScaled:
        if self.scaler.temperature is None:
            if val_id is None:
                raise RulabError(
                    "temperature scaling is fitted on the held-out ID split; pass val_id to fit (the run needs data.val_size > 0)"
                )
            self.scaler.fit(val_id.logits, val_id.labels)
        ood = None if val_ood is None else {n: self._scaled(e) for n, e in val_ood.items()}
        self.detector.fit(self._scaled(train), self._scaled(val_id), ood)
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return self.detector.score(self._scaled(ex), model)

    def tune(
        self, model: torch.nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]
    ) -> dict[str, Any]:
        return self.detector.tune(model, self._scaled(val_id), {n: self._scaled(e) for n, e in val_ood.items()})

    def hparams(self) -> dict[str, Any]:
        return {**self.detector.hparams(), "temperature": self.scaler.temperature}


def create_detector(name: str, temperature_scaled: bool = False, **kwargs: Any) -> Detector:
    """Build a registered detector; with ``temperature_scaled`` wrap it in :class:`TemperatureScaled`.

    Example:
        >>> det = create_detector("msp", temperature_scaled=True).fit(train_ex, val_id=val_ex)
        >>> scores = det.score(test_ex)  # MSP of test logits / T
    """
    det = DETECTORS.create(name, **kwargs)
    return TemperatureScaled(det) if temperature_scaled else det
