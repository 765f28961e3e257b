"""Helpers for the end-to-end tests: sending with dcmtk, waiting, asking Orthanc and the DB."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: dcmtk's storescu (the venv also has pynetdicom's app of the same name, first on PATH)
STORESCU = "/usr/bin/storescu" if Path("/usr/bin/storescu").exists() else "storescu"


def storescu(port: int, paths: list[Path], *, aec: str = "MEDSIGHT", aet: str = "STORESCU",
             scan_dirs: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run dcmtk's storescu; returns the finished process (output in .stdout)."""
    cmd = [STORESCU, "-v", "-aet", aet, "-aec", aec]
    if scan_dirs:
        cmd += ["+sd", "+r"]
    cmd += ["127.0.0.1", str(port), *[str(p) for p in paths]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def wait_for(fn: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


def orthanc_study_modalities(orthanc: Any, study_uid: str) -> dict[str, int]:
    """Instances per modality that Orthanc holds in a study."""
    found = orthanc.post("/tools/lookup", study_uid.encode(), "text/plain")
    studies = [f for f in found if f["Type"] == "Study"]
    if not studies:
        return {}
    out: dict[str, int] = {}
    for series in orthanc.get(f"/studies/{studies[0]['ID']}/series"):
        mod = series["MainDicomTags"].get("Modality", "?")
        out[mod] = out.get(mod, 0) + len(series["Instances"])
    return out


def orthanc_count(orthanc: Any, patient_id: str, modality: str) -> int:
    """Instances of ``modality`` Orthanc holds for a patient."""
    import json

    body = json.dumps({"Level": "Instance", "Query": {"PatientID": patient_id, "Modality": modality}}).encode()
    return len(orthanc.post("/tools/find", body, "application/json"))


def db(url: str) -> Any:
    from medsight.service.db import Database

    return Database(url)


def orthanc_instances(orthanc: Any, study_uid: str, modality: str) -> list[Any]:
    """The instances of ``modality`` Orthanc holds in a study, as pydicom datasets."""
    import io

    import pydicom

    found = orthanc.post("/tools/lookup", study_uid.encode(), "text/plain")
    studies = [f for f in found if f["Type"] == "Study"]
    out = []
    for series in orthanc.get(f"/studies/{studies[0]['ID']}/series") if studies else []:
        if series["MainDicomTags"].get("Modality") == modality:
            for oid in series["Instances"]:
                out.append(pydicom.dcmread(io.BytesIO(orthanc.file(oid))))
    return out


def sr_measurements(sr: Any) -> dict[str, tuple[float, str]]:
    """Numeric measurements of a TID 1500 SR: concept name → (value, UCUM unit)."""
    out: dict[str, tuple[float, str]] = {}

    def walk(items: Any) -> None:
        for item in items:
            if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
                mv = item.MeasuredValueSequence[0]
                out[item.ConceptNameCodeSequence[0].CodeMeaning] = (float(mv.NumericValue),
                                                                    mv.MeasurementUnitsCodeSequence[0].CodeValue)
            walk(getattr(item, "ContentSequence", []))

    walk(sr.ContentSequence)
    return out


def check_seg_and_sr(stack: Any, series: dict[str, Any], *, destination: str, timeout: float = 120) -> dict:
    """The hippocampus MR series was segmented, and its SEG and SR reached Orthanc (through
    ``destination``) in the source study, referencing the source instances; returns the result.

    Checks: one ok result of hippocampus-mri for the series, sent as exactly one SEG and one SR;
    Orthanc holds them in the source's study; the SEG's frames reference source instances
    (and only those) and its segments are Anterior and Posterior; the SR holds the volumes in
    mL as stored; the stored volumes are within 15 % of the reference label's.
    """
    study = series["study"]

    def sent() -> Any:
        rs = stack.service.get(f"/api/v1/results?study_uid={study}", role="reader").json()
        ok = [r for r in rs if r["series_uid"] == series["series"]]
        return ok if ok and {o["kind"] for o in ok[0]["sent"]} >= {"SEG", "SR"} else None

    (res,) = wait_for(sent, timeout=timeout, what="the MR series' result stored and its SEG and SR sent")
    assert res["status"] == "ok" and res["model"] == "hippocampus-mri" and res["sop_uid"] is None
    assert sorted((o["kind"], o["destination"]) for o in res["sent"]) == [("SEG", destination), ("SR", destination)]
    assert sorted(res["outputs"]["mask"]["sop_uids"]) == sorted(series["sop_uids"])
    n = len(series["sop_uids"])
    expected = {"MR": n, "SEG": 1, "SR": 1}
    wait_for(lambda: orthanc_study_modalities(stack.orthanc, study) == expected, timeout=30,
             what=f"{expected} in the study in Orthanc")
    (seg,) = orthanc_instances(stack.orthanc, study, "SEG")
    (sr,) = orthanc_instances(stack.orthanc, study, "SR")
    sent_uids = {o["kind"]: o["sop_uid"] for o in res["sent"]}
    assert seg.SOPInstanceUID == sent_uids["SEG"] and sr.SOPInstanceUID == sent_uids["SR"]
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == study
    assert seg.FrameOfReferenceUID == series["frame"]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Anterior", "Posterior"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series["series"]
    frame_refs = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in seg.PerFrameFunctionalGroupsSequence]
    assert len(frame_refs) == int(seg.NumberOfFrames) > 0
    assert set(frame_refs) <= set(series["sop_uids"])
    numbers = sr_measurements(sr)
    volumes = res["outputs"]["volumes_ml"]
    for name, ref in series["reference_ml"].items():
        value, unit = numbers[f"Volume of {name}"]
        assert unit == "mL" and abs(value - volumes[name]) < 1e-3
        assert abs(volumes[name] - ref) <= 0.15 * ref, f"{name}: {volumes[name]:.3f} mL vs reference {ref:.3f} mL"
    return res


def nodule_model() -> str | None:
    """The ``lung-nodule-ct`` model's folder (shipped in the zoo, or on ``MEDSIGHT_MODEL_PATH``),
    or None when it is not installed."""
    from medsight.errors import MedSightError
    from medsight.models.saved import resolve_model_path

    try:
        return str(resolve_model_path("lung-nodule-ct"))
    except MedSightError:
        return None
