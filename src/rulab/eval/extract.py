"""Run the network once per (checkpoint, dataset) and cache what detectors and metrics read (convention 6 in
docs/conventions.md).

:func:`extract` returns an :class:`~rulab.detectors.base.Extracted` (logits, penultimate features, labels, the head's
weights, and the images themselves for detectors that go back to the model). With ``cache_dir`` the tensors are
stored as one safetensors file per (model, dataset): ``<cache_dir>/<model_key>/<dataset key hash>.safetensors``, where
``model_key`` is the checkpoint's content hash (:func:`rulab.checkpoint.checkpoint_hash`, or a hash of the
weights for an in-memory model) and the dataset key names the data (:func:`dataset_key`). A second call loads the
file instead of running the model; a corrupt or mismatching file is recomputed and overwritten (atomically).

**A deep ensemble reads its members' entries.** The members of an ensemble evaluated after them (a study's seeds)
have already run on the data the ensemble shares with them (the test set, the shifted test sets). With
``members_from`` (each member's cache directory and key, in member order) :func:`extract` composes the ensemble's
outputs from those entries instead of running the members again: member logits ``[N, M, K]`` stacked, logits their
:func:`~rulab.models.ensemble.average_logits`, features concatenated in member order. These are the outputs of
:class:`~rulab.models.ensemble.Ensemble` on the same images, computed by the same networks in the same eval mode
(``tests/eval/test_member_reuse.py`` checks the equality). A key that any member lacks is computed as usual.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rulab.data.tensors import TensorDataset
from rulab.detectors.base import Extracted
from rulab.errors import InputError
from rulab.eval.predict import predict
from rulab.io import atomic_path
from rulab.models.ensemble import Ensemble, MemberAverage, average_logits

__all__ = [
    "extract",
    "dataset_key",
    "weights_hash",
    "cache_path",
    "linear_head",
    "load_cached",
    "store_cached",
    "from_members",
    "stored_outputs",
]

_FORMAT = "rulab-extract-1"


def weights_hash(model: nn.Module) -> str:
    """A short content hash of a model's state dict (names, dtypes, shapes and bytes), for in-memory models."""
    h = hashlib.sha256()
    target = getattr(getattr(model, "module", model), "_orig_mod", getattr(model, "module", model))
    for name, t in sorted(target.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _fingerprint(ds: TensorDataset) -> str:
    """A cheap content fingerprint: size plus a hash of ~64k evenly spaced image bytes and all labels."""
    flat = ds.x.reshape(-1)
    step = max(1, flat.numel() // 65536)
    h = hashlib.sha256()
    h.update(str(tuple(ds.x.shape)).encode())
    h.update(flat[::step].contiguous().cpu().numpy().tobytes())
    h.update(ds.y.cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def dataset_key(ds: TensorDataset, split: str = "", seed: int | str = "", shift: str = "") -> str:
    """A readable key naming a dataset: ``name|split|n=..|seed=..|shift=..|fp=<content fingerprint>``.

    Args:
        ds: the dataset.
        split: its role or split (``"train"``, ``"val"``, ``"test"``, ``"ood"``, ``"val_ood"``).
        seed: the seed that generated or subsampled it.
        shift: a covariate-shift cell (``"fog:3"``) or ``""``.
    """
    return f"{ds.name}|{split}|n={len(ds)}|seed={seed}|shift={shift}|fp={_fingerprint(ds)}"


def cache_path(cache_dir: str | os.PathLike[str], model_key: str, key: str) -> Path:
    """Where :func:`extract` stores the tensors of ``key`` for ``model_key``."""
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / model_key / f"{name}.safetensors"


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The model's linear head ``fc`` (through DDP and ``torch.compile`` wrappers), or None when it has none (a deep
    ensemble, a network whose head is another module): what detectors with ``"head"`` in ``requires`` read."""
    target = getattr(getattr(model, "module", model), "_orig_mod", getattr(model, "module", model))
    fc = getattr(target, "fc", None)
    return fc if isinstance(fc, nn.Linear) else None


def _head(model: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    fc = linear_head(model)
    if fc is not None:
        return (
            fc.weight.detach().float().cpu().clone(),
            None if fc.bias is None else fc.bias.detach().float().cpu().clone(),
        )
    return None, None


def load_cached(
    cache_dir: str | os.PathLike[str], model_key: str, key: str, n: int, features: bool = False, members: bool = False
) -> dict[str, torch.Tensor] | None:
    """The tensors :func:`extract` (or :func:`store_cached`) stored for ``(model_key, key)``, or None when there are
    none usable (absent, unreadable, another key, not ``n`` rows, without the features or member logits asked for).

    Returns:
        ``{"logits": [n, K], "labels": [n], ...}`` (``features``, ``head_weight``, ``head_bias``, ``members`` when
        stored).
    """
    return _load(cache_path(cache_dir, model_key, key), key, n, features, members)


def store_cached(cache_dir: str | os.PathLike[str], model_key: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
    """Store ``tensors`` (at least ``logits [N, K]`` and ``labels [N]``) for ``(model_key, key)``, atomically."""
    _save(cache_path(cache_dir, model_key, key), key, tensors)


def from_members(
    members_from: Sequence[tuple[str | os.PathLike[str], str]], key: str, n: int, features: bool = False
) -> dict[str, torch.Tensor] | None:
    """A deep ensemble's outputs composed from its members' cache entries of ``key`` (module docstring), or None
    when a member has no usable entry.

    Args:
        members_from: ``(cache_dir, model_key)`` of each member, in the ensemble's member order.
        key: the dataset key; n: its number of examples; features: the members' features are needed too.

    Returns:
        ``{"logits": float32 [n, K], "members": float32 [n, M, K], "labels": [n]}`` and ``"features": [n, Σ D_m]``
        when asked (no head: an ensemble has no single linear head).
    """
    if not members_from or not all(cache_path(d, k, key).is_file() for d, k in members_from):
        return None  # checked first: no member's file is read when another member has none
    parts = []
    for cache_dir, model_key in members_from:
        part = load_cached(cache_dir, model_key, key, n, features)
        if part is None:
            return None
        parts.append(part)
    if len({tuple(p["logits"].shape) for p in parts}) != 1:
        return None
    stacked = torch.stack([p["logits"].float() for p in parts], dim=1)
    out = {"logits": average_logits(stacked).float(), "labels": parts[0]["labels"], "members": stacked}
    if features:
        out["features"] = torch.cat([p["features"].float() for p in parts], dim=1)
    return out


def stored_outputs(
    cache_dir: str | os.PathLike[str] | None,
    model_key: str,
    key: str,
    n: int,
    features: bool = False,
    members: bool = False,
    members_from: Sequence[tuple[str | os.PathLike[str], str]] = (),
) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """What is already stored for ``key``: this model's own cache entry (:func:`load_cached`), else a deep ensemble's
    outputs composed from its members' entries (:func:`from_members`), else None. The flag says whether the outputs
    were composed (so not stored under ``model_key``)."""
    if cache_dir is not None:
        own = load_cached(cache_dir, model_key, key, n, features, members)
        if own is not None:
            return own, False
    composed = from_members(members_from, key, n, features)
    return composed, composed is not None


def _load(path: Path, key: str, n: int, features: bool, members: bool = False) -> dict[str, torch.Tensor] | None:
    """The cached tensors, or None when absent, unreadable, for another key, the wrong size, or without the features
    or member logits asked for."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != _FORMAT or meta.get("key") != key:
                return None
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception:  # noqa: BLE001 - any unreadable file (truncated, garbage, wrong format) is recomputed
        return None
    if (
        "logits" not in tensors
        or "labels" not in tensors
        or tensors["logits"].shape[0] != n
        or tensors["labels"].shape[0] != n
    ):
        return None
    if features and tensors.get("features") is None:
        return None
    if members and (tensors.get("members") is None or tensors["members"].shape[0] != n):
        return None
    if not all(bool(torch.isfinite(t).all()) for k, t in tensors.items() if t.is_floating_point() and k != "features"):
        return None
    return tensors


def _save(path: Path, key: str, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": _FORMAT, "key": key})


def extract(
    model: nn.Module,
    ds: TensorDataset,
    batch_size: int = 256,
    features: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    key: str | None = None,
    model_key: str | None = None,
    keep_images: bool = True,
    channels_last: bool = False,
    members_from: Sequence[tuple[str | os.PathLike[str], str]] = (),
) -> Extracted:
    """Logits (and features) of ``model`` on ``ds``: one forward pass, or none when cached.

    Args:
        model: a classifier taking [0, 1] pixels (run in eval mode, no grad; its mode is restored).
        ds: ``uint8`` images and labels (``-1`` for OOD sets).
        batch_size: images per forward pass.
        features: also return the penultimate features ``model.features(x)`` (and the head's weights).
        cache_dir: directory of the on-disk cache; None disables caching.
        key: the dataset key (default :func:`dataset_key` of ``ds``).
        model_key: the model's key, normally :func:`rulab.checkpoint.checkpoint_hash` of its checkpoint
            (default: :func:`weights_hash` of the model).
        keep_images: set ``Extracted.x = ds.x`` (no copy) for detectors that go back to the model.
        channels_last: feed the batches in channels-last memory format (faster convolutions on CPUs; same values).
        members_from: for a :class:`~rulab.models.ensemble.Ensemble` ``model``, each member's ``(cache_dir,
            model_key)`` in member order: a key every member has cached is composed from those entries (module
            docstring) instead of running the members.

    Returns:
        :class:`Extracted` with CPU tensors: ``logits float32 [N, K]``, ``labels int64 [N]``, ``features float32
        [N, D]`` (when asked), ``head_weight [K, D]`` / ``head_bias [K]`` (when the model has a linear ``fc``), and
        ``members float32 [N, M, K]`` for an averaged predictive (a deep ensemble, MC dropout).

    Raises:
        InputError: the images do not fit the model, or the model's outputs hold NaN/inf (broken weights).
    """
    key = key or dataset_key(ds)
    if members_from and (not isinstance(model, Ensemble) or len(members_from) != model.num_members):
        raise InputError(
            f"members_from names {len(members_from)} member caches, but the model is a "
            f"{type(model).__name__}{f' of {model.num_members}' if isinstance(model, Ensemble) else ''}; pass "
            "one (cache_dir, model_key) per member of a deep ensemble"
        )
    mkey = model_key or weights_hash(model) if cache_dir is not None else ""
    stored, composed = stored_outputs(
        cache_dir, mkey, key, len(ds), features, isinstance(model, MemberAverage), members_from
    )
    # composing is cheap, so composed outputs are not stored again; their features must be the ensemble's
    if stored is not None and (not composed or not features or stored["features"].shape[1] == model.feature_dim):
        return _build(stored, ds, key, keep_images)
    path = cache_path(cache_dir, mkey, key) if cache_dir is not None else None
    out = predict(model, ds.x, batch_size=batch_size, features=features, channels_last=channels_last)
    for what, t in out.items():
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise InputError(
                f"the model produced {bad} NaN/inf {what} values on '{ds.name}', so its weights are broken (training "
                "diverged or the checkpoint is corrupt); re-train it or restore the checkpoint from a copy"
            )
    tensors: dict[str, Any] = {"logits": out["logits"], "labels": ds.y.cpu().clone()}
    if "members" in out:
        tensors["members"] = out["members"]
    if features:
        tensors["features"] = out["features"]
        w, b = _head(model)
        if w is not None:
            tensors["head_weight"] = w
        if b is not None:
            tensors["head_bias"] = b
    if path is not None:
        _save(path, key, tensors)
    return _build(tensors, ds, key, keep_images)


def _build(t: dict[str, torch.Tensor], ds: TensorDataset, key: str, keep_images: bool) -> Extracted:
    return Extracted(
        logits=t["logits"],
        labels=t["labels"],
        features=t.get("features"),
        x=ds.x if keep_images else None,
        head_weight=t.get("head_weight"),
        head_bias=t.get("head_bias"),
        name=key,
        members=t.get("members"),
    )
