"""The in-memory dataset type every rulab dataset, OOD set and corrupted set is: uint8 images and int64 labels.

Images are 8-bit pixels (``uint8``, 0..255) everywhere rulab builds them (convention 1 in docs/conventions.md;
device-resident uint8 tensors as in airbench). A user's own float images that are not 8-bit data are held as
``float32`` [0, 1] pixels instead, so they are scored exactly as given (:mod:`rulab.data.user`); every reader converts
with :func:`unit_pixels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rulab.errors import InputError

__all__ = ["TensorDataset", "unit_pixels"]


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
            raise InputError(f"dataset '{self.name}' images must be uint8 [N, C, H, W] (or float32 [0, 1] pixels), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise InputError(f"dataset '{self.name}' needs one label per image, got {len(self.y)} labels for {len(self.x)} images")
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
        return TensorDataset(self.x[index], self.y[index], list(self.classes), name or self.name, self.source, dict(self.meta))

    def float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All images as ``float32 [N, C, H, W]`` in [0, 1] (on ``device``)."""
        return unit_pixels(self.x.to(device))
