"""Covariate-shift evaluation: per-cell metrics against corrupt_dataset, aggregation, cache, CE/mCE, W2 means."""

from __future__ import annotations

import statistics

import pytest
import torch

from rulab.data.corruptions import corrupt_dataset, shift_suite
from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError, InputError
from rulab.eval.predict import predict
from rulab.eval.shift import (
    CELL_METRICS,
    CLEAN,
    TS_METRICS,
    ShiftCache,
    cell_metrics,
    corruption_errors,
    evaluate_shift,
    severity_means,
    shift_errors,
    shifted_batches,
)
from rulab.registry import MODELS
from rulab.results.table import ResultTable

# a custom suite: both W2 grids, two severities of Gaussian noise and one cell of every other corruption of
# "fmnist-default" (stochastic ones included); the full 38-cell suite is the same code, only slower
SUITE = (
    [(c, lvl) for c, lvl in shift_suite("fmnist-default") if c in ("brightness_factor", "gaussian_blur_sigma")]
    + [("gaussian_noise", 1.0), ("gaussian_noise", 5.0)]
    + [
        (c, 3.0)
        for c in (
            "shot_noise",
            "impulse_noise",
            "defocus_blur",
            "motion_blur",
            "contrast",
            "pixelate",
            "jpeg_compression",
            "fog",
            "elastic_transform",
        )
    ]
)
BATCH, CHUNK = 16, 32  # CHUNK a multiple of BATCH: streamed and corrupt_dataset+predict batches coincide
COVERED = ("brightness_factor", "gaussian_blur_sigma", "gaussian_noise")  # what the test baseline covers
BASELINE = {(c, str(lvl)): 0.5 + 0.01 * i for i, (c, lvl) in enumerate(SUITE) if c in COVERED}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def test_set() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    # smooth-ish images (upsampled 7x7 noise) so that blurs and contrast actually change predictions
    small = torch.rand(48, 1, 7, 7, generator=g)
    x = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    y = torch.randint(0, 10, (48,), generator=g)
    return TensorDataset(x, y, [str(i) for i in range(10)], "toyset", "generated")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = MODELS.create("fastcnn", width=4)
    return m.eval()


@pytest.fixture(scope="module")
def table(model: torch.nn.Module, test_set: TensorDataset) -> ResultTable:
    return evaluate_shift(
        model,
        test_set,
        SUITE,
        seed=3,
        batch_size=BATCH,
        temperature=1.7,
        chunk=CHUNK,
        baseline=BASELINE,
        channels_last=False,
    )


def test_cells_equal_metrics_on_corrupt_dataset_output(model, test_set, table):
    for name, level in SUITE:
        shifted = corrupt_dataset(test_set, name, level, seed=3, batch_size=CHUNK)
        z = predict(model, shifted.x, batch_size=BATCH)["logits"]
        want = cell_metrics(z, test_set.y)
        for metric in CELL_METRICS:
            got = table.value(kind="shift", dataset="toyset", shift=name, severity=level, detector="", metric=metric)
            assert got == pytest.approx(want[metric], abs=1e-12), (name, level, metric)
        ts = cell_metrics(z / 1.7, test_set.y)
        for metric in TS_METRICS:
            got = table.value(kind="shift", shift=name, severity=level, detector="ts", metric=metric)
            assert got == pytest.approx(ts[metric], abs=1e-12), (name, level, metric)


def test_clean_reference_is_the_plain_test_set(model, test_set, table):
    z = predict(model, test_set.x, batch_size=BATCH)["logits"]
    want = cell_metrics(z, test_set.y)
    for metric in CELL_METRICS:
        assert table.value(kind="shift", shift=CLEAN, severity="0", detector="", metric=metric) == pytest.approx(
            want[metric], abs=1e-12
        )
    # one clean block, 38 cells, one mean per corruption, raw metrics + ts metrics each
    cells = SUITE
    n_corr = len({c for c, _ in cells})
    per = len(CELL_METRICS) + len(TS_METRICS)
    assert len(table.filter(metric=CELL_METRICS + TS_METRICS)) == per * (1 + len(cells) + n_corr)


