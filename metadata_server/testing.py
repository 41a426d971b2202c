"""Helpers for tests of (and against) the metadata server: credentials and live servers.

Like ``trio.testing``: shipped with the package so the agent's and the CLI's
tests can start a real metadata server on a loopback port without copying
code. Nothing here is used in production.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import h11
import trio

from metadata_server.credentials import RoleCredentials
from wire.http import Handler, Limits
from wire.listeners import open_tcp_listeners
from wire.serve import Server

__all__ = ["Recorder", "http_request", "running", "sample_credentials"]


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
        conn = h11.Connection(h11.CLIENT)
        names = {name.lower() for name, _ in headers}
        sent = list(headers)
        if "host" not in names:
            sent.insert(0, ("Host", "169.254.169.254"))
        sent.append(("Content-Length", str(len(body))))
        data = conn.send(h11.Request(method=method, target=target, headers=sent))
        data += conn.send(h11.Data(data=body)) if body else b""
        await stream.send_all(data + conn.send(h11.EndOfMessage()))
        status, got, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, got, b"".join(chunks)
