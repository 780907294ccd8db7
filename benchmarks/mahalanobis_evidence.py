"""Mahalanobis at the edges: the singular-covariance fit, and why the score is inverted on CEDA/ACET features.

For each run directory given (trained ``fmnist-*`` checkpoints), on the run's own splits and the ``fmnist`` benchmark's
OOD sets, this prints:

A. **Singular covariance** (N < D): Mahalanobis fitted on 600 validation images (what ``rulab.evaluate`` does without
   ``id_train``) by three fits: a float32 Gram product with float64's pinvh cut-off (rulab before the fix), rulab's fit
   (float64, cut-off from the features' precision), and scikit-learn's ``EmpiricalCovariance`` (float64, the fit Lee
   et al.'s code uses), with each fit's rank and AUROC.
B. **Fit on the training subset** (10,000 images, N > D, as ``rulab eval``) by the same three fits, per OOD set.
C. **Per-class distances**: the mean of ``min_c d²_c`` for ID test and OOD images, the median feature norm, the spread
   of the OOD features (trace of their covariance over the trace of the tied within-class covariance), the squared
   whitened distance of the OOD mean from the centre of the class means, and that centre's own ``min_c d²_c``.
D. **Other feature layers**: the same score on global-average-pooled stage-2 and stage-3 activations (48 and 96
   channels: Lee et al.'s feature-ensemble pooling, §2.2) and on the logits (10).

Usage:
    PYTHONPATH=src python benchmarks/mahalanobis_evidence.py RUN_DIR [RUN_DIR ...] [--n-test 2000] [--n-ood 2000]
    PYTHONPATH=src python benchmarks/mahalanobis_evidence.py --quick       # a random-weight fastcnn, small sets

Needs scikit-learn (``pip install 'rulab[datasets]'``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from rulab.data.splits import load_splits
from rulab.data.tensors import TensorDataset
from rulab.detectors.mahalanobis import class_means, mahalanobis_score, rounding_floor, tied_covariance, whitening
from rulab.eval.ood_eval import load_ood_set
from rulab.eval.predict import predict
from rulab.metrics.ood import auroc

OOD = ("digits", "textures", "gaussian", "uniform", "rademacher", "blobs", "hein")


def fit_float32_gram(z: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rulab before the fix: centred in float64, multiplied in float32, float64's cut-off ``D · eps64 · λ_max``."""
    means = class_means(z, y, k)
    c = (z.double() - means[y]).float()
    cov = (c.T @ c).double() / len(z)
    evals, evecs = torch.linalg.eigh(cov)
    keep = evals > evals.abs().max() * cov.shape[0] * torch.finfo(torch.float64).eps
    return means, evecs[:, keep] * evals[keep].rsqrt()


def fit_rulab(z: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    means = class_means(z, y, k)
    return means, whitening(tied_covariance(z, y, means), floor=rounding_floor(z))


def fit_sklearn(z: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's EmpiricalCovariance on the class-centred features (Lee et al.'s ``sample_estimator``), its
    ``precision_`` (= ``pinvh(Σ)``) factored as ``W W^T`` exactly (eigendecomposition of the precision)."""
    from sklearn.covariance import EmpiricalCovariance

    means = class_means(z, y, k)
    prec = torch.from_numpy(EmpiricalCovariance(assume_centered=False).fit((z.double() - means[y]).numpy()).precision_)
    evals, evecs = torch.linalg.eigh((prec + prec.T) / 2)
    keep = (
        evals > evals.abs().max() * len(evals) * torch.finfo(torch.float64).eps
    )  # pinvh's exact zeros, up to rounding
    return means, evecs[:, keep] * evals[keep].sqrt()


FITS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]] = {
    "float32 Gram (before)": fit_float32_gram,
    "rulab (float64)": fit_rulab,
    "sklearn EmpiricalCovariance": fit_sklearn,
}


class Layers(nn.Module):
    """Penultimate features plus pooled stage-2 / stage-3 activations and logits of a fastcnn."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.net.normalize(x)
        h1 = self.net.stages[0](h)
        h2 = self.net.stages[1](h1)
        h3 = self.net.stages[2](h2)
        z = h3.flatten(1)
        return {
            "features": z,
            "gap stage 2 (48)": h2.mean((2, 3)),
            "gap stage 3 (96)": h3.mean((2, 3)),
            "logits (10)": self.net.fc(z),
        }


def layers_of(net: nn.Module, ds: TensorDataset, batch: int = 500) -> dict[str, torch.Tensor]:
    """Every layer of :class:`Layers` on ``ds`` (float32, CPU)."""
    lay = Layers(net).eval()
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(ds), batch):
        for k, v in lay(ds.x[i : i + batch].float().div(255)).items():
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}


