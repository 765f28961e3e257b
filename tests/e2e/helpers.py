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
