"""Synthetic noise OOD sets: the generators of :mod:`rulab.data.synthetic` registered as OOD sets, and streamed.

* **Registered OOD sets** (``OOD_SETS.create(name, shape=(C, H, W), n=..., seed=...)``) that return a uint8
  :class:`~rulab.data.tensors.TensorDataset` with ``y = -1``, and :class:`NoiseStream`, which yields the very same
  images as float chunks without ever holding the whole set (for 10⁶-image benchmarks).

Streams and sets generate images in independent **blocks** of :data:`BLOCK` = 128 images, block ``k`` drawn with its
own generator seeded from ``(name, seed, k)``. The images therefore do not depend on the chunk size a consumer asks
for, and each block is one "batch" of W3's low-pass filter (one σ per block, as W3 draws one σ per test batch of 128
in its ``evaluation.py``).

Every set is one :class:`NoiseFamily` (how a block is made, its parameters, its docstring) registered by
:func:`register_noise_family`: the built-in ones are the rows of :data:`NOISE_FAMILIES`; a family defined elsewhere
registers itself with one :func:`register_noise_family` call in its own module of :mod:`rulab.data.ood`.

One concern, kept in one file (a little over 400 lines): the synthetic noise OOD sets, i.e. the table of families
and the two ways of producing the same images from it (materialised, :func:`noise_set`; streamed,
:class:`NoiseStream`), which must stay in step block for block.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rulab.data.synthetic import (
    Shape,
    blobs,
    blobs_sigma,
    gaussian,
    gaussian_odin,
    hein_noise,
    lowpass,
    lowpass_sigma,
    permuted_pixels,
    rademacher,
    rademacher_gray,
    uniform,
)
from rulab.data.tensors import TensorDataset, check_count, check_image_shape
from rulab.errors import InputError
from rulab.registry import OOD_SETS

__all__ = [
    "BLOCK",
    "DEFAULT_N",
    "NoiseFamily",
    "NOISE_FAMILIES",
    "register_noise_family",
    "noise_set",
    "NoiseStream",
]

BLOCK = 128
"""Images per independently seeded block (W3's test batch size)."""
DEFAULT_N = 2000
"""Default size of a synthetic set: W1's OOD images per run, len(test) // 5 (W1's ``uncertainty/CIFAR/test.py``)."""


# --------------------------------------------------------------------------------------------------- sets and streams

Block = tuple[torch.Tensor, dict[str, Any]]
BlockFn = Callable[..., Block]


def _family(name: str) -> Callable[..., TensorDataset]:
    factory = OOD_SETS.get(name)
    if not hasattr(factory, "noise_block"):
        synthetic = [k for k in OOD_SETS.list() if hasattr(OOD_SETS.get(k), "noise_block")]
        raise InputError(f"OOD set '{name}' is not a synthetic noise family; choose one of {', '.join(synthetic)}")
    return factory


_P = inspect.Parameter.POSITIONAL_OR_KEYWORD
_SET_PARAMETERS = (
    inspect.Parameter("shape", _P, annotation="tuple[int, int, int]"),
    inspect.Parameter("n", _P, default=None, annotation="int | None"),
    inspect.Parameter("seed", _P, default=0, annotation="int"),
    inspect.Parameter("root", _P, default=None, annotation="str | None"),
    inspect.Parameter("base", _P, default=None, annotation="TensorDataset | None"),
)
"""The arguments every OOD set takes (``root`` is unused, ``base`` only read by families that need it)."""
_SET_ARGS = tuple(p.name for p in _SET_PARAMETERS)


def _block_seed(name: str, seed: int, index: int) -> int:
    digest = hashlib.blake2b(f"rulab.noise:{name}:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class NoiseStream:
    """Iterate over a synthetic family's images as float chunks without materialising the whole set.

    Images come in blocks of :data:`BLOCK`; block ``k`` is drawn by a generator seeded from ``(name, seed, k)`` on
    ``device``. So the images depend on ``(name, seed, n, params)`` and the device type (CPU and CUDA random streams
    differ) but NOT on ``chunk``, and they are exactly the images of ``OOD_SETS.create(name, ...)`` before rounding to
    uint8. At most ``chunk + BLOCK`` images are held at a time.

    Args:
        name: a registered synthetic OOD set (``gaussian``, ``blobs``, ``hein``, ...).
        shape: ``(C, H, W)``.
        n: total number of images.
        seed: base seed.
        chunk: images per yielded tensor (the last chunk may be shorter).
        base: ID images for ``permuted`` / ``hein`` (a TensorDataset or a uint8 ``[N, C, H, W]`` tensor); output image
            ``i`` is built from base row ``i mod len(base)``.
        device: where images are generated (default CPU).
        **params: family parameters (``mean``, ``sigma``, ``frac_perm``, ``parity_normalization``, ...).

    Example:
        >>> for x in NoiseStream("uniform", (3, 32, 32), n=10**6, seed=0, chunk=4096):
        ...     scores.append(model(x).softmax(1).amax(1))
    """

    def __init__(
        self,
        name: str,
        shape: Sequence[int],
        n: int,
        seed: int = 0,
        chunk: int = 1024,
        *,
        base: TensorDataset | torch.Tensor | None = None,
        device: torch.device | str | None = None,
        **params: Any,
    ) -> None:
        factory = _family(name)
        self.name = name
        self.shape = check_image_shape(shape)
        self.n = check_count(n)
        self.seed = int(seed)
        if int(chunk) != chunk or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = int(chunk)
        self.device = torch.device("cpu" if device is None else device)
        valid = [k for k in OOD_SETS.parameters(name) if k not in _SET_ARGS]
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise InputError(
                f"noise family '{name}' has no parameter {', '.join(map(repr, unknown))}; valid parameters: {', '.join(valid) or '(none)'}"
            )
        self.params = params
        self._block = factory.noise_block
        base_x = base.x if isinstance(base, TensorDataset) else base
        if factory.needs_base:
            if base_x is None or len(base_x) == 0:
                raise InputError(f"OOD set '{name}' is built from in-distribution images; pass base=<the ID test set>")
            if tuple(base_x.shape[1:]) != self.shape:
                raise InputError(
                    f"base images have shape {tuple(base_x.shape[1:])} but shape={self.shape} was requested; make them match"
                )
            self._base: torch.Tensor | None = base_x
        else:
            self._base = None

    def __len__(self) -> int:
        """Number of chunks."""
        return -(-self.n // self.chunk)

    def block_generator(self, index: int) -> torch.Generator:
        """The generator of block ``index`` (seeded from name, seed and index)."""
        return torch.Generator(device=self.device).manual_seed(_block_seed(self.name, self.seed, index))

    def _base_rows(self, start: int, stop: int) -> torch.Tensor | None:
        if self._base is None:
            return None
        idx = torch.arange(start, stop) % len(self._base)
        rows = self._base[idx]
        if rows.dtype == torch.uint8:
            return rows.to(self.device).float().div_(255)
        return rows.to(self.device, torch.float32)

    def blocks(self) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
        """Yield ``(x [≤BLOCK, C, H, W] float in [0, 1], info)`` per block; ``info`` holds e.g. the block's low-pass σ."""
        for k, start in enumerate(range(0, self.n, BLOCK)):
            stop = min(start + BLOCK, self.n)
            x, info = self._block(
                stop - start, self.shape, self.block_generator(k), self._base_rows(start, stop), **self.params
            )
            yield x.to(self.device), info

    def __iter__(self) -> Iterator[torch.Tensor]:
        pending: list[torch.Tensor] = []
        have = 0
        for x, _ in self.blocks():
            pending.append(x)
            have += len(x)
            while have >= self.chunk:
                buf = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield buf[: self.chunk]
                pending, have = [buf[self.chunk :]], have - self.chunk
        if have:
            yield torch.cat(pending)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def noise_set(
    name: str,
    shape: Sequence[int],
    n: int | None = None,
    seed: int = 0,
    base: TensorDataset | None = None,
    **params: Any,
) -> TensorDataset:
    """Materialise a synthetic family as a uint8 :class:`TensorDataset` (``y = -1``), block by block.

    Images are those of :class:`NoiseStream` with the same arguments, rounded to ``round(255·x)``. The default size is
    2,000 (W1's images per run), or for base families ``len(base)`` (``hein``: ``len(base)`` rounded down to whole
    batches of 128, W3's drop_last). ``meta`` records the family, its parameters, the seed, the block size, the base
    set's name and, for low-pass families, the σ of every block.
    """
    factory = _family(name)
    if factory.needs_base and base is None:
        raise InputError(f"OOD set '{name}' is built from in-distribution images; pass base=<the ID test set>")
    if n is None:
        n = DEFAULT_N if base is None or not factory.needs_base else len(base)
        if factory.drop_last:
            n = n // BLOCK * BLOCK
            if n == 0:
                raise InputError(
                    f"OOD set '{name}' uses whole batches of {BLOCK} base images but base has {len(base)}; pass n= or a larger base set"
                )
    stream = NoiseStream(name, shape, n, seed, chunk=BLOCK, base=base if factory.needs_base else None, **params)
    out = torch.empty((stream.n, *stream.shape), dtype=torch.uint8)
    sigmas: list[float] = []
    start = 0
    for x, info in stream.blocks():
        out[start : start + len(x)] = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu()
        start += len(x)
        if "sigma" in info:
            sigmas.append(info["sigma"])
    meta: dict[str, Any] = {
        "family": name,
        "params": {k: _jsonable(v) for k, v in params.items()},
        "seed": int(seed),
        "n": stream.n,
        "block": BLOCK,
        "pixel_space": params.get("parity_normalization") is None,
    }
    if factory.needs_base:
        meta["base"] = base.name if base is not None else ""
    if sigmas:
        meta["lowpass_sigmas"] = sigmas
    return TensorDataset(out, torch.full((stream.n,), -1, dtype=torch.int64), [], name, "generated", meta)


def _drawn(fn: Callable[..., torch.Tensor]) -> BlockFn:
    """Block generator of a family that needs no base images: ``fn(n, shape, generator, **params)``."""

    def block(n: int, shape: Shape, g: torch.Generator, base: torch.Tensor | None, **params: Any) -> Block:
        return fn(n, shape, g, **params), {}

    return block


def _block_lowpass_noise(
    n: int,
    shape: Shape,
    g: torch.Generator,
    base: torch.Tensor | None,
    *,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> Block:
    sigma = lowpass_sigma(g, sigma_range)
    return lowpass(uniform(n, shape, g), sigma=sigma), {"sigma": sigma}


def _block_permuted(n: int, shape: Shape, g: torch.Generator, base: torch.Tensor | None) -> Block:
    return permuted_pixels(base, g), {}


def _block_hein(
    n: int,
    shape: Shape,
    g: torch.Generator,
    base: torch.Tensor | None,
    *,
    frac_perm: float = 0.5,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> Block:
    sigma = lowpass_sigma(g, sigma_range)
    return hein_noise(base, g, frac_perm, m=n, sigma=sigma), {"sigma": sigma}


@dataclass(frozen=True)
class NoiseFamily:
    """One synthetic OOD set: how a block of its images is made and which parameters it takes.

    Attributes:
        name: its name in :data:`~rulab.registry.OOD_SETS`.
        block: ``block(n, shape, generator, base, **params) -> (x [n, C, H, W] in [0, 1], info)`` makes one block of
            images from one generator; ``base`` is the block's rows of the ID images (float, on the stream's device)
            or None. This is what :class:`NoiseStream` calls.
        doc: the registered factory's docstring.
        params: the family's keyword-only parameters with their defaults (:func:`param`), in the order
            ``meta["params"]`` records them.
        needs_base: the family transforms ID images (``base=`` is required).
        drop_last: its default size is ``len(base)`` rounded down to whole blocks (W3's test loader).
        resolve: fills defaults that depend on the image shape, ``resolve((C, H, W), params) -> params``.
    """

    name: str
    block: BlockFn
    doc: str
    params: tuple[inspect.Parameter, ...] = ()
    needs_base: bool = False
    drop_last: bool = False
    resolve: Callable[[Shape, dict[str, Any]], dict[str, Any]] | None = None


def param(name: str, default: Any, annotation: str) -> inspect.Parameter:
    """A keyword-only family parameter ``name: annotation = default`` for :attr:`NoiseFamily.params`."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def register_noise_family(family: NoiseFamily) -> Callable[..., TensorDataset]:
    """Register ``family`` in :data:`~rulab.registry.OOD_SETS` as ``factory(shape, n=None, seed=0, root=None,
    base=None, *, <family parameters>) -> TensorDataset`` (:func:`noise_set`) and return the factory.

    The factory carries ``noise_block``, ``needs_base`` and ``drop_last`` for :class:`NoiseStream`, and its
    signature lists the family's parameters, so ``OOD_SETS.parameters(name)`` and unknown-keyword errors see them.
    """
    signature = inspect.Signature([*_SET_PARAMETERS, *family.params], return_annotation="TensorDataset")

    def factory(*args: Any, **kwargs: Any) -> TensorDataset:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        params = {p.name: a[p.name] for p in family.params}
        if family.resolve is not None:
            params = family.resolve(check_image_shape(a["shape"]), params)
        base = a["base"] if family.needs_base else None
        return noise_set(family.name, a["shape"], a["n"], a["seed"], base=base, **params)

    factory.__signature__ = signature  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = f"{family.name}_set"
    factory.__doc__ = family.doc
    factory.noise_block = family.block  # type: ignore[attr-defined]
    factory.needs_base = family.needs_base  # type: ignore[attr-defined]
    factory.drop_last = family.drop_last  # type: ignore[attr-defined]
    return OOD_SETS.register(family.name)(factory)


def _blobs_sigma(shape: Shape, params: dict[str, Any]) -> dict[str, Any]:
    """``sigma=None`` becomes :func:`~rulab.data.synthetic.blobs_sigma` of the height (recorded in ``meta``)."""
    return {**params, "sigma": blobs_sigma(shape[1]) if params["sigma"] is None else params["sigma"]}


_PARITY = param("parity_normalization", None, "Normalization | None")
_SIGMA_RANGE = param("sigma_range", (1.0, 2.5), "tuple[float, float]")

NOISE_FAMILIES: tuple[NoiseFamily, ...] = (
    NoiseFamily(
        "gaussian",
        _drawn(gaussian),
        """W1 Gaussian noise set, :func:`gaussian` (default 2,000 images; ``root`` and ``base`` are unused).""",
        (param("mean", 0.5, "float"), param("std", 0.25, "float"), _PARITY),
    ),
    NoiseFamily(
        "gaussian_odin",
        _drawn(gaussian_odin),
        """ODIN Gaussian noise set, :func:`gaussian_odin` (ODIN used 10,000, of which 9,000 are scored).""",
    ),
    NoiseFamily("rademacher", _drawn(rademacher), """W1 Rademacher noise set, :func:`rademacher`.""", (_PARITY,)),
    NoiseFamily(
        "rademacher_gray",
        _drawn(rademacher_gray),
        """W1 validation-only grey Rademacher set, :func:`rademacher_gray`.""",
        (_PARITY,),
    ),
    NoiseFamily(
        "blobs",
        _drawn(blobs),
        """W1 Blobs set, :func:`blobs`; ``sigma`` defaults to :func:`blobs_sigma` of the height (recorded in ``meta``).""",
        (param("p", 0.7, "float"), param("sigma", None, "float | None"), param("threshold", 0.75, "float"), _PARITY),
        resolve=_blobs_sigma,
    ),
    NoiseFamily(
        "uniform",
        _drawn(uniform),
        """Uniform noise set ``U[0, 1]`` (W3, W4; W1 validation), :func:`uniform`.""",
        (_PARITY,),
    ),
    NoiseFamily(
        "lowpass_noise",
        _block_lowpass_noise,
        """W3 noise without ID images: low-pass filtered uniform noise, one σ per block of 128 (:func:`lowpass`).

    This is :func:`hein_noise` built from uniform base images: permuting the pixels of i.i.d. uniform noise leaves its
    distribution unchanged, so every image is simply ``lowpass(U[0, 1])``.
    """,
        (_SIGMA_RANGE,),
    ),
    NoiseFamily(
        "permuted",
        _block_permuted,
        """W3 permuted-pixel images of the ID test set ``base`` (:func:`permuted_pixels`; default ``len(base)`` images).""",
        needs_base=True,
    ),
    NoiseFamily(
        "hein",
        _block_hein,
        """W3's evaluation noise (its ``evaluation.py``): :func:`hein_noise` of every test batch of 128 of ``base``.

    Default size ``len(base)`` rounded down to whole batches (drop_last: 10,000 → 9,984); per batch the first 64
    images are permuted test images and the other 64 uniform noise, all low-pass filtered with the batch's σ.
    """,
        (param("frac_perm", 0.5, "float"), _SIGMA_RANGE),
        needs_base=True,
        drop_last=True,
    ),
)
"""The built-in synthetic OOD sets, one row each (registered below)."""

for _f in NOISE_FAMILIES:
    register_noise_family(_f)
