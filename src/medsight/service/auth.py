"""Token authentication with roles.

Tokens are compared by SHA-256 digest (the config may hold only the digest). Roles:

* ``admin``: everything, including the audit log;
* ``reader``: queries, results, images, alerts, timelines, metrics, the dashboard's data;
* ``sender``: image upload and STOW-RS only.

Only the health endpoints answer without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from medsight.errors import AuthError
from medsight.service.config import TokenConfig

__all__ = ["Principal", "TokenAuth", "ROLE_GRANTS"]

log = logging.getLogger(__name__)

#: What each role may do (an endpoint names the permission it needs).
ROLE_GRANTS = {"admin": {"admin", "read", "send"}, "reader": {"read"}, "sender": {"send"}}


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"http:{self.name}"


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` headers against the configured tokens.

    Args:
        tokens: the ``auth.tokens`` section.
    """

    def __init__(self, tokens: list[TokenConfig]) -> None:
        self._by_digest: dict[str, Principal] = {}
        for t in tokens:
            d = t.digest()
            if d is None:
                log.warning("token '%s': environment variable %s is not set; the token is disabled", t.name,
                            t.token_env)
                continue
            self._by_digest[d] = Principal(t.name, t.role)

    def authenticate(self, header: str | None) -> Principal:
        """The principal for an Authorization header.

        Raises:
            AuthError: no header, not a Bearer token, or an unknown token.
        """
        if not header:
            raise AuthError("expected an 'Authorization: Bearer <token>' header; found none")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(f"expected a Bearer token; found a {scheme or 'malformed'!r} authorization")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthError("expected a valid token; this one is unknown or revoked")

    @staticmethod
    def authorize(principal: Principal, permission: str) -> None:
        """Raise :class:`AuthError` (with ``forbidden`` set) when the role lacks ``permission``."""
        if permission not in ROLE_GRANTS.get(principal.role, set()):
            err = AuthError(f"expected a token allowed to '{permission}'; '{principal.name}' has role "
                            f"'{principal.role}'")
            err.forbidden = True  # type: ignore[attr-defined]
            raise err
