"""Per-image bootstrap intervals of an evaluation's numbers (docs/metrics.md, "Intervals").

The evaluation (:func:`rulab.eval.evaluate.run_evaluation`) calls :func:`add_intervals` after scoring: every row that
is a mean, rate or rank statistic over test images gets the bootstrap replicates of its value
(:mod:`rulab.metrics.bootstrap`), kept in ``table.arrays["bootstrap/<key>"]``, and its 95% percentile interval in
``ci_low``/``ci_high``/``ci_method``:

* the ID block, raw and temperature-scaled (``kind="id"``: every metric of
  :func:`rulab.metrics.calibration.calibration_metrics`; the temperature stays fixed at its fitted value, so the
  interval is conditional on it, and the ``temperature`` row itself has none);
* every OOD-detection row of every detector and OOD set (``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95_id``,
  ``fpr95_ood``, ``detection_error``), ID and OOD resampled separately (a stratified bootstrap: the OOD:ID ratio
  stays fixed); under a protocol with several runs (W1's five draws of OOD images) each run's draw is resampled and
  the replicate is the mean over runs, like the value;
* the MMC of every OOD set;
* every raw shift cell (``acc``, ``nll``, ``brier``, ``mmc``, ``ece``, ``rms_uniform10``) and their means over levels,
  resampling the test images (the same images under every corruption).

No interval: ``ood_ratio`` and ``temperature`` (not statistics of test images), the adaptive-bin ``rms`` of shift
cells and the temperature-scaled shift rows, OE's pooled OOD calibration (``ood_rms``, ``ood_mad``, ``ood_soft_f1``)
and the far-away tests (their cost per row is that of the whole ID block; ``benchmarks/interval_cost.py``), and
relative corruption errors.

The resamples come from :class:`Resampler`: their counts depend only on which set is resampled (its role, e.g.
``"id"`` or ``"ood/digits"``), its size and a fixed seed, never on the model. Two models evaluated on the same data
(every method of one seed of a study) therefore see the same resampled images, and the difference of their
replicates is a paired bootstrap of their difference (:mod:`rulab.results.compare`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import torch

from rulab.data.loader import derive_seed
from rulab.errors import InputError
from rulab.eval.protocols import Protocol
from rulab.metrics.bootstrap import (
    calibration_replicates,
    detection_replicates,
    mean_replicates,
    resample_counts,
)
from rulab.results.table import ResultTable

__all__ = ["Resampler", "SHIFT_METRICS", "add_intervals", "id_replicates", "ood_replicates", "shift_replicates"]

BOOTSTRAP_SEED = 0x51C1
"""Seed of every evaluation's resamples (with the role and the size of the resampled set)."""

SHIFT_METRICS = ("acc", "nll", "brier", "mmc", "ece", "rms_uniform10")
"""The raw shift-cell metrics that get an interval (the adaptive-bin ``rms`` costs three times all of these)."""


class Resampler:
    """Bootstrap counts per resampled set, the same for every model evaluated on the same data.

    Args:
        n_resamples: resamples per interval (``eval.bootstrap``).
        seed: mixed with the role and the set size into each set's generator seed.

    Example:
        >>> r = Resampler(1000)
        >>> r.counts("id", 10_000).shape
        torch.Size([1000, 10000])
    """

    def __init__(self, n_resamples: int, seed: int = BOOTSTRAP_SEED) -> None:
        if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
            raise InputError(f"the number of bootstrap resamples must be a positive integer, got {n_resamples!r}")
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def counts(self, role: str, n: int) -> torch.Tensor:
        """``int16 [B, n]`` counts for the set ``role`` of ``n`` examples (cached; deterministic in role, n, seed)."""
        key = (role, int(n))
        if key not in self._cache:
            g = torch.Generator().manual_seed(derive_seed(self.seed, zlib.crc32(role.encode()), int(n)))
            self._cache[key] = resample_counts(int(n), self.n_resamples, g)
        return self._cache[key]


def id_replicates(
    table: ResultTable,
    logits: torch.Tensor,
    labels: torch.Tensor,
    resampler: Resampler,
    dataset: str,
    temperature: float | None = None,
    parity: bool = False,
) -> None:
    """Replicates of the ID block: every calibration metric raw (detector ``""``) and after temperature scaling (``"ts"``).

    Args:
        table: the evaluation's table; rows whose keys exist get their replicates.
        logits: ``[N, K]`` test logits; labels: ``[N]``.
        dataset: the ID dataset name (the rows' ``dataset``).
        temperature: the fitted temperature, or ``None`` when there are no ``ts`` rows.
        parity: W1/OE's dropped top adaptive bin (as in the values).
    """
    counts = resampler.counts("id", logits.shape[0])
    variants = [("", logits)] + ([("ts", logits / temperature)] if temperature is not None else [])
    for detector, z in variants:
        wanted = [
            m
            for m in ("acc", "nll", "brier", "ece", "mce", "rms", "mad", "rms_uniform10", "soft_f1", "mmc")
            if table.get(("id", dataset, "", "", detector, m)) is not None
        ]
        if not wanted:
            continue
        reps = calibration_replicates(z, labels, counts, drop_last_bin=parity, metrics=wanted)
        for metric, r in reps.items():
            table.set_replicates(("id", dataset, "", "", detector, metric), r)


