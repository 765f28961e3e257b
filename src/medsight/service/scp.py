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

Associations are limited, and every rejection is logged and audited with its reason:

=================================================  =============================================
limit (``dicom`` settings)                         what happens
=================================================  =============================================
calling AE title not on ``allowed_calling_aets``   A-ASSOCIATE-RJ permanent, "calling AE title
                                                   not recognised"; ``calling_aet_not_allowed``
more than ``max_associations`` open                A-ASSOCIATE-RJ transient, "local limit
                                                   exceeded"; ``too_many_associations``
more than ``max_associations_per_peer`` from one   A-ASSOCIATE-RJ transient, "local limit
IP address                                         exceeded"; ``peer_association_limit``
no A-ASSOCIATE-RQ within ``acse_timeout_s``        connection closed (the ARTIM timer)
more than ``max_connections`` TCP connections      closed at once (logged, not audited)
=================================================  =============================================

Only associations that sent an A-ASSOCIATE-RQ count against ``max_associations``, so
connections that never speak cannot lock modalities out; they hold a connection slot for
at most ``acse_timeout_s``. C-STORE data sets are received in chunks straight to a
temporary file (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``), so an instance over the size
limit is refused from its file size without ever being held in memory.
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

#: (result, source, diagnostic) of an A-ASSOCIATE-RJ (PS3.8 9.3.4) -> audit reason.
REJECT_REASONS = {(0x01, 0x01, 0x03): "calling_aet_not_allowed", (0x01, 0x01, 0x07): "called_aet_not_recognised",
                  (0x02, 0x03, 0x02): "too_many_associations"}
_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # rejected-transient, presentation related, local limit exceeded

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
        self._admitted: dict[Any, str] = {}  # association -> peer IP, for the association limits

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
        # the ARTIM timer: how long a connection may stay open without sending an A-ASSOCIATE-RQ
        ae.acse_timeout = self.cfg.acse_timeout_s
        ae.dimse_timeout = self.cfg.network_timeout_s
        # pynetdicom counts every open connection here; max_associations is checked on EVT_REQUESTED
        ae.maximum_associations = self.cfg.max_connections
        return ae

    def start(self) -> DicomReceiver:
        """Start listening (returns at once)."""
        from pynetdicom import _config, evt

        _config.STORE_RECV_CHUNKED_DATASET = True  # C-STORE data sets go to a temporary file, not memory
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REQUESTED, self._on_requested), (evt.EVT_REJECTED, self._on_rejected)]
        ae = self._ae()
        self._server = ae.make_server((self.cfg.host, self.cfg.port), evt_handlers=handlers,
                                      server_class=_connection_limited_server(self.cfg.max_connections))
        ae._servers.append(self._server)  # as AE.start_server does, so that shutdown() finds it
        threading.Thread(target=self._server.serve_forever, name="dicom-receiver", daemon=True).start()
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

    def _on_requested(self, event: Any) -> None:
        """Admit an A-ASSOCIATE-RQ, or reject it when an association limit is reached."""
        assoc = event.assoc
        peer = str(assoc.requestor.address)
        with self._lock:
            self._admitted = {a: p for a, p in self._admitted.items() if a.is_alive()}
            reason = ("too_many_associations" if len(self._admitted) >= self.cfg.max_associations else
                      "peer_association_limit" if sum(p == peer for p in self._admitted.values())
                      >= self.cfg.max_associations_per_peer else None)
            if reason is None:
                self._admitted[assoc] = peer
                return
        assoc.acse.send_reject(*_LOCAL_LIMIT)  # pynetdicom then skips negotiation (see Association.run_reactor)
        self._refuse_association(event, reason)
        assoc.kill()

    def _on_rejected(self, event: Any) -> None:
        """pynetdicom rejected an association itself (allow-list, connection limit)."""
        rj = event.assoc.acceptor.primitive
        rsd = (getattr(rj, "result", None), getattr(rj, "result_source", None), getattr(rj, "diagnostic", None))
        reason = REJECT_REASONS.get(rsd, "rejected (result {}, source {}, diagnostic {})".format(*rsd))
        self._refuse_association(event, reason)

    def _refuse_association(self, event: Any, reason: str) -> None:
        calling = self._calling(event)
        log.warning("refused association from calling AE %r at %s: %s", calling, event.assoc.requestor.address,
                    reason)
        self.on_refused(reason)
        try:
            with self.ingestor.db.session() as s:
                audit.record(s, f"dicom:{calling}", "refused", "association", calling, reason=reason,
                             peer=str(event.assoc.requestor.address))
        except Exception:  # noqa: BLE001 - auditing must not crash the SCP thread
            log.exception("could not audit a refused association")

    def _on_store(self, event: Any) -> Any:
        from pydicom.dataset import Dataset

        calling = self._calling(event)
        actor = f"dicom:{calling}"
        sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            path = event.dataset_path  # received in chunks to a temporary file that pynetdicom deletes afterwards
            ds = self.ingestor.parse(path)
            outcome = self.ingestor.ingest(path, actor=actor, dataset=ds)
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


def _connection_limited_server(limit: int) -> Any:
    """pynetdicom's threaded server, closing connections beyond ``limit`` before any thread starts."""
    from pynetdicom.transport import ThreadedAssociationServer

    class ConnectionLimitedServer(ThreadedAssociationServer):
        full = False

        def verify_request(self, request: Any, client_address: Any) -> bool:
            ok = len(self.active_associations) < limit
            if ok != (not self.full):  # log when the limit is reached and when it is left, not per connection
                self.full = not ok
                log.log(logging.WARNING if self.full else logging.INFO, "DICOM connections %s the limit of %d; %s",
                        "reached" if self.full else "back under", limit,
                        "new connections are closed at once" if self.full else "accepting again")
            return ok

    return ConnectionLimitedServer


def _status(dataset_cls: Any, code: int, comment: str) -> Any:
    ds = dataset_cls()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds
