"""Far-away and worst-case overconfidence (Hein, Andriushchenko, Bitterwolf, CVPR 2019;
docs/protocols/hein2019.md).

Three measurements on one model, all with the maximum softmax probability (MSP) as the confidence score:

* **α-scaling** (the paper's Table 2, :func:`alpha_scaling`): for uniform noise ``u ~ U[0,1]^d``, the smallest ``α ≥ 1`` with
  ``MSP(f(α·u)) ≥ 0.999``, found for all trials at once by geometric bracketing on ``α ∈ [1, α_max]`` (factor 2)
  and bisection in log α; its median over the trials (``alpha_median``), the share of trials whose image clipped
  back to [0,1] gets confidence > 0.95 (``overconf_frac``), and the mean confidence on a log-spaced α grid.
* **Adversarial noise** (W3's ``evaluation.py``, :func:`attack_noise`): L∞ PGD maximising ``log max_k p_k`` from noise (W3's
  low-pass permuted/uniform noise built from test images, and plain uniform noise), random start, keep-best, BN in
  eval mode; MMC, AUROC and FPR@95 (``fpr95_id``) of the noise and of the adversarial noise against the ID test set.
* **Adversarial samples** (W3's ``evaluation.py`` / ``analysis.py``, :func:`resisted`): PGD on the cross-entropy from test images; Hein's
  resistance measure (a rejection column of value 1.01/K inserted into the softmax outputs, resisted = the argmax
  is the true label) and MMC / AUROC / FPR@95 of the adversarial examples that were NOT resisted; and the clean and
  adversarial accuracy of the attacked images side by side (``clean_acc``, ``adv_acc``: W1's adversarial table,
  Hendrycks et al. 2019 Table 2, PGD-20 at ε = 8/255 with step 2/255), with ``eval.adv_restarts`` random starts.

``eval.farconf_tests`` selects the parts (``alpha``, ``noise``, ``samples``; all three by default).

Rows (:func:`evaluate_farconf`) have kind ``"farconf"``, ``detector ""`` (the score is always MSP) and ``dataset``
``"alpha_scaling"``, ``"noise"``, ``"adv_noise"``, ``"noise_uniform"``, ``"adv_noise_uniform"``,
``"adv_samples"``, and ``"adv_noise_<steps>"`` / ``"adv_noise_uniform_<steps>"`` for every further step count of
``eval.adv_noise_steps`` (W3 attacks its noise with 80 and with 200 steps). Curves and scores go to
``table.arrays`` under ``farconf/...``; the :data:`TOP_K` most confident images of every noise, adversarial noise,
adversarial sample and OOD set (W3's figures of the inputs its models are most confident on) under
``farconf_top/<set>/images`` (uint8) and ``farconf_top/<set>/conf``.

Step size: ``eval.adv_step_size`` (pixels); 0, the default, means Madry et al.'s ``2.5·ε/steps``, which lets an
iterate cross the ball 2.5 times (W3 trains with ``ε/steps`` and leaves the evaluation step unstated: its README's
command leaves it a placeholder; W1 evaluates with 2/255 over 20 steps). With keep-best the result can only improve
on the start point.

One concern, kept in one file (about 500 lines): Hein et al.'s far-away / worst-case overconfidence evaluation,
i.e. the three measurements above and the rows :func:`evaluate_farconf` writes from them; they share the MSP
score, the seeding and the batching helpers at the top.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.attacks import log_max_confidence, pgd
from rulab.config import FARCONF_TESTS, EvalCfg
from rulab.data.ood.noise_sets import NoiseStream
from rulab.data.tensors import TensorDataset, unit_pixels
from rulab.errors import InputError
from rulab.eval.predict import model_device
from rulab.metrics.ood import auroc, fpr95_id
from rulab.results.table import ResultTable

__all__ = [
    "ALPHA_THRESHOLD",
    "ALPHA_MAX",
    "NOISE_SOURCES",
    "AlphaScaling",
    "NoiseAttack",
    "msp",
    "alpha_scaling",
    "attack_noise",
    "attack_samples",
    "resisted",
    "default_step_size",
    "evaluate_farconf",
    "TOP_K",
    "top_images",
]

ALPHA_THRESHOLD = 0.999
"""Confidence α-scaling must reach (Hein et al. Table 2)."""
ALPHA_MAX = 1e20
"""Upper end of the α search; a trial that never reaches the threshold is recorded as this value."""
NOISE_SOURCES: tuple[tuple[str, str], ...] = (("noise", "hein"), ("noise_uniform", "uniform"))
"""(row dataset name, OOD_SETS noise family) pairs PGD starts from; the attacked set is ``"adv_" + name``."""
TOP_K = 8
"""Most confident images kept per set for the report's figures (W3 shows the noise and adversarial noise its models
are most confident on)."""


def _seed(seed: int, part: str) -> int:
    """An independent seed for one part of the evaluation, from the run seed and the part's name."""
    digest = hashlib.blake2b(f"rulab.farconf:{part}:{int(seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _param_dtype(model: nn.Module) -> torch.dtype:
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.float32


def msp(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability ``exp(log max_k softmax(logits)_k)``: ``[B, K] → [B]``."""
    return log_max_confidence(logits).exp()


@torch.no_grad()
def _msp_of(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """MSP ``[N]`` (on x's device) of float images ``x: [N, ...]`` in model space, in batches."""
    return (
        torch.cat([msp(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
        if len(x)
        else x.new_zeros(0)
    )


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------- α-scaling


@dataclass(frozen=True)
class AlphaScaling:
    """Result of :func:`alpha_scaling`.

    Attributes:
        alphas: ``float64 [N]`` smallest α found per trial (``alpha_max`` where never reached).
        reached: ``bool [N]`` whether the trial reached the threshold at some α ≤ ``alpha_max``.
        median: median of ``alphas`` (linear interpolation between the middle two, as ``numpy.median``).
        overconf_frac: share of trials with ``MSP(f(clip(α·u, 0, 1))) > clip_conf``.
        curve_alphas: ``float64 [G]`` the log-spaced α grid.
        curve_conf: ``float64 [G]`` mean MSP over the trials at each grid α.
    """

    alphas: torch.Tensor
    reached: torch.Tensor
    median: float
    overconf_frac: float
    curve_alphas: torch.Tensor
    curve_conf: torch.Tensor

    @property
    def reached_frac(self) -> float:
        """Share of trials that reached the threshold."""
        return float(self.reached.to(torch.float64).mean())


@torch.no_grad()
def alpha_scaling(
    model: nn.Module,
    shape: Sequence[int],
    n_trials: int = 200,
    seed: int = 0,
    threshold: float = ALPHA_THRESHOLD,
    alpha_max: float = ALPHA_MAX,
    factor: float = 2.0,
    rtol: float = 1e-4,
    clip_conf: float = 0.95,
    curve_points: int = 21,
    batch_size: int = 256,
) -> AlphaScaling:
    """Hein et al.'s α-scaling test (the paper's Table 2): how far out along a random direction a ReLU network
    becomes 99.9% confident.

    For each trial ``u ~ U[0,1]^d`` (seeded), the search evaluates ``MSP(f(α·u))`` at α = 1, 2, 4, ... (×``factor``,
    capped at ``alpha_max``) until the threshold is reached, then bisects ``[α/factor, α]`` in log α until the
    bracket's ratio is below ``1 + rtol``; the answer is the bracket's upper end (a point where the threshold holds).
    All trials are searched together, one batched forward pass per step. The confidence need not be monotone in α;
    the answer is the first crossing on the geometric grid, refined inside its bracket. A trial that is below the
    threshold even at ``alpha_max`` gets ``alpha_max`` (``reached = False``), so the median is finite and means
    "≥ alpha_max" when more than half the trials never reach it.

    The model runs in eval mode on its own device and dtype; its mode is restored.

    Args:
        model: classifier taking ``[B, *shape]`` inputs; images are in [0, 1] but ``α·u`` deliberately is not.
        shape: input shape without the batch, ``(C, H, W)``.
        n_trials: number of random directions (Hein: 10,000).
        seed: seed of the directions.
        threshold: target MSP (0.999).
        alpha_max: end of the search (1e20).
        factor: bracketing factor (> 1).
        rtol: relative width at which bisection stops.
        clip_conf: confidence counted as overconfident after clipping ``α·u`` back to [0, 1] (0.95).
        curve_points: points of the log-spaced α grid ``[1, alpha_max]`` of the mean-confidence curve.
        batch_size: inputs per forward pass.
    """
    _check_int(n_trials, "n_trials", 1)
    _check_int(batch_size, "batch_size", 1)
    _check_int(curve_points, "curve_points", 2)
    if not 0.0 < threshold < 1.0 or not 0.0 <= clip_conf < 1.0:
        raise InputError(f"threshold and clip_conf must be fractions below 1, got {threshold} and {clip_conf}")
    if not (factor > 1.0 and alpha_max >= 1.0 and rtol > 0.0):
        raise InputError(
            f"alpha_scaling needs factor > 1, alpha_max >= 1 and rtol > 0, got {factor}, {alpha_max}, {rtol}"
        )
    dev, dtype = model_device(model), _param_dtype(model)
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand((n_trials, *shape), generator=g).to(dev, dtype)
    view = (-1,) + (1,) * (u.ndim - 1)
    was_training = model.training
    model.eval()

    def conf(alpha: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """MSP (float64, CPU) of ``alpha[i] · u[idx[i]]``; NaN (overflow) counts as not confident."""
        out = []
        for i in range(0, len(idx), batch_size):
            a = alpha[i : i + batch_size].to(dev, dtype).view(view)
            out.append(_msp_of(model, a * u[idx[i : i + batch_size].to(dev)], batch_size).double().cpu())
        c = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
        return torch.nan_to_num(c, nan=0.0)

    try:
        n = n_trials
        every = torch.arange(n)
        lo = torch.ones(n, dtype=torch.float64)
        hi = torch.full((n,), alpha_max, dtype=torch.float64)
        reached = conf(lo, every) >= threshold
        hi[reached] = 1.0
        open_ = (~reached).nonzero().flatten()  # trials still looking for an upper end
        while len(open_) and bool((lo[open_] < alpha_max).any()):
            open_ = open_[lo[open_] < alpha_max]
            cand = (lo[open_] * factor).clamp(max=alpha_max)
            ok = conf(cand, open_) >= threshold
            hi[open_[ok]] = cand[ok]
            reached[open_[ok]] = True
            lo[open_[~ok]] = cand[~ok]
            open_ = open_[~ok]
        # bisection in log α on every bracketed trial with lo < hi
        todo = (reached & (hi > lo)).nonzero().flatten()
        while len(todo):
            todo = todo[hi[todo] > lo[todo] * (1.0 + rtol)]
            if not len(todo):
                break
            mid = (lo[todo] * hi[todo]).sqrt()
            ok = conf(mid, todo) >= threshold
            hi[todo[ok]] = mid[ok]
            lo[todo[~ok]] = mid[~ok]
        alphas = torch.where(reached, hi, torch.full_like(hi, alpha_max))
        median = float(torch.quantile(alphas, 0.5))
        clipped = []
        for i in range(0, n, batch_size):
            a = alphas[i : i + batch_size].to(dev, dtype).view(view)
            clipped.append(_msp_of(model, (a * u[i : i + batch_size]).clamp(0, 1), batch_size).double().cpu())
        overconf = float((torch.cat(clipped) > clip_conf).to(torch.float64).mean())
        grid = (
            torch.logspace(0.0, math.log10(alpha_max), curve_points, dtype=torch.float64)
            if alpha_max > 1
            else torch.ones(curve_points, dtype=torch.float64)
        )
        curve = torch.stack([conf(torch.full((n,), float(a), dtype=torch.float64), every).mean() for a in grid])
    finally:
        model.train(was_training)
    return AlphaScaling(alphas, reached, median, overconf, grid, curve)


# --------------------------------------------------------------------------------------------- PGD attacks


def default_step_size(eps: float, steps: int) -> float:
    """Evaluation PGD step: Madry et al.'s ``2.5·ε/steps`` (W3's evaluation step is unstated)."""
    return 2.5 * eps / max(int(steps), 1)


@dataclass(frozen=True)
class NoiseAttack:
    """Result of :func:`attack_noise`.

    Attributes:
        x_adv: ``[N, C, H, W]`` adversarial noise in [0, 1], within ε of the start images.
        conf_start: ``[N]`` MSP of the start images (the noise itself).
        conf_adv: ``[N]`` MSP of ``x_adv`` (the best over the start, the random start and every iterate).
        curve: ``float64 [steps + 2]`` mean keep-best MSP after each evaluation: index 0 the noise, 1 the random
            start, ``1 + k`` after step k; non-decreasing, ending at ``conf_adv.mean()``.
    """

    x_adv: torch.Tensor
    conf_start: torch.Tensor
    conf_adv: torch.Tensor
    curve: torch.Tensor


def attack_noise(
    model: nn.Module,
    z: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> NoiseAttack:
    """Adversarial noise (W3's ``evaluation.py``): PGD maximising ``log max_k p_k`` in the L∞ ball around noise.

    Runs :func:`rulab.attacks.pgd` with Hein's random start (``z + s·δ``), keep-best and BN in eval mode,
    batch by batch, and records the objective of every evaluation for the per-step curve (no extra forward pass).

    Args:
        model: classifier on ``[B, C, H, W]`` in [0, 1].
        z: start noise ``float [N, C, H, W]`` in [0, 1] (moved to the model's device).
        eps: L∞ radius in pixel units.
        steps: signed-gradient steps.
        step_size: pixels per step (default :func:`default_step_size`).
        generator: randomness of the random start.
        batch_size: images per PGD batch.
    """
    _check_int(steps, "steps", 0)
    _check_int(batch_size, "batch_size", 1)
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    dev, dtype = model_device(model), _param_dtype(model)
    advs, starts, bests, traces = [], [], [], []
    for i in range(0, len(z), batch_size):
        zb = z[i : i + batch_size].to(dev, dtype)
        record: list[torch.Tensor] = []

        def objective(logits: torch.Tensor, record: list[torch.Tensor] = record) -> torch.Tensor:
            v = log_max_confidence(logits)
            record.append(v.detach().exp().double().cpu())
            return v

        x_adv, best = pgd(model, zb, objective, eps, steps, step, generator, random_start="hein", keep_best=True)
        trace = torch.stack(record).cummax(dim=0).values  # [evaluations, B], keep-best per example
        advs.append(x_adv)
        starts.append(record[0])
        bests.append(best.exp().double().cpu())
        traces.append(trace)
    if not advs:
        raise InputError("attack_noise needs at least one start image")
    curve = torch.cat(traces, dim=1).mean(dim=1)
    return NoiseAttack(torch.cat(advs), torch.cat(starts), torch.cat(bests), curve)


def attack_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    restarts: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial samples (W3's ``evaluation.py``; W1's PGD-20 evaluation): PGD on the cross-entropy of the true label
    from test images.

    Uniform random start in the ε-ball, keep-best (the highest cross-entropy seen), BN in eval mode. With
    ``restarts > 1`` PGD runs again from fresh random starts and an example keeps the first result that is
    misclassified, else the one with the highest cross-entropy: it counts as broken if any restart breaks it
    (Madry et al. 2018, Section 3).

    Args:
        x: ``float [N, C, H, W]`` in [0, 1].
        y: ``[N]`` labels.
        eps: L-inf radius in pixel units.
        step_size: step in pixel units (default :func:`default_step_size`).
        restarts: random starts per example (>= 1).

    Returns:
        ``(x_adv [N, C, H, W], logits [N, K])``: the adversarial images and their logits (float32, CPU).
    """
    _check_int(steps, "steps", 0)
    _check_int(batch_size, "batch_size", 1)
    _check_int(restarts, "restarts", 1)
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    dev, dtype = model_device(model), _param_dtype(model)
    advs, logits = [], []
    was_training = model.training
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(dev, dtype), y[i : i + batch_size].to(dev)
        best_x = best_logits = best_ce = broken = None
        for _ in range(restarts):
            x_adv, _ = pgd(
                model,
                xb,
                lambda logits, yb=yb: F.cross_entropy(logits, yb, reduction="none"),
                eps,
                steps,
                step,
                generator,
                random_start="uniform",
                keep_best=True,
            )
            model.eval()
            try:
                with torch.no_grad():
                    out = model(x_adv).float()
            finally:
                model.train(was_training)
            ce = F.cross_entropy(out, yb, reduction="none")
            wrong = out.argmax(dim=1) != yb
            if best_x is None or best_logits is None or best_ce is None or broken is None:
                best_x, best_logits, best_ce, broken = x_adv, out, ce, wrong
                continue
            take = (~broken) & (wrong | (ce > best_ce))
            best_x = torch.where(take.view(-1, *([1] * (xb.ndim - 1))), x_adv, best_x)
            best_logits = torch.where(take.view(-1, 1), out, best_logits)
            best_ce = torch.where(take, ce, best_ce)
            broken = broken | wrong
        if best_x is None or best_logits is None:
            continue
        advs.append(best_x)
        logits.append(best_logits.cpu())
    if not advs:
        raise InputError("attack_samples needs at least one image")
    return torch.cat(advs), torch.cat(logits)


def resisted(probs: torch.Tensor, labels: torch.Tensor, rejection_index: int | None = None) -> torch.Tensor:
    """Hein et al.'s resistance to adversarial samples (W3's ``analysis.py``): which examples are still classified
    correctly once a rejection option is added.

    A column of value ``1.01/K`` is inserted into the softmax outputs at ``rejection_index`` and an example is
    resisted when the argmax of the ``K + 1`` columns equals its true label. The default index is ``K`` (the column
    is appended, classes keep their indices). ``rejection_index=10`` reproduces W3's code, which inserts it at 10
    whatever K is: for K > 10 classes 10..K−1 move one place up, so a correct prediction of class c ≥ 10 counts as
    not resisted, a prediction of class c − 1 counts as resisted for c ≥ 11, and a rejection counts as resisted
    for true class 10 (the register of convention 5 in docs/conventions.md).

    Args:
        probs: ``[N, K]`` softmax outputs.
        labels: ``[N]`` true classes.
        rejection_index: where the rejection column goes, 0..K (default K).

    Returns:
        ``bool [N]``: True where resisted.
    """
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise InputError(
            f"resisted needs probs [N, K] and labels [N], got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    n, k = probs.shape
    idx = k if rejection_index is None else int(rejection_index)
    if not 0 <= idx <= k:
        raise InputError(f"rejection_index must lie in 0..{k} for {k} classes, got {rejection_index}")
    reject = probs.new_full((n, 1), 1.01 / k)
    aug = torch.cat([probs[:, :idx], reject, probs[:, idx:]], dim=1)
    return aug.argmax(dim=1) == labels.to(probs.device)


# --------------------------------------------------------------------------------------------- evaluation


def top_images(x: torch.Tensor, conf: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` images of highest confidence, highest first, as uint8 (what the report draws).

    Args:
        x: ``[N, C, H, W]`` uint8 (0..255) or float in [0, 1] (clipped).
        conf: ``[N]`` confidences (MSP).
        k: how many (fewer when ``N < k``).

    Returns:
        ``(images uint8 [k', C, H, W], conf float32 [k'])`` with ``k' = min(k, N)``, ties kept in input order.
    """
    if len(x) != len(conf):
        raise InputError(f"top_images needs one confidence per image, got {len(x)} images and {len(conf)} confidences")
    order = torch.sort(conf.detach().double().cpu(), descending=True, stable=True).indices[: min(int(k), len(conf))]
    imgs = x.detach().cpu()[order]
    if imgs.dtype != torch.uint8:
        imgs = (imgs.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return imgs, conf.detach().float().cpu()[order]


def _detection(table: ResultTable, s_id: torch.Tensor, s: torch.Tensor, dataset: str, extra: dict[str, Any]) -> None:
    """mmc, auroc and fpr95_id of scores ``s`` against the ID scores (NaN with n = 0 when ``s`` is empty)."""
    if len(s):
        values = {"mmc": float(s.double().mean()), "auroc": auroc(s_id, s), "fpr95_id": fpr95_id(s_id, s)}
    else:
        values = dict.fromkeys(("mmc", "auroc", "fpr95_id"), math.nan)
    for metric, value in values.items():
        table.add("farconf", metric, value, dataset=dataset, n=len(s), extra=extra)


def _keep_top(table: ResultTable, name: str, x: torch.Tensor, conf: torch.Tensor) -> None:
    """Store the :data:`TOP_K` most confident images of a set as ``farconf_top/<name>/images`` / ``.../conf``."""
    if len(x):
        imgs, c = top_images(x, conf)
        table.arrays[f"farconf_top/{name}/images"] = imgs
        table.arrays[f"farconf_top/{name}/conf"] = c


def _noise_start(
    name: str, family: str, test: TensorDataset, ood: Mapping[str, TensorDataset], n: int, seed: int
) -> tuple[torch.Tensor, str]:
    """The first ``n`` images of the OOD set ``family`` if the caller has it, else ``n`` freshly generated ones."""
    if family in ood and len(ood[family]):
        return unit_pixels(ood[family].x[:n]), "ood set"
    stream = NoiseStream(family, test.shape, n=n, seed=_seed(seed, name), chunk=max(n, 1), base=test)
    return torch.cat(list(stream)), "generated"


def _alpha_rows(
    table: ResultTable,
    model: nn.Module,
    shape: tuple[int, int, int],
    trials: int,
    seed: int,
    alpha_threshold: float,
    alpha_max: float,
    bs: int,
) -> None:
    """The α-scaling rows and arrays of :func:`evaluate_farconf`."""
    a = alpha_scaling(model, shape, trials, _seed(seed, "alpha"), alpha_threshold, alpha_max, batch_size=bs)
    extra = {"reached_frac": a.reached_frac, "threshold": alpha_threshold, "alpha_max": alpha_max, "trials": trials}
    table.add("farconf", "alpha_median", a.median, dataset="alpha_scaling", n=trials, extra=extra)
    table.add("farconf", "overconf_frac", a.overconf_frac, dataset="alpha_scaling", n=trials, extra={"clip_conf": 0.95})
    table.arrays.update(
        {"farconf/alpha/alphas": a.curve_alphas, "farconf/alpha/conf": a.curve_conf, "farconf/alpha/trials": a.alphas}
    )


def evaluate_farconf(
    model: nn.Module,
    test: TensorDataset,
    ood: dict[str, TensorDataset],
    eval_cfg: EvalCfg,
    seed: int,
    *,
    rejection_index: int | None = None,
    step_size: float | None = None,
    noise_sources: Sequence[tuple[str, str]] = NOISE_SOURCES,
    alpha_threshold: float = ALPHA_THRESHOLD,
    alpha_max: float = ALPHA_MAX,
    id_logits: torch.Tensor | None = None,
    ood_logits: Mapping[str, torch.Tensor] | None = None,
) -> ResultTable:
    """α-scaling, adversarial noise and adversarial samples of one model (module docstring).

    Rows (kind ``"farconf"``, detector ``""``):

    * ``alpha_scaling``: ``alpha_median`` (``ALPHA_MAX`` = 1e20 stands for "never reached"; ``extra`` holds
      ``reached_frac``), ``overconf_frac``;
    * for every ``(name, family)`` of ``noise_sources``: ``name`` (the noise) and ``"adv_" + name`` (after PGD with
      ``eval.adv_steps``): ``mmc``, ``auroc``, ``fpr95_id`` against the ID test set's MSP; and ``f"adv_{name}_{k}"``
      for every ``k`` of ``eval.adv_noise_steps`` (the same noise, attacked again with ``k`` steps of the default
      size ``2.5·ε/k``);
    * ``adv_samples``: ``resistance``, ``clean_acc`` and ``adv_acc`` over all attacked test images (the same images
      before and after PGD; ``extra`` holds ε, steps, step size and restarts); ``mmc``, ``auroc``, ``fpr95_id`` over the
      non-resisted ones only (as W3's ``analysis.py``; NaN with ``n = 0`` when every example resisted).

    Only the parts named in ``eval_cfg.farconf_tests`` run (``alpha``: the first bullet, ``noise``: the second,
    ``samples``: the third).

    Arrays: ``farconf/alpha/alphas`` (grid), ``farconf/alpha/conf`` (mean MSP on the grid),
    ``farconf/alpha/trials`` (α per trial), ``farconf/<name>/scores``, ``farconf/adv_<name>/scores``,
    ``farconf/adv_<name>/pgd_conf`` (mean keep-best MSP per PGD evaluation, see :class:`NoiseAttack`),
    ``farconf/adv_samples/scores`` and ``farconf/adv_samples/resisted`` (all attacked images),
    ``farconf/id/scores``; ``farconf_top/<set>/images`` and ``farconf_top/<set>/conf`` (:func:`top_images`) for
    the noise, every adversarial noise, the adversarial samples and every set of ``ood_logits``.

    Args:
        model: classifier on ``[B, C, H, W]`` in [0, 1].
        test: ID test set (uint8 images, labels).
        ood: OOD sets already loaded by the caller; a noise family of ``noise_sources`` found here (``"hein"``,
            ``"uniform"``) supplies the start images (its first ``adv_n``), otherwise they are generated from ``seed``.
        eval_cfg: an :class:`rulab.config.EvalCfg`; reads ``alpha_trials``, ``adv_eps``, ``adv_steps``, ``adv_n``,
            ``adv_step_size``, ``adv_restarts``, ``farconf_tests``, ``batch_size``.
        seed: seed of the directions, noise, random starts and the attacked subset.
        rejection_index: where :func:`resisted` puts the rejection column (default K; W3 parity: 10).
        step_size: PGD step in pixels (default ``eval_cfg.adv_step_size`` when positive, else
            :func:`default_step_size`, 2.5·ε/steps).
        noise_sources: ``(row name, noise family)`` pairs to attack.
        alpha_threshold: see :func:`alpha_scaling`.
        alpha_max: see :func:`alpha_scaling`.
        id_logits: the model's logits on ``test`` if already computed (``[N, K]``), to skip that forward pass.
        ood_logits: the model's logits on sets of ``ood`` (``{name: [N, K]}``, as the evaluation extracted them): their
            most confident images are kept for the report.
    """
    trials = _check_int(int(eval_cfg.alpha_trials), "eval.alpha_trials", 1)
    eps = float(eval_cfg.adv_eps)
    steps = _check_int(int(eval_cfg.adv_steps), "eval.adv_steps", 0)
    more_steps = [_check_int(int(k), "eval.adv_noise_steps", 1) for k in getattr(eval_cfg, "adv_noise_steps", ())]
    n_adv = _check_int(int(eval_cfg.adv_n), "eval.adv_n", 1)
    bs = _check_int(int(eval_cfg.batch_size), "eval.batch_size", 1)
    if not 0.0 <= eps <= 1.0:
        raise InputError(f"eval.adv_eps is an L-inf radius in [0, 1] pixel units, got {eps}")
    if len(test) == 0:
        raise InputError(f"test set '{test.name}' is empty")
    configured = float(getattr(eval_cfg, "adv_step_size", 0.0) or 0.0)
    if step_size is None and configured > 0:
        step_size = configured
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    restarts = _check_int(int(getattr(eval_cfg, "adv_restarts", 1)), "eval.adv_restarts", 1)
    tests = tuple(getattr(eval_cfg, "farconf_tests", FARCONF_TESTS))
    unknown = sorted(set(tests) - set(FARCONF_TESTS))
    if unknown:
        raise InputError(f"eval.farconf_tests names '{unknown[0]}'; valid choices: {', '.join(FARCONF_TESTS)}")
    dev = model_device(model)
    was_training = model.training
    table = ResultTable(
        meta={
            "farconf_seed": int(seed),
            "adv_eps": eps,
            "adv_steps": steps,
            "adv_step_size": step,
            "adv_restarts": restarts,
            "tests": list(tests),
        }
    )
    pgd_extra = {"eps": eps, "steps": steps, "step_size": step}
    try:
        model.eval()
        if id_logits is None:
            s_id = torch.cat(
                [_msp_of(model, unit_pixels(test.x[i : i + bs].to(dev)), bs).cpu() for i in range(0, len(test), bs)]
            )
        else:
            s_id = msp(id_logits.float()).cpu()
        s_id = s_id.double()
        table.arrays["farconf/id/scores"] = s_id.float()

        if "alpha" in tests:
            _alpha_rows(table, model, test.shape, trials, seed, alpha_threshold, alpha_max, bs)

        for name, family in noise_sources if "noise" in tests else ():
            z, origin = _noise_start(name, family, test, ood, n_adv, seed)
            g = torch.Generator().manual_seed(_seed(seed, "pgd:" + name))
            att = attack_noise(model, z, eps, steps, step, g, bs)
            _detection(table, s_id, att.conf_start, name, {"family": family, "source": origin})
            _detection(table, s_id, att.conf_adv, "adv_" + name, {"family": family, "source": origin, **pgd_extra})
            table.arrays.update(
                {
                    f"farconf/{name}/scores": att.conf_start.float(),
                    f"farconf/adv_{name}/scores": att.conf_adv.float(),
                    f"farconf/adv_{name}/pgd_conf": att.curve,
                }
            )
            _keep_top(table, name, z, att.conf_start)
            _keep_top(table, "adv_" + name, att.x_adv, att.conf_adv)
            for k in more_steps:  # W3 runs the attack on noise with 80 and with 200 steps
                g = torch.Generator().manual_seed(_seed(seed, f"pgd:{name}:{k}"))
                more = attack_noise(model, z, eps, k, default_step_size(eps, k) if step_size is None else step, g, bs)
                label = f"adv_{name}_{k}"
                _detection(
                    table,
                    s_id,
                    more.conf_adv,
                    label,
                    {
                        "family": family,
                        "source": origin,
                        "eps": eps,
                        "steps": k,
                        "step_size": default_step_size(eps, k) if step_size is None else step,
                    },
                )
                table.arrays.update(
                    {f"farconf/{label}/scores": more.conf_adv.float(), f"farconf/{label}/pgd_conf": more.curve}
                )
                _keep_top(table, label, more.x_adv, more.conf_adv)

        if "samples" in tests:
            g = torch.Generator().manual_seed(_seed(seed, "samples"))
            idx = torch.randperm(len(test), generator=g)[: min(n_adv, len(test))].sort().values
            x, y = unit_pixels(test.x[idx]), test.y[idx]
            x_adv_samples, logits = attack_samples(model, x, y, eps, steps, step, g, bs, restarts=restarts)
            res = resisted(logits.double().softmax(dim=1), y, rejection_index)
            rej = logits.shape[1] if rejection_index is None else int(rejection_index)
            sample_extra = {**pgd_extra, "restarts": restarts}
            table.add(
                "farconf",
                "resistance",
                float(res.double().mean()),
                dataset="adv_samples",
                n=len(y),
                extra={"rejection_index": rej, **sample_extra},
            )
            # clean and adversarial accuracy of the same attacked images, side by side (W1's adversarial table)
            if id_logits is not None:
                clean = id_logits[idx].float().cpu()
            else:
                with torch.no_grad():
                    clean = torch.cat(
                        [model(x[i : i + bs].to(dev, _param_dtype(model))).float().cpu() for i in range(0, len(x), bs)]
                    )
            table.add(
                "farconf",
                "clean_acc",
                float((clean.argmax(dim=1) == y).double().mean()),
                dataset="adv_samples",
                n=len(y),
                extra=sample_extra,
            )
            table.add(
                "farconf",
                "adv_acc",
                float((logits.argmax(dim=1) == y).double().mean()),
                dataset="adv_samples",
                n=len(y),
                extra=sample_extra,
            )
            s_adv = msp(logits).double()
            _detection(table, s_id, s_adv[~res], "adv_samples", {"non_resisted_of": len(y), **pgd_extra})
            table.arrays.update({"farconf/adv_samples/scores": s_adv.float(), "farconf/adv_samples/resisted": res})
            _keep_top(table, "adv_samples", x_adv_samples[~res.to(x_adv_samples.device)], s_adv[~res])
        for set_name, z_ood in (ood_logits or {}).items():
            if set_name in ood and len(ood[set_name]) == len(z_ood):
                _keep_top(table, set_name, ood[set_name].x, msp(z_ood.float()).cpu())
    finally:
        model.train(was_training)
    return table