def analyse(name: str, net: nn.Module, splits: object, n_fit: int, n_test: int, n_ood: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    train, val, test = splits.train, splits.val, splits.test
    fit_idx = torch.randperm(len(train), generator=g)[:n_fit].sort().values
    fit = train.subset(fit_idx)
    test = test.subset(slice(0, n_test))
    shape = test.shape
    sets = {o: load_ood_set(o, shape, n_ood, seed, base=test) for o in OOD}
    k = len(test.classes)
    print(f"\n=== {name}")

    # ---- A. singular covariance: fit on 600 validation images
    feat = {
        n: predict(net, d.x, 500, features=True)["features"]
        for n, d in {"val": val.subset(slice(0, 600)), "test": test, **sets}.items()
    }
    z, y = feat["val"], val.y[:600]
    print(f"A. fit on 600 validation images, D = {z.shape[1]}: AUROC (uniform, gaussian, textures), rank")
    for fname, fitter in FITS.items():
        means, w = fitter(z, y, k)
        s_id = mahalanobis_score(feat["test"], means, w)
        a = [auroc(s_id, mahalanobis_score(feat[o], means, w)) for o in ("uniform", "gaussian", "textures")]
        print(f"   {fname:30s} {a[0]:.4f} {a[1]:.4f} {a[2]:.4f}  rank {w.shape[1]}")
    # the score's sensitivity: features perturbed by 1e-6
    pert = torch.Generator().manual_seed(1)
    t2 = feat["test"] + 1e-6 * torch.randn(feat["test"].shape, generator=pert)
    u2 = feat["uniform"] + 1e-6 * torch.randn(feat["uniform"].shape, generator=pert)
    for fname in ("float32 Gram (before)", "rulab (float64)"):
        means, w = FITS[fname](z, y, k)
        before = auroc(mahalanobis_score(feat["test"], means, w), mahalanobis_score(feat["uniform"], means, w))
        after = auroc(mahalanobis_score(t2, means, w), mahalanobis_score(u2, means, w))
        print(f"   {fname}: |ΔAUROC uniform| when the features move by 1e-6: {abs(before - after):.2e}")

    # ---- B. fit on the training subset (as rulab eval), per OOD set
    lay = {n: layers_of(net, d) for n, d in {"fit": fit, "test": test, **sets}.items()}
    z, y = lay["fit"]["features"], fit.y
    print(f"B. fit on {len(fit)} training images: AUROC per OOD set ({', '.join(OOD)})")
    fitted = {}
    for fname, fitter in FITS.items():
        fitted[fname] = means, w = fitter(z, y, k)
        s_id = mahalanobis_score(lay["test"]["features"], means, w)
        a = [auroc(s_id, mahalanobis_score(lay[o]["features"], means, w)) for o in OOD]
        print(f"   {fname:30s} " + " ".join(f"{v:.4f}" for v in a) + f"  rank {w.shape[1]}")

    # ---- C. per-class distances (rulab's fit)
    means, w = fitted["rulab (float64)"]
    ref = means.mean(0)
    cov = tied_covariance(z, y, means)
    tr_within = float(torch.trace(cov))

    def d2(q: torch.Tensor) -> torch.Tensor:
        return -mahalanobis_score(q, means, w)

    centre = float(d2(ref.unsqueeze(0).float())[0])
    print(f"C. distances (median of min_c d²; centre of the class means: min_c d² = {centre:.0f}, rank {w.shape[1]})")
    print(
        f"   {'set':12s} {'median min d²':>14s} {'median ||z||':>13s} {'spread/within':>14s} {'d²(mean, centre)':>17s} {'nearest classes':>16s}"
    )
    for o in ("test", *OOD):
        q = lay[o]["features"]
        dd = d2(q)
        qd = q.double()
        spread = float(torch.trace(torch.cov(qd.T))) / tr_within
        mean_off = float((((qd.mean(0) - ref) @ w) ** 2).sum())
        nearest = torch.cdist((qd - ref) @ w, (means - ref) @ w).argmin(1)
        top = torch.bincount(nearest, minlength=k).float() / len(q)
        print(
            f"   {o:12s} {float(dd.median()):14.0f} {float(q.norm(dim=1).median()):13.2f} {spread:14.3f} {mean_off:17.0f} "
            f"{int(top.argmax())}:{float(top.max()):.0%}".rjust(16)
        )

    # ---- D. other layers
    print(f"D. other layers: AUROC per OOD set ({', '.join(OOD)})")
    for layer in ("gap stage 2 (48)", "gap stage 3 (96)", "logits (10)"):
        means, w = fit_rulab(lay["fit"][layer], y, k)
        s_id = mahalanobis_score(lay["test"][layer], means, w)
        a = [auroc(s_id, mahalanobis_score(lay[o][layer], means, w)) for o in OOD]
        print(f"   {layer:30s} " + " ".join(f"{v:.4f}" for v in a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories (fastcnn checkpoints trained on fashion_mnist)")
    parser.add_argument("--n-fit", type=int, default=10_000, help="training images the fit uses (rulab eval: 10,000)")
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--n-ood", type=int, default=2_000)
    parser.add_argument(
        "--quick", action="store_true", help="a random-weight fastcnn and 1,000-image sets (no run needed)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    from rulab.presets import load_config

    if args.quick or not args.runs:
        from rulab.registry import MODELS

        args.n_fit, args.n_test, args.n_ood = min(args.n_fit, 2_000), min(args.n_test, 1_000), min(args.n_ood, 1_000)
        cfg = load_config("fmnist-plain")
        analyse(
            "random-weight fastcnn",
            MODELS.create("fastcnn").eval(),
            load_splits(cfg.data, 0),
            args.n_fit,
            args.n_test,
            args.n_ood,
        )
        return
    from rulab.checkpoint import load_model, read_meta, resolve_checkpoint
    from rulab.config import RunCfg, from_dict

    for run in args.runs:
        ckpt = resolve_checkpoint(run)
        cfg = from_dict(RunCfg, read_meta(ckpt)["config"])
        net, _ = load_model(ckpt)
        analyse(cfg.name, net.eval(), load_splits(cfg.data, cfg.seed), args.n_fit, args.n_test, args.n_ood, cfg.seed)


if __name__ == "__main__":
    main()
