"""Token authentication with roles.

Tokens are compared by SHA-256 digest (the config may hold only the digest). Roles:

* ``admin``: everything, including the audit log;
* ``reader``: queries, results, images, alerts, timelines, metrics, the dashboard's data;
* ``sender``: image upload and STOW-RS only.

Only the health endpoints answer without a token. Failed authentications are audited
(``auth_failed``) and limited per client address (:class:`FailureLimiter`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from medsight.errors import AuthError, ConfigError
from medsight.service.config import TokenConfig

__all__ = ["Principal", "TokenAuth", "FailureLimiter", "ROLE_GRANTS", "MIN_TOKEN_LENGTH", "token_hint"]

log = logging.getLogger(__name__)

#: tokens shorter than this are accepted with a warning
MIN_TOKEN_LENGTH = 16


def token_hint(header: str | None) -> str | None:
    """The first 8 hex digits of the SHA-256 of the token in an Authorization header (what the
    audit records of a refused token: enough to tell two apart, nothing to replay)."""
    token = (header or "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:8] if token else None


class FailureLimiter:
    """Counts failed authentications per client address.

    After ``max_failures`` failures within ``window_s`` seconds an address is locked out for
    ``lockout_s`` seconds. Thread-safe; state is per process and kept for at most
    ``max_clients`` addresses (the stalest are forgotten first).
    """

    def __init__(self, max_failures: int, window_s: float, lockout_s: float, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when it is not locked out)."""
        with self._lock:
            until = self._locked_until.get(client)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._locked_until[client]
                return 0.0
            return left

    def failed(self, client: str) -> bool:
        """Record a failure of ``client``; True when it locks the client out now."""
        t = self._clock()
        with self._lock:
            q = self._failures.pop(client, None) or deque()
            self._failures[client] = q  # re-inserted: the dict's order is least recently failed first
            q.append(t)
            while q and q[0] < t - self.window_s:
                q.popleft()
            while len(self._failures) > self.max_clients:
                self._failures.pop(next(iter(self._failures)))
            if len(q) >= self.max_failures:
                q.clear()
                if len(self._locked_until) >= self.max_clients:
                    self._locked_until = {c: u for c, u in self._locked_until.items() if u > t}
                self._locked_until[client] = t + self.lockout_s
                return True
            return False

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
        limiter: counts failed authentications (none: a limiter that never locks anyone out).

    Raises:
        ConfigError: two tokens are the same secret (one given through an environment variable).
    """

    def __init__(self, tokens: list[TokenConfig], limiter: FailureLimiter | None = None) -> None:
        self._by_digest: dict[str, Principal] = {}
        self.limiter = limiter or FailureLimiter(2**31, 1.0, 1.0)
        for t in tokens:
            d = t.digest()
            if d is None:
                log.warning("token '%s': environment variable %s is not set; the token is disabled", t.name,
                            t.token_env)
                continue
            if d in self._by_digest:
                raise ConfigError(f"auth.tokens: tokens '{self._by_digest[d].name}' and '{t.name}' are the same "
                                  "secret; give each its own")
            secret = t.token or (None if t.token_sha256 else os.environ.get(t.token_env or ""))
            if secret is not None and len(secret) < MIN_TOKEN_LENGTH:
                log.warning("token '%s' is %d characters; use at least %d random ones (python -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))')", t.name, len(secret), MIN_TOKEN_LENGTH)
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
