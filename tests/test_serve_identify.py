"""The serving layer's ``identify`` hook: once per connection, on every request of it, capped per uid.

Real loopback sockets; the hook is a recording fake here (the real one,
``wire.peer_identity.lookup``, is tested on its own and end to end in
tests/test_per_caller_roles.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import trio

from tests.servers import start_server
from wire.http import HttpResponse, Limits


@dataclass(frozen=True)
class Caller:
    uid: int


class Recording:
    """``identify``: every client port gets uid 1000 + (port % 2), every call is counted."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, local, peer):
        self.calls.append((local, peer))
        return Caller(1000 + peer[1] % 2)


async def whoami(request):
    return HttpResponse(200, (("Content-Type", "text/plain"),), str(request.caller.uid).encode())


async def test_the_caller_is_identified_once_per_connection_and_reaches_every_request(nursery):
    identify = Recording()
    running = await start_server(nursery, whoami, identify=identify)
    async with httpx.AsyncClient() as client:     # keep-alive: one connection
        answers = [await client.get(running.url + "/") for _ in range(3)]
    assert len(identify.calls) == 1
    local, peer = identify.calls[0]
    assert local == running.host_port() and peer[0] == "127.0.0.1"
    assert {a.text for a in answers} == {str(1000 + peer[1] % 2)}


async def test_a_failing_hook_leaves_the_caller_unknown(nursery):
    def broken(local, peer):
        raise OSError("netlink says no")

    async def caller_of(request):
        return HttpResponse(200, (), repr(request.caller).encode())

    running = await start_server(nursery, caller_of, identify=broken)
    async with httpx.AsyncClient() as client:
        assert (await client.get(running.url + "/")).text == "None"


async def test_connections_of_one_uid_are_capped(nursery):
    same = Caller(4242)
    running = await start_server(nursery, whoami, identify=lambda local, peer: same,
                                 limits=Limits(max_connections_per_uid=2))
    host, port = running.host_port()
    held = [await trio.open_tcp_stream(host, port) for _ in range(2)]
    for stream in held:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"4242" in await stream.receive_some(4096)
    extra = await trio.open_tcp_stream(host, port)
    await extra.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        assert await _read_to_close(extra) == b""       # closed at accept, unanswered
    await held[0].aclose()
    with trio.fail_after(5):
        while running.server.connection_count > 1:
            await trio.sleep(0.01)
    again = await trio.open_tcp_stream(host, port)
    await again.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"4242" in await again.receive_some(4096)
    for stream in (*held[1:], extra, again):
        await stream.aclose()


async def _read_to_close(stream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(4096):
            data += chunk
    except trio.BrokenResourceError:
        pass
    return data
