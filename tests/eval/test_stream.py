"""Streaming OOD evaluation equals the in-memory path exactly (scores and metrics), and holds one chunk at a time."""

from __future__ import annotations

import pytest
import torch

from rulab.data.ood.noise_sets import NoiseStream
from rulab.errors import InputError
from rulab.eval.extract import extract
from rulab.eval.stream import chunks_of, score_stream, stream_ood_metrics
from rulab.metrics.ood import ood_metrics
from rulab.models import create_model
from rulab.registry import DATASETS, DETECTORS, OOD_SETS

SHAPE = (1, 28, 28)
CHUNK = 64
LOGIT = ("msp", "energy", "maxlogit")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = create_model("fastcnn", width=4)
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(3):
            net(torch.rand(64, *SHAPE))
    return net.eval()


@pytest.fixture(scope="module")
def id_set():
    return DATASETS.create("fashion_mnist", split="test").subset(slice(0, 150))


def _detectors(model, id_set):
    ex = extract(model, id_set, batch_size=CHUNK, features=True)
    dets = {name: DETECTORS.create(name) for name in ("msp", "energy", "maxlogit", "mahalanobis", "knn", "vim")}
    for det in dets.values():
        det.fit(ex, val_id=ex)
    return dets


def test_noise_stream_scores_equal_the_materialised_set(model, id_set):
    torch.set_num_threads(1)
    dets = _detectors(model, id_set)
    n = 200
    ds = OOD_SETS.create("gaussian", shape=SHAPE, n=n, seed=3)
    ex = extract(model, ds, batch_size=CHUNK, features=True)
    stream = NoiseStream("gaussian", SHAPE, n=n, seed=3, chunk=CHUNK)
    got = score_stream(model, stream, dets, quantize=True)
    assert got.n == n and got.chunks == -(-n // CHUNK)
    assert got.peak_chunk_bytes == CHUNK * 28 * 28 * 4  # one float chunk, never the whole set
    for name, det in dets.items():
        ref = det.score(ex).float()
        if name in LOGIT:  # row-wise arithmetic: bit-identical
            assert torch.equal(got.scores[name], ref), name
        else:  # matrix products over a chunk instead of the whole set: the same up to float rounding
            torch.testing.assert_close(got.scores[name], ref, rtol=1e-5, atol=1e-5)
    # without rounding to uint8 levels the stream is the float images: close to, but not, the stored set
    raw = score_stream(model, NoiseStream("gaussian", SHAPE, n=n, seed=3, chunk=CHUNK), {"msp": dets["msp"]})
    assert not torch.equal(raw.scores["msp"], got.scores["msp"])
    assert torch.allclose(raw.scores["msp"], got.scores["msp"], atol=1e-2)


def test_streamed_metrics_equal_in_memory_metrics(model, id_set):
    torch.set_num_threads(1)
    dets = _detectors(model, id_set)
    ood = OOD_SETS.create("uniform", shape=SHAPE, n=130, seed=5)
    metrics, s_id, s_ood = stream_ood_metrics(model, chunks_of(id_set, CHUNK), chunks_of(ood, CHUNK), dets)
    ex_id = extract(model, id_set, batch_size=CHUNK, features=True)
    ex_ood = extract(model, ood, batch_size=CHUNK, features=True)
    for name, det in dets.items():
        ref = ood_metrics(det.score(ex_id), det.score(ex_ood))
        if name in LOGIT:
            assert metrics[name] == ref, name
        else:
            assert metrics[name] == pytest.approx(ref, abs=1e-3), name
    assert s_id.n == 150 and s_ood.n == 130
    # a different chunking of the same images gives the same metrics (rows are scored independently)
    again, _, _ = stream_ood_metrics(model, chunks_of(id_set, 50), chunks_of(ood, 100), {"msp": dets["msp"]})
    assert again["msp"] == pytest.approx(metrics["msp"], abs=1e-6)


def test_odin_streams_with_the_model(model, id_set):
    torch.set_num_threads(1)
    odin = DETECTORS.create("odin", t=10.0, eps=0.002)
    got = score_stream(model, chunks_of(id_set, CHUNK), {"odin": odin})
    ex = extract(model, id_set, batch_size=CHUNK, features=False)
    ref = torch.cat([odin.score(ex.subset(slice(i, i + CHUNK)), model) for i in range(0, len(id_set), CHUNK)])
    assert torch.equal(got.scores["odin"], ref.float())


def test_bad_input(model):
    with pytest.raises(InputError, match="at least one detector"):
        score_stream(model, [torch.zeros(2, *SHAPE)], {})
    with pytest.raises(InputError, match=r"\[b, C, H, W\]"):
        score_stream(model, [torch.zeros(2, 28, 28)], {"msp": DETECTORS.create("msp")})


def test_resident_memory_stays_flat_over_many_chunks():
    """Without giving freed heap pages back, glibc's heap grows by several MB per chunk of 1,000 3×32×32 images (the
    stream's module docstring); with ``trim`` (the default) the resident set after 5 chunks is the one after 30."""
    from rulab.eval.stream import release_free_heap

    if not release_free_heap():
        pytest.skip("no glibc malloc_trim on this system")

    def rss_mb() -> float:
        with open("/proc/self/status", encoding="utf-8") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))

    torch.manual_seed(0)
    from rulab.models.fuse import inference_copy

    net = inference_copy(create_model("fastcnn", in_channels=3, input_size=32))  # channels-last, as evaluate runs it
    seen: list[float] = []

    def tapped():
        for x in NoiseStream("gaussian", (3, 32, 32), n=30_000, seed=7, chunk=1000):
            seen.append(rss_mb())
            yield x

    dets = {n: DETECTORS.create(n) for n in ("msp", "maxlogit", "energy", "entropy", "gen")}
    out = score_stream(net, tapped(), dets, quantize=True)
    assert out.n == 30_000 and out.chunks == 30
    assert max(seen[5:]) - seen[5] < 40, f"resident set grew from {seen[5]:.0f} to {max(seen[5:]):.0f} MB"