def ood_replicates(
    table: ResultTable,
    scores: Mapping[str, Mapping[str, torch.Tensor]],
    protocol: Protocol,
    seed: int,
    resampler: Resampler,
    msp_ood: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Replicates of every OOD-detection row, and of the MMC of every OOD set.

    Args:
        table: the evaluation's table.
        scores: ``{detector: {"id": [N_id], <ood set>: [N_ood], ...}}`` (the arrays ``scores/<detector>/<set>``).
        protocol: the protocol the values were computed under; its splits (seeded with ``seed``) are resampled.
        seed: the evaluation's seed (the protocol's subsampling).
        msp_ood: ``{ood set: [N_ood]}`` max-softmax confidences for the ``mmc`` rows (detector ``msp``).
    """
    for detector, sets in scores.items():
        s_id = sets["id"]
        # one group per distinct ID split: its OOD draws (set, run) share the sorted and cumulated ID side
        groups: list[tuple[torch.Tensor, dict[tuple[str, int], torch.Tensor], dict[tuple[str, int], torch.Tensor]]] = []
        runs_of: dict[str, int] = {}
        for name, s_ood in sets.items():
            if name == "id":
                continue
            splits = protocol.splits(len(s_id), len(s_ood), seed)
            runs_of[name] = len(splits)
            for r, sp in enumerate(splits):
                group = next((g for g in groups if g[0].shape == sp.id.shape and torch.equal(g[0], sp.id)), None)
                if group is None:
                    group = (sp.id, {}, {})
                    groups.append(group)
                role = f"ood/{name}" + (f"/run{r}" if len(splits) > 1 else "")
                group[1][(name, r)] = s_ood[sp.ood]
                group[2][(name, r)] = resampler.counts(role, len(sp.ood))
        sums: dict[str, dict[str, torch.Tensor]] = {}
        for idx, oods, cnts in groups:
            tags = list(oods)
            reps = detection_replicates(
                s_id[idx],
                {str(i): oods[t] for i, t in enumerate(tags)},
                resampler.counts("id", len(idx)),
                {str(i): cnts[t] for i, t in enumerate(tags)},
            )
            for i, (name, _run) in enumerate(tags):
                acc = sums.setdefault(name, {})
                for metric, r in reps[str(i)].items():
                    acc[metric] = acc[metric] + r if metric in acc else r.clone()
        for name, metrics in sums.items():
            for metric, total in metrics.items():
                key = ("ood", name, "", "", detector, metric)
                if table.get(key) is not None:
                    table.set_replicates(key, total / runs_of[name])
    for name, conf in (msp_ood or {}).items():
        key = ("ood", name, "", "", "msp", "mmc")
        if table.get(key) is not None:
            table.set_replicates(key, mean_replicates(conf, resampler.counts(f"ood/{name}", len(conf))))


def shift_replicates(
    table: ResultTable,
    cells: Sequence[tuple[str, str, torch.Tensor]],
    labels: torch.Tensor,
    resampler: Resampler,
    dataset: str,
) -> None:
    """Replicates of the raw shift-cell rows (:data:`SHIFT_METRICS`) and of their means over levels.

    Args:
        table: the shift table (rows of kind ``shift``).
        cells: ``(shift, severity, logits [N, K])`` per cell, the clean reference included.
        labels: ``[N]`` labels of the test images (the same images in every cell).
        dataset: the test set's name.
    """
    if not cells:
        return
    counts = resampler.counts("id", len(labels))
    reps = calibration_replicates(torch.stack([z for _, _, z in cells]), labels, counts, metrics=SHIFT_METRICS)
    by_shift: dict[tuple[str, str], list[torch.Tensor]] = {}
    for i, (shift, sev, _) in enumerate(cells):
        for metric, r in reps.items():
            table.set_replicates(("shift", dataset, shift, sev, "", metric), r[i])
            by_shift.setdefault((shift, metric), []).append(r[i])
    for (shift, metric), rs in by_shift.items():
        key = ("shift", dataset, shift, "mean", "", metric)
        row = table.get(key)
        if row is not None and len(rs) == len(row.extra.get("levels", ())):
            table.set_replicates(key, torch.stack(rs).mean(dim=0))


def add_intervals(table: ResultTable) -> int:
    """Give every row that has replicates its 95% percentile interval (:meth:`ResultTable.attach_intervals`)."""
    return table.attach_intervals()
