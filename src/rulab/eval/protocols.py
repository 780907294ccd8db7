"""OOD evaluation protocols as data: which ID and OOD examples each run scores (docs/protocols/index.md).

A protocol is a frozen dataclass registered in :data:`rulab.registry.PROTOCOLS`. Given the sizes of the ID test set
and of an OOD set it returns one ``Split(id, ood)`` of index tensors per run; the evaluator scores those rows,
computes the metrics of every run and combines them with :func:`aggregate` (mean ± std over runs).

======================  =========================================================================================
``hendrycks``           W1 (``test.py``): ID = the full test set; OOD = ``len(test) // 5`` per run (2,000 for
                        CIFAR), 5 runs, each a fresh shuffle of the OOD set, so examples can repeat ACROSS runs
                        (not within).
``hendrycks_oe``        the same with 10 runs (OE's experiment scripts).
``odin``                W4 (``calData.py``): the first 1,000 images of the ID set and of each OOD set are the
                        tuning images (:meth:`Protocol.tuning_split`); the evaluation skips them and scores equal
                        numbers of ID and OOD images, ``min(n_id, n_ood) − 1,000`` each (10,000 → 9,000; iSUN
                        8,925 → 7,925).
``odin-paper``          W4's whole protocol (Liang et al. 2018, Section 4): the ``odin`` splits, and every detector
                        with a hyperparameter grid is tuned PER OOD SET on that set's first 1,000 images and the
                        ID test set's first 1,000 (:attr:`Protocol.tunes_per_set`), then scored with the chosen
                        values on the rest. The tuning images are never scored, but they are test-set images: the
                        paper's choice, not rulab's default (which tunes on separate validation-OOD sets).
``hein``                W3 (``evaluation.py``): full sets read in batches of 128 with drop_last (10,000 → 9,984).
``full``                every ID and every OOD example, one run.
======================  =========================================================================================

Example:
    >>> from rulab.registry import PROTOCOLS
    >>> protocol = PROTOCOLS.create("hendrycks")
    >>> runs = [metrics(s_id[i], s_ood[o]) for i, o in protocol.splits(len(s_id), len(s_ood), seed=0)]
    >>> protocol.aggregate(runs)["mean"]["auroc"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rulab.errors import ConfigError, InputError
from rulab.registry import PROTOCOLS

__all__ = ["Split", "Protocol", "Full", "Hendrycks", "Odin", "OdinPaper", "Hein", "aggregate"]


class Split(NamedTuple):
    """Indices of one run: ``id: int64 [n_id_run]`` into the ID set, ``ood: int64 [n_ood_run]`` into the OOD set."""

    id: torch.Tensor
    ood: torch.Tensor


def _check_sizes(n_id: int, n_ood: int) -> None:
    for what, n in (("n_id", n_id), ("n_ood", n_ood)):
        if int(n) != n or n < 1:
            raise InputError(f"{what} must be a positive number of examples, got {n!r}")


def aggregate(runs: Sequence[Mapping[str, float]], ddof: int = 0) -> dict:
    """Mean and standard deviation of each metric over runs.

    Args:
        runs: one ``{metric: value}`` dict per run, all with the same keys.
        ddof: delta degrees of freedom of the std; 0 (population std) is what W1/OE print (``np.std``).

    Returns:
        ``{"mean": {metric: float}, "std": {metric: float}, "n_runs": int}``; the std of a single run is 0.0 with
        ``ddof=0`` and NaN with ``ddof=1``. NaN values propagate.
    """
    if len(runs) == 0:
        raise InputError("aggregate needs at least one run's metrics, got an empty list")
    keys = list(runs[0])
    for i, run in enumerate(runs):
        if set(run) != set(keys):
            raise InputError(
                f"run {i} reports metrics {sorted(run)} but run 0 reports {sorted(keys)}; give every run the same metrics"
            )
    values = torch.tensor([[float(run[k]) for k in keys] for run in runs], dtype=torch.float64)
    n = len(runs)
    mean = values.mean(dim=0)
    std = ((values - mean).pow(2).sum(dim=0) / (n - ddof)).sqrt() if n > ddof else torch.full_like(mean, math.nan)
    return {"mean": dict(zip(keys, mean.tolist())), "std": dict(zip(keys, std.tolist())), "n_runs": n}


@dataclass(frozen=True)
class Protocol:
    """Base protocol: every ID and every OOD example, in order, one run.

    Attributes:
        name: the protocol's registry name (recorded with the results).
    """

    name: str = "full"

    @property
    def num_runs(self) -> int:
        """Runs per (model, OOD set)."""
        return 1

    def splits(self, n_id: int, n_ood: int, seed: int = 0) -> list[Split]:
        """One :class:`Split` per run for an ID set of ``n_id`` and an OOD set of ``n_ood`` examples (deterministic in ``seed``)."""
        _check_sizes(n_id, n_ood)
        return [Split(torch.arange(n_id), torch.arange(n_ood))]

    def tuning_split(self, n_id: int, n_ood: int) -> Split | None:
        """Indices reserved for tuning detector hyperparameters, or None when the protocol reserves none."""
        return None

    @property
    def tunes_per_set(self) -> bool:
        """Whether detectors with a hyperparameter grid are tuned separately for every test OOD set on its
        :meth:`tuning_split` (W4's protocol) instead of once on the benchmark's validation-OOD sets."""
        return False

    def synthetic_size(self, n_id: int) -> int:
        """How many synthetic OOD images to generate for an ID test set of ``n_id`` (the pool the runs draw from)."""
        return n_id

    def aggregate(self, runs: Sequence[Mapping[str, float]]) -> dict:
        """Mean ± std over this protocol's runs; see :func:`aggregate`."""
        return aggregate(runs)


@PROTOCOLS.register("full")
@dataclass(frozen=True)
class Full(Protocol):
    """Every ID and every OOD example, one run."""

    name: str = "full"


@PROTOCOLS.register("hendrycks")
@dataclass(frozen=True)
class Hendrycks(Protocol):
    """W1/OE protocol (W1's ``uncertainty/CIFAR/test.py``): full ID test set; ``n_id // ood_divisor`` OOD examples per run.

    Each run takes the first ``n_per_run`` examples of a fresh random permutation of the OOD set (W1's shuffled
    loader restarted per run), so an example appears at most once per run but can recur across runs. An OOD set
    smaller than ``n_per_run`` is used whole (shuffled) in every run. Synthetic sets are generated once as a pool of
    ``n_per_run × num_runs`` images (:meth:`synthetic_size`) and the runs draw from it the same way.

    Attributes:
        num_runs: number of runs (W1: 5; OE experiment scripts: 10).
        ood_divisor: OOD examples per run = ``n_id // ood_divisor`` (W1: 5, i.e. an OOD:ID ratio of 1:5).
        test_batch: if set, ``n_per_run`` is rounded down to whole batches of this size, as W1's loop over
            ``n_per_run // test_bs`` batches does (W1: 200; no effect when ``n_id // 5`` is a multiple of 200).
    """

    name: str = "hendrycks"
    num_runs: int = 5  # type: ignore[assignment]  # a field here, a constant 1 in the base class
    ood_divisor: int = 5
    test_batch: int | None = None

    def __post_init__(self) -> None:
        if self.num_runs < 1:
            raise ConfigError(f"protocol '{self.name}' needs num_runs >= 1, got {self.num_runs}")
        if self.ood_divisor < 1:
            raise ConfigError(f"protocol '{self.name}' needs ood_divisor >= 1, got {self.ood_divisor}")
        if self.test_batch is not None and self.test_batch < 1:
            raise ConfigError(f"protocol '{self.name}' needs test_batch >= 1 or None, got {self.test_batch}")

    def per_run(self, n_id: int) -> int:
        """Nominal OOD examples per run for an ID set of ``n_id`` (before capping at the OOD set's size)."""
        n = n_id // self.ood_divisor
        if self.test_batch is not None:
            n = n // self.test_batch * self.test_batch
        if n < 1:
            raise InputError(
                f"protocol '{self.name}' takes n_id // {self.ood_divisor} OOD examples per run, which is 0 for n_id={n_id}; use a larger ID set or the 'full' protocol"
            )
        return n

    def splits(self, n_id: int, n_ood: int, seed: int = 0) -> list[Split]:
        _check_sizes(n_id, n_ood)
        k = min(self.per_run(n_id), n_ood)
        g = torch.Generator().manual_seed(seed)
        idx_id = torch.arange(n_id)
        return [Split(idx_id, torch.randperm(n_ood, generator=g)[:k]) for _ in range(self.num_runs)]

    def synthetic_size(self, n_id: int) -> int:
        return self.per_run(n_id) * self.num_runs


@PROTOCOLS.register("hendrycks_oe")
def hendrycks_oe(num_runs: int = 10, ood_divisor: int = 5, test_batch: int | None = None) -> Hendrycks:
    """OE's variant of :class:`Hendrycks`: 10 runs (the ``num_to_avg`` its experiment scripts pass)."""
    return Hendrycks(name="hendrycks_oe", num_runs=num_runs, ood_divisor=ood_divisor, test_batch=test_batch)


@PROTOCOLS.register("odin")
@dataclass(frozen=True)
class Odin(Protocol):
    """ODIN protocol (ODIN's ``code/calData.py``): skip the ``skip`` tuning images, then equal numbers of ID and OOD images.

    ODIN's loop scores images ``skip … N−1`` of both loaders with ``N`` the smaller set's size, so both sides get
    ``min(n_id, n_ood) − skip`` images (CIFAR test vs a 10,000-image set: 9,000 each; vs iSUN's 8,925: 7,925 each).
    Loaders are unshuffled: one deterministic run, ``seed`` is unused.

    Attributes:
        skip: leading images of every set reserved for tuning (ODIN: 1,000).
    """

    name: str = "odin"
    skip: int = 1000

    def __post_init__(self) -> None:
        if self.skip < 0:
            raise ConfigError(f"protocol '{self.name}' needs skip >= 0, got {self.skip}")

    def splits(self, n_id: int, n_ood: int, seed: int = 0) -> list[Split]:
        _check_sizes(n_id, n_ood)
        n = min(n_id, n_ood) - self.skip
        if n < 1:
            raise InputError(
                f"protocol '{self.name}' skips the first {self.skip} images, which leaves nothing of sets with {n_id} ID and {n_ood} OOD images; use larger sets or a smaller skip"
            )
        idx = torch.arange(self.skip, self.skip + n)
        return [Split(idx, idx.clone())]

    def tuning_split(self, n_id: int, n_ood: int) -> Split:
        """The first ``skip`` images of the ID and the OOD set (ODIN tunes T and ε on these)."""
        _check_sizes(n_id, n_ood)
        if min(n_id, n_ood) < self.skip:
            raise InputError(
                f"protocol '{self.name}' tunes on the first {self.skip} images but a set has only {min(n_id, n_ood)}; use larger sets or a smaller skip"
            )
        idx = torch.arange(self.skip)
        return Split(idx, idx.clone())


@PROTOCOLS.register("odin-paper")
@dataclass(frozen=True)
class OdinPaper(Odin):
    """ODIN's whole protocol (Liang et al. 2018, Section 4 and ``code/calData.py``): the :class:`Odin` splits, plus
    per-set tuning.

    For every test OOD set, a detector with a hyperparameter grid (ODIN's T and ε) is tuned on the first ``skip``
    images of that set and of the ID test set (:meth:`tuning_split`), minimising ``fpr95_id`` as the paper does, and
    then scores images ``skip …`` of both with the chosen values; so each OOD set has its own (T, ε) and its own ID
    scores. Detectors without a grid (MSP) are scored as under ``odin``.

    Attributes:
        skip: leading images of every set used for tuning and never scored (ODIN: 1,000).
    """

    name: str = "odin-paper"

    @property
    def tunes_per_set(self) -> bool:
        return True


@PROTOCOLS.register("hein")
@dataclass(frozen=True)
class Hein(Protocol):
    """W3 protocol (W3's data loaders and ``evaluation.py``): full sets read in batches with drop_last, one run.

    Attributes:
        batch_size: W3's test batch (128); ``n`` examples become ``n // 128 · 128`` (CIFAR 10,000 → 9,984;
            SVHN 26,032 → 25,984; 26,016, a count sometimes quoted for W3's SVHN noise, is not a multiple of 128).
    """

    name: str = "hein"
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"protocol '{self.name}' needs batch_size >= 1, got {self.batch_size}")

    def _kept(self, n: int) -> int:
        kept = n // self.batch_size * self.batch_size
        if kept < 1:
            raise InputError(
                f"protocol '{self.name}' drops incomplete batches of {self.batch_size}, which leaves nothing of a set of {n}; use a larger set or a smaller batch_size"
            )
        return kept

    def splits(self, n_id: int, n_ood: int, seed: int = 0) -> list[Split]:
        _check_sizes(n_id, n_ood)
        return [Split(torch.arange(self._kept(n_id)), torch.arange(self._kept(n_ood)))]

    def synthetic_size(self, n_id: int) -> int:
        return self._kept(n_id)
