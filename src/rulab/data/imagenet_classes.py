"""ImageNet-1k classes that belong to a CIFAR-10 category, and their conversion to downsampled-ImageNet labels.

Two works remove them from ImageNet: W1 pre-trains on "ImageNet minus CIFAR-10" as a leakage control (Hendrycks et
al. 2019, ``uncertainty/CIFAR/snapshots/imagenet/cifar10_excluded/``), and W3 tests on "ImageNet−", ImageNet
validation images of the classes outside CIFAR-10 (Hein et al. 2019, Section 6; the OOD set ``imagenet_minus``).
Neither publishes its class list, so :data:`CIFAR10_IMAGENET_CLASSES` is constructed here (219 classes; W3 reports
853 kept classes, i.e. 147 removed, so its list was narrower; docs/protocols/hein2019.md).
"""

from __future__ import annotations

from pathlib import Path

from rulab.data.fetch import dataset_root
from rulab.errors import DataError

__all__ = ["CIFAR10_IMAGENET_CLASSES", "IMAGENET_ANCHORS", "imagenet_sorted_indices", "cifar10_exclusion"]

CIFAR10_IMAGENET_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("airplane", (404, 895)),  # airliner, warplane
    # beach wagon, cab, convertible, jeep, limousine, minivan, Model T, racer, sports car
    ("automobile", (436, 468, 511, 609, 627, 656, 661, 751, 817)),
    ("bird", tuple(range(7, 25)) + tuple(range(80, 101)) + tuple(range(127, 147))),  # every ImageNet bird
    ("cat", tuple(range(281, 286))),  # tabby, tiger cat, Persian, Siamese, Egyptian cat (domestic cats only)
    ("deer", ()),  # ImageNet-1k has no deer synset; the antelopes (hartebeest, impala, gazelle) are kept
    ("dog", tuple(range(151, 269))),  # the 118 domestic dog breeds, Chihuahua … Mexican hairless
    ("frog", (30, 31, 32)),  # bullfrog, tree frog, tailed frog
    ("horse", (339,)),  # sorrel
    # aircraft carrier, canoe, catamaran, container ship, fireboat, gondola, lifeboat, liner, pirate ship, schooner,
    # speedboat, submarine, trimaran, wreck, yawl
    ("ship", (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914)),
    # fire engine, garbage truck, moving van, pickup, police van, tow truck, trailer truck
    ("truck", (555, 569, 675, 717, 734, 864, 867)),
)
"""The ImageNet-1k classes that belong to a CIFAR-10 class, for W1's "ImageNet minus CIFAR-10" pre-training.

Source: W1 ships a pre-trained snapshot with the CIFAR-10 classes excluded (``uncertainty/CIFAR/snapshots/imagenet/cifar10_excluded/``)
but neither its class list nor the script that made it, and the snapshot files are not in the repository
snapshot (so not even the size of its head is known). This list is constructed here from the WordNet names of the
ILSVRC-2012 classes: every class that is an instance of a CIFAR-10 category (all 59 birds, the 118 dog breeds, the
5 domestic cats, the 3 frogs, the one horse, and the airplanes, cars, ships and trucks by name), 219 classes in
all. Indices are in the standard ILSVRC-2012 order (sorted WordNet IDs, as torchvision and Keras number them);
downsampled ImageNet numbers its labels in the devkit order of ``map_clsloc.txt`` instead, and
:func:`cifar10_exclusion` converts. Judgement calls: no deer class exists; vans count as trucks; ambulance, minibus,
trolleybus, horse cart and the big cats are kept."""

