"""Metrics: classification (ROC/AUC with bootstrap CIs, operating points) and segmentation."""

from medsight.metrics.classification import (
    binary_report,
    bootstrap_auc_ci,
    multiclass_report,
    multilabel_report,
    wilson_ci,
)
from medsight.metrics.thresholds import choose_threshold, parse_rule

__all__ = ["binary_report", "multiclass_report", "multilabel_report", "bootstrap_auc_ci", "wilson_ci",
           "choose_threshold", "parse_rule"]
