"""FastAPI dependencies shared by the API routers: the context, token checks and refusal statuses."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from medsight.errors import AuthError
from medsight.service.auth import Principal
from medsight.service.context import ServiceContext

__all__ = ["context", "require", "client_address", "route_template", "HTTP_STATUS_BY_CODE"]

#: HTTP status for each refusal code of :class:`~medsight.errors.RefusedInputError`.
HTTP_STATUS_BY_CODE = {"not_image": 415, "corrupt": 422, "missing_uid": 422, "unknown_modality": 422,
                       "too_large": 413}


def client_address(request: Request) -> str:
    """The client's address (uvicorn takes it from ``X-Forwarded-For`` when a proxy on
    127.0.0.1 sets it; otherwise a proxy's requests all come from the proxy's address)."""
    return request.client.host if request.client else "unknown"


def route_template(request: Request) -> str:
    """The matched route's path template (``/api/v1/patients/{patient_id}/timeline``), which,
    unlike the URL, never holds a patient identifier."""
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "(no route)")


def context(request: Request) -> ServiceContext:
    return request.app.state.ctx


def require(permission: str | None) -> Callable[..., Principal]:
    """A dependency that authenticates the request and checks ``permission`` (None: any role)."""

    def dep(request: Request) -> Principal:
        ctx: ServiceContext = request.app.state.ctx
        wait = ctx.auth.limiter.retry_after(client_address(request))
        if wait:
            err = AuthError(f"too many failed authentications from this address; try again in {wait:.0f} s")
            err.retry_after = wait  # type: ignore[attr-defined]
            raise err
        principal = ctx.auth.authenticate(request.headers.get("authorization"))
        if permission is not None:
            ctx.auth.authorize(principal, permission)
        request.state.principal = principal
        return principal

    return dep
