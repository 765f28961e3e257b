"""The tables a binary evaluation adds to its report: PR curve and average precision, the
threshold table, and subgroups from the cases' metadata columns."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from medsight.metrics import binary_report
from medsight.metrics.classification import subgroup_report, subgroups, threshold_table

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
S = np.array([0.1, 0.3, 0.6, 0.8, 0.2, 0.7, 0.9, 0.95])


def test_binary_report_has_the_pr_curve_and_average_precision():
    ev = binary_report(Y, S, 0.5, n_boot=50)
    assert ev["average_precision"] == round(average_precision_score(Y, S), 4) and ev["prevalence"] == 0.5
    assert ev["pr"]["recall"][0] == 1.0 and ev["pr"]["recall"][-1] == 0.0 and len(ev["pr"]["precision"]) == 9
    one_class = binary_report(np.zeros(5, int), np.linspace(0, 1, 5), 0.5, n_boot=10)
    assert "pr" not in one_class and "average_precision" not in one_class  # undefined without positives


def test_threshold_table_counts_by_hand_and_marks_the_operating_point():
    rows = threshold_table(Y, S, 0.65, grid=(0.5, 0.9))
    assert [r["threshold"] for r in rows] == [0.5, 0.65, 0.9] and [r["operating"] for r in rows] == [False, True, False]
    at = {r["threshold"]: r for r in rows}
    # at 0.65: called positive 0.7, 0.9, 0.95 (TP 3) and 0.8 (FP 1); missed 0.2 (FN 1); TN 0.1, 0.3, 0.6
    assert at[0.65] == {"threshold": 0.65, "operating": True, "sensitivity": 0.75, "specificity": 0.75, "ppv": 0.75,
                        "npv": 0.75, "called_positive": 4}
    assert at[0.9]["sensitivity"] == 0.5 and at[0.9]["specificity"] == 1.0 and at[0.9]["called_positive"] == 2
    nobody = threshold_table(Y, S, None, grid=(0.99,))
    assert nobody == [{"threshold": 0.99, "operating": False, "sensitivity": 0.0, "specificity": 1.0, "ppv": None,
                       "npv": 0.5, "called_positive": 0}]  # PPV undefined when nobody is called positive


def test_subgroup_columns_are_categorical_or_an_age_never_an_identifier():
    covariates = [{"sex": "F", "site": 1, "age": 67, "accession": f"A{i}", "scanner": "X"} for i in range(20)]
    covariates[3]["sex"] = "M"
    covariates[4]["age"] = "071Y"  # a DICOM AgeString
    del covariates[5]["sex"]
    used, skipped = subgroups(covariates)
    assert set(used) == {"sex", "age (decade)"}
    assert used["sex"][3] == "M" and used["sex"][5] is None and used["age (decade)"][:5] == ["60-69"] * 4 + ["70-79"]
    assert skipped == {"accession": "20 distinct values (continuous or an identifier)", "scanner": "one value",
                       "site": "one value"}


def test_subgroup_rows_are_the_binary_metrics_of_each_group():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    site = ["a" if i % 4 else "b" for i in range(200)]
    site[7] = None
    out = subgroup_report(y, s, 0.5, {"site": site}, n_boot=100)
    rows = {r["group"]: r for r in out["site"]}
    assert list(rows) == ["a", "b", "(missing)"] and sum(r["n"] for r in rows.values()) == 200
    m = np.array([g == "b" for g in site])
    whole = binary_report(y[m], s[m], 0.5, n_boot=100)
    b = rows["b"]
    assert b["auc"] == round(roc_auc_score(y[m], s[m]), 4) and b["sensitivity"] == whole["sensitivity"]
    assert b["specificity"] == whole["specificity"] and b["sensitivity_ci95"] == whole["sensitivity_ci95"]
    assert b["auc_ci95"][0] < b["auc"] < b["auc_ci95"][1]
    assert rows["(missing)"]["n"] == 1 and rows["(missing)"]["auc"] is None  # one case: no AUC, said as None
