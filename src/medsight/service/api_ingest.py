"""Images in over HTTP: multipart upload and STOW-RS (DICOMweb PS3.18 Store).

Both go through the same :class:`~medsight.service.ingest.Ingestor` as the DICOM receiver.
A body is counted as it arrives and refused with 413 as soon as it passes ``http.max_upload_mb``
(whether or not it declared a Content-Length), and a body with more than ``http.max_parts``
files or instances is refused with 413 before any is stored. A multipart/form-data upload is
parsed while it streams in (starlette's parser over python-multipart, files spooled to disk);
the multipart/related body of STOW-RS is split by
:func:`medsight.io.multipart.split_related` (the standard library's MIME parser) in a
worker thread, so the event loop keeps answering other requests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from medsight.errors import RefusedInputError
from medsight.service import audit
from medsight.service.api_deps import HTTP_STATUS_BY_CODE, require
from medsight.service.auth import Principal
from medsight.service.scp import STATUS_BY_CODE

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()

#: Failure Reason (0008,1197) of a STOW-RS instance for each refusal code (PS3.18 10.5.3).
STOW_STATUS_BY_CODE = {**STATUS_BY_CODE, "wrong_study": 0xA900}


def _check_length(request: Request) -> int:
    limit = int(request.app.state.ctx.cfg.http.max_upload_mb * 1e6)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RefusedInputError(f"request body is {int(length) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB",
                                code="too_large")
    return limit


async def _limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused (413) once more than ``limit`` bytes came."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RefusedInputError(f"request body exceeds the limit of {limit / 1e6:.1f} MB", code="too_large")
        yield chunk


async def _read_limited(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _limited_stream(request, limit)])


async def _read_form(request: Request, limit: int) -> Any:
    """Parse a multipart/form-data body while it streams in, within the size and part limits."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    max_parts = request.app.state.ctx.cfg.http.max_parts
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise RefusedInputError(f"expected Content-Type multipart/form-data; found {content_type or 'none'!r}",
                                code="corrupt")
    parser = MultiPartParser(request.headers, _limited_stream(request, limit),
                             max_files=max_parts, max_fields=max_parts)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        too_many = str(exc).startswith("Too many")  # starlette's "Too many files/fields" (one exception type)
        raise RefusedInputError(f"expected at most {max_parts} parts in a multipart/form-data body; the body has more"
                                if too_many else f"expected a valid multipart/form-data body; {exc}",
                                code="too_large" if too_many else "corrupt") from None


def _ingest_one(request: Request, data: bytes, actor: str, study_uid: str | None = None) -> dict[str, Any]:
    """Ingest one instance; with ``study_uid`` (a STOW-RS study URL), only an instance of that study."""
    ctx = request.app.state.ctx
    ds = None
    try:
        ds = ctx.ingestor.parse(data)
        if study_uid is not None and str(ds.get("StudyInstanceUID", "") or "") != study_uid:
            raise RefusedInputError("expected an instance of the study in the URL; found one of another study",
                                    code="wrong_study")
        outcome = ctx.ingestor.ingest(data, actor=actor, dataset=ds)
    except RefusedInputError as exc:
        log.warning("refused an HTTP instance from %s (%s)", actor, exc.code)
        with ctx.db.session() as s:
            audit.record(s, actor, "refused", "instance", "unknown", reason=exc.code, message=str(exc)[:300])
        entry = {"status": "refused", "code": exc.code, "error": str(exc)}
        if exc.code == "wrong_study":
            entry.update(sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
                         sop_class_uid=str(ds.get("SOPClassUID", "") or ""))
        return entry
    return {"status": outcome.status, "sop_uid": outcome.sop_uid, "sop_class_uid": outcome.sop_class_uid,
            "study_uid": outcome.study_uid, "models": outcome.routed_models}


