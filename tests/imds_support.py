"""Helpers for tests of (and against) the metadata server: credentials and live servers.

Test support only (the benchmarks use it too); the HTTP client is
``tests.servers.H11Client``, the one h11 client of the test suite.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from metadata_server.credentials import RoleCredentials
from wire.http import Handler, Limits
from wire.listeners import open_tcp_listeners
from tests.servers import H11Client
from wire.serve import Server

__all__ = ["Recorder", "SimpleHolder", "http_request", "running", "sample_credentials"]


class SimpleHolder:
    """A credential holder that serves whatever was last ``set()`` (the agent's is its ``Rotator``)."""

    __slots__ = ("_credentials",)

    def __init__(self, credentials: RoleCredentials | None = None) -> None:
        self._credentials = credentials

    def current(self) -> RoleCredentials | None:
        return self._credentials

    def set(self, credentials: RoleCredentials | None) -> None:
        """Replace what is served (None: serve nothing, i.e. 503)."""
        self._credentials = credentials

    def clear(self) -> None:
        """Serve nothing until the next ``set()``."""
        self._credentials = None

    def __repr__(self) -> str:
        return f"SimpleHolder({self._credentials!r})"


def sample_credentials(
    now: _dt.datetime,
    *,
    lifetime: _dt.timedelta = _dt.timedelta(hours=6),
    role_name: str = "rolecall-test",
    account_id: str | None = "123456789012",
) -> RoleCredentials:
    """Credentials obtained at ``now`` and valid for ``lifetime``, with unique random secrets.

    The secret and token are random each call, so a test can search any
    response for them to prove they did not leak.
    """
    now = now.replace(microsecond=0)
    return RoleCredentials(
        role_name=role_name,
        access_key_id="ASIA" + secrets.token_hex(8).upper(),
        secret_access_key=secrets.token_urlsafe(30)[:40],
        token="IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(300),
        expiration=now + lifetime,
        last_updated=now,
        account_id=account_id,
    )


class Recorder:
    """Wraps a handler and keeps every request it saw (for assertions on what a client sent)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list = []

    async def __call__(self, request):
        self.requests.append(request)
        response = self.handler(request)
        if not hasattr(response, "status"):
            response = await response
        return response


@asynccontextmanager
async def running(
    handler: Handler, addresses: Sequence[str] = ("127.0.0.1:0",), *, limits: Limits | None = None
) -> AsyncIterator[list[str]]:
    """Serve ``handler`` on loopback for the duration of the block; yields the ``"H:P"`` addresses."""
    async with trio.open_nursery() as nursery:
        listeners = await open_tcp_listeners(addresses)
        server = Server(handler, limits=limits or Limits(), shutdown_grace=0.5)
        bound = await nursery.start(server.serve, listeners)
        try:
            yield bound
        finally:
            nursery.cancel_scope.cancel()


async def http_request(
    address: str, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a new loopback connection, in trio (so it runs in virtual time).

    ``Host`` defaults to ``169.254.169.254``. Returns ``(status, headers, body)``
    with header names lower-cased (last value wins).
    """
    host, _, port = address.rpartition(":")
    stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    async with stream:
        given = dict((name.lower(), value) for name, value in headers)
        rest = [(name, value) for name, value in headers if name.lower() != "host"]
        client = H11Client(stream, host=given.get("host", "169.254.169.254"))
        response = await client.request(method, target, [*rest, ("Content-Length", str(len(body)))], body)
    return response.status, response.headers, response.body
