"""Gram matrices: hand-computed statistics and deviations, a float64 reference of the authors' notebook procedure, and
parity with pytorch-ood 0.4.0's ``Gram`` on a trained fastcnn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood.detector import Gram
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rulab.detectors.base import Extracted
from rulab.detectors.gram import gram_bounds, gram_deviation, gram_rows
from rulab.errors import RulabError
from rulab.registry import DETECTORS


def test_statistics_and_deviation_by_hand():
    f = torch.tensor([[[1.0, 2.0], [-1.0, 0.0]]]).view(1, 2, 2, 1)  # two channels, two positions
    # p = 1: G = F Fᵀ = [[5, -1], [-1, 1]], row sums (4, 0)
    torch.testing.assert_close(gram_rows(f, 1), torch.tensor([[4.0, 0.0]], dtype=torch.float64))
    # p = 2: F² = [[1, 4], [1, 0]], G = [[17, 1], [1, 1]], row sums (18, 2), square roots
    torch.testing.assert_close(gram_rows(f, 2), torch.tensor([[18**0.5, 2**0.5]], dtype=torch.float64))
    stats = torch.tensor([[1.0, 5.0], [3.0, 2.0], [2.0, 4.0], [9.0, 9.0]], dtype=torch.float64)
    mins, maxs = gram_bounds(stats, torch.tensor([0, 0, 0, 1]), 3)
    torch.testing.assert_close(mins[0], torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(maxs[0], torch.tensor([3.0, 5.0], dtype=torch.float64))
    assert bool(torch.isinf(mins[2]).all())  # a class without images
    g = torch.tensor([[0.5, 6.0], [2.0, 3.0]], dtype=torch.float64)
    dev = gram_deviation(g, mins[[0, 0]], maxs[[0, 0]])
    # (1 − 0.5)/1 below the first range, (6 − 5)/5 above the second; the second image is inside both
    torch.testing.assert_close(dev, torch.tensor([0.5 / (1 + 1e-6) + 1.0 / (5 + 1e-6), 0.0], dtype=torch.float64))


def reference_gram(model: nn.Module, layers, x_train, y_pred_train, x_val, x_eval, poles=range(1, 11)) -> np.ndarray:
    """The authors' notebook procedure in float64 (``G_p``, ``get_min_max`` per PREDICTED class, ``get_deviations``
    divided by the MSP, normalised by the mean validation deviation), written independently of rulab."""

    def feats(x):
        out = []
        h = model.normalize(x.double())
        for layer in layers:
            h = layer(h)
            out.append(h)
        return out, model.fc(h.flatten(1))

    def g_p(t, p):
        t = t.reshape(t.shape[0], t.shape[1], -1) ** p
        t = (t @ t.transpose(1, 2)).sum(dim=2)
        return t.sign() * t.abs() ** (1 / p)

    def deviations(x, mins, maxs):
        fl, logits = feats(x)
        pred, conf = logits.argmax(1), logits.softmax(1).amax(1)
        dev = torch.zeros(len(x), len(fl), dtype=torch.float64)
        for li, f in enumerate(fl):
            for pi, p in enumerate(poles):
                g = g_p(f, p)
                lo, hi = mins[li][pi][pred], maxs[li][pi][pred]
                dev[:, li] += (torch.relu(lo - g) / (lo + 1e-6).abs()).sum(1) + (
                    torch.relu(g - hi) / (hi + 1e-6).abs()
                ).sum(1)
        return dev / conf[:, None]

    with torch.no_grad():
        fl, _ = feats(x_train)
        k = int(y_pred_train.max()) + 1
        # mins[layer][order]: [K, C_l], over the training images predicted as each class
        mins = [
            [torch.stack([g_p(f[y_pred_train == c], p).min(0).values for c in range(k)]) for p in poles] for f in fl
        ]
        maxs = [
            [torch.stack([g_p(f[y_pred_train == c], p).max(0).values for c in range(k)]) for p in poles] for f in fl
        ]
        norm = deviations(x_val, mins, maxs).mean(0) + 1e-7
        return -(deviations(x_eval, mins, maxs) / norm).sum(1).numpy()


def test_matches_the_authors_procedure_in_float64(fmnist, parity):
    net = fmnist.model
    train, val = fmnist.ex(fmnist.train), fmnist.ex(fmnist.val)
    det = DETECTORS.create("gram").fit(train, val_id=val, model=net)
    double = __import__("copy").deepcopy(net).double()
    pred = train.logits.argmax(1)
    ours, ref = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex, model=net)
        ref[k] = torch.from_numpy(
            reference_gram(
                double,
                list(double.stages),
                fmnist.train.x.double() / 255,
                pred,
                fmnist.val.x.double() / 255,
                ex.x.double() / 255,
            )
        )
        # rulab runs the network in float32 and the statistics in float64: close, not equal
        np.testing.assert_allclose(np.corrcoef(ours[k].numpy(), ref[k].numpy())[0, 1], 1.0, atol=1e-4)
    assert max(parity(ours, ref).values()) < 1e-3


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's Gram differs from the authors' code in three ways, so the comparison is on what both define
    alike: it bounds each class by the TRUE labels of the fitting images (the authors: the predicted class), it does
    not divide by the MSP, and it normalises each layer by a random 10% of the fitting data held out from the bounds
    (set to none here: ``validation_fraction = 0``, so its normaliser is 1). rulab's deviations with true-label bounds,
    no MSP division and no normaliser must then equal its scores."""
    net = fmnist.model
    layers = [nn.Sequential(net.normalize, net.stages[0]), net.stages[1], net.stages[2]]
    ref = Gram(
        head=nn.Sequential(nn.Flatten(), net.fc),
        feature_layers=layers,
        num_classes=6,
        num_poles_list=list(range(1, 11)),
    )
    ref.validation_fraction = 0.0
    ref.to("cpu")
    loader = DataLoader(TensorDataset(fmnist.train.x.float() / 255, fmnist.train.y), batch_size=500)
    ref.fit(loader)
    det = DETECTORS.create("gram")
    logits, stats = det.statistics(net, fmnist.train.x)
    det.mins, det.maxs = {}, {}
    for n, s in stats.items():
        det.mins[n], det.maxs[n] = gram_bounds(s, fmnist.train.y, 6)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        x = getattr(fmnist, k).x
        lo, st = det.statistics(net, x)
        msp = lo.double().softmax(1).amax(1)
        ours[k] = -(det.layer_deviations(lo, st) * msp[:, None]).sum(1)
        with torch.no_grad():
            theirs[k] = -ref.predict(x.float() / 255).double()
        # pytorch-ood computes the statistics in float32 (10th powers): relative differences ~1e-6 near the bounds
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-3, atol=1e-3)
    assert max(parity(ours, theirs).values()) < 1e-3


def test_holds_out_training_images_without_a_validation_split(toy):
    train = toy.ex(toy.train)
    det = DETECTORS.create("gram", poles=(1, 2)).fit(train, model=toy.model)
    assert det.expected is not None and det.expected.shape == (2,) and bool((det.expected > 0).all())
    again = DETECTORS.create("gram", poles=(1, 2)).fit(train, model=toy.model)
    torch.testing.assert_close(det.expected, again.expected)
    with pytest.raises(RulabError, match="needs the model"):
        det.score(toy.ex(toy.test))
    with pytest.raises(RulabError, match="not fitted"):
        DETECTORS.create("gram").score(Extracted(train.logits, train.labels, x=toy.train.x), model=toy.model)
