"""Pure metric functions on tensors: OOD detection (:mod:`.ood`, and the papers' own rules in :mod:`.parity`),
calibration (:mod:`.calibration`) and corruption robustness (:mod:`.robustness`). No plotting and no scikit-learn
imports (conventions 2-4 in docs/conventions.md).

Scores are confidences (higher = more in-distribution); results are fractions.
"""

from rulab.metrics.calibration import (
    ReliabilityBins,
    accuracy,
    brier,
    calibration_error,
    calibration_metrics,
    mmc,
    nll,
    ood_calibration,
    reliability_bins,
    soft_f1,
)
from rulab.metrics.ood import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr95_id,
    fpr95_ood,
    fpr_at_tpr,
    ood_metrics,
    roc_curve,
)
from rulab.metrics.parity import hein_fpr95, hendrycks_fpr_and_fdr_at_recall, hendrycks_measures, odin_grid_metrics
from rulab.metrics.robustness import (
    corruption_error,
    mean_corruption_error,
    mean_over_severities,
    mean_relative_ce,
    relative_ce,
)

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "brier",
    "calibration_error",
    "calibration_metrics",
    "corruption_error",
    "detection_error",
    "fpr95_id",
    "fpr95_ood",
    "fpr_at_tpr",
    "hein_fpr95",
    "hendrycks_fpr_and_fdr_at_recall",
    "hendrycks_measures",
    "mean_corruption_error",
    "mean_over_severities",
    "mean_relative_ce",
    "mmc",
    "nll",
    "odin_grid_metrics",
    "ood_calibration",
    "ood_metrics",
    "reliability_bins",
    "relative_ce",
    "roc_curve",
    "soft_f1",
]
