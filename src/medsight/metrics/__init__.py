"""Metrics: classification (ROC/AUC with bootstrap CIs, operating points), segmentation, and
detection (LUNA16 FROC with its CSV files, Lung-RADS size categories)."""

from medsight.metrics.classification import (
    binary_report,
    bootstrap_auc_ci,
    multiclass_report,
    multilabel_report,
    wilson_ci,
)
from medsight.metrics.froc import FP_RATES, FROCResult, froc
from medsight.metrics.luna16_csv import (
    Finding,
    Nodule,
    read_annotations,
    read_excluded,
    read_findings,
    read_seriesuids,
    write_findings,
)
from medsight.metrics.lungrads import LUNG_RADS_V2022, LungRadsTable, category_at_least, lung_rads_category
from medsight.metrics.thresholds import choose_threshold, parse_rule

__all__ = ["binary_report", "multiclass_report", "multilabel_report", "bootstrap_auc_ci", "wilson_ci",
           "choose_threshold", "parse_rule",
           "froc", "FROCResult", "FP_RATES", "Nodule", "Finding", "read_annotations", "read_excluded",
           "read_findings", "read_seriesuids", "write_findings",
           "lung_rads_category", "LungRadsTable", "LUNG_RADS_V2022", "category_at_least"]
