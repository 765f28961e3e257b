"""The DICOM receiver: a C-STORE and C-ECHO SCP (pynetdicom).

Every storage SOP class is negotiated (with every transfer syntax pydicom can decode), so
that a refusal comes back as a C-STORE status the sender can log, not as a silent missing
presentation context:

=========================  ==========  =================================================
refusal                    status      meaning (PS3.4 / PS3.7)
=========================  ==========  =================================================
not an image (SR, KO, PR)  0x0122      Refused: SOP Class not supported
corrupt / undecodable      0xC000      Error: Cannot understand
missing or bad UIDs        0xC000      Error: Cannot understand
unknown modality           0xA900      Error: Data Set does not match SOP Class
too large                  0xA700      Refused: Out of resources
database or disk failure   0xA700      Refused: Out of resources (the sender retries)
=========================  ==========  =================================================

A calling AE title that is not on the allow-list is rejected at association
(A-ASSOCIATE-RJ, "calling AE title not recognised") and recorded in the audit trail.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from medsight.errors import RefusedInputError
from medsight.service import audit
from medsight.service.config import DicomConfig
from medsight.service.ingest import Ingestor

__all__ = ["DicomReceiver", "STATUS_BY_CODE"]

log = logging.getLogger(__name__)

#: C-STORE failure status for each refusal code.
STATUS_BY_CODE = {
    "not_image": 0x0122,
    "corrupt": 0xC000,
    "missing_uid": 0xC000,
    "unknown_modality": 0xA900,
    "too_large": 0xA700,
}


class DicomReceiver:
    """Runs the SCP in background threads.

    Args:
        cfg: the ``dicom`` section.
        ingestor: where received instances go.
        on_refused: called with the refusal code (metrics).
        on_stored: called with the ingest status (metrics).
    """

    def __init__(self, cfg: DicomConfig, ingestor: Ingestor, *, on_refused: Any = None, on_stored: Any = None) -> None:
        self.cfg = cfg
        self.ingestor = ingestor
        self.on_refused = on_refused or (lambda code: None)
        self.on_stored = on_stored or (lambda status: None)
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port actually bound (useful when the config says 0)."""
        return int(self._server.server_address[1]) if self._server is not None else self.cfg.port

    def _ae(self) -> Any:
        from pydicom.uid import AllTransferSyntaxes
        from pynetdicom import AE, AllStoragePresentationContexts, VerificationPresentationContexts

        ae = AE(ae_title=self.cfg.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
        for cx in VerificationPresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        if self.cfg.allowed_calling_aets:
            ae.require_calling_aet = list(self.cfg.allowed_calling_aets)
        ae.maximum_pdu_size = self.cfg.max_pdu
        ae.network_timeout = self.cfg.network_timeout_s
        ae.acse_timeout = self.cfg.network_timeout_s
        ae.dimse_timeout = self.cfg.network_timeout_s
        ae.maximum_associations = 32
        return ae

    def start(self) -> DicomReceiver:
        """Start listening (returns at once)."""
        from pynetdicom import evt

        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REJECTED, self._on_rejected)]
        self._server = self._ae().start_server((self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers)
        log.info("DICOM receiver %s listening on %s:%d", self.cfg.ae_title, self.cfg.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers ---------------------------------------------------------------------------
    @staticmethod
    def _calling(event: Any) -> str:
        return str(event.assoc.requestor.ae_title).strip()

    def _on_echo(self, event: Any) -> int:
        return 0x0000

    def _on_rejected(self, event: Any) -> None:
        calling = self._calling(event)
        log.warning("refused association from calling AE %r: not on the allow-list", calling)
        self.on_refused("calling_aet")
        try:
            with self.ingestor.db.session() as s:
                audit.record(s, f"dicom:{calling}", "refused", "association", calling, reason="calling AE title not "
                             "on the allow-list")
        except Exception:  # noqa: BLE001 - auditing must not crash the SCP thread
            log.exception("could not audit a refused association")

    def _on_store(self, event: Any) -> Any:
        from pydicom.dataset import Dataset

        calling = self._calling(event)
        actor = f"dicom:{calling}"
        sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            data = bytes(event.encoded_dataset(include_meta=True))
            ds = self.ingestor.parse(data)
            outcome = self.ingestor.ingest(data, actor=actor, dataset=ds)
        except RefusedInputError as exc:
            status = STATUS_BY_CODE.get(exc.code, 0xC000)
            log.warning("refused instance %s from %s: 0x%04X (%s)", sop, calling, status, exc.code)
            self.on_refused(exc.code)
            self._audit_refusal(actor, sop, exc)
            return _status(Dataset, status, str(exc))
        except Exception as exc:  # noqa: BLE001 - disk full, database down: the sender must retry
            log.exception("could not store instance %s from %s", sop, calling)
            return _status(Dataset, 0xA700, f"MedSight could not store the instance ({type(exc).__name__})")
        self.on_stored(outcome.status)
        return 0x0000

    def _audit_refusal(self, actor: str, sop: str, exc: RefusedInputError) -> None:
        try:
            with self.ingestor.db.session() as s:
                audit.record(s, actor, "refused", "instance", sop or "unknown", reason=exc.code, message=str(exc)[:300])
        except Exception:  # noqa: BLE001
            log.exception("could not audit a refused instance")


def _status(dataset_cls: Any, code: int, comment: str) -> Any:
    ds = dataset_cls()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds
