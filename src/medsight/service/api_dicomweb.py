"""``GET /dicom-web/...``: the PACS's DICOMweb (QIDO-RS, WADO-RS) through MedSight, behind a
reader token, for the viewer and any DICOMweb client.

What it forwards, to ``viewer.dicomweb_url`` (Orthanc's DICOMweb plugin, or any PACS's):

* **GET only.** ``POST /dicom-web/studies`` is MedSight's own STOW-RS ingest
  (:mod:`medsight.service.api_ingest`); every other method is answered 405 by the router and
  never reaches the PACS.
* **DICOMweb resources only**, matched whole against :data:`RESOURCE`: the searches
  (``studies``, ``series``, ``instances`` at each level), a study, series or instance with its
  ``metadata``, ``rendered`` or ``thumbnail``, frames, and bulk data (``bulk/<tag>...``, the
  BulkDataURIs that Orthanc writes into metadata). UIDs must be digits and dots. Anything else
  (``..``, encoded slashes, Orthanc's REST API, ``/tools``) is 404 before any request is made.
* The query string (QIDO filters, ``includefield``) is passed as it is; of the request's
  headers only ``Accept``; the PACS's credentials are the proxy's own (``viewer.username`` /
  ``password_env``), never the client's token.
* **Streamed:** the answer is relayed chunk by chunk as the PACS sends it (httpx), so a
  300-slice study never sits in the service's memory. ``Cache-Control: no-store`` (patient data).
* **The PACS's own address never reaches the client.** A PACS writes absolute BulkDataURIs
  into metadata (Orthanc: ``http://<its host>/dicom-web/studies/.../bulk/7fe00010``: pixel
  data and every other large element, which a client such as OHIF may fetch by that URI); a
  browser could not follow them (another host, outside the viewer's CSP, no token) and should
  not learn them. In JSON answers, and in ``Content-Location``, every
  ``viewer.dicomweb_url`` (or ``viewer.pacs_public_root``, the root a PACS behind a name of its
  own writes) is replaced, as the answer streams, by this service's ``/dicom-web``
  (``http.public_url`` + ``/dicom-web`` when that is set, else the server-relative
  ``/dicom-web``), so the same URIs come back through the proxy.

A PACS that does not answer is 502; its own status (404, 400 ...) is passed through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from medsight.service.api_deps import context, require

__all__ = ["router", "RESOURCE"]

log = logging.getLogger(__name__)
router = APIRouter()

_UID = r"(?=[0-9.]{1,64}(?:/|$))[0-9]+(?:\.[0-9]+)*"  # a DICOM UID: digits and dots, at most 64 characters
_VIEWS = r"(?:/(?:metadata|rendered|thumbnail))?"
_BULK = r"/bulk/[0-9A-Fa-f]{8}(?:/[0-9]{1,6}/[0-9A-Fa-f]{8}){0,8}"
_FRAMES = r"/frames/[0-9]{1,6}(?:,[0-9]{1,6}){0,1000}(?:/rendered)?"
#: the paths (after ``/dicom-web/``) the proxy forwards; nothing else reaches the PACS
RESOURCE = re.compile(
    rf"^(?:studies|series|instances"
    rf"|studies/{_UID}(?:{_VIEWS}|/series|/instances)"
    rf"|studies/{_UID}/series/{_UID}(?:{_VIEWS}|/instances)"
    rf"|studies/{_UID}/series/{_UID}/instances/{_UID}(?:{_VIEWS}|{_FRAMES}|{_BULK}))$")

def public_root(public_url: str | None) -> str:
    """Where clients reach this proxy: ``<http.public_url>/dicom-web``, else ``/dicom-web``."""
    return f"{public_url.rstrip('/')}/dicom-web" if public_url else "/dicom-web"


async def replace_streamed(chunks: AsyncIterator[bytes], old: bytes, new: bytes) -> AsyncIterator[bytes]:
    """``chunks`` with every ``old`` replaced by ``new``, also where ``old`` spans two chunks.

    What could be the start of ``old`` at a chunk's end (at most ``len(old) - 1`` bytes) is held
    back until the next chunk; nothing else is held, so memory stays one chunk whatever the size.
    """
    keep, tail = len(old) - 1, b""
    async for chunk in chunks:
        buf, out = tail + chunk, []
        while (i := buf.find(old)) >= 0:
            out += [buf[:i], new]
            buf = buf[i + len(old):]
        cut = max(0, len(buf) - keep)
        out.append(buf[:cut])
        tail = buf[cut:]
        if any(out):
            yield b"".join(out)
    if tail:
        yield tail


#: the PACS's answer headers passed on (the rest, cookies and server banners among them, are not)
_PASS_HEADERS = ("content-type", "content-location", "warning")


@router.get("/dicom-web/{path:path}", tags=["dicomweb"], summary="DICOMweb (QIDO-RS, WADO-RS) from the PACS")
async def dicomweb_get(path: str, request: Request, _: Any = Depends(require("read"))) -> Any:
    """Forward a DICOMweb GET to the configured PACS and stream its answer (reader token).

    Only DICOMweb resources are forwarded (see the module); any other path is 404 here.
    """
    import httpx
    from starlette.background import BackgroundTask

    ctx = context(request)
    cfg = ctx.cfg.viewer
    if not cfg.dicomweb_url:
        return JSONResponse({"error": "no DICOMweb source is configured (viewer.dicomweb_url)"}, status_code=404)
    if not RESOURCE.match(path):
        return JSONResponse({"error": "not a DICOMweb resource this proxy forwards (QIDO-RS and WADO-RS only)"},
                            status_code=404)
    pacs_root = str(cfg.dicomweb_url).rstrip("/")
    url = f"{pacs_root}/{path}"
    headers = {"Accept": request.headers.get("accept", "application/dicom+json")}
    auth = (cfg.username, cfg.secret() or "") if cfg.username else None
    client = httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s), auth=auth, follow_redirects=False)
    try:
        upstream = await client.send(client.build_request("GET", url, params=request.url.query or None,
                                                          headers=headers), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        log.warning("DICOMweb proxy: the PACS did not answer (%s)", type(exc).__name__)
        return JSONResponse({"error": f"the PACS's DICOMweb did not answer ({type(exc).__name__})"}, status_code=502)

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    ours = public_root(ctx.cfg.http.public_url)
    theirs = str(cfg.pacs_public_root or pacs_root).rstrip("/")
    out = {k: upstream.headers[k].replace(theirs, ours) for k in _PASS_HEADERS if k in upstream.headers}
    out["Cache-Control"] = "no-store"
    body = upstream.aiter_bytes()
    if "json" in upstream.headers.get("content-type", ""):  # metadata and searches; never pixel data
        body = replace_streamed(body, theirs.encode(), ours.encode())
    return StreamingResponse(body, status_code=upstream.status_code, headers=out, background=BackgroundTask(close))