@router.post("/api/v1/instances", tags=["ingest"])
async def upload(request: Request, principal: Principal = Depends(require("send"))) -> JSONResponse:
    """Upload DICOM files as ``multipart/form-data`` (any field name; several files allowed).

    Returns one entry per file. 200 when at least one was stored; otherwise the refusal's
    status: 413 too large, 415 not an image, 422 corrupt or unknown modality.
    """
    from starlette.concurrency import run_in_threadpool

    limit = _check_length(request)
    form = await _read_form(request, limit)
    items = []
    for name, value in form.multi_items():
        if not hasattr(value, "read"):
            continue
        data = await value.read()
        if len(data) > limit:
            entry = {"status": "refused", "code": "too_large",
                     "error": f"file is {len(data) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB"}
        else:
            entry = await run_in_threadpool(_ingest_one, request, data, principal.actor)
        entry["filename"] = value.filename or name
        items.append(entry)
    if not items:
        raise RefusedInputError("expected at least one file in a multipart/form-data body; found none", code="corrupt")
    ok = [i for i in items if i["status"] != "refused"]
    status = 200 if ok else _http_status([i["code"] for i in items])
    return JSONResponse({"instances": items}, status_code=status)


def _http_status(codes: list[str]) -> int:
    distinct = set(codes)
    return HTTP_STATUS_BY_CODE.get(codes[0], 409) if len(distinct) == 1 else 409


def _split_related(content_type: str, body: bytes, max_parts: int) -> list[bytes]:
    from medsight.io.multipart import MultipartError, TooManyPartsError, split_related

    try:
        parts = split_related(content_type, body, max_parts=max_parts)
    except MultipartError as exc:
        raise RefusedInputError(str(exc), code="too_large" if isinstance(exc, TooManyPartsError) else "corrupt") \
            from None
    if parts is None:
        if not content_type.lower().startswith("multipart/related"):
            raise RefusedInputError(f"expected Content-Type multipart/related; type=\"application/dicom\"; found "
                                    f"{content_type or 'none'!r}", code="corrupt")
        raise RefusedInputError("expected a multipart/related body with a boundary; found none", code="corrupt")
    for ctype, _ in parts:
        if ctype not in ("application/dicom", "application/octet-stream"):
            raise RefusedInputError(f"expected parts of type application/dicom; found {ctype}", code="not_image")
    return [payload for _, payload in parts]


def _sop_item(sop_class: str | None, sop: str | None, reason: int | None = None, url: str | None = None) -> dict:
    item: dict[str, Any] = {}
    if sop_class:
        item["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop:
        item["00081155"] = {"vr": "UI", "Value": [sop]}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    if url:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


@router.post("/dicom-web/studies", tags=["ingest"])
@router.post("/dicom-web/studies/{study_uid}", tags=["ingest"])
async def stow(request: Request, study_uid: str | None = None,
               principal: Principal = Depends(require("send"))) -> JSONResponse:
    """STOW-RS: store DICOM instances sent as ``multipart/related; type="application/dicom"``.

    Answers a DICOM JSON Store Instances Response (ReferencedSOPSequence, FailedSOPSequence):
    200 all stored, 202 some failed, otherwise the refusal's status (409 when they differ).
    """
    from starlette.concurrency import run_in_threadpool

    limit = _check_length(request)
    body = await _read_limited(request, limit)
    parts = await run_in_threadpool(_split_related, request.headers.get("content-type", ""), body,
                                    request.app.state.ctx.cfg.http.max_parts)
    del body
    actor = f"stow:{principal.name}"
    ok_items, failed_items, codes = [], [], []
    for data in parts:
        entry = await run_in_threadpool(_ingest_one, request, data, actor, study_uid)
        if entry["status"] == "refused":
            codes.append(entry["code"])
            failed_items.append(_sop_item(entry.get("sop_class_uid"), entry.get("sop_uid"),
                                          STOW_STATUS_BY_CODE.get(entry["code"], 0xC000)))
        else:
            ok_items.append(_sop_item(entry["sop_class_uid"], entry["sop_uid"]))
    answer: dict[str, Any] = {}
    if ok_items:
        answer["00081199"] = {"vr": "SQ", "Value": ok_items}
    if failed_items:
        answer["00081198"] = {"vr": "SQ", "Value": failed_items}
    status = 200 if not failed_items else 202 if ok_items else _http_status(codes)
    return JSONResponse(answer, status_code=status, media_type="application/dicom+json")
