"""A user's own data as a rulab :class:`~rulab.data.tensors.TensorDataset` (pixels and int64 labels).

:func:`as_dataset` accepts what people have at hand and turns it into the one in-memory type every evaluation reads:

* a :class:`~rulab.data.tensors.TensorDataset` (returned as it is);
* images as a ``torch.Tensor`` or NumPy array ``[N, C, H, W]`` (``[N, H, W]`` is one grey channel; ``[N, H, W, C]``
  with C in {1, 3, 4} and a larger dimension 1 is read channels-last), optionally with labels as a pair ``(x, y)``;
* any ``torch.utils.data.Dataset`` (map-style or iterable) yielding ``(image, label)`` (or images alone), e.g. a torchvision dataset with a
  ``transforms.ToTensor()`` (and ``Normalize``) transform; images may be tensors, NumPy arrays or PIL images;
* a ``torch.utils.data.DataLoader`` over such a dataset (its batches ``(x, y)`` or ``x``; shuffling is harmless);
* a folder of images (torchvision's ``ImageFolder`` layout, :func:`rulab.data.folders.load_image_folder`), resized
  and centre-cropped to ``size``.

**Pixel units.** rulab feeds models [0, 1] pixels (``x / 255`` for 8-bit images; convention 1 in
docs/conventions.md). The caller says what the values are:

* ``uint8`` data are pixels 0..255;
* float data with ``pixels=True`` are [0, 1] pixels (what ``transforms.ToTensor()`` gives);
* float data with ``pixels=False`` were normalised with ``(x - mean) / std``; they are mapped back with
  ``x * std + mean`` to [0, 1] pixels, and the model is then wrapped with the same normalisation as its first
  layer (:class:`rulab.models.wrapped.WrappedClassifier`), so the model sees what it was trained on while ODIN's ε,
  adversarial ε and corruption severities stay in pixel units.

**Float data are scored as given.** Float pixels that are 8-bit data (``k / 255`` exactly in float32, as every image
file and torchvision dataset gives; for normalised data within :data:`QUANTIZATION_TOLERANCE` of that grid) are held as
``uint8``, which reproduces them bit for bit. Any other float data are held as ``float32`` [0, 1] pixels, unrounded
(float64 input is rounded to float32, the precision the model computes in), and stay so through extraction, its
on-disk cache and every detector. Only where a protocol defines its images as 8-bit are they quantised: the
corrupted copies of covariate-shift evaluation (CIFAR-10-C / ImageNet-C are 8-bit images; :mod:`rulab.eval.shift`) and
the registered OOD sets built from the ID test images (``hein``, ``permuted``: 8-bit like every registered set).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rulab.data.tensors import TensorDataset, unit_pixels
from rulab.errors import ConfigError, InputError, RulabWarning

__all__ = ["as_dataset", "to_pixels", "QUANTIZATION_TOLERANCE"]

QUANTIZATION_TOLERANCE = 1e-6
"""Normalised float data (``pixels=False``) within this distance (in [0, 1] pixel units) of the 8-bit grid after
un-normalising are 8-bit images and are held as ``uint8`` (normalising an 8-bit image in float32 and mapping it back
moves it by ~1e-7). Float pixels (``pixels=True``) are held as ``uint8`` only when they are exactly ``k / 255`` in
float32."""

_RANGE_TOLERANCE = 1e-3


def _stats(values: Sequence[float] | float | None, what: str) -> torch.Tensor | None:
    if values is None:
        return None
    vals = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if not vals:
        raise ConfigError(f"{what} must not be empty")
    return torch.tensor(vals, dtype=torch.float64).view(1, -1, 1, 1)


def to_pixels(
    x: torch.Tensor,
    pixels: bool = True,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    name: str = "data",
    quantize: bool = False,
) -> torch.Tensor:
    """Images ``[N, C, H, W]`` (uint8 0..255, float [0, 1] pixels, or normalised floats) → rulab's pixel tensor:
    ``uint8 [N, C, H, W]`` for 8-bit data, else ``float32 [N, C, H, W]`` [0, 1] pixels as given (module docstring).

    Args:
        x: the images, channels first.
        pixels: float data are [0, 1] pixels (True) or normalised with ``mean``/``std`` (False); uint8 data are
            always pixels 0..255.
        mean: per-channel mean of the normalisation, in [0, 1] pixel units (needed when ``pixels=False``).
        std: per-channel standard deviation.
        name: the data's name, for messages.
        quantize: round float data to the nearest 1/255 and return uint8 (for a protocol that defines its images as
            8-bit); warns when that moves a pixel by more than a float32 rounding (1e-3).

    Raises:
        InputError: values outside [0, 1] pixels after un-normalising (beyond a 1e-3 tolerance), NaN/inf, a
            normalisation with the wrong number of channels.
    """
    if x.ndim >= 1 and len(x) == 0:
        raise InputError(f"'{name}' holds no images; give at least one")
    if x.dtype == torch.uint8:  # always pixels 0..255, whatever ``pixels`` says of float data
        return x
    if x.dtype == torch.bool or not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64)):
        raise InputError(f"'{name}' images must be uint8 or float, got {x.dtype}")
    if not x.is_floating_point():  # integer pixels 0..255 of a wider type
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise InputError(
                f"'{name}' holds integers in [{lo}, {hi}], not pixels 0..255; pass float [0, 1] pixels or uint8"
            )
        return x.to(torch.uint8)
    v = x.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(v).all()):
        raise InputError(
            f"'{name}' contains NaN or infinite values; replace them (torch.nan_to_num) or drop those images"
        )
    if not pixels:
        m, s = _stats(mean, "mean"), _stats(std, "std")
        if m is None or s is None:
            raise ConfigError(
                f"'{name}' is normalised (pixels=False): give the mean and std it was normalised with, in [0, 1] pixel units"
            )
        c = v.shape[1]
        for t, what in ((m, "mean"), (s, "std")):
            if t.shape[1] not in (1, c):
                raise InputError(
                    f"{what} has {t.shape[1]} values but '{name}' has {c} channels; give one value per channel"
                )
        v = v * s + m
    lo, hi = float(v.min()), float(v.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        hint = (
            "it looks normalised: pass pixels=False with its mean and std"
            if pixels
            else "the mean/std do not match how it was normalised"
        )
        raise InputError(f"'{name}' spans [{lo:.3g}, {hi:.3g}], not [0, 1] pixels; {hint}")
    levels = (v.clamp(0, 1) * 255).round()
    if quantize:
        err = float((v.clamp(0, 1) * 255 - levels).abs().max()) / 255 if v.numel() else 0.0
        if err > _RANGE_TOLERANCE:
            warnings.warn(
                f"'{name}' is not 8-bit image data: rounding it to the nearest 1/255 changes pixels by up to {err:.2g}",
                RulabWarning,
                stacklevel=2,
            )
        return levels.to(torch.uint8)
    if pixels:
        f32 = x.detach().to("cpu", torch.float32)
        if torch.equal(levels.to(torch.float32).div_(255), f32):  # exactly what rulab computes from uint8
            return levels.to(torch.uint8)
        return f32.contiguous()
    if v.numel() == 0 or float((v - levels / 255).abs().max()) <= QUANTIZATION_TOLERANCE:
        return levels.to(torch.uint8)
    return v.to(torch.float32).contiguous()


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a) if a.flags.writeable else np.array(a))
    if hasattr(a, "size") and hasattr(a, "mode") and hasattr(a, "getbands"):  # a PIL image: HWC uint8
        arr = np.array(a)  # a writable copy (np.asarray of a PIL image is read-only)
        return torch.from_numpy(arr if arr.ndim == 3 else arr[:, :, None]).permute(2, 0, 1)
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError, RuntimeError):
        raise InputError(
            f"'{name}' holds a {type(a).__name__}, not images; pass tensors, NumPy arrays or PIL images"
        ) from None


def _channels_first(x: torch.Tensor, name: str) -> torch.Tensor:
    """``[N, H, W]`` → ``[N, 1, H, W]``; ``[N, H, W, C]`` (C in 1, 3, 4 and H > 4) → ``[N, C, H, W]``."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise InputError(f"'{name}' images must be [N, C, H, W] (or [N, H, W] grey), got shape {tuple(x.shape)}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2)
    return x


def _labels(y: Any, n: int, name: str) -> torch.Tensor:
    t = _as_tensor(y, name).reshape(-1)
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise InputError(f"'{name}' labels must be class indices, got non-integer values")
    if t.numel() != n:
        raise InputError(f"'{name}' has {n} images but {t.numel()} labels")
    return t.to(torch.int64)


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    if isinstance(item, dict):
        x = item.get("x", item.get("image", item.get("img")))
        return x, item.get("y", item.get("label"))
    return item, None


def _collect(
    batches: Iterable[Any], name: str, pixels: bool, mean: Any, std: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate ``(x, y)`` batches (or ``x`` batches) as pixel images and labels, converting batch by batch (a set
    with some float batches and some 8-bit ones is held as float32)."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    has_y: bool | None = None
    for batch in batches:
        x, y = _split_item(batch)
        if isinstance(x, (list, tuple)):  # a list of per-sample images (a collate that does not stack)
            x = torch.stack([_as_tensor(i, name) for i in x])
        xb = _channels_first(_as_tensor(x, name), name)
        xs.append(to_pixels(xb, pixels, mean, std, name))
        if has_y is None:
            has_y = y is not None
        if (y is not None) != has_y:
            raise InputError(f"'{name}' yields labels for some batches and not for others")
        if y is not None:
            ys.append(_labels(y, len(xb), name))
    if not xs:
        raise InputError(f"'{name}' is empty")
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) > 1:
        raise InputError(
            f"'{name}' holds images of different shapes {sorted(shapes)}; resize them to one size (e.g. a torchvision Resize transform)"
        )
    if len({x.dtype for x in xs}) > 1:
        xs = [unit_pixels(x) for x in xs]
    return torch.cat(xs), (torch.cat(ys) if ys else None)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    xs, ys = zip(*(_split_item(i) for i in items))
    x = torch.stack([_channels_first(_as_tensor(i, "item").unsqueeze(0), "item")[0] for i in xs])
    y = None if any(v is None for v in ys) else torch.as_tensor([int(v) for v in ys])
    return x, y


def _classes(data: Any, given: Sequence[str] | None, y: torch.Tensor | None) -> list[str]:
    if given is not None:
        return [str(c) for c in given]
    found = getattr(data, "classes", None) or getattr(getattr(data, "dataset", None), "classes", None)
    if found:
        return [str(c) for c in found]
    if y is None or not len(y) or int(y.max()) < 0:
        return []
    return [str(k) for k in range(int(y.max()) + 1)]


def as_dataset(
    data: Any,
    name: str = "data",
    *,
    pixels: bool = True,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    labels: Any = None,
    classes: Sequence[str] | None = None,
    ood: bool = False,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    batch_size: int = 256,
) -> TensorDataset:
    """The user's ``data`` as a :class:`TensorDataset` (see the module docstring for what is accepted).

    Args:
        data: a TensorDataset, images (tensor/array), a pair ``(images, labels)``, a ``Dataset``, a ``DataLoader``
            or an image folder.
        name: what the dataset is called in results and messages.
        pixels: float images are [0, 1] pixels (True) or normalised with ``mean``/``std`` (False).
        mean: per-channel mean of the normalisation (``pixels=False``), [0, 1] pixel units.
        std: per-channel standard deviation.
        labels: labels ``[N]`` when ``data`` is images alone.
        classes: class names (default: ``data.classes`` when present, else ``"0" .. "K-1"``).
        ood: an out-of-distribution set: labels are ignored and set to ``-1``.
        size: ``(H, W)`` of images read from a folder (required for folders).
        channels: channels of images read from a folder (1 or 3; required for folders).
        batch_size: items read at once from a ``Dataset``.

    Returns:
        ``uint8 [N, C, H, W]`` images (``float32`` [0, 1] pixels for float data that are not 8-bit, kept exactly) and
        ``int64 [N]`` labels (``-1`` for an OOD set).

    Raises:
        InputError: data of a kind or shape rulab cannot read, missing labels for in-distribution data, values
            outside [0, 1] pixels.
    """
    if isinstance(data, TensorDataset):
        ds = data
        if ood and bool((ds.y >= 0).any()):
            ds = TensorDataset(ds.x, torch.full_like(ds.y, -1), [], ds.name, ds.source, dict(ds.meta))
        return ds
    source = "user"
    if isinstance(data, (str, os.PathLike)):
        if size is None or channels is None:
            raise ConfigError(f"reading images from the folder {data} needs size=(H, W) and channels=1 or 3")
        from rulab.data.folders import load_image_folder

        folder = load_image_folder(data, size=size, channels=channels)
        x, y, source = folder.x, folder.y, str(Path(data))
        classes = classes if classes is not None else folder.classes
    elif isinstance(data, torch.utils.data.DataLoader):
        x, y = _collect(data, name, pixels, mean, std)
    elif isinstance(data, torch.utils.data.IterableDataset) or (
        isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__")
    ):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=_collate)
        x, y = _collect(loader, name, pixels, mean, std)
    else:
        images, y_given = (data[0], data[1]) if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None)
        xt = _channels_first(_as_tensor(images, name), name)
        x = to_pixels(xt, pixels, mean, std, name)
        y = None if y_given is None else _labels(y_given, len(x), name)
    if labels is not None:
        y = _labels(labels, len(x), name)
    if len(x) == 0:
        raise InputError(f"'{name}' is empty")
    if ood:
        return TensorDataset(
            x.contiguous(), torch.full((len(x),), -1, dtype=torch.int64), [], name, source, {"user": True}
        )
    if y is None:
        raise InputError(
            f"in-distribution data '{name}' needs labels: pass (images, labels), labels=..., or a dataset yielding (image, label)"
        )
    if int(y.min()) < 0:
        raise InputError(f"'{name}' has negative labels; in-distribution labels are class indices 0..K-1")
    return TensorDataset(x.contiguous(), y, _classes(data, classes, y), name, source, {"user": True})
