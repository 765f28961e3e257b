"""Segmentation in the service: a complete MR series routed to the shipped hippocampus model
becomes a result whose mask is a NIfTI file under the storage path (not in the database),
whose volumes in mL are findings that alert rules follow over time, and whose DICOM outputs
are an SR with the volumes and a SEG referencing the source slices, with UIDs derived from the
result's key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from tests.service.conftest import drain

from medsight.service.db import Alert, Instance, Result, Series
from support.mr_dicom import hippocampus_case, write_mr_series

# two held-out cases (configs/hippocampus-split.json "test") of different anterior volumes
SMALLER, LARGER = "hippocampus_046", "hippocampus_014"


@pytest.fixture
def seg_ctx(make_cfg):
    from medsight.service.context import build_context

    cfg = make_cfg(models={"hippocampus-mri": {"path": "hippocampus-mri", "explain": "none"}},
                   routing=[{"name": "hippocampus", "modalities": ["MR"], "body_parts": ["HEAD", "BRAIN"],
                             "series_description": "HIPPO", "models": ["hippocampus-mri"]}],
                   alerts={"rules": [{"name": "anterior-growth", "kind": "growth_percent", "value": 10,
                                      "measurement": "volume_ml_Anterior", "model": "hippocampus-mri"}]})
    c = build_context(cfg)
    yield c
    c.db.dispose()


def _send_series(ctx, tmp_path: Path, case: str, *, patient_id: str = "PID-HIPPO-1") -> dict[str, str]:
    image, _ = hippocampus_case(case)
    paths, uids = write_mr_series(image, tmp_path / case, patient_id=patient_id)
    for p in paths:
        assert ctx.ingestor.ingest(p.read_bytes(), actor="dicom:MR").status == "stored"
    time.sleep(0.3)  # the series goes quiet: complete_after_s is 0.2 s in these tests
    drain(ctx)
    return uids


def _result(ctx, series_uid: str):
    with ctx.db.read() as s:
        return s.scalar(select(Result).where(Result.series_uid == series_uid))


def test_series_result_keeps_the_mask_in_a_file_and_the_volumes_as_findings(seg_ctx, tmp_path):
    import medsight.io

    uids = _send_series(seg_ctx, tmp_path, SMALLER)
    r = _result(seg_ctx, uids["series"])
    with seg_ctx.db.read() as s:
        series = s.get(Series, uids["series"])
        sops = list(s.scalars(select(Instance.sop_uid).where(Instance.series_uid == uids["series"])))
    assert series.outcome == "processed by hippocampus-mri"
    assert r.status == "ok" and r.model == "hippocampus-mri" and r.sop_uid is None
    assert set(r.outputs["volumes_ml"]) == {"Anterior", "Posterior"}
    assert len(json.dumps(r.outputs)) < 10_000  # references and numbers, never voxels
    mask_info = r.outputs["mask"]
    assert mask_info["format"] == "nifti" and sorted(mask_info["sop_uids"]) == sorted(sops)
    mask = medsight.io.read(mask_info["path"])
    source = medsight.io.read(tmp_path / SMALLER)
    assert mask.same_geometry(source)
    voxel_ml = float(np.prod(mask.spacing)) / 1000
    for value, name in ((1, "Anterior"), (2, "Posterior")):
        assert r.outputs["volumes_ml"][name] == pytest.approx(np.count_nonzero(mask.array == value) * voxel_ml,
                                                              abs=1e-6)
        assert r.outputs["volumes_ml"][name] > 0.5  # a hippocampus is 1-3 mL
    # the API shows the mask by URL, not by its path on the server
    from fastapi.testclient import TestClient
    from tests.service.conftest import TOKENS

    from medsight.service.app import create_app

    client = TestClient(create_app(seg_ctx))
    auth = {"Authorization": f"Bearer {TOKENS['reader']}"}
    (shown,) = client.get(f"/api/v1/results?study_uid={uids['study']}", headers=auth).json()
    assert "path" not in shown["outputs"]["mask"] and shown["mask_url"] == f"/api/v1/results/{r.id}/mask.nii.gz"
    got = client.get(shown["mask_url"], headers=auth)
    assert got.status_code == 200 and got.content == Path(mask_info["path"]).read_bytes()
    assert client.get(shown["mask_url"]).status_code == 401
    # the dashboard's picture: the mask over the slice with the most labelled voxels
    import io

    from PIL import Image as PILImage

    counts = (mask.array[0] > 0).reshape(mask.shape[0], -1).sum(1)
    assert mask_info["overlay_slice"] == shown["outputs"]["mask"]["overlay_slice"] == int(counts.argmax())
    png = client.get(shown["overlay_url"], headers=auth)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    rgb = np.asarray(PILImage.open(io.BytesIO(png.content)).convert("RGB"))
    assert rgb.shape == (*mask.shape[1:], 3)
    coloured = (rgb.max(2).astype(int) - rgb.min(2)) > 20  # gray pixels have r == g == b
    assert coloured.sum() >= counts.max() * 0.9  # every labelled pixel of that slice is tinted


def test_sr_and_seg_reference_the_source_slices_with_key_derived_uids(seg_ctx, tmp_path):
    import pydicom

    from medsight.io.dicom import read_dataset
    from medsight.service.results_out import build_outputs, derived_uid, source_sop_uids

    uids = _send_series(seg_ctx, tmp_path, SMALLER)
    r = _result(seg_ctx, uids["series"])
    with seg_ctx.db.read() as s:
        paths = list(s.scalars(select(Instance.path).where(Instance.sop_uid.in_(source_sop_uids(r)))))
    sources = [read_dataset(Path(p), headers_only=True) for p in paths]
    objects = build_outputs(r, list(reversed(sources)), seg_ctx.cfg.outputs)  # the order of sources is irrelevant
    by_kind = {o.kind: o.dataset for o in objects}
    assert set(by_kind) == {"SR", "SEG"}  # no heatmap for a segmentation
    seg, sr = by_kind["SEG"], by_kind["SR"]
    assert seg.SOPInstanceUID == derived_uid(r.key, "SEG") and sr.SOPInstanceUID == derived_uid(r.key, "SR")
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == uids["study"]
    assert seg.FrameOfReferenceUID == uids["frame"]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Anterior", "Posterior"]
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert refs and refs <= set(source_sop_uids(r))
    # every SEG frame holds the pixels of the mask slice of the source it references
    import medsight.io

    mask = medsight.io.read(r.outputs["mask"]["path"]).array[0]
    slice_of = {u: k for k, u in enumerate(source_sop_uids(r))}
    frames = seg.pixel_array.reshape(-1, *mask.shape[1:])
    for f, frame in zip(seg.PerFrameFunctionalGroupsSequence, frames):
        k = slice_of[f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        number = f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        assert np.array_equal(frame.astype(bool), mask[k] == number)
    # the SR holds the volumes in mL
    values = {}
    for item in pydicom.Dataset(sr).ContentSequence:
        for sub in getattr(item, "ContentSequence", []):
            for m in getattr(sub, "ContentSequence", []):
                if m.ValueType == "NUM":
                    mv = m.MeasuredValueSequence[0]
                    values[m.ConceptNameCodeSequence[0].CodeMeaning] = (float(mv.NumericValue),
                                                                        mv.MeasurementUnitsCodeSequence[0].CodeValue)
    for name, v in r.outputs["volumes_ml"].items():
        assert values[f"Volume of {name}"] == (pytest.approx(v, abs=1e-3), "mL")
    # building again gives the same instances: a re-send is idempotent at the PACS
    again = {o.kind: o.sop_uid for o in build_outputs(r, sources, seg_ctx.cfg.outputs)}
    assert again == {"SR": sr.SOPInstanceUID, "SEG": seg.SOPInstanceUID}


def test_a_missing_source_slice_is_a_clear_error_not_a_wrong_seg(seg_ctx, tmp_path):
    from medsight.errors import WriteError
    from medsight.io.dicom import read_dataset
    from medsight.service.results_out import build_outputs, source_sop_uids

    uids = _send_series(seg_ctx, tmp_path, SMALLER)
    r = _result(seg_ctx, uids["series"])
    with seg_ctx.db.read() as s:
        paths = list(s.scalars(select(Instance.path).where(Instance.sop_uid.in_(source_sop_uids(r)))))
    sources = [read_dataset(Path(p), headers_only=True) for p in paths[1:]]
    with pytest.raises(WriteError, match="source instance"):
        build_outputs(r, sources, seg_ctx.cfg.outputs)


def test_volume_growth_between_studies_of_a_patient_raises_the_growth_alert(seg_ctx, tmp_path):
    first = _send_series(seg_ctx, tmp_path, SMALLER)
    second = _send_series(seg_ctx, tmp_path, LARGER)
    before, after = _result(seg_ctx, first["series"]), _result(seg_ctx, second["series"])
    growth = 100 * (after.outputs["volumes_ml"]["Anterior"] / before.outputs["volumes_ml"]["Anterior"] - 1)
    assert growth >= 10, "the two cases were chosen for an anterior volume difference above the rule's 10 %"
    with seg_ctx.db.read() as s:
        alerts = list(s.scalars(select(Alert)))
    assert [(a.result_id, a.rule) for a in alerts] == [(after.id, "anterior-growth")]
    assert "volume_ml_Anterior grew" in alerts[0].message


def test_derived_uids_depend_only_on_their_parts():
    from medsight.service.results_out import derived_uid

    a = derived_uid("1.2.3|hippocampus-mri|1.0.0", "SEG")
    assert a == derived_uid("1.2.3|hippocampus-mri|1.0.0", "SEG")  # the same result: the same instance
    assert a != derived_uid("1.2.3|hippocampus-mri|1.0.0", "SR")
    assert derived_uid("ab", "c") != derived_uid("a", "bc")
    assert a.startswith("2.25.") and len(a) <= 64 and all(p.isdigit() for p in a.split("."))
