"""Images in over HTTP: multipart upload and STOW-RS (DICOMweb PS3.18 Store).

Both go through the same :class:`~medsight.service.ingest.Ingestor` as the DICOM receiver.
A body over the size limit is refused with 413 before it is read. The multipart/related
body of STOW-RS is split by :func:`medsight.service.multipart.split_related` (the standard
library's MIME parser).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from medsight.errors import RefusedInputError
from medsight.service import audit
from medsight.service.api_deps import require
from medsight.service.auth import Principal
from medsight.service.scp import STATUS_BY_CODE

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


def _check_length(request: Request) -> int:
    limit = int(request.app.state.ctx.cfg.http.max_upload_mb * 1e6)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RefusedInputError(f"request body is {int(length) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB",
                                code="too_large")
    return limit


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RefusedInputError(f"request body exceeds the limit of {limit / 1e6:.1f} MB", code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _ingest_one(request: Request, data: bytes, actor: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        outcome = ctx.ingestor.ingest(data, actor=actor)
    except RefusedInputError as exc:
        log.warning("refused an HTTP instance from %s (%s)", actor, exc.code)
        with ctx.db.session() as s:
            audit.record(s, actor, "refused", "instance", "unknown", reason=exc.code, message=str(exc)[:300])
        return {"status": "refused", "code": exc.code, "error": str(exc)}
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
    form = await request.form(max_files=1000)
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
    from medsight.service.app import HTTP_STATUS_BY_CODE

    distinct = set(codes)
    return HTTP_STATUS_BY_CODE.get(codes[0], 409) if len(distinct) == 1 else 409


def _split_related(content_type: str, body: bytes) -> list[bytes]:
    from medsight.service.multipart import split_related

    parts = split_related(content_type, body)
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
    parts = _split_related(request.headers.get("content-type", ""), body)
    actor = f"stow:{principal.name}"
    ok_items, failed_items, codes = [], [], []
    for data in parts:
        entry = await run_in_threadpool(_ingest_one, request, data, actor)
        if entry["status"] == "refused":
            codes.append(entry["code"])
            failed_items.append(_sop_item(None, None, STATUS_BY_CODE.get(entry["code"], 0xC000)))
        elif study_uid and entry["study_uid"] != study_uid:
            failed_items.append(_sop_item(entry["sop_class_uid"], entry["sop_uid"], 0xA900))
            codes.append("corrupt")
        else:
            ok_items.append(_sop_item(entry["sop_class_uid"], entry["sop_uid"]))
    answer: dict[str, Any] = {}
    if ok_items:
        answer["00081199"] = {"vr": "SQ", "Value": ok_items}
    if failed_items:
        answer["00081198"] = {"vr": "SQ", "Value": failed_items}
    status = 200 if not failed_items else 202 if ok_items else _http_status(codes)
    return JSONResponse(answer, status_code=status, media_type="application/dicom+json")