def test_means_over_severities_equal_hand_means(table):
    for name in {c for c, _ in SUITE}:
        levels = [lvl for c, lvl in SUITE if c == name]
        for detector, metrics in (("", CELL_METRICS), ("ts", TS_METRICS)):
            for metric in metrics:
                vals = [
                    table.value(kind="shift", shift=name, severity=lvl, detector=detector, metric=metric)
                    for lvl in levels
                ]
                got = table.value(kind="shift", shift=name, severity="mean", detector=detector, metric=metric)
                assert got == pytest.approx(statistics.fmean(vals), abs=1e-12)


def test_w2_report_means_are_unweighted_means_of_the_four_levels():
    # W2 report Tables 1-8: per-level accuracies (%) and the report's "Brightness mean" / "Blur mean".
    # Per-level values are printed rounded to 0.1 and so is the mean: agreement to 0.1 is all the data allows.
    published = {
        ("basic", "brightness_factor"): ([34.7, 58.8, 31.3, 20.8], 36.4),
        ("mixup", "brightness_factor"): ([46.2, 65.9, 55.0, 28.1], 48.8),
        ("pt", "brightness_factor"): ([46.6, 72.2, 52.9, 29.4], 50.3),
        ("basic", "gaussian_blur_sigma"): ([82.5, 73.8, 59.6, 54.2], 67.5),
        ("mixup", "gaussian_blur_sigma"): ([85.8, 76.0, 60.5, 50.1], 68.1),
        ("pt", "gaussian_blur_sigma"): ([87.9, 83.0, 69.4, 57.1], 74.3),
        ("pets_scratch", "brightness_factor"): ([66.2, 72.7, 68.6, 62.4], 67.5),
        ("pets_scratch", "gaussian_blur_sigma"): ([73.6, 71.3, 64.4, 56.4], 66.4),
        ("pets_bt", "brightness_factor"): ([91.1, 92.8, 93.4, 92.4], 92.4),
        ("pets_bt", "gaussian_blur_sigma"): ([92.4, 92.0, 86.3, 82.9], 88.4),
    }
    levels = {"brightness_factor": (0.8, 0.9, 1.1, 1.2), "gaussian_blur_sigma": (0.3, 0.5, 0.7, 0.9)}
    t = ResultTable()
    for (model, shift), (vals, _) in published.items():
        t.add("shift", "acc", 82.3, dataset=model, shift=CLEAN, severity="0")  # the clean row must not enter the mean
        for lvl, v in zip(levels[shift], vals):
            t.add("shift", "acc", v, dataset=model, shift=shift, severity=lvl)
    means = severity_means(t)
    assert len(means) == len(published)
    for (model, shift), (_, mean) in published.items():
        assert means.value(dataset=model, shift=shift, severity="mean", metric="acc") == pytest.approx(
            mean, abs=0.1 + 1e-9
        )


def test_shifted_batches_match_corrupt_dataset_and_quantize(test_set):
    for name, level in (("gaussian_noise", 3), ("jpeg_compression", 5), ("brightness_factor", 0.8)):
        want = corrupt_dataset(test_set, name, level, seed=5, batch_size=32).x.float() / 255
        got = torch.cat(list(shifted_batches(test_set, name, level, seed=5, chunk=32)))
        assert torch.equal(got, want)
        raw = torch.cat(list(shifted_batches(test_set, name, level, seed=5, chunk=32, quantize=False)))
        assert (raw - want).abs().max() <= 0.5 / 255 + 1e-6
    raw = torch.cat(list(shifted_batches(test_set, "gaussian_noise", 3, seed=5, chunk=32, quantize=False)))
    assert not torch.equal(raw, (raw * 255).round() / 255)  # float path really skips the rounding


