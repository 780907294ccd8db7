"""OpenMax: a reference written from the authors' ``compute_openmax.py`` (one image at a time, SciPy distances,
pytorch-ood's libMR port for the Weibull fits) and parity with pytorch-ood 0.4.0's ``OpenMax`` on a trained fastcnn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance as spd
import torch
from pytorch_ood.detector import OpenMax
from pytorch_ood.detector.openmax.libnotmr import LibNotMR

from rulab.detectors.base import Extracted
from rulab.detectors.openmax import openmax_distances, openmax_fit, openmax_revise, openmax_score, weibull_tail_fit
from rulab.errors import InputError
from rulab.registry import DETECTORS


def reference_unknown(
    av_train: np.ndarray, y_train: np.ndarray, av: np.ndarray, tailsize: int, alpha: int
) -> np.ndarray:
    """P(unknown) of the authors' ``recalibrate_scores`` + ``computeOpenMaxProbability`` (one channel, eucos)."""
    k = av_train.shape[1]
    correct = av_train.argmax(1) == y_train
    mavs, models = [], []
    for c in range(k):
        feats = av_train[correct & (y_train == c)]
        mav = feats.mean(0)
        dists = [spd.euclidean(mav, f) / 200.0 + spd.cosine(mav, f) for f in feats]
        mr = LibNotMR(tailsize=tailsize)
        mr.fit_high(np.asarray(dists))
        mavs.append(mav)
        models.append(mr)
    out = []
    for v in av:
        ranked = v.argsort()[::-1]
        weights = [((alpha + 1) - i) / float(alpha) for i in range(1, alpha + 1)]
        ranked_alpha = np.zeros(k)
        for i in range(alpha):
            ranked_alpha[ranked[i]] = weights[i]
        fc8, unknown = [], []
        for c in range(k):
            dist = spd.euclidean(mavs[c], v) / 200.0 + spd.cosine(mavs[c], v)
            wscore = float(models[c].w_score(np.asarray([dist]))[0])
            modified = v[c] * (1 - wscore * ranked_alpha[c])
            fc8.append(modified)
            unknown.append(v[c] - modified)
        denominator = np.sum(np.exp(fc8)) + np.exp(np.sum(unknown))
        out.append(np.exp(np.sum(unknown)) / denominator)
    return np.asarray(out)


def test_revision_by_hand():
    """Two classes, α = 1: only the top class is revised; with the Weibull CDF at 1 its logit moves entirely to the
    unknown class."""
    av = torch.tensor([[4.0, 1.0]], dtype=torch.float64)
    mavs = torch.tensor([[10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    certain = torch.tensor([[1.0, 1e-9, -1e9], [1.0, 1e-9, -1e9]], dtype=torch.float64)  # CDF 1 at any distance
    revised = openmax_revise(av, mavs, certain, alpha=1)
    torch.testing.assert_close(revised, torch.tensor([[4.0, 0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(
        openmax_score(av, mavs, certain, alpha=1), torch.logsumexp(torch.tensor([0.0, 1.0]), 0).double().view(1) - 4.0
    )
    d = openmax_distances(av, mavs)
    assert d[0, 0] == pytest.approx(((6**2 + 1) ** 0.5) / 200 + 1 - 40 / (17**0.5 * 10))
    with pytest.raises(InputError, match="distance"):
        openmax_distances(av, mavs, "manhattan")


def test_fits_only_correctly_classified_training_images():
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 5.0], [0.0, 1.0], [4.0, 0.0]] * 10)
    labels = torch.tensor([0, 0, 1, 1, 1] * 10)  # the fifth image of each row is class 1 predicted as 0
    det = DETECTORS.create("openmax", tailsize=5).fit(Extracted(logits, labels))
    torch.testing.assert_close(det.mavs, torch.tensor([[2.5, 0.0], [0.0, 3.0]], dtype=torch.float64))
    # a class the network never gets right falls back to all its images
    wrong = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 5.0], [4.0, 0.0], [5.0, 1.0]] * 10)
    never = DETECTORS.create("openmax", tailsize=5).fit(Extracted(wrong, torch.tensor([0, 0, 0, 1, 1] * 10)))
    assert never.fallback_classes == [1]
    torch.testing.assert_close(never.mavs[1], torch.tensor([4.5, 0.5], dtype=torch.float64))
    c, scale, low = weibull_tail_fit(torch.arange(30, dtype=torch.float64), 5)
    assert low == 25.0 and c > 0 and scale > 10000


def test_matches_the_authors_procedure_on_a_trained_network(fmnist, parity):
    """The detector (eucos, tail 20, α = 10 capped at K = 6, correctly classified training logits) against the
    per-image reference of the authors' code: P(unknown) agrees, so the rankings agree."""
    train = fmnist.ex(fmnist.train)
    det = DETECTORS.create("openmax").fit(train)
    ours, ref = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        p0 = reference_unknown(
            train.logits.double().numpy(),
            train.labels.numpy(),
            ex.logits[:300].double().numpy() if k != "test" else ex.logits.double().numpy(),
            20,
            6,
        )
        ref[k] = torch.from_numpy(np.log1p(-p0) - np.log(p0))
        n = len(ref[k])
        ours[k] = ours[k][:n]
        # libMR translates the tail by 10000, so the Weibull shape is ~10^4 and its CDF magnifies a relative difference
        # of the fit (SciPy's weibull_min against the exponweib fit of the libMR port, ~1e-7) about 10^4 times: the
        # log-odds differ by up to ~0.02, the rankings agree to about 2e-4 AUROC
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=0.05)
    assert max(parity(ours, ref).values()) < 1e-3


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's OpenMax differs from the paper in two places, so both get the same inputs: it fits every
    training image of a class (the paper: the correctly classified ones), so it is given those only; and its distance
    mixes Euclidean and cosine as (1 − w)·cos + w·eu, which cannot express the authors' eu/200 + cos, so both use the
    Euclidean distance (w = 1)."""
    train = fmnist.ex(fmnist.train)
    correct = train.logits.argmax(1) == train.labels
    av, y = train.logits[correct], train.labels[correct]
    ref = OpenMax(model=None, tailsize=20, alpha=10, euclid_weight=1.0).fit_logits(av, y)
    mavs, fits = openmax_fit(av, y, 6, (20,), "euclidean")
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        logits = fmnist.ex(getattr(fmnist, k)).logits
        ours[k] = openmax_score(logits, mavs, fits[20], 10, "euclidean")
        p0 = ref.predict_logits(logits).double()
        theirs[k] = torch.log1p(-p0) - torch.log(p0)
        # pytorch-ood computes the distances in float32; the ~1e-7 rounding is magnified by the Weibull shape (~10^4,
        # see above) to up to ~5e-3 in the log-odds; the rankings agree to ~1e-5 AUROC
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0.02)
    assert max(parity(ours, theirs).values()) < 1e-3
