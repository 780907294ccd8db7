"""Tests for rulab.data.synthetic and rulab.data.ood.noise_sets: moments of the W1 families, exactness of the blob and low-pass filters against
scipy/numpy references, permutation properties, determinism, devices, and the registered sets / streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rulab.data import synthetic
from rulab.data.ood import noise_sets
from rulab.data.tensors import TensorDataset
from rulab.errors import InputError
from rulab.registry import OOD_SETS

SHAPE = (3, 32, 32)
# the registered noise families (marked by ``needs_base``): drawn from nothing, or built from ID images
SYNTHETIC = [n for n in OOD_SETS if hasattr(OOD_SETS.get(n), "needs_base") and not OOD_SETS.get(n).needs_base]
BASED = [n for n in OOD_SETS if getattr(OOD_SETS.get(n), "needs_base", False)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clone(g: torch.Generator) -> torch.Generator:
    c = torch.Generator(device=g.device)
    c.set_state(g.get_state())
    return c


def fake_base(n: int = 300, shape: tuple[int, int, int] = SHAPE, seed: int = 1) -> TensorDataset:
    x = torch.randint(0, 256, (n, *shape), generator=gen(seed), dtype=torch.uint8)
    return TensorDataset(x, torch.zeros(n, dtype=torch.int64), [str(i) for i in range(10)], "fake_test")


def binomial_tol(p: float, n: int, k: float = 5.0) -> float:
    return k * math.sqrt(p * (1 - p) / n)


# ------------------------------------------------------------------------------------------ W1 / W4 moments


def test_gaussian_w1_mean_and_clipped_mass():
    x = synthetic.gaussian(64, SHAPE, gen())
    n = x.numel()
    assert x.shape == (64, *SHAPE) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    clipped = ((x == 0) | (x == 1)).double().mean().item()
    p = 2 * 0.5 * math.erfc(2 / math.sqrt(2))  # 2·Φ(−2) = 0.0455
    assert abs(clipped - p) < binomial_tol(p, n)
    assert abs(x.double().mean().item() - 0.5) < 5 * 0.25 / math.sqrt(n)
    inner = x[(x > 0) & (x < 1)].double()  # truncated normal on (0, 1): std < 0.25
    assert 0.2 < inner.std().item() < 0.25


def test_gaussian_odin_clipped_mass():
    x = synthetic.gaussian_odin(16, SHAPE, gen())
    p = 2 * 0.5 * math.erfc(0.5 / math.sqrt(2))  # P(|N(0,1)| > 0.5) = 2·Φ(−0.5) ≈ 0.617
    assert abs(((x == 0) | (x == 1)).double().mean().item() - p) < binomial_tol(p, x.numel())


def test_rademacher_values_and_mean_per_channel():
    x = synthetic.rademacher(64, SHAPE, gen())
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert abs(x.mean().item() - 0.5) < binomial_tol(0.5, x.numel())
    # independent per channel: channels disagree about half of the time
    disagree = (x[:, 0] != x[:, 1]).double().mean().item()
    assert abs(disagree - 0.5) < binomial_tol(0.5, x[:, 0].numel())


def test_rademacher_gray_repeats_one_map():
    x = synthetic.rademacher_gray(8, SHAPE, gen())
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_uniform_moments():
    x = synthetic.uniform(32, SHAPE, gen())
    assert x.min() >= 0 and x.max() < 1
    assert abs(x.double().mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / x.numel())
    assert abs(x.double().var().item() - 1 / 12) < 2e-3


# ------------------------------------------------------------------------------------------ parity mode


def test_parity_with_w1_statistics_equals_pixel_definition():
    for fn in (synthetic.gaussian, synthetic.rademacher, synthetic.uniform, synthetic.blobs, synthetic.rademacher_gray):
        a = fn(4, SHAPE, gen(3))
        b = fn(4, SHAPE, gen(3), parity_normalization=(0.5, 0.5))
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=fn.__name__)


def test_parity_oe_statistics_maps_literal_draws():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    r = synthetic.rademacher(8, SHAPE, gen(), parity_normalization=(mean, std))
    assert torch.all(torch.isclose(r, m - s) | torch.isclose(r, m + s))
    g = synthetic.gaussian(8, SHAPE, gen(), parity_normalization=(mean, std))
    v = (g - m) / s  # back to the normalised space: clip(N(0, 0.5²), −1, 1)
    assert v.min() >= -1 - 1e-5 and v.max() <= 1 + 1e-5
    assert abs(v.std().item() - 0.5) < 0.02  # clipping at 2σ shrinks the std only slightly (0.5 → 0.44)
    ref = torch.randn(8, *SHAPE, generator=gen()).mul(0.5).clamp(-1, 1)
    torch.testing.assert_close(v, ref, atol=1e-5, rtol=0)
    with pytest.raises(InputError):
        synthetic.gaussian(1, SHAPE, gen(), parity_normalization=((0.5, 0.5), (0.5, 0.5)))


# ------------------------------------------------------------------------------------------ blobs


@pytest.mark.parametrize("shape,sigma", [((3, 32, 32), 1.5), ((3, 16, 20), 2.0), ((1, 12, 12), 1.5)])
def test_gaussian_filter_3d_equals_scipy(shape, sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    b = (torch.rand(3, *shape, generator=gen()) < 0.7).float()
    ours = synthetic.gaussian_filter_3d(b, sigma)
    for i in range(len(b)):
        hwc = b[i].permute(1, 2, 0).double().numpy()
        ref = ndimage.gaussian_filter(hwc, sigma, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), ref, atol=1e-5, rtol=0)


def test_blobs_equals_scipy_reference_on_same_bernoulli_draw():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = gen(5)
    b = (torch.rand(4, *SHAPE, generator=clone(g)) < 0.7).float()
    x = synthetic.blobs(4, SHAPE, g)  # σ = 1.5 at 32 px
    for i in range(4):
        blurred = ndimage.gaussian_filter(b[i].permute(1, 2, 0).double().numpy(), 1.5, mode="nearest", truncate=4.0)
        ref = np.where(blurred < 0.75, 0.0, blurred)
        ours = x[i].permute(1, 2, 0).numpy()
        near = np.abs(blurred - 0.75) < 1e-5  # a float32/float64 rounding may flip the threshold only there
        np.testing.assert_allclose(ours[~near], ref[~near], atol=1e-5, rtol=0)


def test_blobs_values_and_zero_fraction():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = synthetic.blobs(64, SHAPE, gen())
    nonzero = x[x > 0]
    assert nonzero.min() >= 0.75 and nonzero.max() <= 1
    zero = (x == 0).double().mean().item()
    rng = np.random.default_rng(0)  # independent reference estimate with scipy
    ref = np.mean(
        [
            ndimage.gaussian_filter((rng.random((32, 32, 3)) < 0.7).astype(float), 1.5, mode="nearest") < 0.75
            for _ in range(64)
        ]
    )
    assert 0.5 < zero < 0.95
    assert abs(zero - ref) < 0.03


def test_blobs_sigma_matches_w1_settings():
    assert synthetic.blobs_sigma(32) == 1.5 and synthetic.blobs_sigma(64) == 2.0
    meta = OOD_SETS.create("blobs", shape=(1, 28, 28), n=2).meta
    assert meta["params"]["sigma"] == synthetic.blobs_sigma(28)


# ------------------------------------------------------------------------------------------ permuted pixels


def test_permuted_pixels_is_a_per_image_permutation_of_channel_vectors():
    x = torch.rand(5, 3, 8, 8, generator=gen())
    y = synthetic.permuted_pixels(x, gen(1))
    assert y.shape == x.shape and not torch.equal(x, y)
    for i in range(len(x)):
        a, b = x[i].flatten(1).T, y[i].flatten(1).T  # [H·W, C] pixel vectors
        torch.testing.assert_close(a[a[:, 0].argsort()], b[b[:, 0].argsort()], rtol=0, atol=0)
    # every image gets its own permutation
    same = x[:1].repeat(2, 1, 1, 1)
    z = synthetic.permuted_pixels(same, gen(1))
    assert not torch.equal(z[0], z[1])


def test_permuted_pixels_grayscale_and_uint8():
    x = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4)
    y = synthetic.permuted_pixels(x, gen())
    assert y.dtype == torch.uint8
    assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1))


# ------------------------------------------------------------------------------------------ low-pass


def literal_w3_lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    """W3's apply_random_lowpass in numpy/scipy: 15×15 kernel from the normal pdf, pad 15 'symmetric', conv 'SAME',
    crop 15, per-image min-max."""
    t = np.arange(-7, 8)
    vals = np.exp(-0.5 * (t / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    k = np.outer(vals, vals)
    k /= k.sum()
    out = np.empty_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            p = np.pad(x[i, c].astype(np.float64), 15, mode="symmetric")
            same = np.zeros_like(p)
            zp = np.pad(p, 7)  # 'SAME' zero padding
            for dy in range(15):
                for dx in range(15):
                    same += k[dy, dx] * zp[dy : dy + p.shape[0], dx : dx + p.shape[1]]
            out[i, c] = same[15:-15, 15:-15]
    lo = out.min(axis=(1, 2, 3), keepdims=True)
    hi = out.max(axis=(1, 2, 3), keepdims=True)
    return (out - lo) / (hi - lo)


def test_lowpass_equals_literal_w3_filter_with_one_sigma_per_batch():
    x = torch.rand(3, 3, 10, 12, generator=gen())
    g = gen(7)
    sigma = synthetic.lowpass_sigma(clone(g))
    assert 1.0 <= sigma <= 2.5
    y = synthetic.lowpass(x, g)
    ref = literal_w3_lowpass(x.numpy(), sigma)  # the SAME σ for every image of the batch
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-5, rtol=0)
    other = literal_w3_lowpass(x.numpy(), sigma + 0.3)
    assert np.abs(y.numpy() - other).max() > 1e-3  # the comparison is sensitive to σ


def test_lowpass_range_exactly_zero_one_per_image():
    x = synthetic.uniform(6, SHAPE, gen())
    y = synthetic.lowpass(x, gen(1))
    assert torch.all(y.amin(dim=(1, 2, 3)) == 0) and torch.all(y.amax(dim=(1, 2, 3)) == 1)
    # low-pass: neighbouring pixels correlate strongly, unlike the input
    corr = torch.corrcoef(torch.stack([y[:, :, :, :-1].flatten(), y[:, :, :, 1:].flatten()]))[0, 1]
    assert corr > 0.8


def test_lowpass_constant_image_and_bad_input():
    y = synthetic.lowpass(torch.full((1, 3, 8, 8), 0.3), sigma=1.5)
    assert torch.equal(y, torch.zeros_like(y))
    with pytest.raises(InputError):
        synthetic.lowpass(torch.rand(3, 8, 8), sigma=1.0)
    with pytest.raises(InputError):
        synthetic.lowpass(torch.rand(1, 3, 8, 8))  # neither generator nor sigma
    with pytest.raises(InputError):
        synthetic.lowpass(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), sigma=1.0)


def test_hein_noise_composition():
    x = torch.rand(4, 3, 8, 8, generator=gen())
    g = gen(2)
    out = synthetic.hein_noise(x, g, m=10, sigma=1.7)
    # reproduce: base = [x, x, x][:10]; first 5 permuted, last 5 uniform, one low-pass
    g2 = gen(2)
    base = torch.cat([x, x, x])[:5]
    perm = synthetic.permuted_pixels(base, g2)
    uni = synthetic.uniform(5, (3, 8, 8), g2)
    ref = synthetic.lowpass(torch.cat([perm, uni]), sigma=1.7)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert out.shape == (10, 3, 8, 8)


# ------------------------------------------------------------------------------------------ determinism, devices


def test_generators_deterministic_under_seed():
    for fn in (synthetic.gaussian, synthetic.gaussian_odin, synthetic.rademacher, synthetic.blobs, synthetic.uniform):
        assert torch.equal(fn(2, SHAPE, gen(4)), fn(2, SHAPE, gen(4)))
        assert not torch.equal(fn(2, SHAPE, gen(4)), fn(2, SHAPE, gen(5)))
    x = torch.rand(2, 3, 8, 8, generator=gen())
    assert torch.equal(synthetic.hein_noise(x, gen(1)), synthetic.hein_noise(x, gen(1)))


def test_device_follows_inputs_and_request():
    x = torch.rand(2, 3, 8, 8, generator=gen())
    assert synthetic.permuted_pixels(x, gen()).device == x.device
    assert synthetic.lowpass(x, gen()).device == x.device
    assert synthetic.gaussian(1, (1, 4, 4), gen(), device="cpu").device.type == "cpu"
    if torch.cuda.is_available():
        xc = x.cuda()
        assert synthetic.permuted_pixels(xc, gen()).device == xc.device
        assert synthetic.lowpass(xc, gen()).is_cuda and synthetic.hein_noise(xc, gen()).is_cuda
        # draws happen on the generator's device: same numbers whatever the target device
        torch.testing.assert_close(
            synthetic.blobs(2, SHAPE, gen(), device="cuda").cpu(), synthetic.blobs(2, SHAPE, gen())
        )


# ------------------------------------------------------------------------------------------ registered sets, streams


@pytest.mark.parametrize("name", SYNTHETIC)
def test_registered_sets_contract(name):
    ds = OOD_SETS.create(name, shape=(1, 12, 12), n=130, seed=3)
    assert ds.x.dtype == torch.uint8 and ds.x.shape == (130, 1, 12, 12)
    assert torch.all(ds.y == -1) and ds.name == name and ds.source == "generated"
    assert ds.meta["seed"] == 3 and ds.meta["family"] == name
    again = OOD_SETS.create(name, shape=(1, 12, 12), n=130, seed=3)
    assert torch.equal(ds.x, again.x)
    assert not torch.equal(ds.x, OOD_SETS.create(name, shape=(1, 12, 12), n=130, seed=4).x)
    assert len(OOD_SETS.create(name, shape=(1, 4, 4)).x) == noise_sets.DEFAULT_N


def test_lowpass_sets_record_one_sigma_per_block():
    ds = OOD_SETS.create("lowpass_noise", shape=(3, 8, 8), n=300)
    sig = ds.meta["lowpass_sigmas"]
    assert len(sig) == 3 and all(1.0 <= s <= 2.5 for s in sig) and len(set(sig)) == 3


@pytest.mark.parametrize("name", BASED)
def test_base_sets_need_base(name):
    with pytest.raises(InputError, match="base="):
        OOD_SETS.create(name, shape=SHAPE)
    with pytest.raises(InputError):
        OOD_SETS.create(name, shape=(3, 16, 16), base=fake_base())


def test_hein_set_needs_a_whole_batch_by_default():
    with pytest.raises(InputError, match="128"):
        OOD_SETS.create("hein", shape=SHAPE, base=fake_base(100))
    assert len(OOD_SETS.create("hein", shape=SHAPE, base=fake_base(100), n=150)) == 150  # base rows cycle


def test_hein_set_drop_last_and_composition():
    base = fake_base(300)
    ds = OOD_SETS.create("hein", shape=SHAPE, seed=0, base=base)
    assert len(ds) == 256 and ds.meta["base"] == "fake_test" and len(ds.meta["lowpass_sigmas"]) == 2
    x = ds.x.float()
    assert torch.all(x.amin(dim=(1, 2, 3)) == 0) and torch.all(x.amax(dim=(1, 2, 3)) == 255)
    # block 0 = hein_noise of base rows 0..127 with the recorded σ and the block's generator
    g = noise_sets.NoiseStream("hein", SHAPE, 256, seed=0, base=base).block_generator(0)
    sigma = synthetic.lowpass_sigma(g)
    assert sigma == ds.meta["lowpass_sigmas"][0]
    ref = synthetic.hein_noise(base.float()[:128], g, sigma=sigma)
    assert (ref.mul(255).round() - x[:128]).abs().max() == 0


def test_permuted_set_permutes_base_images():
    base = fake_base(130)
    ds = OOD_SETS.create("permuted", shape=SHAPE, seed=0, base=base)
    assert len(ds) == 130
    for i in (0, 129):
        assert torch.equal(ds.x[i].flatten(1).sort(1).values[0], base.x[i].flatten(1).sort(1).values[0])
        assert not torch.equal(ds.x[i], base.x[i])


@pytest.mark.parametrize("name", ["gaussian", "blobs", "lowpass_noise", "hein"])
def test_stream_is_chunk_size_independent_and_matches_set(name):
    base = fake_base(200, (3, 8, 8)) if name == "hein" else None
    n = 300
    a = torch.cat(list(noise_sets.NoiseStream(name, (3, 8, 8), n, seed=2, chunk=100, base=base)))
    b_chunks = list(noise_sets.NoiseStream(name, (3, 8, 8), n, seed=2, chunk=256, base=base))
    assert [len(c) for c in b_chunks] == [256, 44]
    torch.testing.assert_close(a, torch.cat(b_chunks), rtol=0, atol=0)
    ds = OOD_SETS.create(name, shape=(3, 8, 8), n=n, seed=2, base=base)
    assert torch.equal(a.mul(255).round().to(torch.uint8), ds.x)


def test_stream_rejects_non_noise_names_and_bad_arguments():
    with pytest.raises(KeyError):
        noise_sets.NoiseStream("no_such_set", SHAPE, 10)
    with pytest.raises(InputError):
        noise_sets.NoiseStream("uniform", SHAPE, 10, chunk=0)
    with pytest.raises(InputError):
        noise_sets.NoiseStream("uniform", (3, 32), 10)
    with pytest.raises(InputError):
        noise_sets.NoiseStream("hein", SHAPE, 10)
    with pytest.raises(InputError, match="frac_perm"):
        noise_sets.NoiseStream("uniform", SHAPE, 10, frac_perm=0.3)