def test_cache_in_memory_and_on_disk_gives_the_streamed_results(model, test_set, tmp_path):
    suite = "blur_w2"
    streamed = evaluate_shift(model, test_set, suite, seed=1, batch_size=32, channels_last=False)
    cache = ShiftCache(tmp_path / "cache")
    first = evaluate_shift(model, test_set, suite, seed=1, batch_size=32, channels_last=False, cache=cache)
    second = evaluate_shift(model, test_set, suite, seed=1, batch_size=32, channels_last=False, cache=cache)
    assert (cache.misses, cache.hits) == (4, 4)
    files = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 4
    disk = ShiftCache(tmp_path / "cache", memory=False)
    third = evaluate_shift(model, test_set, suite, seed=1, batch_size=32, channels_last=False, cache=disk)
    assert (disk.misses, disk.hits) == (0, 4)
    for t in (first, second, third):
        assert {r.key: r.value for r in t} == {r.key: r.value for r in streamed}
    # a damaged file is rebuilt, a different seed or subset is a different entry
    files[0].write_bytes(b"not a safetensors file")
    assert torch.equal(
        disk.get(test_set, *shift_suite(suite)[0], 1).x, corrupt_dataset(test_set, *shift_suite(suite)[0], 1).x
    )
    other = test_set.subset(slice(0, 40))
    before = disk.misses
    disk.get(other, "gaussian_blur_sigma", 0.3, 1)
    disk.get(test_set, "gaussian_blur_sigma", 0.3, 2)
    assert disk.misses == before + 2


def test_channels_last_copy_agrees_and_leaves_the_model_alone(model, test_set):
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = evaluate_shift(model, test_set, "blur_w2", seed=0, batch_size=32, channels_last=True)
    assert model.training
    model.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]) and v.is_contiguous()
    slow = evaluate_shift(model, test_set, "blur_w2", seed=0, batch_size=32, channels_last=False)
    for r in slow:
        if r.metric in ("acc", "mmc", "nll", "brier"):  # binned errors could jump a bin on a 1e-7 change
            assert fast.value(
                kind=r.kind, shift=r.shift, severity=r.severity, detector=r.detector, metric=r.metric
            ) == pytest.approx(r.value, abs=1e-5)


def test_corruption_error_and_mce_against_a_baseline(table):
    errors = shift_errors(table)
    assert len(errors) == len(SUITE)
    ces = {}
    for c in COVERED:
        levels = [s for (cc, s) in errors if cc == c]
        want = sum(errors[(c, s)] for s in levels) / sum(BASELINE[(c, str(float(s)))] for s in levels)
        ces[c] = table.value(kind="shift", shift=c, severity="", metric="ce")
        assert ces[c] == pytest.approx(want, rel=1e-12)
    assert len(table.filter(metric="ce")) == len(COVERED)  # corruptions the baseline does not cover get no CE
    assert table.value(kind="shift", shift="", metric="mce_rel") == pytest.approx(
        statistics.fmean(ces.values()), rel=1e-12
    )
    # levels given as floats work too; a partial baseline for one corruption is refused
    ce, mce = corruption_errors({("fog", 1.0): 0.2, ("fog", 3.0): 0.4}, {("fog", "1"): 0.1, ("fog", 3): 0.1})
    assert ce == {"fog": pytest.approx(3.0)} and mce == pytest.approx(3.0)
    with pytest.raises(InputError, match="some but not all levels"):
        corruption_errors({("fog", 1): 0.2, ("fog", 3): 0.4}, {("fog", 1): 0.1})
    with pytest.raises(InputError, match="none of the suite"):
        corruption_errors({("fog", 1): 0.2}, {("snow", 1): 0.1})


def test_bad_arguments_are_one_line_errors(model, test_set):
    with pytest.raises(ConfigError, match="unknown shift suite"):
        evaluate_shift(model, test_set, "nope", seed=0)
    with pytest.raises(InputError, match="quantize"):
        evaluate_shift(model, test_set, "blur_w2", seed=0, cache=ShiftCache(), quantize=False)
    with pytest.raises(InputError, match="temperature"):
        evaluate_shift(model, test_set, "blur_w2", seed=0, temperature=0.0)


def test_cell_metrics_are_the_library_calibration_metrics():
    from rulab.metrics.calibration import calibration_metrics

    g = torch.Generator().manual_seed(4)
    z = torch.randn(350, 10, generator=g) * 3
    y = torch.randint(0, 10, (350,), generator=g)
    ref = calibration_metrics(z, y)
    got = cell_metrics(z, y)
    assert set(got) == set(CELL_METRICS)
    for m in CELL_METRICS:
        assert got[m] == pytest.approx(ref[m], abs=1e-12)


def test_custom_suite_names_must_be_registered(model, test_set):
    with pytest.raises(Exception, match="no_such_corruption"):
        evaluate_shift(model, test_set, [("no_such_corruption", 1.0)], seed=0)
