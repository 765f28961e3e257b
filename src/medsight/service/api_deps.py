"""FastAPI dependencies shared by the API routers: the context and token checks."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from medsight.service.auth import Principal
from medsight.service.context import ServiceContext

__all__ = ["context", "require"]


def context(request: Request) -> ServiceContext:
    return request.app.state.ctx


def require(permission: str | None) -> Callable[..., Principal]:
    """A dependency that authenticates the request and checks ``permission`` (None: any role)."""

    def dep(request: Request) -> Principal:
        ctx: ServiceContext = request.app.state.ctx
        principal = ctx.auth.authenticate(request.headers.get("authorization"))
        if permission is not None:
            ctx.auth.authorize(principal, permission)
        request.state.principal = principal
        return principal

    return dep
