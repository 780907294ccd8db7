"""OpenMax (Bendale & Boult, CVPR 2016, "Towards open set deep networks", arXiv:1511.06233).

OpenMax recalibrates the activation vector (AV, the logits ``v``) with extreme-value statistics of each class
(the paper's Algorithms 1 and 2, as the authors' ``compute_openmax.py`` and ``preprocessing/`` implement them):

* **fit** (Alg. 1): per class c, the mean activation vector ``μ_c`` (MAV) of the TRAINING images of class c that the
  network classifies correctly (all of the class's images if it gets none right: an undertrained model); the distances
  of those images' AVs to ``μ_c``; a Weibull distribution fitted to the ``tailsize`` largest of them (libMR's
  ``FitHigh``: the tail is translated by ``10000 − min(tail)`` before a maximum-likelihood fit with location 0, and
  queries are translated the same way).
* **recalibrate** (Alg. 2): rank the classes by ``v``; the i-th of the top α gets weight ``(α + 1 − i) / α``
  (the authors' code; 1 for the top class; Alg. 2 as printed has ``(α − i) / α``, which gives the α-th class
  weight 0); ``ω_c = 1 − weight_c · WeibullCDF_c(d(v, μ_c))``; revised logits
  ``v̂_c = v_c ω_c`` and an "unknown" logit ``v̂₀ = Σ_c v_c (1 − ω_c)``; the OpenMax probabilities are
  ``softmax(v̂₀, v̂₁, …, v̂_K)``.

The distance is the authors' ``eucos``, ``‖v − μ_c‖₂ / 200 + (1 − cos(v, μ_c))``. Defaults: tail size 20 and
α = 10 (the authors'), α capped at the number of classes. The score is the log-odds of "known" against "unknown",
``log(1 − P₀) − log P₀ = logsumexp(v̂₁…v̂_K) − v̂₀``: a monotone function of ``−P₀`` that keeps its resolution where
``P₀`` underflows. Needs SciPy for the Weibull fit (``scipy.stats.weibull_min``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = [
    "openmax_distances",
    "weibull_tail_fit",
    "weibull_wscore",
    "openmax_fit",
    "openmax_revise",
    "openmax_score",
    "OpenMax",
]

TRANSLATION = 10000.0
"""libMR's translation of the tail before fitting (``FitHigh``)."""
DISTANCES = ("eucos", "euclidean", "cosine")


