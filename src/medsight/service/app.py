"""The HTTP API (FastAPI): upload and STOW-RS in, queries out, health, metrics, dashboard.

Every route except ``/health`` and ``/health/ready`` needs a Bearer token; the dashboard's
static shell (``/ui/``) holds no data and signs in with a token like any client. The OpenAPI
document is at ``/openapi.json`` (any valid token); ``/docs`` leads to Swagger UI
(``/ui/api.html``, Swagger UI's files from the swagger-ui-py package), which reads it with the token the
dashboard signed in with.
"""


import logging
from pathlib import Path
from typing import Any

from medsight.errors import AuthError, MedSightError, RefusedInputError
from medsight.service import audit
from medsight.service.auth import token_hint
from medsight.service.context import ServiceContext
from medsight.service.logs import safe_error

__all__ = ["create_app", "SECURITY_HEADERS", "SecurityHeaders"]

log = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"

#: Headers on every response. Scripts only from the service itself (the dashboard and Swagger UI
#: have no inline scripts); inline style attributes are allowed (the dashboard's label swatches,
#: Swagger UI's React styles); images also from data: (Swagger UI's icons) and blob: (the
#: dashboard fetches images with its token and shows them as blob URLs); no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every response, and ``Cache-Control:
    no-store`` on JSON answers (they carry patient data) unless the route set its own."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.datastructures import MutableHeaders

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if "json" in headers.get("content-type", ""):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _swagger_static() -> Path:
    """The folder of Swagger UI's files in the swagger-ui-py package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise ImportError("swagger-ui-py is not installed: pip install 'medsight[service]'")
    return Path(spec.origin).parent / "static"


def create_app(ctx: ServiceContext) -> Any:
    """Build the FastAPI application for a service context."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    import medsight
    from medsight.service.api_deps import HTTP_STATUS_BY_CODE
    from medsight.service.api_dicomweb import router as dicomweb_router
    from medsight.service.api_ingest import router as ingest_router
    from medsight.service.api_query import router as query_router
    from medsight.service.prometheus import render_metrics

    app = FastAPI(title="MedSight service", version=medsight.__version__, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="DICOM-in, model, DICOM-out: uploads, STOW-RS, results, alerts, patient timelines.")
    app.state.ctx = ctx
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        from medsight.service.api_deps import client_address, route_template

        forbidden, wait = getattr(exc, "forbidden", False), getattr(exc, "retry_after", 0)
        if wait:  # locked out: answered without a log line or audit row each
            return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(int(wait) + 1)})
        client, route = client_address(request), route_template(request)
        reason = "forbidden role" if forbidden else "missing or invalid token"
        locked = not forbidden and ctx.auth.limiter.failed(client)
        log.warning("HTTP %s %s refused: %s (client %s)%s", request.method, route, reason, client,
                    f"; locked out for {ctx.cfg.auth.lockout_s:.0f} s" if locked else "")
        await run_in_threadpool(_audit_auth_failed, route, client, reason, token_hint(request.headers.get(
            "authorization")), locked)
        headers = {} if forbidden else {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"error": str(exc)}, status_code=403 if forbidden else 401, headers=headers)

    def _audit_auth_failed(route: str, client: str, reason: str, hint: str | None, locked: bool) -> None:
        try:
            with ctx.db.session() as s:
                audit.record(s, f"client:{client}", "auth_failed", "route", route, reason=reason, client=client,
                             token_sha256_prefix=hint, locked_out=locked)
        except Exception as exc:  # noqa: BLE001 - a refusal is answered even when the audit cannot be written
            log.warning("could not audit a failed authentication: %s", safe_error(exc))

    @app.exception_handler(RefusedInputError)
    async def _refused(request: Request, exc: RefusedInputError) -> JSONResponse:
        return JSONResponse({"error": safe_error(exc), "code": exc.code},
                            status_code=HTTP_STATUS_BY_CODE.get(exc.code, 422))

    @app.exception_handler(MedSightError)
    async def _medsight_error(request: Request, exc: MedSightError) -> JSONResponse:
        return JSONResponse({"error": safe_error(exc)}, status_code=400)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    def ready() -> JSONResponse:
        """Readiness: the database answers and every component is running.

        ``outputs`` lists, per destination, the result objects by delivery status and the last
        check of the destination. A backlog does not make the service unready: it still
        receives and processes, and delivers the backlog once the destination is back.
        """
        from sqlalchemy import text

        from medsight.service.delivery import delivery_report

        checks: dict[str, bool] = {}
        outputs: dict[str, Any] = {}
        try:
            with ctx.db.session() as s:
                s.execute(text("SELECT 1"))
                outputs = delivery_report(s)
            checks["database"] = True
        except Exception:  # noqa: BLE001
            checks["database"] = False
        for name, fn in ctx.checks.items():
            try:
                checks[name] = bool(fn())
            except Exception:  # noqa: BLE001
                checks[name] = False
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks, "outputs": outputs},
                            status_code=200 if ok else 503)

    from medsight.service.api_deps import require

    @app.get("/metrics", tags=["health"])
    def metrics(_: Any = Depends(require("read"))) -> Any:
        """Prometheus text exposition (needs a reader or admin token)."""
        from fastapi.responses import Response

        body, content_type = render_metrics(ctx)
        return Response(body, media_type=content_type)

    @app.get("/openapi.json", tags=["health"])
    def openapi(_: Any = Depends(require(None))) -> dict[str, Any]:
        """The OpenAPI document (any valid token)."""
        return app.openapi()

    app.include_router(ingest_router)  # POST /dicom-web/studies (STOW-RS) before the proxy's GET /dicom-web/...
    app.include_router(query_router)
    app.include_router(dicomweb_router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/docs", include_in_schema=False)
    def docs() -> RedirectResponse:
        return RedirectResponse("/ui/api.html")

    from medsight.service.viewer import mount_viewer

    mount_viewer(app, ctx.cfg.viewer.ohif_dir)

    # Swagger UI 5's own files (OpenAPI 3.1) from the swagger-ui-py package: no CDN, works offline
    app.mount("/ui/swagger", StaticFiles(directory=str(_swagger_static())), name="swagger")
    app.mount("/ui", StaticFiles(directory=str(WEB), html=True), name="ui")
    return app
