"""Identity providers' signing keys for AssumeRoleWithWebIdentity: fetched, bounded, cached.

Theory of operation
-------------------
The only module of the backend that talks to an identity provider. For a provider URL
(as registered in IAM) ``JwksCache.key`` returns the JWK a token's ``kid`` names:

1. ``GET URL/.well-known/openid-configuration`` [OpenID Connect Discovery 1.0 §4]; its
   ``issuer`` must equal the token's ``iss`` (§4.3) and its ``jwks_uri`` must be
   ``https://``, or ``http://`` on a loopback host (as for the provider URL itself,
   ``iam_oidc.checked_url``); a link-local address is never fetched (no instance
   metadata through a hostile discovery document);
2. ``GET jwks_uri``: ``{"keys": [JWK, ...]}``.

Each request has short timeouts (``TIMEOUT`` per phase, ``DEADLINE`` for the whole
document), follows no redirect, ignores proxy settings, and reads at most
``MAX_DOCUMENT_BYTES``: a provider cannot make the backend wait long or buffer much.
Failures map to AWS errors (``web_identity``): no connection, a timeout or a 5xx/429 is
IDPCommunicationError (transient; SDKs retry it); a reachable provider without a usable
key (4xx, bad JSON, wrong issuer, unknown ``kid``) is InvalidIdentityToken.

Caching (per provider URL): a key set is used for ``ttl`` (1 h). A token whose ``kid``
is not in the set triggers a fresh fetch at most once per ``refresh_interval`` (60 s),
so a stream of tokens with made-up ``kid`` values costs the provider one fetch a minute;
a failed fetch is not retried for ``retry_after_failure`` (5 s). When the provider is
unreachable, a stale set still serves the keys it has. One fetch per provider at a time
(a lock per URL): concurrent callers wait for it and then read the cache.

Threads: ``key`` blocks while it fetches, so the backend calls it only from a worker
thread, never on the event loop, and never while holding the store's write lane
(``app.Backend``'s web-identity lane). The cache is shared by those threads (locks).
Time here is a monotonic clock (injectable), not the wall clock.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from sts_backend.errors import BackendError
from sts_backend.web_identity import idp_unreachable, key_unavailable
from wire.listeners import is_loopback_host

__all__ = ["DEADLINE", "JwksCache", "MAX_DOCUMENT_BYTES", "TIMEOUT", "fetch_signing_keys"]

TIMEOUT = 3.0
DEADLINE = 5.0
MAX_DOCUMENT_BYTES = 64 * 1024
_MAX_PROVIDERS = 256
_WELL_KNOWN = "/.well-known/openid-configuration"
_IMDS_V6 = ipaddress.ip_address("fd00:ec2::254")   # EC2's metadata service over IPv6: unique-local, not link-local


def _fetchable(url: str) -> bool:
    """``https://``, or ``http://`` on loopback; never a link-local address."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if address.is_link_local or address == _IMDS_V6:
            return False
    except ValueError:
        pass
    return bool(host) and (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host)))


def _get_json(client: httpx.Client, url: str, monotonic: Callable[[], float]) -> Any:
    if not _fetchable(url):
        raise key_unavailable()
    started = monotonic()
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise idp_unreachable()
            if response.status_code != 200:
                raise key_unavailable()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise key_unavailable()
                if monotonic() - started > DEADLINE:
                    raise idp_unreachable()
    except httpx.HTTPError:
        raise idp_unreachable() from None
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise key_unavailable() from None


def fetch_signing_keys(url: str, issuer: str, monotonic: Callable[[], float] = time.monotonic) -> list[dict]:
    """The JWKs of the provider at ``url`` (discovery, then ``jwks_uri``); blocks.

    Raises:
        SenderError: IDPCommunicationError or InvalidIdentityToken (module docstring).
    """
    timeout = httpx.Timeout(TIMEOUT)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        config = _get_json(client, url.rstrip("/") + _WELL_KNOWN, monotonic)
        if not isinstance(config, dict) or config.get("issuer") != issuer:
            raise key_unavailable()
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise key_unavailable()
        document = _get_json(client, jwks_uri, monotonic)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise key_unavailable()
    return [k for k in keys if isinstance(k, dict)]


def _select(keys: list[dict], kid: str | None) -> dict | None:
    """The key ``kid`` names; without a kid, the set's only signing key."""
    if kid is not None:
        return next((k for k in keys if k.get("kid") == kid), None)
    signing = [k for k in keys if k.get("use") in (None, "sig")]
    return signing[0] if len(signing) == 1 else None


@dataclass
class _Entry:
    keys: list[dict] | None = None   # the last key set fetched (None: never fetched)
    fetched: float = 0.0             # when ``keys`` was fetched
    attempted: float = 0.0           # when a fetch was last tried
    error: BackendError | None = None  # how the last fetch failed (None: it worked)


class JwksCache:
    """Signing keys per provider URL, shared by the backend's worker threads.

    Args:
        fetch: ``(url, issuer) -> [JWK]``, blocking (``fetch_signing_keys`` by default).
        monotonic: the clock for the intervals.
        ttl, refresh_interval, retry_after_failure: seconds (module docstring).
    """

    def __init__(self, fetch: Callable[[str, str], list[dict]] | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic, ttl: float = 3600.0,
                 refresh_interval: float = 60.0, retry_after_failure: float = 5.0) -> None:
        self._fetch = fetch or (lambda url, issuer: fetch_signing_keys(url, issuer, monotonic))
        self._monotonic = monotonic
        self._ttl, self._refresh, self._retry = ttl, refresh_interval, retry_after_failure
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0  # how many fetches were tried (for tests and metrics)

    def key(self, url: str, issuer: str, kid: str | None) -> dict:
        """The JWK ``kid`` names for the provider at ``url`` (tokens from ``issuer``); may fetch.

        Raises:
            SenderError: IDPCommunicationError or InvalidIdentityToken.
        """
        with self._lock_for(url):
            entry = self._entries.setdefault(url, _Entry())
            now = self._monotonic()
            found = _select(entry.keys, kid) if entry.keys is not None else None
            if found is not None and now - entry.fetched < self._ttl:
                return found
            if entry.keys is not None and entry.error is None and found is None and now - entry.attempted < self._refresh:
                raise key_unavailable()
            if entry.error is not None and now - entry.attempted < self._retry:
                if found is not None and entry.error.code == "IDPCommunicationError":
                    return found   # stale, while the provider is unreachable
                raise entry.error
            return self._refetch(entry, url, issuer, kid, found, now)

    def _refetch(self, entry: _Entry, url: str, issuer: str, kid: str | None, stale: dict | None,
                 now: float) -> dict:
        self.fetches += 1
        entry.attempted = now
        try:
            entry.keys, entry.fetched, entry.error = self._fetch(url, issuer), now, None
        except BackendError as exc:
            entry.error = exc
            if stale is not None and exc.code == "IDPCommunicationError":
                return stale
            raise
        found = _select(entry.keys, kid)
        if found is None:
            raise key_unavailable()
        return found

    def _lock_for(self, url: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(url)
            if lock is None:
                if len(self._locks) >= _MAX_PROVIDERS:
                    self._locks.clear()
                    self._entries.clear()
                lock = self._locks[url] = threading.Lock()
            return lock
