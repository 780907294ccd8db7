"""ODIN with the per-OOD-set ε of its README table (rulab.presets.odin)."""

from __future__ import annotations

import pytest
import torch

from rulab.data.tensors import TensorDataset
from rulab.detectors.odin import odin_score
from rulab.errors import ConfigError
from rulab.eval.ood_eval import protocol_metrics
from rulab.eval.protocols import Odin
from rulab.models import create_model
from rulab.presets.odin import odin_table_rows


def _ds(x: torch.Tensor, name: str) -> TensorDataset:
    return TensorDataset(x, torch.full((len(x),), -1, dtype=torch.int64), [], name, "test", {})


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("fastcnn", num_classes=3, in_channels=1, input_size=8, width=4).eval()
    g = torch.Generator().manual_seed(1)
    test = TensorDataset(
        torch.randint(0, 256, (12, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.zeros(12, dtype=torch.int64),
        ["a", "b", "c"],
        "id",
        "t",
        {},
    )
    sets = {
        "uniform": _ds(torch.randint(0, 256, (10, 1, 8, 8), generator=g, dtype=torch.uint8), "uniform"),
        "isun": _ds(torch.full((9, 1, 8, 8), 128, dtype=torch.uint8), "isun"),
    }
    return model, test, sets


def test_each_set_is_scored_with_its_own_epsilon(setup):
    model, test, sets = setup
    eps = {"uniform": 0.05, "isun": 0.0}  # T = 2 and a large ε keep the effect above float32 round-off
    protocol = Odin(skip=2)
    table = odin_table_rows(model, test, sets, eps, protocol, seed=0, temperature=2.0, batch_size=4)
    for name, e in eps.items():
        s_id, s_ood = odin_score(model, test.x, 2.0, e), odin_score(model, sets[name].x, 2.0, e)
        expected, extra = protocol_metrics(s_id, s_ood, protocol, 0)
        got = {r.metric: r for r in table if r.dataset == name}
        assert {m: r.value for m, r in got.items()} == pytest.approx(expected)
        assert all(
            r.detector == "odin_paper" and r.extra["hparams"]["eps"] == e and r.extra["hparams"]["t"] == 2.0
            for r in got.values()
        )
        assert got["auroc"].n == min(len(test), len(sets[name])) - 2  # odin protocol: skip, then equal numbers
    # ε = 0 is the temperature-scaled MSP of the logits, so the two sets really used different ε
    with torch.no_grad():
        msp_t = (model(test.x.float() / 255) / 2.0).softmax(1).amax(1)
    assert torch.allclose(odin_score(model, test.x, 2.0, 0.0), msp_t, atol=1e-6)
    assert (odin_score(model, test.x, 2.0, 0.05) > msp_t + 1e-4).all()  # the step raises the confidence


def test_missing_epsilon_is_an_error(setup):
    model, test, sets = setup
    with pytest.raises(ConfigError, match="no ODIN ε"):
        odin_table_rows(model, test, sets, {"uniform": 0.001}, Odin(skip=2))