def openmax_distances(av: torch.Tensor, mavs: torch.Tensor, distance: str = "eucos") -> torch.Tensor:
    """Distances of each activation vector to each class's MAV: ``[N, C]`` (float64).

    Args:
        av: ``[N, K]`` activation vectors (logits).
        mavs: ``[C, K]`` mean activation vectors.
        distance: ``"eucos"`` (``‖·‖₂/200 + cosine distance``, the authors'), ``"euclidean"`` or ``"cosine"``.
    """
    if distance not in DISTANCES:
        raise InputError(f"OpenMax's distance must be one of {', '.join(DISTANCES)}, got '{distance}'")
    v = av.to(torch.float64)
    m = mavs.to(device=v.device, dtype=torch.float64)
    eu = torch.cdist(v.unsqueeze(0), m.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
    if distance == "euclidean":
        return eu
    cos = 1.0 - (v @ m.T) / (v.norm(dim=1, keepdim=True) * m.norm(dim=1).unsqueeze(0))
    return cos if distance == "cosine" else eu / 200.0 + cos


def weibull_tail_fit(distances: torch.Tensor, tailsize: int) -> tuple[float, float, float]:
    """libMR's ``FitHigh``: a Weibull fitted to the ``tailsize`` largest distances after translating them by
    ``10000 − min(tail)``.

    Returns:
        ``(shape c, scale λ, min(tail))``.
    """
    try:
        from scipy.stats import weibull_min
    except ImportError:
        raise RulabError(
            "OpenMax fits its Weibull tails with SciPy, which is not installed; pip install scipy"
        ) from None

    if tailsize < 1:
        raise InputError(f"OpenMax needs tailsize >= 1, got {tailsize}")
    tail = distances.to(torch.float64).sort().values[-tailsize:]
    low = float(tail[0])
    with warnings.catch_warnings():
        # the translated tail is ~10000 ± a few units by construction, which SciPy's moment-based starting guess
        # reports as a precision loss; the maximum-likelihood fit itself is unaffected
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        c, _loc, scale = weibull_min.fit((tail + TRANSLATION - low).cpu().numpy(), floc=0)
    return float(c), float(scale), low


def weibull_wscore(distances: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The Weibull CDF of each translated distance: ``1 − exp(−((d + 10000 − low) / λ)^c)``.

    Args:
        distances: ``[..., C]`` distances to each class's MAV.
        params: ``[C, 3]`` rows ``(c, λ, low)`` from :func:`weibull_tail_fit`.
    """
    p = params.to(device=distances.device, dtype=torch.float64)
    y = (distances.to(torch.float64) + TRANSLATION - p[:, 2]).clamp_min(0.0)
    return -torch.expm1(-((y / p[:, 1]) ** p[:, 0]))


def openmax_fit(
    av: torch.Tensor, labels: torch.Tensor, num_classes: int, tailsizes: Sequence[int] = (20,), distance: str = "eucos"
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """MAVs and per-class Weibull fits (Alg. 1) of the given training AVs (pass only the correctly classified ones
    to follow the paper).

    Args:
        av: ``[N, K]`` activation vectors.
        labels: ``[N]`` classes.
        num_classes: C.
        tailsizes: tail sizes to fit (each is a separate fit).
        distance: see :func:`openmax_distances`.

    Returns:
        ``(mavs [C, K], {tailsize: params [C, 3]})``.

    Raises:
        InputError: a class has no example.
    """
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise InputError(
            f"OpenMax fits a mean activation vector per class from correctly classified training images, but classes "
            f"{missing} have none; fit on the run's training split of a trained model"
        )
    v = av.to(torch.float64)
    mavs = torch.zeros(num_classes, v.shape[1], dtype=torch.float64, device=v.device).index_add_(0, labels, v)
    mavs /= counts.unsqueeze(1).to(torch.float64)
    own = openmax_distances(v, mavs, distance).gather(1, labels.unsqueeze(1)).squeeze(1)
    fits = {}
    for ts in tailsizes:
        fits[int(ts)] = torch.tensor(
            [weibull_tail_fit(own[labels == c], int(ts)) for c in range(num_classes)], dtype=torch.float64
        )
    return mavs, fits


def openmax_revise(
    av: torch.Tensor, mavs: torch.Tensor, params: torch.Tensor, alpha: int = 10, distance: str = "eucos"
) -> torch.Tensor:
    """The revised activation vector (Alg. 2): ``[N, K + 1]`` float64, column 0 the unknown class ``v̂₀``.

    Args:
        av: ``[N, K]`` activation vectors.
        mavs: ``[K, K]``; params: ``[K, 3]`` (:func:`openmax_fit`).
        alpha: how many top classes are revised (capped at K).
        distance: the distance the fit used.
    """
    v = av.to(torch.float64)
    k = v.shape[1]
    a = max(1, min(int(alpha), k))
    order = v.argsort(dim=1, descending=True)[:, :a]
    rank_weight = torch.zeros_like(v).scatter_(
        1, order, ((a + 1 - torch.arange(1, a + 1, dtype=torch.float64, device=v.device)) / a).expand(v.shape[0], a)
    )
    w = weibull_wscore(openmax_distances(v, mavs, distance), params)
    omega = 1.0 - w * rank_weight
    return torch.cat([(v * (1.0 - omega)).sum(dim=1, keepdim=True), v * omega], dim=1)


def openmax_score(
    av: torch.Tensor, mavs: torch.Tensor, params: torch.Tensor, alpha: int = 10, distance: str = "eucos"
) -> torch.Tensor:
    """``log(1 − P₀) − log P₀``, P₀ the OpenMax probability of the unknown class.

    Returns:
        ``[N]`` float64; higher = more in-distribution.
    """
    revised = openmax_revise(av, mavs, params, alpha, distance)
    return torch.logsumexp(revised[:, 1:], dim=1) - revised[:, 0]


@DETECTORS.register("openmax")
class OpenMax(Detector):
    """Log-odds of a known class against OpenMax's unknown class (Bendale & Boult 2016, CVPR, arXiv:1511.06233,
    Alg. 1-2): logits recalibrated by per-class Weibull models of the distance to the mean logit vector.

    Args:
        tailsize: the largest training distances each Weibull is fitted to (authors: 20); tuned over :attr:`grid`
            on validation data when the evaluator tunes.
        alpha: how many top-ranked classes are revised (authors: 10; capped at K).
        distance: ``"eucos"`` (the authors'), ``"euclidean"`` or ``"cosine"``.
    """

    requires = frozenset({"logits"})
    formula = (
        "`log(1 − P₀) − log P₀`, P₀ the OpenMax unknown-class probability from per-class Weibull fits of `‖z − μ_c‖`"
    )
    fits_on = "training logits (correctly classified)"
    paper = "Bendale & Boult 2016, CVPR, arXiv:1511.06233"
    grid = {"tailsize": (10, 20, 50)}

    def __init__(self, tailsize: int = 20, alpha: int = 10, distance: str = "eucos") -> None:
        if tailsize < 1 or alpha < 1:
            raise InputError(f"OpenMax needs tailsize >= 1 and alpha >= 1, got tailsize={tailsize}, alpha={alpha}")
        if distance not in DISTANCES:
            raise InputError(f"OpenMax's distance must be one of {', '.join(DISTANCES)}, got '{distance}'")
        self.tailsize = int(tailsize)
        self.alpha = int(alpha)
        self.distance = distance
        self.mavs: torch.Tensor | None = None
        self.fits: dict[int, torch.Tensor] = {}

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> OpenMax:
        correct = train.logits.argmax(dim=1) == train.labels
        # a class the network never gets right (an undertrained model) falls back to all its training images
        never = torch.bincount(train.labels[correct], minlength=train.num_classes) == 0
        correct |= never.to(train.labels.device)[train.labels]
        self.fallback_classes = torch.nonzero(never).flatten().tolist()
        av, y = train.logits[correct], train.labels[correct]
        smallest = int(torch.bincount(y, minlength=train.num_classes).min())
        sizes = sorted({min(ts, smallest) if smallest else ts for ts in (self.tailsize, *self.grid["tailsize"])})
        self.mavs, self.fits = openmax_fit(av, y, train.num_classes, sizes, self.distance)
        self._cap = smallest
        return self

    def _params(self) -> torch.Tensor:
        if self.mavs is None:
            raise RulabError("detector 'openmax' is not fitted; call fit(train) on the training split first")
        ts = min(self.tailsize, getattr(self, "_cap", self.tailsize))
        if ts not in self.fits:
            raise RulabError(
                f"detector 'openmax' was not fitted for tailsize {self.tailsize}; call fit(train) after setting it"
            )
        return self.fits[ts]

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        params = self._params()
        assert self.mavs is not None
        return openmax_score(ex.logits, self.mavs, params, self.alpha, self.distance)
