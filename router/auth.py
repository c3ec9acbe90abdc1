"""Client API keys -> tenants, and the admin key. Keys are kept only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from router.api.errors import APIError
from router.config import AuthSettings

logger = logging.getLogger(__name__)

OPEN_TENANT = "open"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """Resolves the caller's tenant. In open mode (the demo) any bearer token, or none, is accepted."""

    def __init__(self, settings: AuthSettings, open_mode: bool = False) -> None:
        self._open = open_mode or settings.open
        self._tenants = {entry.key_sha256: entry.tenant for entry in settings.keys}
        self._admin_hash = settings.admin_key_sha256
        if self._open:
            logger.warning("auth is OPEN: any caller is accepted (demo mode or auth.open in the config)")

    @property
    def is_open(self) -> bool:
        return self._open

    def tenant(self, headers: Mapping[str, str]) -> str:
        token = bearer_token(headers)
        if self._open:
            return OPEN_TENANT
        if token is None:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
        digest = hash_key(token)
        # Compare against every stored hash in constant time, so timing says nothing about near misses.
        found: str | None = None
        for stored, tenant in self._tenants.items():
            if hmac.compare_digest(stored, digest):
                found = tenant
        if found is None:
            raise APIError(401, "invalid API key", "invalid_api_key")
        return found

    def require_admin(self, headers: Mapping[str, str]) -> None:
        if self._open:
            return
        token = bearer_token(headers)
        if token is None:
            raise APIError(401, "missing admin key: send 'Authorization: Bearer <admin key>'", "missing_api_key")
        if self._admin_hash is None or not hmac.compare_digest(self._admin_hash, hash_key(token)):
            raise APIError(403, "this endpoint needs the admin key", "admin_required")
