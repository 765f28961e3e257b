"""Nothing lost, nothing doubled: 500 instances from four concurrent storescu processes are
processed exactly once (database rows and result objects in Orthanc), also when the service
is SIGKILLed mid-run and restarted; what Orthanc received meanwhile is caught up.

``MEDSIGHT_E2E_LOSS_N`` sets the number of instances (default 500, the documented run); CI runs
200 (`.ci/run`) to stay inside its time budget, through the same code and settings."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from e2e.helpers import STORESCU, orthanc_count, wait_for
from support.xray_dicom import pneumonia_test_images, write_xray

pytestmark = pytest.mark.db  # the queue, its leases and SKIP LOCKED claims under concurrency and a SIGKILL

N = int(os.environ.get("MEDSIGHT_E2E_LOSS_N", "500"))
SENDERS = 4


def _make(tmp: Path, npz: Path, patient_id: str) -> list[Path]:
    images, _ = pneumonia_test_images(npz)
    dirs = [tmp / patient_id / f"sender{k}" for k in range(SENDERS)]
    for i in range(N):
        write_xray(dirs[i % SENDERS] / f"{i:04d}.dcm", images[i], patient_id=patient_id, patient_name="LOSS^TEST",
                   index=i)
    return dirs


def _send(port: int, aec: str, dirs: list[Path]) -> list[subprocess.Popen]:
    return [subprocess.Popen([STORESCU, "-aet", "STORESCU", "-aec", aec, "+sd", "127.0.0.1", str(port), str(d)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for d in dirs]


def _counts(stack, patient_id: str) -> dict[str, int]:
    from medsight.service.db import Instance, Job, Result, ResultOutput

    db = stack.database()
    try:
        with db.session() as s:
            results = s.scalar(select(func.count(Result.id)).where(Result.patient_id == patient_id))
            distinct = s.scalar(select(func.count(func.distinct(Result.sop_uid)))
                                .where(Result.patient_id == patient_id))
            ids = select(Result.id).where(Result.patient_id == patient_id).scalar_subquery()
            sent = s.scalar(select(func.count(ResultOutput.id)).where(ResultOutput.result_id.in_(ids),
                                                                      ResultOutput.status == "sent"))
            received = s.scalar(select(func.count(Instance.id)).where(Instance.patient_id == patient_id))
            failed = s.scalar(select(func.count(Job.id)).where(Job.status == "failed"))
        return {"results": results, "distinct": distinct, "sent": sent, "received": received, "failed_jobs": failed}
    finally:
        db.dispose()


def _wait_all(stack, patient_id: str, timeout: float) -> dict[str, int]:
    return wait_for(lambda: (c := _counts(stack, patient_id))["results"] >= N and c["sent"] >= 2 * N and c,
                    timeout=timeout, interval=1.0, what=f"{N} results and {2 * N} objects sent for {patient_id}")


@pytest.fixture(scope="module")
def npz(shared_data_session):
    return shared_data_session("pneumoniamnist/pneumoniamnist.npz")


def test_500_instances_from_4_concurrent_senders_processed_exactly_once(stack, tmp_path, npz):
    dirs = _make(tmp_path, npz, "LOSS-A")
    t0 = time.monotonic()
    procs = _send(stack.service.dicom_port, "MEDSIGHT", dirs)
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:]
    c = _wait_all(stack, "LOSS-A", timeout=300)
    elapsed = time.monotonic() - t0
    time.sleep(2)  # anything extra would show up now
    c = _counts(stack, "LOSS-A")
    assert c == {"results": N, "distinct": N, "sent": 2 * N, "received": N, "failed_jobs": 0}, c
    assert orthanc_count(stack.orthanc, "LOSS-A", "SR") == N
    assert orthanc_count(stack.orthanc, "LOSS-A", "OT") == N
    print(f"\n{N} instances, {SENDERS} senders: all results stored and sent in {elapsed:.1f} s "
          f"({N / elapsed:.1f} instances/s)")


def test_sigkill_mid_run_restart_loses_and_doubles_nothing(stack, tmp_path, npz):
    dirs = _make(tmp_path, npz, "LOSS-B")
    procs = _send(stack.orthanc.dicom_port, "ORTHANC", dirs)  # Orthanc auto-routes to MedSight
    wait_for(lambda: _counts(stack, "LOSS-B")["results"] >= 60, timeout=120, what="the run to be under way")
    stack.service.kill()  # SIGKILL the service and its workers mid-run
    killed_at = _counts(stack, "LOSS-B")
    time.sleep(3)  # Orthanc keeps receiving; its routing to MedSight fails meanwhile
    stack.service.start()
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:]
    _wait_all(stack, "LOSS-B", timeout=400)
    time.sleep(3)
    c = _counts(stack, "LOSS-B")
    assert killed_at["results"] < N
    assert c == {"results": N, "distinct": N, "sent": 2 * N, "received": N, "failed_jobs": 0}, c
    assert orthanc_count(stack.orthanc, "LOSS-B", "SR") == N
    assert orthanc_count(stack.orthanc, "LOSS-B", "OT") == N
    caught = [a for a in stack.service.get("/api/v1/audit?action=received&actor=catchup:orthanc&limit=10000").json()]
    assert caught, "expected some instances to arrive through catch-up after the restart"
    print(f"\nkilled with {killed_at['results']} results stored; after restart {c}; {len(caught)} caught up")
