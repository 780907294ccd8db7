"""Out-of-distribution sets: ``OOD_SETS.create(name, shape=(C, H, W), n=None, seed=0, root=None)``.

Every factory returns a :class:`~rulab.data.tensors.TensorDataset` with ``y = -1`` and images converted to the
ID shape ``(C, H, W)``. Synthetic noise families are in :mod:`rulab.data.ood.noise_sets`; the rest of this
docstring is about the sets of real images.

Conversions (one rule for every set):
    * grey from colour: ITU-R 601-2 luma, ``0.299 R + 0.587 G + 0.114 B`` (what PIL's ``convert("L")`` does).
      Hein et al.'s grey CIFAR-10 used the plain channel mean (W3's ``evaluation.py``); the two differ by a few
      grey levels, which does not change what the set is.
    * colour from grey: the grey channel is replicated.
    * size: bilinear resampling with antialiasing (``F.interpolate(..., antialias=True)``) for tensor sets; image
      folders use their protocol's crop or resize (:mod:`rulab.data.folders`).
    * ``n``: a seeded random subset (kept in the set's order); ``None`` = the whole set (for the crop sets
      ``textures`` and ``photos``: 10,000 crops). Asking for more images than a finite set has is an error.

Sets offline on any machine (the Fashion-MNIST default):
    * ``digits``: scikit-learn's 1,797 8×8 digits, values 0..16 scaled to 0..255, bilinear upsampling.
    * ``textures``: scikit-image's texture images (brick, grass, gravel) cut into seeded random crops.
    * ``photos``: scikit-image's photographs (astronaut, camera, chelsea, coffee, …) cut into crops.
    * ``mnist``: the MNIST test set through the source chain (near OOD for Fashion-MNIST).

CIFAR-scale sets (W1, W3 and W4; see docs/protocols/), through the source chain:
    * ``svhn`` (test split), ``cifar10`` / ``cifar100`` (the other CIFAR's test split);
    * image folders under ``$RULAB_DATA/<name>/``: ``dtd`` and ``places365`` (Resize(short side) + CenterCrop),
      ``lsun_crop`` and ``tin_crop`` (ODIN: random ``H × W`` crops, seeded), ``lsun_resize``, ``tin_resize``,
      ``isun`` (ODIN: resize), ``lsun_classroom`` (Hein: ``Resize((32, 32))``, aspect-distorting).

Modules: :mod:`~rulab.data.ood.convert` (the conversion rule and shared helpers), :mod:`~rulab.data.ood.bundled`,
:mod:`~rulab.data.ood.from_datasets`, :mod:`~rulab.data.ood.image_folders` and :mod:`~rulab.data.ood.noise_sets`.
Each module registers its own sets, and :data:`~rulab.registry.OOD_SETS` imports every module of this package on
its first lookup: a new OOD set is a new module here (or a row in one of the tables), with no list to edit elsewhere.
"""

from __future__ import annotations

from rulab.data.ood.bundled import CROP_SETS_DEFAULT_N, PHOTO_IMAGES, TEXTURE_IMAGES, digits, photos, textures
from rulab.data.ood.convert import LUMA, to_shape
from rulab.data.ood.image_folders import FOLDER_SETS, FolderSet, register_folder_set

__all__ = [
    "LUMA",
    "CROP_SETS_DEFAULT_N",
    "TEXTURE_IMAGES",
    "PHOTO_IMAGES",
    "to_shape",
    "FolderSet",
    "FOLDER_SETS",
    "register_folder_set",
    "digits",
    "textures",
    "photos",
]
