"""Throughput of rulab's batched corruptions vs straightforward per-image NumPy/SciPy/PIL versions.

The per-image versions below follow hendrycks/robustness ``make_cifar_c.py`` (one image at a time, NumPy arrays
H×W×C, scipy.ndimage / PIL / skimage calls), with the same parameters as rulab (including the 28-px scaling);
OpenCV and ImageMagick calls, which are not installed here, are replaced by their NumPy/SciPy equivalents.
Both sides run on the same images in the same process, single-threaded by default (``--threads``); the script
prints time per corruption, the speed-up, and the mean |change| each side makes (a sanity check that both do
comparable work).

Usage:
    python benchmarks/corruptions_speed.py            # 10,000 Fashion-MNIST test images (28×28 grey), severity 3
    python benchmarks/corruptions_speed.py --quick    # 1,000 images
    python benchmarks/corruptions_speed.py --channels 3 --severities 1 3 5 --names fog snow
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import rulab.data.corruptions as corr
from rulab.data.corruptions.blur import _DEFOCUS, _GLASS, _MOTION, _ZOOM_COUNTS
from rulab.data.corruptions.digital import _BRIGHTNESS, _CONTRAST, _ELASTIC_SORTED, _JPEG_QUALITY, _PIXELATE
from rulab.data.corruptions.noise import _GAUSSIAN_STD, _IMPULSE_AMOUNT, _SHOT_PHOTONS
from rulab.data.corruptions.weather import _FOG, _FROST, _SNOW

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")

# ---- per-image reference versions: img is float64 H×W×C in [0, 1], rng a numpy Generator ------------------------


def _scale(img: np.ndarray) -> float:
    return min(img.shape[:2]) / 32.0


def _gaussian_filter(img: np.ndarray, sigma: float, mode: str, truncate: float = 4.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, sigma=(sigma, sigma, 0), mode=mode, truncate=truncate)


def _clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    from scipy.ndimage import zoom

    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def _motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    width = int(2 * math.ceil(radius) + 1)
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    rows, cols = np.arange(h), np.arange(w)
    for i in range(width):
        ox = math.ceil(i * math.cos(math.radians(angle)) - 0.5)
        oy = math.ceil(i * math.sin(math.radians(angle)) - 0.5)
        out += k[i] * img[np.clip(rows + oy, 0, h - 1)][:, np.clip(cols + ox, 0, w - 1)]
    return out


def ref_gaussian_noise(img, s, rng):
    return np.clip(img + rng.normal(size=img.shape, scale=_GAUSSIAN_STD[s - 1]), 0, 1)


def ref_shot_noise(img, s, rng):
    c = _SHOT_PHOTONS[s - 1]
    return np.clip(rng.poisson(img * c) / c, 0, 1)


def ref_impulse_noise(img, s, rng):
    from skimage.util import random_noise

    return np.clip(random_noise(img, mode="s&p", amount=_IMPULSE_AMOUNT[s - 1], rng=rng), 0, 1)


def ref_defocus_blur(img, s, rng):
    from scipy.ndimage import correlate

    radius, alias = _DEFOCUS[s - 1]
    radius *= max(1.0, _scale(img))
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.array([-1.0, 0.0, 1.0]) ** 2) / (2 * alias**2))
    g /= g.sum()
    kernel = correlate(disk, np.outer(g, g), mode="mirror")
    return np.clip(np.stack([correlate(img[..., c], kernel, mode="mirror") for c in range(img.shape[2])], -1), 0, 1)


def ref_glass_blur(img, s, rng):
    sigma, delta, passes = _GLASS[s - 1]
    sigma *= _scale(img)
    x = _gaussian_filter(img, sigma, "nearest")
    h, w = x.shape[:2]
    for _ in range(passes):  # the reference's loop; its tuple "swap" on views copies (h', w') into (h, w)
        for r in range(h - delta, delta, -1):
            for q in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2,))
                x[r, q], x[r + dy, q + dx] = x[r + dy, q + dx], x[r, q]
    return np.clip(_gaussian_filter(x, sigma, "nearest"), 0, 1)


def ref_motion_blur(img, s, rng):
    radius, sigma = _MOTION[s - 1]
    return np.clip(_motion_blur(img, radius * _scale(img), sigma * _scale(img), rng.uniform(-45, 45)), 0, 1)


def ref_zoom_blur(img, s, rng):
    out = img.copy()
    for k in range(_ZOOM_COUNTS[s - 1]):
        out += _clipped_zoom(img, 1 + 0.01 * k)
    return np.clip(out / (_ZOOM_COUNTS[s - 1] + 1), 0, 1)


def ref_snow(img, s, rng):
    mu, sd, z, thresh, radius, sigma, blend = _SNOW[s - 1]
    layer = rng.normal(size=img.shape[:2], loc=mu, scale=sd)[..., None]
    layer = _clipped_zoom(layer, z)
    layer[layer < thresh] = 0
    layer = _motion_blur(np.clip(layer, 0, 1), radius * _scale(img), sigma * _scale(img), rng.uniform(-135, -45))
    grey = img if img.shape[2] == 1 else (img @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = blend * img + (1 - blend) * np.maximum(img, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1)


def _value_noise(h, w, cells, rng):
    from scipy.ndimage import zoom

    gh, gw = max(2, round(h / cells) + 1), max(2, round(w / cells) + 1)
    grid = rng.uniform(size=(gh, gw))
    return np.clip(
        zoom(grid, ((h - 1) / (gh - 1) + 1e-9, (w - 1) / (gw - 1) + 1e-9), order=3, grid_mode=False)[:h, :w], 0, 1
    )


def ref_frost(img, s, rng):
    a, b = _FROST[s - 1]
    h, w = img.shape[:2]
    sc = min(h, w) / 32
    base = sum(wt * _value_noise(h, w, cells * sc, rng) for cells, wt in ((16, 0.55), (8, 0.3), (4, 0.15)))
    veins = sum(
        wt * (1 - np.abs(2 * _value_noise(h, w, cells * sc, rng) - 1)) ** 6 for cells, wt in ((6, 0.6), (3, 0.4))
    )
    texture = np.clip(0.4 * base + veins, 0, 1)[..., None] * (
        0.92 if img.shape[2] == 1 else np.array([0.86, 0.93, 1.0])
    )
    return np.clip(a * img + b * texture, 0, 1)


def _plasma_fractal(mapsize, wibbledecay, rng):  # make_cifar_c.py, per image
    maparray = np.zeros((mapsize, mapsize))
    stepsize, wibble = mapsize, 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corner = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        acc = corner + np.roll(corner, -1, axis=0)
        acc += np.roll(acc, -1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(acc)
        dr = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        ul = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(
            dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        )
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(
            dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        )
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def ref_fog(img, s, rng):
    t, decay = _FOG[s - 1]
    h, w = img.shape[:2]
    m = img.max()
    haze = _plasma_fractal(1 << (max(h, w) - 1).bit_length(), decay, rng)[:h, :w, None]
    return np.clip((img + t * haze) * m / (m + t), 0, 1)


def ref_brightness(img, s, rng):
    c = _BRIGHTNESS[s - 1]
    if img.shape[2] == 1:
        return np.clip(img + c, 0, 1)
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(img)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def ref_contrast(img, s, rng):
    means = img.mean(axis=(0, 1), keepdims=True)
    return np.clip((img - means) * _CONTRAST[s - 1] + means, 0, 1)


def ref_elastic_transform(img, s, rng):
    from scipy.ndimage import affine_transform, map_coordinates

    h, w, c = img.shape
    alpha, sigma, jitter = (f * min(h, w) for f in _ELASTIC_SORTED[s - 1])
    cx, cy, sq = w // 2, h // 2, min(h, w) // 3
    pts1 = np.array([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=np.float64)
    pts2 = pts1 + rng.uniform(-jitter, jitter, size=pts1.shape)
    m = np.linalg.solve(np.c_[pts1, np.ones(3)], pts2).T  # 2×3, (x, y) → (x', y')
    inv = np.linalg.inv(np.r_[m, [[0, 0, 1]]])
    rc = np.array([[inv[1, 1], inv[1, 0], inv[1, 2]], [inv[0, 1], inv[0, 0], inv[0, 2]]])  # in (row, col) order
    warped = np.stack(
        [affine_transform(img[..., k], rc[:, :2], rc[:, 2], order=1, mode="mirror") for k in range(c)], -1
    )
    dx = _gaussian_filter(rng.uniform(-1, 1, size=(h, w, 1)), sigma, "reflect", truncate=3)[..., 0] * alpha
    dy = _gaussian_filter(rng.uniform(-1, 1, size=(h, w, 1)), sigma, "reflect", truncate=3)[..., 0] * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.stack([map_coordinates(warped[..., k], (yy + dy, xx + dx), order=1, mode="reflect") for k in range(c)], -1)
    return np.clip(out, 0, 1)


def _to_pil(img):
    from PIL import Image

    u8 = np.uint8(np.round(img * 255))
    return Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8)


def _from_pil(pil, c):
    a = np.asarray(pil, dtype=np.float64) / 255
    return a.reshape(a.shape[0], a.shape[1], c)


def ref_pixelate(img, s, rng):
    from PIL import Image

    h, w, c = img.shape
    f = _PIXELATE[s - 1]
    pil = _to_pil(img).resize((int(w * f), int(h * f)), Image.BOX).resize((w, h), Image.BOX)
    return _from_pil(pil, c)


def ref_jpeg_compression(img, s, rng):
    from PIL import Image

    buf = io.BytesIO()
    _to_pil(img).save(buf, "JPEG", quality=_JPEG_QUALITY[s - 1])
    return _from_pil(Image.open(buf), img.shape[2])


def ref_brightness_factor(img, level, rng):
    from PIL import ImageEnhance

    return _from_pil(ImageEnhance.Brightness(_to_pil(img)).enhance(level), img.shape[2])


def ref_gaussian_blur_sigma(img, level, rng):
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(torch.from_numpy(img).permute(2, 0, 1), [5, 5], [level, level]).permute(1, 2, 0).numpy()


def reference(name: str) -> Callable:
    """The per-image version of corruption `name` (the `ref_<name>` function above)."""
    return globals()[f"ref_{name}"]


# ---- driver ---------------------------------------------------------------------------------------------------


def load_images(n: int, channels: int) -> torch.Tensor:
    if FMNIST.exists():
        with gzip.open(FMNIST) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
        x = torch.from_numpy(x.copy()).float() / 255
        source = "Fashion-MNIST test"
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.interpolate(torch.rand(n, 1, 7, 7, generator=g), size=(28, 28), mode="bicubic").clamp(
            0, 1
        )
        source = "synthetic smooth"
    if channels == 3:  # tint the grey images so the channels differ
        x = (x * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)).clamp(0, 1)
    print(f"{len(x)} images, {source}, [N, C, H, W] = {list(x.shape)}")
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 images instead of 10,000")
    parser.add_argument("--n", type=int, default=None, help="number of images (overrides --quick)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    parser.add_argument("--severities", type=int, nargs="+", default=[3])
    parser.add_argument("--batch-size", type=int, default=1000, help="images per batched call (as corrupt_dataset)")
    parser.add_argument("--names", nargs="+", default=None, help="corruptions to run (default: all 17)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, like the per-image side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n or (1000 if args.quick else 10000)
    x = load_images(n, args.channels)
    names = args.names or list(corr.COMMON_CORRUPTIONS) + ["brightness_factor", "gaussian_blur_sigma"]
    grid_levels = {"brightness_factor": 1.2, "gaussian_blur_sigma": 0.7}
    x_np = x.permute(0, 2, 3, 1).double().numpy()
    print(f"torch threads {torch.get_num_threads()}, batch size {args.batch_size}, severities {args.severities}")
    print(
        f"{'corruption':<20} {'ours s':>8} {'ref s':>8} {'speed-up':>9} {'img/s ours':>11} {'|Δ| ours':>9} {'|Δ| ref':>8}"
    )
    total_ours = total_ref = 0.0
    for name in names:
        levels = [grid_levels[name]] if name in grid_levels else args.severities
        t_ours = t_ref = d_ours = d_ref = 0.0
        for level in levels:
            g = torch.Generator().manual_seed(0)
            corr.apply_shift(x[:8], name, level, g)  # warm-up: caches and lazy imports
            start = time.perf_counter()
            out = torch.cat(
                [corr.apply_shift(x[i : i + args.batch_size], name, level, g) for i in range(0, n, args.batch_size)]
            )
            t_ours += time.perf_counter() - start
            d_ours += float((out - x).abs().mean()) / len(levels)
            rng = np.random.default_rng(0)
            reference(name)(x_np[0].copy(), level, rng)
            start = time.perf_counter()
            ref = np.stack([reference(name)(img.copy(), level, rng) for img in x_np])
            t_ref += time.perf_counter() - start
            d_ref += float(np.abs(ref - x_np).mean()) / len(levels)
        total_ours += t_ours
        total_ref += t_ref
        print(
            f"{name:<20} {t_ours:8.3f} {t_ref:8.3f} {t_ref / t_ours:8.1f}x {n * len(levels) / t_ours:11.0f} {d_ours:9.4f} {d_ref:8.4f}"
        )
    print(f"{'total':<20} {total_ours:8.3f} {total_ref:8.3f} {total_ref / total_ours:8.1f}x")


if __name__ == "__main__":
    main()
