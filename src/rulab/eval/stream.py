"""Streaming OOD evaluation: score image sets that do not fit in memory, chunk by chunk, with exact metrics.

:func:`rulab.eval.evaluate.run_evaluation` holds every OOD set as uint8 tensors, which is right for thousands of images but
not for a 10⁶-image synthetic benchmark (3 GB of uint8 at 3×32×32, 12 GB as float). Here the images arrive as an
iterable of chunks (a :class:`rulab.data.ood.noise_sets.NoiseStream`, a generator reading files, or a dataset cut into
chunks by :func:`chunks_of`); each chunk is run through the network once, every detector scores it from those
logits (and features), and only the scores are kept: one float per image and detector (8 MB for 10⁶ images).
The metrics then run on all scores, so they are the exact, all-threshold metrics of :func:`rulab.metrics.ood.ood_metrics`
(convention 3 in docs/conventions.md), not a binned approximation. Peak memory is one chunk of images plus the scores.

Equality with the in-memory path: every built-in detector scores rows independently once fitted, so streaming the
chunks that :func:`rulab.eval.extract.extract` would batch gives the same scores: bit-identical for MSP, max-logit,
energy and entropy (measured, ``benchmarks/eval_memory.py``), equal up to float rounding (~1e-7 on the metrics) for
GEN, whose vectorised reductions run over a chunk instead of the whole set, and (~1e-6 relative) for detectors whose
matrix products do (Mahalanobis, KNN, ViM).
With ``quantize=True`` float chunks are rounded to uint8 levels first, which makes a
:class:`~rulab.data.ood.noise_sets.NoiseStream` give exactly the images of the materialised set ``OOD_SETS.create(...)``
(tests/eval/test_stream.py checks both).

Memory on Linux: glibc raises its mmap threshold once large blocks have been freed, after which chunk-sized tensors
are carved from the heap; with chunks of varying sizes and the small score tensors kept between them, freed holes are
not all reused and the resident set grows with the number of chunks (measured: about +11 MB per 1,000-image chunk
at 3×32×32, so several GB over 10⁶ images). :func:`score_stream` therefore hands freed heap pages back to the system
after every chunk (glibc's ``malloc_trim``; a no-op elsewhere), which keeps the peak flat
(``benchmarks/eval_memory.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch import nn

from rulab.data.tensors import TensorDataset
from rulab.detectors.base import Detector, Extracted
from rulab.errors import InputError
from rulab.eval.predict import model_device
from rulab.metrics.ood import ood_metrics

__all__ = ["StreamScores", "chunks_of", "score_stream", "stream_ood_metrics", "release_free_heap"]


def chunks_of(ds: TensorDataset | torch.Tensor, chunk: int = 1000) -> Iterator[torch.Tensor]:
    """The images of ``ds`` (a dataset or ``uint8 [N, C, H, W]``) as views of ``chunk`` rows (no copy)."""
    x = ds.x if isinstance(ds, TensorDataset) else ds
    if chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk}")
    for i in range(0, len(x), chunk):
        yield x[i : i + chunk]


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on other systems and C libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the heap's free pages to the operating system (glibc ``malloc_trim(0)``); False where unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _as_input(xb: torch.Tensor, dev: torch.device, quantize: bool, channels_last: bool) -> torch.Tensor:
    """A chunk as float [0, 1] on ``dev``: uint8 / 255, or a float chunk (rounded to uint8 levels if ``quantize``)."""
    if xb.ndim != 4:
        raise InputError(f"a stream chunk must be images [b, C, H, W], got shape {tuple(xb.shape)}")
    xb = xb.to(dev)
    if xb.dtype == torch.uint8:
        xb = xb.float().div_(255)
    elif quantize:  # exactly uint8 → float / 255: round(255·x) is an integer-valued float
        xb = xb.float().mul(255).round_().clamp_(0, 255).div_(255)
    else:
        xb = xb.float()
    return xb.contiguous(memory_format=torch.channels_last) if channels_last else xb


@dataclass
class StreamScores:
    """What :func:`score_stream` returns.

    Attributes:
        scores: detector name → ``float32 [N]`` scores (higher = more in-distribution), on the CPU.
        n: images seen.
        chunks: chunks seen.
        peak_chunk_bytes: the largest chunk's size in bytes (as received), a bound on the images held at once.
    """

    scores: dict[str, torch.Tensor]
    n: int
    chunks: int
    peak_chunk_bytes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def score_stream(
    model: nn.Module,
    chunks: Iterable[torch.Tensor],
    detectors: Mapping[str, Detector],
    *,
    quantize: bool = False,
    channels_last: bool | None = None,
    trim: bool = True,
) -> StreamScores:
    """Score every image of a stream with every detector, holding one chunk of images at a time.

    One forward pass per chunk (logits, and penultimate features when a detector needs them); each detector
    scores the chunk from them. Detectors that go back to the model (ODIN) get the chunk's images in
    ``Extracted.x`` and the model. Detectors must already be fitted (and tuned).

    Args:
        model: a classifier taking [0, 1] pixels (run in eval mode, its mode restored).
        chunks: ``uint8 [b, C, H, W]`` or float ``[b, C, H, W]`` in [0, 1] tensors, any device; any chunk sizes.
        detectors: name → fitted detector.
        quantize: round float chunks to uint8 levels (``round(255·x)/255``), i.e. score exactly what a uint8
            dataset of the same images would hold.
        channels_last: feed channels-last batches (default: when the model has a ``Conv2d``).
        trim: after each chunk, hand freed heap memory back to the system (:func:`release_free_heap`; the module
            docstring says why); without it the resident set may grow with the number of chunks on Linux.

    Returns:
        :class:`StreamScores` with ``float32 [N]`` CPU scores per detector.
    """
    if not detectors:
        raise InputError("score_stream needs at least one detector")
    need_features = any("features" in d.requires for d in detectors.values())
    dev = model_device(model)
    cl = any(isinstance(m, nn.Conv2d) for m in model.modules()) if channels_last is None else channels_last
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in detectors}
    n = n_chunks = peak = 0
    was_training = model.training
    model.eval()
    try:
        for xb in chunks:
            peak = max(peak, xb.numel() * xb.element_size())
            x = _as_input(xb, dev, quantize, cl)
            with torch.no_grad():
                if need_features:
                    z = model.features(x)
                    logits = model.head(z).float()
                    feats = z.float()
                else:
                    logits, feats = model(x).float(), None
            ex = Extracted(logits, torch.full((len(x),), -1, dtype=torch.int64, device=logits.device), feats, x=x)
            for name, det in detectors.items():
                s = det.score(ex, model) if "model" in det.requires else det.score(ex)
                parts[name].append(s.detach().float().cpu())
            n += len(x)
            n_chunks += 1
            del xb, x, ex, logits, feats  # this chunk's tensors are freed before the trim
            if need_features:
                del z
            if trim:
                release_free_heap()
    finally:
        model.train(was_training)
    scores = {name: torch.cat(p) if p else torch.zeros(0) for name, p in parts.items()}
    return StreamScores(scores, n, n_chunks, peak)


def stream_ood_metrics(
    model: nn.Module,
    id_chunks: Iterable[torch.Tensor],
    ood_chunks: Iterable[torch.Tensor],
    detectors: Mapping[str, Detector],
    *,
    quantize: bool = False,
    channels_last: bool | None = None,
) -> tuple[dict[str, dict[str, float]], StreamScores, StreamScores]:
    """Exact OOD metrics of every detector for an ID stream against an OOD stream (see :func:`score_stream`).

    Returns:
        ``(metrics, id_scores, ood_scores)``: ``metrics[detector]`` is :func:`rulab.metrics.ood.ood_metrics` of
        all ID scores against all OOD scores.
    """
    s_id = score_stream(model, id_chunks, detectors, quantize=quantize, channels_last=channels_last)
    s_ood = score_stream(model, ood_chunks, detectors, quantize=quantize, channels_last=channels_last)
    metrics = {name: ood_metrics(s_id.scores[name], s_ood.scores[name]) for name in detectors}
    return metrics, s_id, s_ood
