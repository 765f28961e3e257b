"""Catch-up: find what the PACS received while MedSight was not listening, and fetch it.

Orthanc's auto-routing sends each instance once and never retries, so anything stored while
the service was down would be lost to it. At start and every ``interval_s`` the service
reconciles:

* ``orthanc``: follows Orthanc's ``/changes`` feed from a cursor kept in the database; every
  ``NewInstance`` whose SOPInstanceUID is unknown here is downloaded (``/instances/{id}/file``)
  and ingested like any other instance;
* ``dicomweb``: QIDO-RS lists the instances of the studies whose StudyDate lies within the
  last ``lookback_days``; those unknown here are retrieved with WADO-RS. (DICOMweb has no
  "received since" query: an old study re-sent while the service was down is not found.)

Instances MedSight made itself (its SRs, SCs and SEGs) are recognised by UID and skipped, and
so are instances catch-up fetched before and the ingestor refused.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from medsight.errors import RefusedInputError, ServiceError
from medsight.service import audit
from medsight.service.config import CatchupConfig
from medsight.service.db import AuditEvent, Database, Instance, KeyValue, ResultOutput
from medsight.service.ingest import Ingestor
from medsight.service.logs import safe_error

__all__ = ["Catchup"]

log = logging.getLogger(__name__)


class Catchup:
    """Reconciliation with one PACS.

    Args:
        cfg: the ``catchup`` section.
        db: the database (cursor, known UIDs).
        ingestor: where fetched instances go.
    """

    def __init__(self, cfg: CatchupConfig, db: Database, ingestor: Ingestor) -> None:
        self.cfg = cfg
        self.db = db
        self.ingestor = ingestor
        self.actor = f"catchup:{cfg.source}"
        self._lock = threading.Lock()

    def _known(self, sop_uids: list[str]) -> set[str]:
        if not sop_uids:
            return set()
        with self.db.read() as s:
            a = set(s.scalars(select(Instance.sop_uid).where(Instance.sop_uid.in_(sop_uids))))
            b = set(s.scalars(select(ResultOutput.sop_uid).where(ResultOutput.sop_uid.in_(sop_uids))))
            # what catch-up fetched and the ingestor refused (an SR, a presentation state...) is
            # not fetched again at every reconciliation
            c = set(s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "refused",
                                                                 AuditEvent.actor == self.actor,
                                                                 AuditEvent.object_id.in_(sop_uids))))
        return a | b | c

    def _ingest(self, data: bytes, ref: str) -> str:
        try:
            return self.ingestor.ingest(data, actor=self.actor).status
        except RefusedInputError as exc:
            with self.db.session() as s:
                audit.record(s, self.actor, "refused", "instance", ref, reason=exc.code, message=str(exc)[:300])
            return "refused"

    def run_once(self) -> dict[str, Any]:
        """One reconciliation; returns counts (``seen``, ``fetched``, ``refused``)."""
        with self._lock:
            if self.cfg.source == "orthanc":
                return self._orthanc()
            if self.cfg.source == "dicomweb":
                return self._dicomweb()
            return {"seen": 0, "fetched": 0, "refused": 0}

    def run_forever(self, stop: threading.Event) -> None:
        """Reconcile now, then every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                counts = self.run_once()
                if counts.get("fetched"):
                    log.info("catch-up fetched %d instance(s) the service had missed", counts["fetched"])
            except Exception as exc:  # noqa: BLE001 - the PACS may be down: try again later
                log.warning("catch-up with %s failed: %s", self.cfg.url, safe_error(exc))
            stop.wait(self.cfg.interval_s)

    # -- Orthanc ---------------------------------------------------------------------------
    def _client(self) -> Any:
        import httpx

        auth = (self.cfg.username, self.cfg.secret() or "") if self.cfg.username else None
        return httpx.Client(base_url=str(self.cfg.url).rstrip("/"), auth=auth, timeout=self.cfg.timeout_s)

    def _cursor(self, key: str) -> str | None:
        with self.db.read() as s:
            kv = s.get(KeyValue, key)
            return kv.value if kv else None

    def _save_cursor(self, key: str, value: str) -> None:
        with self.db.session() as s:
            kv = s.get(KeyValue, key)
            if kv is None:
                s.add(KeyValue(key=key, value=value))
            else:
                kv.value = value

    def _orthanc(self) -> dict[str, Any]:
        key = f"catchup:orthanc:{self.cfg.url}"
        since = int(self._cursor(key) or 0)
        counts = {"seen": 0, "fetched": 0, "refused": 0}
        with self._client() as c:
            while True:
                r = c.get("/changes", params={"since": since, "limit": 200})
                if r.status_code != 200:
                    raise ServiceError(f"expected Orthanc /changes to answer 200; got {r.status_code}")
                page = r.json()
                ids = [ch["ID"] for ch in page.get("Changes", []) if ch.get("ChangeType") == "NewInstance"]
                uids = {}
                for oid in ids:
                    t = c.get(f"/instances/{oid}")
                    if t.status_code == 200:  # deleted instances are gone: nothing to catch up
                        uids[oid] = t.json().get("MainDicomTags", {}).get("SOPInstanceUID", "")
                known = self._known([u for u in uids.values() if u])
                for oid, uid in uids.items():
                    counts["seen"] += 1
                    if uid in known:
                        continue
                    f = c.get(f"/instances/{oid}/file")
                    if f.status_code != 200:
                        continue
                    status = self._ingest(f.content, uid or oid)
                    if status in ("stored", "refused"):
                        counts["fetched" if status == "stored" else "refused"] += 1
                since = int(page.get("Last", since))
                self._save_cursor(key, str(since))
                if page.get("Done", True):
                    break
        return counts

    # -- DICOMweb --------------------------------------------------------------------------
    def _dicomweb(self) -> dict[str, Any]:
        """QIDO-RS over the studies of the last ``lookback_days`` (by StudyDate), then WADO-RS
        for each instance not known here.

        WADO-RS is requested by hand rather than with ``DICOMwebClient.retrieve_instance``:
        Orthanc's DICOMweb plugin (1.7) answers parts without the 128-byte preamble, which
        dicomweb-client's ``pydicom.dcmread`` refuses; the ingestor accepts them and stores
        a normalised Part 10 file.
        """
        import requests
        from dicomweb_client.api import DICOMwebClient

        from medsight.batch.dicomweb import search_all  # pages that end when a server ignores offset
        from medsight.io.multipart import MultipartError, split_related

        base = str(self.cfg.url).rstrip("/")
        session = requests.Session()
        if self.cfg.username:
            session.auth = (self.cfg.username, self.cfg.secret() or "")
        client = DICOMwebClient(url=base, session=session, timeout=self.cfg.timeout_s)
        start = (date.today() - timedelta(days=self.cfg.lookback_days)).strftime("%Y%m%d")
        counts = {"seen": 0, "fetched": 0, "refused": 0}
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        try:
            studies = search_all(client.search_for_studies, "0020000D", search_filters={"StudyDate": f"{start}-"})
            for st in studies:
                study_uid = st["0020000D"]["Value"][0]
                insts = search_all(client.search_for_instances, "00080018", study_instance_uid=study_uid)
                refs = [(i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for i in insts]
                known = self._known([sop for _, sop in refs])
                for series_uid, sop in refs:
                    counts["seen"] += 1
                    if sop in known:
                        continue
                    r = session.get(f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop}",
                                    headers={"Accept": accept}, timeout=self.cfg.timeout_s)
                    if r.status_code == 404:  # deleted since the query: nothing to catch up
                        continue
                    if r.status_code != 200:
                        raise ServiceError(f"expected WADO-RS to answer 200 for an instance; got {r.status_code}")
                    parts = split_related(r.headers.get("content-type", ""), r.content)
                    if not parts:
                        raise ServiceError("expected WADO-RS to answer multipart/related with one DICOM part; got "
                                           f"{r.headers.get('content-type') or 'no content type'}")
                    for _, payload in parts:
                        status = self._ingest(payload, sop)
                        if status in ("stored", "refused"):
                            counts["fetched" if status == "stored" else "refused"] += 1
        except (requests.RequestException, KeyError, IndexError, MultipartError) as exc:
            raise ServiceError(f"expected QIDO-RS/WADO-RS at {base} to answer; {type(exc).__name__}: {exc}") from None
        return counts
