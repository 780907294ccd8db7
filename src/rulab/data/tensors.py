"""The in-memory dataset type every rulab dataset, OOD set and corrupted set is: uint8 images and int64 labels.

Images are 8-bit pixels (``uint8``, 0..255) everywhere rulab builds them (convention 1 in docs/conventions.md;
device-resident uint8 tensors as in airbench). A user's own float images that are not 8-bit data are held as
``float32`` [0, 1] pixels instead, so they are scored exactly as given (:mod:`rulab.data.user`); every reader converts
with :func:`unit_pixels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rulab.errors import InputError, RulabError

__all__ = ["TensorDataset", "unit_pixels", "check_image_shape", "check_count"]


def unit_pixels(x: torch.Tensor) -> torch.Tensor:
    """Images as ``float32`` [0, 1] pixels: ``uint8`` divided by 255, float images as float32. Always a new tensor, so
    callers may modify the result in place."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)


@dataclass
class TensorDataset:
    """Images and labels held as tensors.

    Attributes:
        x: images, ``uint8 [N, C, H, W]`` (pixel values 0..255), or ``float32 [N, C, H, W]`` [0, 1] pixels for a
            user's float images that are not 8-bit data (:func:`rulab.data.user.as_dataset`).
        y: labels, ``int64 [N]``; ``-1`` marks out-of-distribution examples.
        classes: class names, ``len(classes) == K`` (empty for OOD sets).
        name: registry name of the dataset (``"fashion_mnist"``, ``"uniform"``, ...).
        source: where the data came from (a path, ``"debian:dataset-fashion-mnist"``, ``"generated"``).
        meta: free-form provenance (checksums, split, seed, generator parameters).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype not in (torch.uint8, torch.float32) or self.x.ndim != 4:
            raise InputError(
                f"dataset '{self.name}' images must be uint8 [N, C, H, W] (or float32 [0, 1] pixels), got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise InputError(
                f"dataset '{self.name}' needs one label per image, got {len(self.y)} labels for {len(self.x)} images"
            )
        if self.y.dtype != torch.int64:
            self.y = self.y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor | slice, name: str | None = None) -> TensorDataset:
        """A new dataset with the selected rows (a copy for index tensors, a view for slices)."""
        return TensorDataset(
            self.x[index], self.y[index], list(self.classes), name or self.name, self.source, dict(self.meta)
        )

    def float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All images as ``float32 [N, C, H, W]`` in [0, 1] (on ``device``)."""
        return unit_pixels(self.x.to(device))


def check_image_shape(
    shape: Sequence[int],
    channels: Sequence[int] | None = None,
    what: str = "image shape",
    error: type[RulabError] = InputError,
) -> tuple[int, int, int]:
    """``shape`` as three ints ``(C, H, W)``, or ``error`` with one sentence saying what is wrong.

    Args:
        shape: an image shape without the batch axis; every entry a positive integer.
        channels: the allowed numbers of channels (``(1, 3)`` for images that convert between grey and colour), or
            None for any.
        what: how the message names the shape ("OOD shape").
        error: the exception raised: :class:`~rulab.errors.InputError` for a function argument,
            :class:`~rulab.errors.ConfigError` for a configured shape.
    """
    if (
        len(shape) != 3
        or any(int(s) != s or s < 1 for s in shape)
        or (channels is not None and int(shape[0]) not in channels)
    ):
        allowed = f" with C in {{{', '.join(map(str, channels))}}}" if channels is not None else ""
        raise error(f"{what} must be three positive integers (C, H, W){allowed}, got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def check_count(n: int, what: str = "the number of images") -> int:
    """``n`` as an int, or :class:`~rulab.errors.InputError` unless it is a non-negative integer."""
    if int(n) != n or n < 0:
        raise InputError(f"{what} must be a non-negative integer, got {n!r}")
    return int(n)