IMAGENET_ANCHORS: tuple[tuple[int, str], ...] = (
    (7, "n01514668"),
    (24, "n01622779"),
    (30, "n01641577"),
    (31, "n01644373"),
    (32, "n01644900"),
    (80, "n01795545"),
    (100, "n01860187"),
    (127, "n02002724"),
    (146, "n02058221"),
    (151, "n02085620"),
    (268, "n02113978"),
    (281, "n02123045"),
    (285, "n02124075"),
    (339, "n02389026"),
    (403, "n02687172"),
    (404, "n02690373"),
    (436, "n02814533"),
    (468, "n02930766"),
    (472, "n02951358"),
    (484, "n02981792"),
    (510, "n03095699"),
    (511, "n03100240"),
    (554, "n03344393"),
    (555, "n03345487"),
    (569, "n03417042"),
    (576, "n03447447"),
    (609, "n03594945"),
    (625, "n03662601"),
    (627, "n03670208"),
    (628, "n03673027"),
    (656, "n03770679"),
    (661, "n03777568"),
    (675, "n03796401"),
    (717, "n03930630"),
    (724, "n03947888"),
    (734, "n03977966"),
    (751, "n04037443"),
    (780, "n04147183"),
    (814, "n04273569"),
    (817, "n04285008"),
    (833, "n04347754"),
    (864, "n04461696"),
    (867, "n04467665"),
    (871, "n04483307"),
    (895, "n04552348"),
    (913, "n04606251"),
    (914, "n04612504"),
)
"""(sorted index, WordNet ID) of every single class and every range end of :data:`CIFAR10_IMAGENET_CLASSES`: checked
against the user's ``map_clsloc.txt`` so that a wrong file (or a wrong index here) fails loudly."""


def imagenet_sorted_indices() -> tuple[int, ...]:
    """The classes of :data:`CIFAR10_IMAGENET_CLASSES`, sorted, in ILSVRC-2012 sorted-WNID numbering (0..999)."""
    return tuple(sorted({i for _, idx in CIFAR10_IMAGENET_CLASSES for i in idx}))


def cifar10_exclusion(map_clsloc: str | Path | None = None) -> tuple[int, ...]:
    """``data.exclude_classes`` for downsampled ImageNet: :data:`CIFAR10_IMAGENET_CLASSES` in its label numbering.

    Downsampled ImageNet labels follow ``map_clsloc.txt`` (``n02119789 1 kit_fox``, ids 1..1000; the dataset subtracts
    1). Sorting that file's 1,000 WordNet IDs gives the standard numbering of :data:`CIFAR10_IMAGENET_CLASSES`.

    Args:
        map_clsloc: the file (default ``$RULAB_DATA/imagenet32/map_clsloc.txt``, where the ``imagenet32`` dataset
            also reads its class names).

    Returns:
        The 0-based downsampled-ImageNet labels to drop, sorted.

    Raises:
        DataError: the file is missing, does not list 1,000 classes with ids 1..1000, or disagrees with
            :data:`IMAGENET_ANCHORS`.
    """
    path = Path(map_clsloc) if map_clsloc is not None else dataset_root() / "imagenet32" / "map_clsloc.txt"
    if not path.is_file():
        raise DataError(
            f"{path} is missing; the ImageNet-minus-CIFAR-10 pre-training needs map_clsloc.txt (ILSVRC devkit "
            "data/map_clsloc.txt, also shipped with the Imagenet32 scripts) to number the excluded classes"
        )
    ids: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit() or not parts[0].startswith("n"):
            raise DataError(
                f"{path} line {n} is not '<wnid> <id> <name>' ('{line[:60]}'); use the devkit's map_clsloc.txt"
            )
        ids[parts[0]] = int(parts[1])
    if len(ids) != 1000 or sorted(ids.values()) != list(range(1, 1001)):
        raise DataError(
            f"{path} lists {len(ids)} classes; it must map the 1,000 ILSVRC-2012 WordNet IDs to ids 1..1000"
        )
    wnids = sorted(ids)
    for index, wnid in IMAGENET_ANCHORS:
        if wnids[index] != wnid:
            raise DataError(
                f"{path} does not hold the ILSVRC-2012 classes: sorted class {index} is {wnids[index]}, expected {wnid}"
            )
    return tuple(sorted(ids[wnids[i]] - 1 for i in imagenet_sorted_indices()))
