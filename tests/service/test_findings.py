"""Findings: every stored result's findings land in the findings table, and the SR is built
from the stored findings. (Alert rules over findings, several nodules per study among them,
are tested with the library in tests/alerts.)"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from tests.service.conftest import drain

from medsight.service.db import Instance, Result, ResultFinding


def test_a_stored_result_keeps_its_findings_in_the_findings_table_and_its_sr_reads_them(ctx, xray):
    from medsight.io.dicom import read_dataset
    from medsight.service.results_out import build_outputs

    ds, data = xray()
    ctx.ingestor.ingest(data, actor="http:test")
    drain(ctx)
    with ctx.db.read() as s:
        r = s.scalar(select(Result))
        rows = list(s.scalars(select(ResultFinding).where(ResultFinding.result_id == r.id)
                              .order_by(ResultFinding.id)))
        src = s.scalar(select(Instance.path).where(Instance.sop_uid == r.sop_uid))
    probs = r.outputs["probabilities"]
    assert [(f.name, f.unit) for f in rows] == [*[(f"probability_{k}", "1") for k in probs], ("threshold", "1"),
                                               ("decision", "1")]
    assert [f.value for f in rows[:len(probs)]] == list(probs.values()) and rows[-1].text == r.label
    assert [f.name for f in r.findings] == [f.name for f in rows]  # loaded with the result
    (sr,) = [o.dataset for o in build_outputs(r, [read_dataset(Path(src), headers_only=True)], ctx.cfg.outputs)
             if o.kind == "SR"]
    names = {item.ConceptNameCodeSequence[0].CodeMeaning for c in sr.ContentSequence
             for sub in getattr(c, "ContentSequence", []) for item in getattr(sub, "ContentSequence", [])}
    assert {f"Probability of {k}" for k in probs} | {"Operating threshold", "Decision"} <= names
    # the same SR content as the outputs gave before the findings table existed
    from medsight.service.results_out import _findings, _legacy_findings

    def shown(fs):
        return [(f.display_name, f.value, f.unit, f.text) for f in fs]

    assert shown(_findings(r)) == shown(_legacy_findings(r))


def test_a_result_stored_before_the_findings_table_keeps_its_measurements_and_sr_findings():
    from medsight.service.result_store import stored_measurements
    from medsight.service.results_out import _findings

    old = Result(outputs={"volumes_ml": {"Anterior": 2.0}, "findings": {"nodule_diameter_mm": 9.0}}, label=None,
                 threshold=None)
    assert stored_measurements(old) == {"volume_ml_Anterior": 2.0, "nodule_diameter_mm": 9.0}
    assert [(f.display_name, f.value, f.unit) for f in _findings(old)] == [("Volume of Anterior", 2.0, "mL"),
                                                                          ("nodule diameter mm", 9.0, "mm")]


def test_a_stored_detection_result_without_findings_rows_reads_its_nodule_list_as_no_legacy_findings():
    from medsight.service.result_store import stored_measurements
    from medsight.service.results_out import _findings

    listed = Result(outputs={"findings": [{"lesion_id": "1", "diameter_mm": 9.0}]}, label=None, threshold=None)
    assert stored_measurements(listed) == {} and _findings(listed) == []  # a list is not the old name → value map
