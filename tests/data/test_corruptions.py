"""Tests of rulab.data.corruptions: the registry-wide contract, reference values and the shift suites."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rulab.data.corruptions as corr
from rulab.data.corruptions import apply_shift, corrupt_dataset, shift_suite
from rulab.data.corruptions._textures import plasma_fractal
from rulab.data.corruptions.blur import defocus_kernel
from rulab.data.corruptions.digital import _affine_warp, displace
from rulab.data.filters import (
    clipped_zoom_matrix,
    filter_matrix,
    motion_blur,
    motion_blur_kernel,
    pil_box_matrix,
)
from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError, InputError
from rulab.registry import CORRUPTIONS

NAMES = CORRUPTIONS.list()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def natural_images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    """Piecewise-smooth images in [0, 1]: bicubic shading, a few hard-edged discs and bars, mild texture."""
    g = gen(seed)
    x = 0.15 + 0.7 * F.interpolate(
        torch.rand(n, c, 4, 4, generator=g), size=(size, size), mode="bicubic", align_corners=True
    )
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    for _ in range(3):
        cx, cy = (torch.rand(2, n, 1, 1, generator=g) * size).unbind(0)
        r = (0.15 + 0.2 * torch.rand(n, 1, 1, generator=g)) * size
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2)[:, None]
        x = torch.where(disc, torch.rand(n, c, 1, 1, generator=g), x)
    bar = ((xx - torch.rand(n, 1, 1, generator=g) * size).abs() < size / 10)[:, None]
    x = torch.where(bar, torch.rand(n, c, 1, 1, generator=g), x)
    x = x + 0.05 * F.interpolate(
        torch.rand(n, c, size // 2, size // 2, generator=g) - 0.5,
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )
    return x.clamp(0, 1)


def call(name: str, x: torch.Tensor, level, seed: int | None = 0) -> torch.Tensor:
    return CORRUPTIONS.get(name)(x, level, generator=None if seed is None else gen(seed))


# ---------------------------------------------------------------------------------------------------------------
# the two course-project grids against torchvision


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("factor", [0.0, 0.6, 0.8, 0.9, 1.1, 1.2, 1.4, 2.5])
def test_brightness_factor_equals_torchvision(channels: int, factor: float) -> None:
    from torchvision.transforms.functional import adjust_brightness

    x = torch.rand(6, channels, 28, 28, generator=gen(1))
    torch.testing.assert_close(
        apply_shift(x, "brightness_factor", factor), adjust_brightness(x, factor), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.7, 0.9, 2.0])
@pytest.mark.parametrize("size", [(28, 28), (32, 20)])
def test_gaussian_blur_sigma_equals_torchvision(channels: int, sigma: float, size: tuple[int, int]) -> None:
    from torchvision.transforms import GaussianBlur

    x = torch.rand(6, channels, *size, generator=gen(2))
    expected = GaussianBlur(kernel_size=5, sigma=sigma)(x)
    torch.testing.assert_close(apply_shift(x, "gaussian_blur_sigma", sigma), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        corr.gaussian_blur_sigma(x, sigma, kernel_size=3), GaussianBlur(3, sigma)(x), atol=1e-5, rtol=0
    )


def test_float_grids_reject_bad_parameters() -> None:
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(InputError):
        corr.brightness_factor(x, -0.5)
    with pytest.raises(InputError):
        corr.gaussian_blur_sigma(x, 0.0)
    with pytest.raises(InputError):
        corr.gaussian_blur_sigma(x, 0.5, kernel_size=4)
    with pytest.raises(InputError):
        corr.brightness_factor(x, float("nan"))


# ---------------------------------------------------------------------------------------------------------------
# contract over the whole registry


def test_registry_holds_the_fifteen_and_the_two_grids() -> None:
    assert set(corr.COMMON_CORRUPTIONS) | {"brightness_factor", "gaussian_blur_sigma"} <= set(NAMES)
    assert len(corr.COMMON_CORRUPTIONS) == 15


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_contract_shape_dtype_range_no_mutation(name: str, channels: int) -> None:
    fn = CORRUPTIONS.get(name)
    x = torch.rand(5, channels, 28, 28, generator=gen(3))
    x[0] = 0.0  # an all-black image (fog divides by the image maximum)
    x[1] = 1.0
    before = x.clone()
    for level in fn.example_levels:
        y = fn(x, level, generator=gen(4))
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert torch.isfinite(y).all()
        assert y.min() >= 0.0 and y.max() <= 1.0
        assert torch.equal(x, before), f"{name} modified its input"


@pytest.mark.parametrize("name", NAMES)
def test_contract_other_dtypes_and_sizes(name: str) -> None:
    fn = CORRUPTIONS.get(name)
    level = fn.example_levels[-1]
    for dtype in (torch.float64, torch.float16):
        x = torch.rand(3, 3, 32, 32, generator=gen(5)).to(dtype)
        y = fn(x, level, generator=gen(6))
        assert y.dtype == dtype and y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    for shape in [(2, 1, 8, 8), (2, 3, 12, 40), (1, 1, 64, 48)]:
        x = torch.rand(*shape, generator=gen(7))
        y = fn(x, level, generator=gen(8))
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_generator(name: str) -> None:
    fn = CORRUPTIONS.get(name)
    x = natural_images(6, 3, 28)
    level = fn.example_levels[2]
    a, b = call(name, x, level, 11), call(name, x, level, 11)
    assert torch.equal(a, b)
    other = call(name, x, level, 12)
    if fn.stochastic:
        assert not torch.equal(a, other), f"{name} ignores its generator"
    else:
        assert torch.equal(a, other) and torch.equal(a, call(name, x, level, None))


@pytest.mark.parametrize("name", [n for n in NAMES if not CORRUPTIONS.get(n).stochastic])
def test_deterministic_corruptions_treat_images_independently(name: str) -> None:
    """Corrupting a sub-batch gives the same rows as corrupting the whole batch."""
    x = natural_images(6, 3, 28)
    level = CORRUPTIONS.get(name).example_levels[-1]
    torch.testing.assert_close(call(name, x, level)[2:4], call(name, x[2:4], level), atol=1e-5, rtol=0)


# Consecutive levels may dip by at most this fraction: the reference tables hold near-ties (motion blur 3 ≈ 4,
# glass blur 1 ≈ 2 ≈ 3 and 4 ≈ 5).
_DIP = 0.03
# frost = a·x + b·frost with (a, b) = (1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45): from severity 3 on the
# reference lowers the image weight while the frost weight stays, so the mean |change| dips from 3 to 4 for any
# frost texture brighter than ~x/3 (the reference photographs included); its harm still grows (b/a strictly
# increases). Only the 1 → 5 growth is asserted for it, plus test_frost_changes_black_images_monotonically.
_NOT_CONSECUTIVE = {"frost"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_change_grows_with_severity(name: str, channels: int) -> None:
    fn = CORRUPTIONS.get(name)
    x = natural_images(48, channels, 28, seed=channels)
    change = [float((call(name, x, level, 21) - x).abs().mean()) for level in fn.example_levels]
    assert change[-1] > change[0] * 1.05, f"{name}: {change}"
    if name not in _NOT_CONSECUTIVE:
        for lo, hi in zip(change, change[1:]):
            assert hi >= lo * (1 - _DIP), f"{name}: {change}"


def test_frost_changes_black_images_monotonically() -> None:
    x = torch.zeros(16, 3, 28, 28)
    change = [float(corr.frost(x, s, generator=gen(0)).mean()) for s in range(1, 6)]
    assert all(hi >= lo for lo, hi in zip(change, change[1:])) and change[-1] > change[0]


@pytest.mark.parametrize("name", NAMES)
def test_rejects_bad_levels_and_images(name: str) -> None:
    fn = CORRUPTIONS.get(name)
    x = torch.rand(2, 1, 28, 28)
    bad_levels = [0, 6, 2.5, True, "3", None] if fn.level_kind == "severity" else [float("inf"), "0.5", None]
    for level in bad_levels:
        with pytest.raises(InputError):
            fn(x, level)
    good = fn.example_levels[0]
    for bad in [
        torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8),
        torch.rand(1, 28, 28),
        torch.rand(2, 2, 28, 28),
        torch.rand(2, 1, 7, 28),
    ]:
        with pytest.raises(InputError):
            fn(bad, good)


# ---------------------------------------------------------------------------------------------------------------
# known answers and reference values


@pytest.mark.parametrize("severity,c", [(1, 0.75), (2, 0.5), (3, 0.4), (4, 0.3), (5, 0.15)])
def test_contrast_formula(severity: int, c: float) -> None:
    x = torch.rand(4, 3, 28, 28, generator=gen(9))
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(corr.contrast(x, severity), ((x - mean) * c + mean).clamp(0, 1), atol=1e-6, rtol=0)


def test_pixelate_hand_case() -> None:
    """8 px at severity 4 (c = 0.75): PIL box down to 6 px, then nearest up to 8 px, worked out by hand."""
    x = torch.arange(8, dtype=torch.float32).repeat(8, 1)[None, None] / 10  # value = column / 10
    # box 8 → 6 (centres (i + ½)·4/3): columns {0}, {1, 2}, {3}, {4}, {5, 6}, {7} → 0, 1.5, 3, 4, 5.5, 7
    # nearest 6 → 8 (source floor((j + ½)·3/4)): 0, 1, 1, 2, 3, 4, 4, 5
    expected = torch.tensor([0, 1.5, 1.5, 3, 4, 5.5, 5.5, 7]).repeat(8, 1)[None, None] / 10
    torch.testing.assert_close(corr.pixelate(x, 4), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n_in,n_out", [(32, 30), (32, 20), (28, 18), (18, 28), (30, 32), (13, 8)])
def test_pil_box_matrix_matches_pil(n_in: int, n_out: int) -> None:
    from PIL import Image

    a = np.random.default_rng(0).random((5, n_in)).astype(np.float32)
    ours = (pil_box_matrix(n_in, n_out) @ torch.tensor(a, dtype=torch.float64).T).T
    pil = np.asarray(Image.fromarray(a).resize((n_out, 5), Image.BOX))
    np.testing.assert_allclose(ours.numpy(), pil, atol=1e-5)


def test_gaussian_noise_statistics() -> None:
    x = torch.full((200, 1, 32, 32), 0.5)
    for severity, c in zip(range(1, 6), (0.04, 0.06, 0.08, 0.09, 0.10)):
        noise = corr.gaussian_noise(x, severity, generator=gen(severity)) - x
        assert abs(float(noise.mean())) < 0.002
        assert float(noise.std()) == pytest.approx(c, rel=0.01)


def test_shot_noise_statistics() -> None:
    x = torch.full((200, 1, 32, 32), 0.4)
    for severity, lam in zip(range(1, 6), (500, 250, 100, 75, 50)):
        y = corr.shot_noise(x, severity, generator=gen(severity))
        assert float(y.mean()) == pytest.approx(0.4, abs=0.002)
        assert float(y.var()) == pytest.approx(0.4 / lam, rel=0.03)  # Poisson(λx)/λ has variance x/λ


def test_impulse_noise_statistics() -> None:
    x = torch.full((200, 3, 32, 32), 0.5)
    for severity, amount in zip(range(1, 6), (0.01, 0.02, 0.03, 0.05, 0.07)):
        y = corr.impulse_noise(x, severity, generator=gen(severity))
        assert float((y == 1).float().mean()) == pytest.approx(amount / 2, rel=0.05)
        assert float((y == 0).float().mean()) == pytest.approx(amount / 2, rel=0.05)
        assert torch.all((y == 0) | (y == 1) | (y == 0.5))


def test_brightness_matches_skimage_hsv() -> None:
    skcolor = pytest.importorskip("skimage.color")
    x = natural_images(4, 3, 16)
    x[0, :, :4, :4] = 0.0  # black pixels: V = 0 becomes grey V'
    for severity, c in zip(range(1, 6), (0.05, 0.1, 0.15, 0.2, 0.3)):
        hsv = skcolor.rgb2hsv(x.permute(0, 2, 3, 1).double().numpy())
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        ref = torch.tensor(np.clip(skcolor.hsv2rgb(hsv), 0, 1)).permute(0, 3, 1, 2).float()
        torch.testing.assert_close(corr.brightness(x, severity), ref, atol=1e-5, rtol=0)
    g = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(corr.brightness(g, 3), (g + 0.15).clamp(max=1))


def test_jpeg_matches_pil() -> None:
    from PIL import Image

    x = natural_images(3, 3, 32)
    for severity, q in zip(range(1, 6), (80, 65, 58, 50, 40)):
        ours = corr.jpeg_compression(x, severity)
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray((x[i] * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=q)
            ref = torch.tensor(np.asarray(Image.open(buf))).permute(2, 0, 1).float() / 255
            assert float((ours[i] - ref).abs().max()) <= 1 / 255 + 1e-6


def test_defocus_kernels_by_hand() -> None:
    # severity 5 (r = 1.5, σ = 0.1): the 3×3 square, blurred by a Gaussian whose side weights are e^-50 ≈ 0
    k5 = defocus_kernel(1.5, 0.1)
    assert k5.shape == (5, 5) and float(k5.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(k5[1:-1, 1:-1], torch.full((3, 3), 1 / 9, dtype=torch.float64), atol=1e-12, rtol=0)
    # severity 4 (r = 1, σ = 0.2): the 5-pixel plus, side weights e^-12.5 ≈ 4e-6
    plus = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64) / 5
    torch.testing.assert_close(defocus_kernel(1.0, 0.2)[1:-1, 1:-1], plus, atol=1e-4, rtol=0)
    # severities 1-3 (r < 1): a single pixel blurred by cv2's 3×3 Gaussian, a separable kernel
    k = defocus_kernel(0.5, 0.6)
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * 0.36))
    torch.testing.assert_close(k, torch.outer(g, g) / g.sum() ** 2)
    x = torch.rand(2, 1, 12, 12, generator=gen(0))
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.float().view(1, 1, 3, 3))
    torch.testing.assert_close(corr.defocus_blur(x, 3), ref.clamp(0, 1), atol=1e-6, rtol=0)


def test_filter_matrix_boundaries_match_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    a = np.random.default_rng(1).random(9)
    k = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05] * 3, dtype=torch.float64)[:19]  # longer than the signal
    for ours, theirs in [("symmetric", "reflect"), ("reflect101", "mirror"), ("edge", "nearest")]:
        got = filter_matrix(9, k, ours) @ torch.tensor(a)
        np.testing.assert_allclose(got.numpy(), ndimage.correlate1d(a, k.numpy(), mode=theirs), atol=1e-12)


def test_zoom_blur_matches_scipy_clipped_zoom() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")

    def clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:  # make_cifar_c.py, H×W×C
        h = img.shape[0]
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        out = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
        trim = (out.shape[0] - h) // 2
        return out[trim : trim + h, trim : trim + h]

    x = natural_images(2, 3, 28)
    for severity, (end, n) in enumerate(zip((1.06, 1.11, 1.16, 1.21, 1.26), (7, 12, 16, 21, 26)), start=1):
        img = x[0].permute(1, 2, 0).double().numpy()
        zooms = np.arange(1, end, 0.01)
        assert len(zooms) == n
        ref = (img + sum(clipped_zoom(img, z) for z in zooms)) / (n + 1)
        np.testing.assert_allclose(
            corr.zoom_blur(x, severity)[0].permute(1, 2, 0).numpy(), np.clip(ref, 0, 1), atol=1e-5
        )
    assert torch.equal(clipped_zoom_matrix(28, 1.0), torch.eye(28, dtype=torch.float64))


def test_displace_matches_scipy_map_coordinates() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = natural_images(1, 1, 16)
    dx, dy = (torch.rand(2, 1, 16, 16, generator=gen(0)) - 0.5) * 6  # up to 3 px, crossing the borders
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    ref = ndimage.map_coordinates(
        x[0, 0].double().numpy(), (yy + dy[0].numpy(), xx + dx[0].numpy()), order=1, mode="reflect"
    )
    np.testing.assert_allclose(displace(x, dx, dy)[0, 0].numpy(), ref, atol=1e-5)


def test_affine_warp_without_jitter_is_identity() -> None:
    x = torch.rand(3, 3, 20, 20, generator=gen(0))
    torch.testing.assert_close(_affine_warp(x, 0.0, gen(1)), x, atol=1e-5, rtol=0)


def test_elastic_parity_table() -> None:
    x = natural_images(4, 1, 28)
    # severity 3 is the same row in the published and the sorted table
    assert torch.equal(corr.elastic_transform(x, 3, gen(0)), corr.elastic_transform(x, 3, gen(0), parity=True))
    assert not torch.equal(corr.elastic_transform(x, 1, gen(0)), corr.elastic_transform(x, 1, gen(0), parity=True))


def test_motion_blur_by_hand() -> None:
    x = torch.rand(2, 1, 6, 10, generator=gen(0))
    k = motion_blur_kernel(2, 1.0)  # 5 taps, exp(-i²/2)
    assert len(k) == 5 and float(k.sum()) == pytest.approx(1.0)
    idx = torch.arange(10)
    # angle 0°: a streak to the right (+x), edge-replicated
    right = sum(float(k[i]) * x[..., (idx + i).clamp(max=9)] for i in range(5))
    # angle 90°: a streak downwards (+y)
    rows = torch.arange(6)
    down = sum(float(k[i]) * x[..., (rows + i).clamp(max=5), :] for i in range(5))
    out = motion_blur(x, 2, 1.0, torch.tensor([0.0, 90.0]))
    torch.testing.assert_close(out[0], right[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], down[1], atol=1e-6, rtol=0)


def test_glass_blur_copies_an_up_left_neighbour() -> None:
    """Severity 1 on 32 px (σ = 0.05: identity blur): each visited pixel is a copy of itself or an up/left neighbour."""
    x = torch.randperm(32 * 32, generator=gen(0)).float().div(32 * 32).view(1, 1, 32, 32)  # all values distinct
    y = corr.glass_blur(x, 1, generator=gen(1))
    assert torch.equal(y[..., :2, :], x[..., :2, :]) and torch.equal(y[..., :, :2], x[..., :, :2])
    inner, src = y[0, 0, 2:, 2:], x[0, 0]
    candidates = torch.stack([src[2:, 2:], src[1:-1, 2:], src[2:, 1:-1], src[1:-1, 1:-1]])
    assert torch.all((candidates == inner).any(dim=0))
    assert float((inner != src[2:, 2:]).float().mean()) == pytest.approx(0.75, abs=0.05)  # 3 of 4 choices move


def test_plasma_fractal_is_normalised() -> None:
    maps = plasma_fractal(5, 32, 2.0, gen(0), torch.zeros(1))
    assert maps.shape == (5, 32, 32)
    assert torch.allclose(maps.amin(dim=(1, 2)), torch.zeros(5)) and torch.allclose(
        maps.amax(dim=(1, 2)), torch.ones(5)
    )
    assert not torch.equal(maps[0], maps[1])


# ---------------------------------------------------------------------------------------------------------------
# suites, apply_shift, corrupt_dataset


def test_suites() -> None:
    assert shift_suite("brightness_w2_pathmnist") == [("brightness_factor", f) for f in (0.8, 0.9, 1.1, 1.2)]
    assert shift_suite("brightness_w2_pets") == [("brightness_factor", f) for f in (0.6, 0.8, 1.2, 1.4)]
    assert shift_suite("blur_w2") == [("gaussian_blur_sigma", s) for s in (0.3, 0.5, 0.7, 0.9)]
    common = shift_suite("common15")
    assert len(common) == 75 and {n for n, _ in common} == set(corr.COMMON_CORRUPTIONS)
    fm = shift_suite("fmnist-default")
    assert fm[:8] == shift_suite("brightness_w2_pathmnist") + shift_suite("blur_w2")
    assert {lv for n, lv in fm[8:]} == {1.0, 3.0, 5.0}
    names = {s.name for s in corr.SHIFT_SUITES}
    assert len(names) == len(corr.SHIFT_SUITES)
    with pytest.raises(ConfigError, match="valid suites: .*blur_w2"):
        shift_suite("blur-w2")


@pytest.mark.parametrize("suite", [s.name for s in corr.SHIFT_SUITES])
def test_every_suite_cell_applies(suite: str) -> None:
    x = natural_images(2, 1, 28)
    for name, level in shift_suite(suite):
        assert name in CORRUPTIONS
        assert apply_shift(x, name, level, gen(0)).shape == x.shape


def test_apply_shift_levels() -> None:
    x = natural_images(3, 3, 28)
    assert torch.equal(apply_shift(x, "fog", 3.0, gen(0)), corr.fog(x, 3, gen(0)))
    assert torch.equal(apply_shift(x, "fog", 3, gen(0)), corr.fog(x, 3, gen(0)))
    with pytest.raises(InputError):
        apply_shift(x, "fog", 2.5)
    with pytest.raises(ConfigError, match="valid choices"):
        apply_shift(x, "fogg", 1)


def test_corrupt_dataset() -> None:
    imgs = (natural_images(10, 1, 28) * 255).round().to(torch.uint8)
    ds = TensorDataset(imgs, torch.arange(10) % 3, ["a", "b", "c"], "tiny", "generated", {"split": "test"})
    out = corrupt_dataset(ds, "gaussian_noise", 3, seed=5, batch_size=4)
    assert out.x.dtype == torch.uint8 and out.x.shape == ds.x.shape
    assert torch.equal(out.y, ds.y) and out.classes == ds.classes and out.name == "tiny"
    assert out.meta["shift"] == "gaussian_noise" and out.meta["level"] == 3 and out.meta["split"] == "test"
    assert torch.equal(ds.x, imgs), "input dataset modified"
    assert torch.equal(out.x, corrupt_dataset(ds, "gaussian_noise", 3, seed=5, batch_size=4).x)
    assert not torch.equal(out.x, corrupt_dataset(ds, "gaussian_noise", 3, seed=6, batch_size=4).x)
    # the same as applying the shift batch by batch with one generator and rounding
    g = gen(5)
    manual = torch.cat([apply_shift(ds.x[i : i + 4].float() / 255, "gaussian_noise", 3, g) for i in range(0, 10, 4)])
    assert torch.equal(out.x, (manual * 255).round().clamp(0, 255).to(torch.uint8))
    blurred = corrupt_dataset(ds, "gaussian_blur_sigma", 0.7, seed=0)
    assert math.isclose(blurred.meta["level"], 0.7)
    with pytest.raises(InputError):
        corrupt_dataset(ds, "fog", 1, seed=0, batch_size=0)
