"""API keys: admin keys guard writes and admin endpoints, search keys (when any) guard search.

Keys are held only as SHA-256 digests, compared in constant time, and never logged. Plain keys
come from the environment (`SEARCH_API_ADMIN_KEY`, `SEARCH_API_KEYS`); config files carry digests
(`sha256:<hex>`, made by `search-api hash-key`). An unsalted digest suits keys drawn at random
(`search-api hash-key --generate`), which no dictionary holds; it is not meant for passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from search_api.errors import Forbidden, Unauthorized
from search_api.settings import ServiceSettings

API_KEY_HEADER = "X-API-Key"
HASH_PREFIX = "sha256:"
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The config form of a key: `sha256:<hex digest>`."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """A set of accepted keys, as digests."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, plain: Iterable[str] = (), hashed: Iterable[str] = (), *, setting: str = "") -> KeyRing:
        """Accept these plain keys and `sha256:<hex>` digests; a malformed digest is a ValueError."""
        digests = [hashlib.sha256(k.encode()).digest() for k in plain if k]
        for entry in hashed:
            if not _HASH.match(entry.strip().lower()):
                # The entry may be a key pasted by mistake: name the setting, never echo the value.
                raise ValueError(f"{setting or 'key hashes'}: each entry must be 'sha256:' and 64 hex digits")
            digests.append(bytes.fromhex(entry.strip().lower()[len(HASH_PREFIX) :]))
        return cls(tuple(digests))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __repr__(self) -> str:
        return f"KeyRing({len(self.digests)} keys)"

    def accepts(self, given: str) -> bool:
        """Whether `given` is one of the keys; every digest is compared, so timing says nothing."""
        digest = hashlib.sha256(given.encode()).digest()
        found = False
        for expected in self.digests:
            found |= hmac.compare_digest(digest, expected)
        return found


@dataclass(frozen=True)
class AccessKeys:
    """Admin keys and search keys of one app. An admin key opens search too."""

    admin: KeyRing
    search: KeyRing

    @classmethod
    def from_settings(cls, service: ServiceSettings) -> AccessKeys:
        """Read the keys of `[service]`; raises ValueError on a malformed digest."""
        admin = KeyRing.of([service.admin_key], service.admin_key_hashes, setting="service.admin_key_hashes")
        search = KeyRing.of(service.api_keys, service.api_key_hashes, setting="service.api_key_hashes")
        return cls(admin, search)

    @property
    def search_open(self) -> bool:
        """Search needs no key unless a search key is configured."""
        return not self.search


def _check(connection: ASGIConnection[Any, Any, Any, Any], rings: tuple[KeyRing, ...]) -> None:
    given = connection.headers.get(API_KEY_HEADER)
    if not given:
        raise Unauthorized(f"this endpoint needs the {API_KEY_HEADER} header", code="missing_api_key")
    if not any([ring.accepts(given) for ring in rings]):  # a list: every ring is checked
        raise Forbidden("the API key is not valid for this endpoint", code="invalid_api_key")


def _keys(connection: ASGIConnection[Any, Any, Any, Any]) -> AccessKeys:
    keys: AccessKeys = connection.app.state.access_keys
    return keys


# Guards are coroutines on purpose: Litestar hands a plain function to a worker thread on every
# request, and that hop cost more than the whole check (py-spy on the cache-hit path).
async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Require an admin key in `X-API-Key` when one is configured (writes are open otherwise)."""
    keys = _keys(connection)
    if keys.admin:
        _check(connection, (keys.admin,))


async def search_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Require a search or admin key in `X-API-Key` when search keys are configured."""
    keys = _keys(connection)
    if not keys.search_open:
        _check(connection, (keys.search, keys.admin))
