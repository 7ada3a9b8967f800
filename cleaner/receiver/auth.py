"""Shared-token authentication: `Authorization: Bearer <token>` or `X-Api-Key: <token>`.

An EventBridge API destination with an API_KEY connection sends the key in the header named
by the connection (`X-Api-Key` here); people and scripts send a bearer token. Both are
compared in constant time, over SHA-256 digests so that not even the token's length leaks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

API_KEY_HEADER = "X-Api-Key"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


class TokenAuth:
    """Checks request headers against one configured token; None disables the check."""

    def __init__(self, token: str | None) -> None:
        if token is not None and not token:
            raise ValueError("an empty token would let anyone in; pass None to disable auth")
        self._expected = _digest(token) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when either header carries the token (or when auth is disabled)."""
        if self._expected is None:
            return True
        presented = (bearer_token(headers.get("Authorization")), headers.get(API_KEY_HEADER))
        # Compare both, always: the answer should not depend on which header was tried.
        matches = [
            value is not None and hmac.compare_digest(_digest(value), self._expected)
            for value in presented
        ]
        return any(matches)

    def __repr__(self) -> str:  # never show the token, not even hashed
        return f"TokenAuth({'enabled' if self.enabled else 'disabled'})"
