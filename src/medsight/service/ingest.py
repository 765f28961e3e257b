"""The one way an image enters the service, whatever brought it (C-STORE, HTTP upload,
STOW-RS, catch-up).

An instance is checked (parses, is an image, has a modality the service accepts, its header
declares pixels within the memory budgets of :class:`~medsight.io.limits.ReadLimits` and, when
uncompressed, holds as many bytes as it declares; nothing is decoded here, so a damaged
compressed stream is found by the worker, which records an error result), written to
storage, and recorded with its jobs in one database transaction, and only then acknowledged
to the sender: once a sender hears "success", the study cannot be lost. A second copy of an
instance (same SOPInstanceUID) is acknowledged and recorded as a duplicate, and starts no work.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from medsight.errors import MedSightError, RefusedInputError
from medsight.service import audit
from medsight.service.db import Database, Instance, ResultOutput, Series, now
from medsight.service.logs import safe_error
from medsight.service.queue import enqueue
from medsight.service.routing import InstanceFacts, Router

__all__ = ["IngestOutcome", "Ingestor"]

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass
class IngestOutcome:
    """What happened to one received instance."""

    status: str  # stored | duplicate | own_output
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    routed_models: list[str]


class Ingestor:
    """Checks, stores and enqueues received instances.

    Args:
        db: the service database.
        storage: folder for received files (``dicom/<study>/<series>/<sop>.dcm``).
        router: the routing rules.
        accept_modalities: modality codes accepted (others are refused).
        max_bytes: largest instance accepted.
        fsync: flush each file to disk before acknowledging it.
    """

    def __init__(self, db: Database, storage: Path, router: Router, *, accept_modalities: list[str],
                 max_bytes: int, fsync: bool = True) -> None:
        self.db = db
        self.storage = Path(storage)
        self.router = router
        self.accept = {m.upper() for m in accept_modalities}
        self.max_bytes = int(max_bytes)
        self.fsync = fsync

    # -- checks -------------------------------------------------------------------------------
    def parse(self, data: bytes | Path) -> Any:
        """Parse Part 10 bytes or a file (with or without preamble) into a dataset.

        A file over the size limit is refused from its size, unread.

        Raises:
            RefusedInputError: too large, or not parseable DICOM (code ``too_large`` /
                ``corrupt``).
        """
        from medsight.io.dicom import read_dataset

        size = _size(data)
        if size > self.max_bytes:
            raise RefusedInputError(f"instance is {size / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.1f} MB",
                                    code="too_large")
        if not size:
            raise RefusedInputError("expected a DICOM instance; got 0 bytes", code="corrupt")
        headerless = not _has_preamble(data)
        try:
            ds = read_dataset(data if isinstance(data, Path) else io.BytesIO(data), force=headerless)
        except MedSightError as exc:
            raise RefusedInputError(f"expected a DICOM instance; {safe_error(exc)}", code="corrupt") from None
        if headerless and "SOPClassUID" not in ds:
            raise RefusedInputError("expected a DICOM instance; found no DICM preamble and no SOP Class UID",
                                    code="corrupt")
        return ds

    def check(self, ds: Any) -> InstanceFacts:
        """Refuse what the service cannot use; return the routing facts.

        Raises:
            RefusedInputError: with code ``missing_uid``, ``not_image``, ``unknown_modality``,
                ``too_large`` or ``corrupt``.
        """
        from dataclasses import replace

        from medsight.io.dicom import PIXEL_KEYWORDS
        from medsight.io.dicom_pixels import check_pixel_header
        from medsight.io.limits import ReadLimits

        try:
            uids = {kw: str(ds.get(kw, "") or "") for kw in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID",
                                                               "SeriesInstanceUID")}
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged elements
            raise RefusedInputError(f"expected readable UIDs; the header is damaged ({type(exc).__name__})",
                                    code="corrupt") from None
        bad = [k for k, v in uids.items() if not v or len(v) > 64 or not _UID.match(v)]
        if bad:
            raise RefusedInputError(f"expected valid {', '.join(bad)}; found missing or malformed values",
                                    code="missing_uid")
        if not any(kw in ds for kw in PIXEL_KEYWORDS):
            sop = ds.SOPClassUID
            raise RefusedInputError(f"expected an image; SOP class {getattr(sop, 'name', str(sop))} ({sop}) has no "
                                    "pixel data", code="not_image")
        modality = str(ds.get("Modality", "") or "").strip().upper()
        if modality not in self.accept:
            raise RefusedInputError(f"expected a modality among {', '.join(sorted(self.accept))}; found "
                                    f"{modality or 'none'!r}", code="unknown_modality")
        try:  # from the header only: the receiver never decodes a whole image
            check_pixel_header(ds, limits=replace(ReadLimits.from_env(), max_file_bytes=self.max_bytes))
        except MedSightError as exc:
            code = "too_large" if type(exc).__name__ == "ImageTooLargeError" else "corrupt"
            raise RefusedInputError(f"expected usable pixel data; {safe_error(exc)}", code=code) from None
        return InstanceFacts(modality=modality, body_part=_s(ds.get("BodyPartExamined")),
                             series_description=_s(ds.get("SeriesDescription")))

    # -- storing ------------------------------------------------------------------------------
    def _path(self, study: str, series: str, sop: str) -> Path:
        return self.storage / "dicom" / study / series / f"{sop}.dcm"

    def _write(self, path: Path, data: bytes | Path) -> None:
        """Write ``data`` to ``path`` atomically.

        The temporary file is unique per write, not per process: two receiver threads storing the
        same instance at once (a modality and a catch-up) must not share one, or the second
        ``os.replace`` finds it gone. The last rename wins and both copies are the same instance.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, Path):
                    with open(data, "rb") as src:
                        shutil.copyfileobj(src, f)
                else:
                    f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def ingest(self, data: bytes | Path | None, *, actor: str, dataset: Any = None) -> IngestOutcome:
        """Check, store and enqueue one instance.

        Args:
            data: the Part 10 file bytes, or a Part 10 file that is copied (None when ``dataset`` is
                given and must be encoded).
            actor: who sent it (``dicom:AET``, ``http:name``, ``catchup:orthanc``).
            dataset: an already parsed dataset (the C-STORE path), to skip parsing.

        Raises:
            RefusedInputError: the instance is refused; nothing is stored.
        """
        ds = dataset if dataset is not None else self.parse(data or b"")
        if data is not None and _size(data) > self.max_bytes:
            raise RefusedInputError(f"instance is {_size(data) / 1e6:.1f} MB; the limit is "
                                    f"{self.max_bytes / 1e6:.1f} MB", code="too_large")
        if data is not None and not _has_preamble(data):
            # no preamble (a raw dataset, or a WADO-RS part from Orthanc): store it as a Part 10
            # file, which is what the workers' readers and series scans expect on disk
            data = None
        sop, sop_class = str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("SOPClassUID", "") or "")
        study, series = str(ds.get("StudyInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", "") or "")
        with self.db.read() as s:
            own = s.scalar(select(ResultOutput.id).where(ResultOutput.sop_uid == sop).limit(1)) is not None
            known = s.scalar(select(Instance.id).where(Instance.sop_uid == sop)) is not None
        if own:
            return IngestOutcome("own_output", sop, sop_class, study, series, [])
        if known:
            with self.db.session() as s:
                audit.record(s, actor, "duplicate", "instance", sop)
            return IngestOutcome("duplicate", sop, sop_class, study, series, [])
        facts = self.check(ds)
        if data is None:
            try:
                data = _encode(ds)
            except Exception as exc:  # noqa: BLE001 - pydicom raises many types for unwritable datasets
                raise RefusedInputError(f"expected a dataset that can be stored as a DICOM file; "
                                        f"{safe_error(exc)}", code="corrupt") from None
        path = self._path(study, series, sop)
        self._write(path, data)
        match = self.router.match(facts)
        t = now()
        with self.db.session() as s:
            dialect = s.get_bind().dialect.name
            ins = pg_insert(Instance) if dialect == "postgresql" else sqlite_insert(Instance)
            res = s.execute(ins.values(
                sop_uid=sop, sop_class_uid=sop_class, series_uid=series, study_uid=study,
                patient_id=_s(ds.get("PatientID"), Instance.patient_id), modality=facts.modality,
                body_part=_s(facts.body_part, Instance.body_part),
                path=str(path), sha256=_sha256(data), size=_size(data), source=actor[:80],
                received_at=t).on_conflict_do_nothing(index_elements=["sop_uid"]).returning(Instance.id)).scalar()
            if res is None:  # a concurrent copy of the same instance won
                audit.record(s, actor, "duplicate", "instance", sop)
                return IngestOutcome("duplicate", sop, sop_class, study, series, [])
            self._upsert_series(s, dialect, ds, facts, series, study, t)
            if match.instance_models:
                enqueue(s, "instance", f"instance:{sop}", {"sop_uid": sop, "models": match.instance_models},
                        priority=10)
            audit.record(s, actor, "received", "instance", sop, study_uid=study, series_uid=series,
                         modality=facts.modality, sop_class_uid=sop_class, routes=match.routes,
                         models=match.instance_models + match.series_models, missing_models=match.missing_models)
        log.info("received %s instance %s from %s; routes %s", facts.modality, sop, actor, match.routes or "none")
        return IngestOutcome("stored", sop, sop_class, study, series, match.instance_models + match.series_models)

    @staticmethod
    def _upsert_series(s: Any, dialect: str, ds: Any, facts: InstanceFacts, series: str, study: str, t: float) -> None:
        ins = pg_insert(Series) if dialect == "postgresql" else sqlite_insert(Series)
        values = dict(series_uid=series, study_uid=study, patient_id=_s(ds.get("PatientID"), Series.patient_id),
                      patient_name=_s(ds.get("PatientName"), Series.patient_name), modality=facts.modality,
                      body_part=_s(facts.body_part, Series.body_part),
                      description=_s(facts.series_description, Series.description),
                      study_date=_s(ds.get("StudyDate"), Series.study_date), n_instances=1, first_at=t, last_at=t,
                      status="receiving")
        stmt = ins.values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["series_uid"], set_={
            "n_instances": Series.n_instances + 1, "last_at": t, "status": "receiving"})
        s.execute(stmt)


def _size(data: bytes | Path) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _has_preamble(data: bytes | Path) -> bool:
    if isinstance(data, Path):
        with open(data, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    return data[128:132] == b"DICM"


def _sha256(data: bytes | Path) -> str:
    if isinstance(data, Path):
        h = hashlib.sha256()
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


def _s(v: Any, column: Any = None) -> str | None:
    """A header value as stored: stripped, None when empty, cut to ``column``'s width (128
    characters without one), so that a non-conformant value (a 70-character PatientID) is
    stored alike on SQLite, which ignores widths, and PostgreSQL, which refuses longer values."""
    width = getattr(getattr(column, "type", None), "length", None) or 128
    return None if v is None or str(v).strip() == "" else str(v).strip()[:width]


def _encode(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
