"""Start rolecall HTTP servers in tests: on loopback port 0, or over memory streams.

Real sockets (I/O behaviour, real clients such as httpx or an SDK)::

    running = await start_server(nursery, handler)            # 127.0.0.1:0
    async with httpx.AsyncClient() as client:
        await client.get(running.url + "/latest/meta-data/")
    running.shutdown()                                        # graceful, optional

Memory streams (unit level; works under ``autojump_clock``)::

    server, client = await start_memory_server(nursery, handler)
    stream = await client.connect()          # a trio.StapledStream
    response = await H11Client(stream).request("GET", "/")

``H11Client`` speaks through ``h11.Connection(h11.CLIENT)``, so it also checks
that what the server wrote is valid HTTP/1.1.
"""

from __future__ import annotations

import pytest
import re
import socket
from dataclasses import dataclass, field

import h11
import trio
import trio.testing

from wire.listeners import open_tcp_listeners
from wire.serve import Server

__all__ = [
    "ClientResponse",
    "H11Client",
    "MemoryListener",
    "RecordingListener",
    "RunningServer",
    "ipv6_loopback_available",
    "read_until_eof",
    "start_memory_server",
    "start_server",
    "statuses",
]


@dataclass
class RunningServer:
    """A ``Server`` serving in a nursery, and the "H:P" addresses it listens on.

    ``accepted`` holds the server's end of every connection when started with
    ``record_streams=True`` (to inspect socket options, e.g. the IP TTL).
    """

    server: Server
    addresses: list[str]
    accepted: list[trio.SocketStream] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://H:P`` of the first listener."""
        return "http://" + self.addresses[0]

    @property
    def urls(self) -> list[str]:
        return ["http://" + address for address in self.addresses]

    def host_port(self, index: int = 0) -> tuple[str, int]:
        host, _, port = self.addresses[index].rpartition(":")
        return host.strip("[]"), int(port)

    def shutdown(self) -> None:
        self.server.shutdown()


async def start_server(
    nursery: trio.Nursery, handler, addresses=("127.0.0.1:0",), *, record_streams: bool = False, **kwargs
) -> RunningServer:
    """Serve ``handler`` on ``addresses`` (port 0 = a free port) in ``nursery``.

    ``kwargs`` go to ``wire.serve.Server`` (``limits``, ``date_header``,
    ``shutdown_grace``). Returns once the listeners accept connections.
    """
    server = Server(handler, **kwargs)
    listeners = await open_tcp_listeners(list(addresses))
    accepted: list[trio.SocketStream] = []
    if record_streams:
        listeners = [RecordingListener(listener, accepted) for listener in listeners]
    bound = await nursery.start(server.serve, listeners)
    return RunningServer(server, bound, accepted)


class RecordingListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener that also keeps every stream it accepts (in ``accepted``)."""

    def __init__(self, inner: trio.abc.Listener, accepted: list[trio.abc.Stream]) -> None:
        self.transport_listener = inner  # how the server finds the socket (as for SSLListener)
        self.accepted = accepted

    async def accept(self) -> trio.abc.Stream:
        stream = await self.transport_listener.accept()
        self.accepted.append(stream)
        return stream

    async def aclose(self) -> None:
        await self.transport_listener.aclose()


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are in-memory stream pairs (after trio's tests)."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](1000)

    async def connect(self) -> trio.StapledStream:
        """A new connection: returns the client end, queues the server end."""
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()


async def start_memory_server(nursery: trio.Nursery, handler, **kwargs) -> tuple[Server, MemoryListener]:
    """A ``Server`` on a ``MemoryListener``: ``await listener.connect()`` to talk to it."""
    server = Server(handler, **kwargs)
    listener = MemoryListener()
    await nursery.start(server.serve, [listener])
    return server, listener


@dataclass
class ClientResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    informational: list[int] = field(default_factory=list)


class H11Client:
    """One keep-alive HTTP/1.1 client connection over any trio stream."""

    def __init__(self, stream: trio.abc.Stream, host: str = "rolecall.test") -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    async def request(self, method: str, target: str, headers=(), body: bytes = b"") -> ClientResponse:
        """Send one request (Content-Length framed when there is a body); read the response."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        headers = [("Host", self.host), *headers]
        if body and not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        return await self.read_response()

    async def read_response(self) -> ClientResponse:
        informational, response, body = [], None, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                headers = {name.decode(): value.decode("latin-1") for name, value in response.headers}
                return ClientResponse(response.status_code, headers, body, informational)
            else:
                raise AssertionError(f"unexpected {event!r}")


async def read_until_eof(stream: trio.abc.Stream, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    data = b""
    while len(data) < limit:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return data


_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def statuses(raw: bytes) -> list[int]:
    """The status codes of the responses in ``raw`` (bodies must not contain status lines)."""
    return [int(code) for code in _STATUS_LINE.findall(raw)]


def ipv6_loopback_available() -> bool:
    """Whether ``[::1]`` can be bound here (IPv6 enabled on ``lo``)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# Tests that bind [::1] skip, saying why, where IPv6 is off on lo (some containers).
requires_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="IPv6 is not enabled on lo ([::1] cannot be bound)")
