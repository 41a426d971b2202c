"""The pre-encoded floor: trio + h11 parsing only, the response written as prebuilt bytes.

The plain floor (../shared/bench/h11_floor.py) asks h11 to write every response
(three ``send()`` calls, h11's header validation) and reuses one
``h11.Connection`` with ``start_next_cycle()``. This one does what rolecall's
serving layer (``wire.serve``) does around the parser and nothing else: h11
parses each request; a fresh ``h11.Connection`` per request cycle, fed the
previous cycle's ``trailing_data`` (pipelined bytes kept); the first read of a
cycle happens before asking h11 for an event; the answer is one ``send_all`` of
bytes encoded once at start. No routing, no checks, no ``Date``, no timeouts.

The response bytes are exactly what the plain floor sends on the wire: its own
``BODY`` and ``HEADERS`` (read from the shared file) run through h11 once here.
So against the plain floor it isolates what writing the response through h11
costs, and against rolecall what everything rolecall does beyond parsing costs.

    python bench/h11_floor_preencoded.py PORT     # serves on 127.0.0.1:PORT until killed
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import h11
import trio

FLOOR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "h11_floor.py"
_RECEIVE_SIZE = 65536  # as the plain floor and wire.serve


def _floor_module():
    spec = importlib.util.spec_from_file_location("h11_floor", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoded_response(body: bytes, headers: list[tuple[str, str]], close: bool = False) -> bytes:
    """The bytes h11 writes for the plain floor's answer: keep-alive, or closing (h11 adds ``Connection: close``)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n")
    while type(conn.next_event()) is not h11.EndOfMessage:
        pass
    out = conn.send(h11.Response(status_code=200, headers=headers))
    return out + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())


async def handle(stream: trio.SocketStream, response: bytes, closing: bytes) -> None:
    pending, eof = b"", False
    try:
        while True:
            if not pending:
                if eof:
                    return
                pending = await stream.receive_some(_RECEIVE_SIZE)  # a request's first bytes
                if not pending:
                    return
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(pending)
            if eof:
                conn.receive_data(b"")
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
                elif type(event) is h11.EndOfMessage:
                    break
                elif type(event) is h11.ConnectionClosed:
                    return
            if conn.their_state is h11.MUST_CLOSE:  # Connection: close, or HTTP/1.0
                await stream.send_all(closing)
                return
            await stream.send_all(response)
            pending, eof = conn.trailing_data
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return


async def main(port: int) -> None:
    floor = _floor_module()
    response, closing = (encoded_response(floor.BODY, floor.HEADERS, close) for close in (False, True))
    await trio.serve_tcp(lambda stream: handle(stream, response, closing), port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
