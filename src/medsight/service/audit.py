"""The audit trail: who or what sent each image, which model version processed it, who
viewed each result, what was refused and why.

Audit events go to the database, never to application logs, and hold no patient
identifiers: objects are named by their DICOM UIDs or database ids.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from medsight.service.db import AuditEvent, now

__all__ = ["record", "ACTIONS", "patient_ref"]

#: The actions the service records.
ACTIONS = ("received", "duplicate", "refused", "processed", "no_model", "failed", "sent", "alert", "suggested",
           "viewed", "webhook", "acknowledged", "auth_failed", "assessed", "drift_ended")


def patient_ref(patient_id: str) -> str:
    """How the audit names a patient: ``sha256:`` and 16 hex digits of the SHA-256 of the
    PatientID (found again by hashing the ID from the database; the ID itself is not there)."""
    import hashlib

    return "sha256:" + hashlib.sha256(patient_id.encode()).hexdigest()[:16]


def record(session: Session, actor: str, action: str, object_type: str, object_id: str,
           **details: Any) -> None:
    """Add one audit event to the session's transaction.

    Args:
        actor: ``dicom:AET``, ``http:NAME``, ``worker:ID``, ``catchup:orthanc``,
            ``client:ADDRESS`` (a request whose token was refused), ...
        action: one of :data:`ACTIONS`.
        object_type: ``instance``, ``series``, ``result``, ``study``, ``alert``, ``patient``.
        object_id: a UID or id (never a patient identifier: a patient is named by
            :func:`patient_ref`).
        **details: JSON-compatible facts (model version, reason, destination...).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    session.add(AuditEvent(at=now(), actor=actor[:80], action=action, object_type=object_type,
                           object_id=str(object_id)[:200], details=details))
