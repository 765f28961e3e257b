"""The DICOM receiver: C-ECHO, C-STORE stored durably before success, duplicates, and every
refusal with its DICOM status, while the receiver keeps serving."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from medsight.service.db import AuditEvent, Instance, Job
from medsight.service.scp import DicomReceiver


@pytest.fixture
def receiver(ctx):
    r = DicomReceiver(ctx.cfg.dicom, ctx.ingestor).start()
    yield r
    r.stop()


def _assoc(receiver, aet="GOODSCU"):
    from pynetdicom import AE, StoragePresentationContexts, VerificationPresentationContexts

    ae = AE(ae_title=aet)
    ae.requested_contexts = VerificationPresentationContexts + StoragePresentationContexts[:120]
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    return ae.associate("127.0.0.1", receiver.port, ae_title="MEDSIGHT")


def test_echo_store_and_duplicate(ctx, receiver, xray):
    ds, _ = xray()
    a = _assoc(receiver)
    assert a.is_established
    assert a.send_c_echo().Status == 0
    assert a.send_c_store(ds).Status == 0
    assert a.send_c_store(ds).Status == 0  # a second copy is acknowledged, not processed twice
    a.release()
    with ctx.db.read() as s:
        inst = s.scalar(select(Instance))
        assert inst.sop_uid == ds.SOPInstanceUID and inst.source == "dicom:GOODSCU"
        assert s.scalar(select(func.count(Job.id)).where(Job.kind == "instance")) == 1
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["received", "duplicate"]
    from pathlib import Path

    assert Path(inst.path).is_file()


def test_refusals_have_their_dicom_status_and_the_receiver_goes_on(ctx, receiver, xray):
    from pydicom.uid import generate_uid

    a = _assoc(receiver)
    corrupt, _ = xray()
    corrupt.Rows = corrupt.Columns = 512  # 784 bytes of pixels for 512x512
    assert a.send_c_store(corrupt).Status == 0xC000
    odd, _ = xray(modality="ZZ")
    assert a.send_c_store(odd).Status == 0xA900
    big, _ = xray()
    big.Rows = big.Columns = 1100
    big.PixelData = bytes(1100 * 1100)  # 1.2 MB > the 1 MB limit
    assert a.send_c_store(big).Status == 0xA700
    sr, _ = xray()
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = generate_uid()
    del sr.PixelData
    assert a.send_c_store(sr).Status == 0x0122
    good, _ = xray()
    assert a.send_c_store(good).Status == 0
    a.release()
    with ctx.db.read() as s:
        reasons = [e.details["reason"] for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "refused"))]
        assert sorted(reasons) == ["corrupt", "not_image", "too_large", "unknown_modality"]
        assert s.scalar(select(func.count(Instance.id))) == 1


def test_calling_ae_title_not_on_the_allow_list_is_rejected(ctx, receiver):
    a = _assoc(receiver, aet="STRANGER")
    assert a.is_rejected
    import time

    time.sleep(0.2)
    with ctx.db.read() as s:
        ev = s.scalar(select(AuditEvent).where(AuditEvent.action == "refused"))
    assert ev.actor == "dicom:STRANGER" and ev.object_type == "association"
    assert ev.details["reason"] == "calling_aet_not_allowed"


def _receiver(ctx, make_cfg, **dicom):
    cfg = make_cfg(dicom={"port": 0, "allowed_calling_aets": ["GOODSCU"], **dicom})
    return DicomReceiver(cfg.dicom, ctx.ingestor).start()


def _refusal_reasons(ctx) -> list[str]:
    with ctx.db.read() as s:
        refused = select(AuditEvent).where(AuditEvent.action == "refused", AuditEvent.object_type == "association")
        return [e.details["reason"] for e in s.scalars(refused.order_by(AuditEvent.id))]


def _open(conn) -> bool:
    """Whether the receiver still holds ``conn`` open (no byte to read, and not closed)."""
    conn.setblocking(False)
    try:
        return conn.recv(1) != b""
    except BlockingIOError:
        return True


def test_64_silent_connections_do_not_lock_out_a_modality(ctx, make_cfg, xray):
    import socket

    # default limits (128 connections, 32 associations) but an ACSE timeout long enough that the
    # silent connections are still held when the modality is served: served beside them, not after them
    r = _receiver(ctx, make_cfg, acse_timeout_s=120)
    silent = [socket.create_connection(("127.0.0.1", r.port), timeout=5) for _ in range(64)]  # never send a byte
    try:
        ds, _ = xray()
        a = _assoc(r)
        assert a.is_established
        assert a.send_c_store(ds).Status == 0
        a.release()
        assert all(_open(c) for c in silent), "the receiver dropped silent connections before serving the modality"
    finally:
        for c in silent:
            c.close()
        r.stop()
    assert _refusal_reasons(ctx) == []


def test_a_connection_that_sends_no_association_request_is_closed_after_the_acse_timeout(ctx, make_cfg):
    import socket

    r = _receiver(ctx, make_cfg, acse_timeout_s=0.3, network_timeout_s=60)
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as c:
            assert c.recv(1) == b""  # closed by the receiver (ARTIM), long before the 60 s network timeout
    finally:
        r.stop()


def test_connections_beyond_max_connections_are_closed_and_the_receiver_recovers(ctx, make_cfg):
    import socket

    r = _receiver(ctx, make_cfg, max_connections=4, acse_timeout_s=1)
    try:
        held = [socket.create_connection(("127.0.0.1", r.port), timeout=10) for _ in range(4)]
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as extra:
            assert extra.recv(1) == b""  # closed at once
        for c in held:
            assert c.recv(1) == b""  # closed by the receiver after the ACSE timeout, freeing their slots
            c.close()
        import time

        time.sleep(0.2)
        a = _assoc(r)
        assert a.is_established
        a.release()
    finally:
        r.stop()


def test_association_limits_reject_with_their_own_reason_in_log_and_audit(ctx, make_cfg, caplog):
    r = _receiver(ctx, make_cfg, max_associations_per_peer=2)
    try:
        held = [_assoc(r), _assoc(r)]
        assert all(a.is_established for a in held)
        third = _assoc(r)
        assert third.is_rejected
        for a in held:
            a.release()
    finally:
        r.stop()
    r = _receiver(ctx, make_cfg, max_associations=1)
    try:
        first = _assoc(r)
        assert first.is_established
        assert _assoc(r).is_rejected
        first.release()
        again = _assoc(r)  # a slot is free again once the first is released
        assert again.is_established
        again.release()
    finally:
        r.stop()
    assert _refusal_reasons(ctx) == ["peer_association_limit", "too_many_associations"]
    refused = [m.getMessage() for m in caplog.records if m.getMessage().startswith("refused association")]
    assert [m.rsplit(": ", 1)[1] for m in refused] == ["peer_association_limit", "too_many_associations"]
    assert not any("allow-list" in m for m in refused)


_SEND = """
import sys
from pydicom import dcmread
from pynetdicom import AE
ds = dcmread(sys.argv[2])
ae = AE(ae_title="GOODSCU")
ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
a = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="MEDSIGHT")
print(f"0x{a.send_c_store(ds).Status:04X}")
a.release()
"""


def test_a_c_store_over_the_limit_is_refused_without_being_held_in_memory(ctx, receiver, xray, tmp_path):
    import os
    import subprocess
    import sys
    import tracemalloc

    big, _ = xray()
    big.Rows = big.Columns = 4000
    big.PixelData = bytes(4000 * 4000)  # 16 MB > the 1 MB limit
    big.save_as(tmp_path / "big.dcm", enforce_file_format=True)
    tracemalloc.start()  # the receiver's allocations, in this process; the sender is another process
    try:
        out = subprocess.run([sys.executable, "-c", _SEND, str(receiver.port), str(tmp_path / "big.dcm")],
                             capture_output=True, text=True, timeout=120, env={**os.environ})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.stdout.split() == ["0xA700"], out.stderr[-2000:]
    assert peak < 8e6, f"the receiver traced {peak / 1e6:.0f} MB for a refused 16 MB instance"


def test_two_threads_storing_the_same_instance_at_once_both_succeed(ctx, xray, monkeypatch):
    """A modality's C-STORE and the catch-up can bring the same instance in the same moment.

    Both writers are held inside their write (with the file open) until both are there, so the
    two renames run back to back: with a temporary name shared per process the second one found
    the file gone and the sender heard "out of resources"."""
    import os
    import threading

    from medsight.service import ingest as ingest_mod

    ds, data = xray()
    both_writing = threading.Barrier(2, timeout=10)
    real_fsync = os.fsync
    monkeypatch.setattr(ctx.ingestor, "fsync", True)
    monkeypatch.setattr(ingest_mod.os, "fsync", lambda fd: (both_writing.wait(), real_fsync(fd)))
    outcomes, errors = [], []

    def store(actor):
        try:
            outcomes.append(ctx.ingestor.ingest(data, actor=actor).status)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever the writer raised
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(a,)) for a in ("dicom:MODALITY", "catchup:orthanc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(outcomes) == ["duplicate", "stored"]
    with ctx.db.read() as s:
        inst = s.scalar(select(Instance))
        assert s.scalar(select(func.count(Instance.id))) == 1
        assert s.scalar(select(func.count(Job.id)).where(Job.kind == "instance")) == 1
    from pathlib import Path

    stored = Path(inst.path)
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no temporary file left behind
