import math

import pytest
import torch

from rulab.errors import InputError
from rulab.results.table import ResultTable


def table():
    t = ResultTable()
    t.add("id", "acc", 0.9, dataset="fashion_mnist", n=100)
    t.add("ood", "auroc", 0.95, dataset="uniform", detector="msp")
    t.add("ood", "auroc", 0.97, dataset="uniform", detector="energy")
    t.add("shift", "acc", 0.8, dataset="fashion_mnist", shift="brightness_factor", severity=0.8)
    t.add("shift", "acc", 0.7, dataset="fashion_mnist", shift="gaussian_noise", severity=3.0)
    return t


def test_add_replaces_same_key_and_filters():
    t = table()
    t.add("id", "acc", 0.91, dataset="fashion_mnist")
    assert len(t) == 5 and t.value(kind="id", metric="acc") == 0.91
    assert len(t.filter(kind="ood")) == 2
    assert t.value(kind="ood", detector="energy", metric="auroc") == 0.97
    assert t.value(shift="gaussian_noise", severity=3) == 0.7  # severity 3.0 is stored as "3"
    assert t.filter(severity="0.8").value(metric="acc") == 0.8
    with pytest.raises(KeyError):
        t.value(kind="ood")


def test_bad_kind_and_csv_roundtrip(tmp_path):
    t = table()
    with pytest.raises(InputError):
        t.add("odd", "acc", 1.0)
    text = t.to_csv(tmp_path / "r.csv")
    lines = text.strip().splitlines()
    assert lines[0] == "kind,dataset,shift,severity,detector,metric,value,n" and len(lines) == 6
    assert (tmp_path / "r.csv").read_text() == text
    t.add("id", "nll", math.nan, dataset="x")
    assert "nan" in t.summary()


def test_pandas_view_and_arrays(tmp_path):
    pd = pytest.importorskip("pandas")
    t = table()
    df = t.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 5 and set(df["kind"]) == {"id", "ood", "shift"}
    t.arrays["scores/msp/uniform"] = torch.arange(4.0)
    t.save_arrays(tmp_path / "a.safetensors")
    back = ResultTable.load_arrays(tmp_path / "a.safetensors")
    assert torch.equal(back["scores/msp/uniform"], torch.arange(4.0))
    merged = ResultTable().extend(t)
    assert len(merged) == 5 and "scores/msp/uniform" in merged.arrays
