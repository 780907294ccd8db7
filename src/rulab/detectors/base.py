"""The detector contract and the cached network outputs every detector reads.

A detector turns what the network produced for a batch of images into one **confidence score per image:
higher = more in-distribution** (convention 2 in docs/conventions.md). MSP, −energy and the ODIN score
are such confidences; an anomaly score is ``-score`` and is never stored. Metrics take ``(s_id, s_ood)``.

Detectors never run the network themselves unless they must: :func:`rulab.eval.extract.extract` runs it once per
(checkpoint, dataset) and stores the logits, penultimate features and labels in an :class:`Extracted`; every
logit/feature detector reads that (convention 6). Only detectors with ``"model"`` in :attr:`Detector.requires`
(ODIN, RankFeat, Gram matrices) go back to the model, with the uint8 images kept in :attr:`Extracted.x`; those that
also fit (Gram) receive it in :meth:`Detector.fit` as ``model=``, and read intermediate layers through the model
contract (:meth:`rulab.models.base.Classifier.layer_outputs` / ``forward_with``), never through hooks of their own.

Adding a detector touches its module and its test, nothing else: a pure score function (``energy_score(logits, t)``,
listed in the module's ``__all__``) holds the math; a small class registered with ``@DETECTORS.register("name")``
holds its hyperparameters (``__init__`` arguments), fitted state, what it reads (:attr:`Detector.requires`), its tuning
grid (:attr:`Detector.grid`) and its documentation (:attr:`Detector.formula`, :attr:`Detector.fits_on`,
:attr:`Detector.paper`). The registry imports every module of :mod:`rulab.detectors`;
:mod:`rulab.detectors.functional` wraps the module's public functions for NumPy; the documentation's detector table
and API reference are generated from the registry; the contract tests run over every registered detector.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from rulab.errors import InputError, RulabError
from rulab.metrics.ood import fpr95_id

__all__ = ["Extracted", "Detector", "REQUIREMENTS", "need", "tuning_objective", "image_batches", "eval_mode"]

REQUIREMENTS = frozenset({"logits", "features", "model", "head", "members"})
"""What a detector may ask for: cached ``logits``, cached penultimate ``features``, the ``model`` itself, the weights of
the model's linear ``head`` (``Extracted.head_weight``/``head_bias``), or the logits of the ``members`` of an
averaged predictive (a deep ensemble or MC dropout: ``Extracted.members``)."""


@dataclass
class Extracted:
    """A network's outputs on one dataset, computed once (:func:`rulab.eval.extract.extract`).

    Attributes:
        logits: ``float32 [N, K]``.
        labels: ``int64 [N]`` class indices; ``-1`` for OOD examples.
        features: ``float32 [N, D]`` penultimate features (``model.features(x)``), or None when not extracted.
        x: ``uint8 [N, C, H, W]`` the images (pixels 0..255; ``float32`` [0, 1] pixels for a user's non-8-bit float
            data), for detectors that go back to the model; or None.
        head_weight: ``[K, D]`` weight of the model's linear head (ReAct and ViM need it), or None.
        head_bias: ``[K]`` bias of the head, or None.
        name: what was extracted (a dataset key), for messages.
        members: ``float32 [N, M, K]`` the logits of each member of an averaged predictive (the networks of a deep
            ensemble, the passes of MC dropout; :class:`rulab.models.ensemble.MemberAverage`), whose average
            ``logits`` holds; None for a single network.

    Raises:
        InputError: mismatched shapes, or NaN/inf in ``logits`` or ``features``.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None = None
    x: torch.Tensor | None = None
    head_weight: torch.Tensor | None = None
    head_bias: torch.Tensor | None = None
    name: str = ""
    members: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.logits.ndim != 2:
            raise InputError(f"'{self.name}' logits must be [N, K], got shape {tuple(self.logits.shape)}")
        n = self.logits.shape[0]
        if self.labels.ndim != 1 or self.labels.shape[0] != n:
            raise InputError(
                f"'{self.name}' needs one label per row of logits ({n}), got shape {tuple(self.labels.shape)}"
            )
        if self.features is not None and (self.features.ndim != 2 or self.features.shape[0] != n):
            raise InputError(
                f"'{self.name}' features must be [N, D] with N = {n}, got shape {tuple(self.features.shape)}"
            )
        if self.x is not None and (self.x.ndim != 4 or self.x.shape[0] != n):
            raise InputError(f"'{self.name}' images must be [N, C, H, W] with N = {n}, got shape {tuple(self.x.shape)}")
        if self.members is not None and (
            self.members.ndim != 3 or self.members.shape[0] != n or self.members.shape[2] != self.logits.shape[1]
        ):
            raise InputError(
                f"'{self.name}' member logits must be [N, M, K] with N = {n} and K = {self.logits.shape[1]}, got shape {tuple(self.members.shape)}"
            )
        for what, t in (("logits", self.logits), ("features", self.features), ("member logits", self.members)):
            if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise InputError(
                    f"'{self.name}' {what} hold {bad} NaN/inf values; detectors need finite network outputs, so check the "
                    "model (did training diverge?) and extract again"
                )

    def __len__(self) -> int:
        return self.logits.shape[0]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def subset(self, index: torch.Tensor | slice) -> Extracted:
        """The selected rows (head weights are shared, not copied)."""

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index.to(t.device) if isinstance(index, torch.Tensor) else index]

        return replace(
            self,
            logits=take(self.logits),
            labels=take(self.labels),
            features=take(self.features),
            x=take(self.x),
            members=take(self.members),
        )

    def with_logits(self, logits: torch.Tensor) -> Extracted:
        """A copy with other logits (e.g. temperature-scaled ones)."""
        return replace(self, logits=logits)

    def to(self, device: torch.device | str) -> Extracted:
        """A copy with every tensor on ``device``."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Extracted(
            mv(self.logits),
            mv(self.labels),
            mv(self.features),
            mv(self.x),
            mv(self.head_weight),
            mv(self.head_bias),
            self.name,
            mv(self.members),
        )


def need(ex: Extracted, what: str, detector: str) -> torch.Tensor:
    """``ex.<what>`` or a one-sentence error saying how to extract it."""
    value = getattr(ex, what)
    if value is None:
        how = {
            "features": "extract with features=True",
            "x": "keep the images (Extracted.x) for detectors that go back to the model",
            "head_weight": "extract with features=True from a model with a linear head (model.fc)",
            "head_bias": "extract with features=True from a model with a linear head (model.fc)",
            "members": "extract from a deep ensemble or an MC-dropout model (rulab.models.Ensemble / MCDropout; "
            "`rulab eval --ensemble RUN RUN ...` or `rulab eval RUN --mc-dropout T`)",
        }.get(what, "extract it")
        raise InputError(f"detector '{detector}' needs {what} of '{ex.name or 'the data'}'; {how}")
    return value


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode and without gradients for the block; its mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def image_batches(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """``x`` (``uint8`` 0..255 or float in [0, 1], ``[N, C, H, W]``) as float batches in [0, 1] on the model's device,
    channels-last for a convolutional model (faster on CPUs, same values): how detectors that go back to the model
    feed it the images kept in :attr:`Extracted.x`."""
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    conv = x.ndim == 4 and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
        yield xb.contiguous(memory_format=torch.channels_last) if conv else xb


def tuning_objective(s_id: torch.Tensor, s_oods: Mapping[str, torch.Tensor]) -> float:
    """The value hyperparameter tuning minimises: mean over validation-OOD sets of ``fpr95_id`` (ODIN's criterion,
    Liang et al. 2018), with ties broken by the grid order."""
    if not s_oods:
        raise InputError("tuning needs at least one validation-OOD set")
    return sum(fpr95_id(s_id, s) for s in s_oods.values()) / len(s_oods)


class Detector:
    """Base class of every OOD detector. ``score`` returns a confidence: **higher = more in-distribution**.

    Class attributes:
        requires: a subset of ``{"logits", "features", "model", "head", "members"}``: what :meth:`score` reads.
            ``"model"`` means the detector runs the network itself on ``Extracted.x`` (pass ``model=`` to
            :meth:`score`); ``"head"`` that it reads the linear head's weights (a model without one, such as a deep
            ensemble, cannot run it); ``"members"`` that it reads the members' logits of an averaged predictive.
        grid: hyperparameter name → candidate values, searched by :meth:`tune` on validation data; empty = nothing to
            tune. The chosen values are the instance attributes of the same names (:meth:`hparams`).
        formula: the score in one line of Markdown (``z``: logits, ``h``: penultimate features, ``p = softmax(z)``), for
            the documentation's detector table.
        fits_on: what :meth:`fit` learns from (``"training features"``); ``""`` when nothing is fitted.
        paper: the source, ``"Authors year, arXiv:id"`` (``"baseline"`` for a textbook score).
        fit_splits: the splits an overridden :meth:`fit` reads, a subset of ``{"train", "val"}`` (default: the
            training split). The evaluation extracts the training split only when a detector's ``fit_splits`` names it
            (or when there is no validation split to fall back on).

    Subclasses implement :meth:`score`, and :meth:`fit` when they have fitted state (class-conditional detectors
    fit on the TRAINING split's features). A detector with ``"model"`` in :attr:`requires` that fits takes the
    network as a keyword argument, ``fit(train, val_id=None, val_ood=None, model=None)``, and the evaluation passes
    it (:meth:`fit_with`); the others keep ``fit(train, val_id=None, val_ood=None)``.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"logits"})
    fit_splits: ClassVar[frozenset[str]] = frozenset({"train"})
    grid: ClassVar[dict[str, tuple[Any, ...]]] = {}
    formula: ClassVar[str] = ""
    fits_on: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bad = set(cls.requires) - REQUIREMENTS
        if bad or not cls.requires:
            raise TypeError(
                f"{cls.__name__}.requires must be a non-empty subset of {sorted(REQUIREMENTS)}, got {sorted(cls.requires)}"
            )

    @property
    def name(self) -> str:
        """The registry name (the class name when unregistered)."""
        return getattr(type(self), "registry_name", type(self).__name__)

    def fit(
        self,
        train: Extracted,
        val_id: Extracted | None = None,
        val_ood: Mapping[str, Extracted] | None = None,
        model: torch.nn.Module | None = None,
    ) -> Detector:
        """Fit state on the training split (and optionally held-out ID data); the default does nothing.

        Args:
            train: the run's TRAINING split (class-conditional statistics, feature banks, percentiles).
            val_id: the run's held-out validation split (never the test set).
            val_ood: validation-OOD sets (never the test OOD sets); unused by the built-in detectors' ``fit``.
            model: the network, for detectors with ``"model"`` in :attr:`requires` (only those declare it when they
                override ``fit``).

        Returns:
            ``self``.
        """
        return self

    def fit_with(
        self,
        train: Extracted,
        val_id: Extracted | None = None,
        val_ood: Mapping[str, Extracted] | None = None,
        model: torch.nn.Module | None = None,
    ) -> Detector:
        """:meth:`fit`, passing ``model=`` to the detectors that go back to the network (``"model"`` in
        :attr:`requires`) and nothing to the others; what the evaluation calls."""
        if "model" in self.requires:
            return self.fit(train, val_id=val_id, val_ood=val_ood, model=model)
        return self.fit(train, val_id=val_id, val_ood=val_ood)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Confidence scores ``[N]`` (higher = more in-distribution), float, on ``ex.logits``' device."""
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """The current values of the tunable hyperparameters (the keys of :attr:`grid`)."""
        return {k: getattr(self, k) for k in self.grid}

    def candidates(self) -> list[dict[str, Any]]:
        """Every combination of :attr:`grid` values, in grid order (the first is preferred on ties)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def tune(
        self, model: torch.nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]
    ) -> dict[str, Any]:
        """Pick the grid point minimising :func:`tuning_objective` on VALIDATION data and keep it.

        Only validation data may be passed: ``val_id`` is the run's held-out ID split and ``val_ood`` the benchmark's
        validation-OOD sets; never a test set (the leak OpenOOD users and the ODIN code have reported).

        Returns:
            The chosen hyperparameters, plus ``"objective"`` (the mean validation ``fpr95_id`` at that point).
        """
        if not self.grid:
            return {}
        if not val_ood:
            raise RulabError(
                f"detector '{self.name}' tunes its hyperparameters on validation-OOD data, but none was given; add val_ood to the benchmark"
            )
        best: tuple[float, dict[str, Any]] | None = None
        for point in self.candidates():
            for k, v in point.items():
                setattr(self, k, v)
            s_id = self.score(val_id, model)
            obj = tuning_objective(s_id, {n: self.score(e, model) for n, e in val_ood.items()})
            if best is None or obj < best[0] or (math.isnan(best[0]) and not math.isnan(obj)):
                best = (obj, point)
        assert best is not None
        for k, v in best[1].items():
            setattr(self, k, v)
        return {**best[1], "objective": best[0]}

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}={v!r}"
            for k, v in vars(self).items()
            if isinstance(v, (int, float, str, type(None))) and not k.startswith("_")
        )
        return f"{type(self).__name__}({inner})"
