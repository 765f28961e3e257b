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
