"""``import rulab`` stays cheap (no torch) and its lazy names resolve."""

from __future__ import annotations

import subprocess
import sys

import rulab


def test_import_rulab_does_not_import_torch() -> None:
    code = "import sys, rulab; assert rulab.__version__; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_lazy_names() -> None:
    from rulab.api import convert
    from rulab.eval.user import evaluate_model
    from rulab.results.table import ResultTable

    assert rulab.evaluate is evaluate_model and rulab.api.evaluate is evaluate_model
    assert rulab.convert is convert and rulab.ResultTable is ResultTable
    assert rulab.metrics.auroc([2.0, 3.0], [1.0]) == 1.0
    assert callable(rulab.detectors.msp_score) and rulab.tracking.TRACKERS.list() == ["mlflow", "tensorboard"]
    assert {"evaluate", "metrics", "detectors"} <= set(dir(rulab))
    try:
        rulab.nope  # noqa: B018
    except AttributeError as err:
        assert "no attribute 'nope'" in str(err)
    else:
        raise AssertionError("rulab.nope should not exist")
