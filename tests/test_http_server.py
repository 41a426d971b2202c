"""The HTTP serving layer (wire.http, wire.serve, wire.listeners).

Unit-level behaviour runs over ``trio.testing`` memory streams, driven by an
``h11`` client or raw bytes, in virtual time (``autojump_clock``) wherever a
timeout is involved. What is about sockets — keep-alive with a real client,
IPv6, several listeners, the connection cap, socket activation, graceful
shutdown, the IP TTL — runs over loopback with real clients.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from tests.servers import (
    H11Client,
    MemoryListener,
    RecordingListener,
    ipv6_loopback_available,
    read_until_eof,
    start_memory_server,
    start_server,
    statuses,
)
from wire import http as wire_http
from wire import listeners as wire_listeners
from wire import serve as wire_serve
from wire.http import HttpRequest, HttpResponse, Limits, ResponseEncoder
from wire.listeners import format_address, inherited_listeners, listen_fds, open_tcp_listeners, parse_address
from wire.serve import Server

REPO = Path(__file__).resolve().parents[1]
needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="IPv6 is not enabled on the loopback interface")


def echo(request: HttpRequest) -> HttpResponse:
    document = {
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "query": request.query,
        "headers": [list(pair) for pair in request.headers],
        "body": request.body.decode("latin-1"),
        "version": request.http_version,
        "peer": request.peer,
        "local": request.local,
    }
    return HttpResponse(200, (("Content-Type", "application/json"),), json.dumps(document).encode())


async def echo_async(request: HttpRequest) -> HttpResponse:
    await trio.sleep(0)
    return echo(request)


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("Content-Type", "text/plain"),), b"ok")


@pytest.fixture
def http_log(caplog):
    """Records of logger rolecall.http at every level."""
    caplog.set_level(logging.DEBUG, logger="rolecall.http")
    return caplog


def assert_quiet(caplog) -> None:
    """Client faults: nothing above DEBUG and no traceback anywhere."""
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def memory_exchange(nursery, raw: bytes | list[bytes], handler=ok, **kwargs) -> bytes:
    """Send ``raw`` (or its pieces, one read each), half-close, return all the server wrote."""
    server, listener = await start_memory_server(nursery, handler, **kwargs)
    stream = await listener.connect()
    try:
        for piece in [raw] if isinstance(raw, bytes) else raw:
            await stream.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
        await stream.send_eof()
    except trio.BrokenResourceError:
        pass  # refused and closed before we were done
    out = await read_until_eof(stream)
    server.shutdown()
    return out


# -- the data types ----------------------------------------------------------------


def test_request_helpers():
    request = HttpRequest(
        "GET", "/a/b?x=1&y=?", (("host", "h"), ("x-two", "1"), ("x-two", "2")), b"", None, None, "1.1"
    )
    assert request.path == "/a/b"
    assert request.query == "x=1&y=?"
    assert request.header("X-Two") == "1"
    assert request.header("missing") is None
    assert request.header_values("x-two") == ["1", "2"]
    assert HttpRequest("GET", "/").query == ""


def test_dataclasses_are_frozen_and_slotted():
    response = HttpResponse(200, (), b"x")
    with pytest.raises(AttributeError):
        response.status = 500
    assert not hasattr(response, "__dict__")
    assert not hasattr(HttpRequest("GET", "/"), "__dict__")


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(max_connections=0)
    with pytest.raises(ValueError):
        Limits(request_timeout=-1)


def test_exported_names():
    assert set(wire_http.__all__) == {
        "Handler", "HttpDate", "HttpRequest", "HttpResponse", "Limits", "RequestRejected", "ResponseEncoder",
        "check_request_line", "error_response", "head_size", "http_version", "request_framing",
    }  # fmt: skip
    assert set(wire_serve.__all__) == {"ErrorRenderer", "Server", "accept_retrying", "serve"}
    assert set(wire_listeners.__all__) == {
        "format_address", "inherited_listeners", "inherited_listeners_by_name", "is_loopback_host", "listen_fds",
        "open_tcp_listeners", "parse_address",
    }  # fmt: skip


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("::1%lo", True), ("localhost", True),
    ("[::1]", True), ("::ffff:127.0.0.1", True), ("LOCALHOST.", True), ("api.localhost", True),
    ("0.0.0.0", False), ("::", False), ("169.254.169.254", False), ("10.0.0.1", False), ("example.com", False),
    ("::ffff:10.0.0.1", False), ("localhost.example.com", False),
])  # fmt: skip
def test_is_loopback_host(host, loopback):
    assert wire_listeners.is_loopback_host(host) is loopback


def test_encoder_frames_the_response():
    encoder = ResponseEncoder(wall_time=lambda: 1767225600.4)
    data, close = encoder.encode(HttpResponse(200, (("Content-Type", "text/plain"),), b"hello"))
    assert data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nhello"
    )
    assert not close
    head, _ = encoder.encode(HttpResponse(200, (), b"hello"), head_only=True)
    assert head.endswith(b"Content-Length: 5\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n")
    no_content, _ = ResponseEncoder(date_header=False).encode(HttpResponse(204, (), b"ignored"))
    assert no_content == b"HTTP/1.1 204 No Content\r\n\r\n"
    custom, _ = ResponseEncoder(date_header=False).encode(HttpResponse(299, (("Date", "x"),)))
    assert custom == b"HTTP/1.1 299 \r\nDate: x\r\nContent-Length: 0\r\n\r\n"


def test_encoder_date_changes_each_second():
    now = [1767225600.0]
    encoder = ResponseEncoder(wall_time=lambda: now[0])
    first, _ = encoder.encode(HttpResponse(200))
    now[0] += 1.0
    second, _ = encoder.encode(HttpResponse(200))
    assert b"00:00:00 GMT" in first and b"00:00:01 GMT" in second


@pytest.mark.parametrize(
    "headers",
    [
        (("X-Bad", "a\r\nSet-Cookie: injected"),),
        (("X-Bad", "nul\x00"),),
        (("Bad Name", "v"),),
        (("Content-Length", "3"),),
        (("Transfer-Encoding", "chunked"),),
        (("Connection", "keep-alive"),),
    ],
)
def test_encoder_refuses_unsendable_headers(headers):
    with pytest.raises(ValueError):
        ResponseEncoder().encode(HttpResponse(200, headers))


@pytest.mark.parametrize("status", [100, 199, 600, "200"])
def test_encoder_refuses_bad_status(status):
    with pytest.raises(ValueError):
        ResponseEncoder().encode(HttpResponse(status))


def test_encoder_honours_handler_connection_close():
    data, close = ResponseEncoder(date_header=False).encode(
        HttpResponse(200, (("Connection", "close"),)), connection=wire_http.CLOSE
    )
    assert close and data.count(b"Connection") == 1


def test_addresses_parse_and_format():
    assert parse_address("127.0.0.1:8169") == ("127.0.0.1", 8169)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("localhost:80") == ("localhost", 80)
    for bad in ("127.0.0.1", "::1:80", "[::1]", "h:99999", ":80", "[nothere]:1"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert format_address(("127.0.0.1", 8169)) == "127.0.0.1:8169"
    assert format_address(("::1", 8169, 0, 0)) == "[::1]:8169"


# -- request handling over memory streams -------------------------------------------


async def test_request_reaches_handler_intact(nursery):
    _, listener = await start_memory_server(nursery, echo)
    client = H11Client(await listener.connect())
    response = await client.request(
        "POST", "/p/q?a=1", [("X-Rep", "one"), ("X-Rep", "two"), ("X-Enc", "caf\xe9".encode("latin-1"))], b"body"
    )
    assert response.status == 200
    seen = json.loads(response.body)
    assert seen["method"] == "POST" and seen["target"] == "/p/q?a=1"
    assert seen["path"] == "/p/q" and seen["query"] == "a=1"
    assert seen["headers"] == [
        ["host", "rolecall.test"], ["x-rep", "one"], ["x-rep", "two"], ["x-enc", "caf\xe9"], ["content-length", "4"],
    ]  # fmt: skip
    assert seen["body"] == "body" and seen["version"] == "1.1" and seen["peer"] is None
    assert "date" in response.headers and response.headers["content-length"] == str(len(response.body))


async def test_keep_alive_memory_and_async_handler(nursery):
    _, listener = await start_memory_server(nursery, echo_async)
    client = H11Client(await listener.connect())
    for index in range(5):
        response = await client.request("GET", f"/{index}")
        assert json.loads(response.body)["target"] == f"/{index}"
        assert "connection" not in response.headers


async def test_pipelined_requests_answered_in_order(nursery):
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    out = await memory_exchange(nursery, raw + b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", echo)
    assert statuses(out) == [200, 200, 200, 200]
    assert re.findall(rb'"target": "([^"]*)"', out) == [b"/0", b"/1", b"/2", b"/last"]


async def test_every_split_point_of_pipelined_requests(nursery):
    raw = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
    for cut in range(1, len(raw)):
        out = await memory_exchange(nursery, [raw[:cut], raw[cut:]], echo)
        assert statuses(out) == [200, 200], (cut, out)
        assert re.findall(rb'"target": "([^"]*)"', out) == [b"/a", b"/b"]


async def test_connection_close_honoured(nursery):
    out = await memory_exchange(nursery, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n")
    assert statuses(out) == [200] and b"Connection: close" in out


async def test_handler_can_close_the_connection(nursery):
    def closing(request):
        return HttpResponse(200, (("Connection", "close"),), b"bye")

    twice = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 2
    out = await memory_exchange(nursery, twice, closing)
    assert statuses(out) == [200] and out.count(b"Connection: close") == 1


async def test_http10_closes_unless_keep_alive(nursery):
    out = await memory_exchange(nursery, b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    assert statuses(out) == [200] and b"Connection: close" in out
    keep = await memory_exchange(
        nursery, b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    )
    assert statuses(keep) == [200, 200] and keep.count(b"Connection: keep-alive") == 2


async def test_http11_minor_versions_and_other_majors(nursery):
    out = await memory_exchange(nursery, b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", echo)
    assert statuses(out) == [200] and b'"version": "1.2"' in out
    assert statuses(await memory_exchange(nursery, b"GET / HTTP/2.0\r\nHost: h\r\n\r\n")) == [505]


async def test_head_sends_length_without_body(nursery):
    out = await memory_exchange(nursery, b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 2\r\n" in out and out.endswith(b"\r\n\r\n")


async def test_date_header_optional(nursery):
    _, listener = await start_memory_server(nursery, ok, date_header=False)
    response = await H11Client(await listener.connect()).request("GET", "/")
    assert "date" not in response.headers


async def test_expect_100_continue(nursery):
    _, listener = await start_memory_server(nursery, echo)
    stream = await listener.connect()
    await stream.send_all(b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    interim = await stream.receive_some(65536)
    assert interim == b"HTTP/1.1 100 \r\n\r\n"
    await stream.send_all(b"hello")
    await stream.send_eof()
    out = await read_until_eof(stream)
    assert statuses(out) == [200] and b'"body": "hello"' in out


async def test_expect_100_continue_refused_when_too_large(nursery):
    _, listener = await start_memory_server(nursery, echo, limits=Limits(max_body_bytes=4))
    stream = await listener.connect()
    await stream.send_all(b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    out = await read_until_eof(stream)
    assert statuses(out) == [413] and b"Connection: close" in out


async def test_chunked_body(nursery):
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    out = await memory_exchange(nursery, raw, echo)
    assert statuses(out) == [200] and b'"body": "abcde"' in out


BAD_REQUESTS = {
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
    "bad request line": (b"GET /\r\nHost: h\r\n\r\n", 400),
    "bad method": (b"G(E)T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "nul in header": (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
    "no host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "bad content-length": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    "conflicting lengths": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    "unknown coding": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "bad chunk": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "header too large": (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    "too many headers": (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"a:\r\n" * 100 + b"\r\n", 431),
    "target too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    "body too large": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\nabc", 413),
    "chunked too large": (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 40,
        413,  # 40 chunks of 32 KiB, no Content-Length to check up front
    ),
    "lying content-length then EOF": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort", 400),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
async def test_malformed_requests_get_4xx_and_close(nursery, autojump_clock, http_log, name):
    raw, status = BAD_REQUESTS[name]
    out = await memory_exchange(nursery, raw, echo)
    assert statuses(out) == [status], out[:200]
    assert b"Connection: close" in out
    assert_quiet(http_log)


def _tagged_error(status: int) -> HttpResponse:
    """An application's own error format (here: JSON with a marker header)."""
    return HttpResponse(status, (("Content-Type", "application/json"), ("X-Error-From", "app")),
                        json.dumps({"status": status}).encode())


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
async def test_layer_errors_use_the_error_renderer(nursery, autojump_clock, http_log, name):
    raw, status = BAD_REQUESTS[name]
    calls = []

    def render(code: int) -> HttpResponse:
        calls.append(code)
        return _tagged_error(code)

    out = await memory_exchange(nursery, raw, echo, error_response=render)
    assert statuses(out) == [status] and calls == [status]
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"X-Error-From: app" in head and b"Connection: close" in head
    assert json.loads(body) == {"status": status}
    assert_quiet(http_log)


async def test_error_renderer_for_timeouts_and_handler_failures(nursery, autojump_clock, http_log):
    calls = []

    def render(code: int) -> HttpResponse:
        calls.append(code)
        return _tagged_error(code)

    async def handler(request):
        if request.path == "/slow":
            await trio.sleep(100)
        if request.path == "/boom":
            raise RuntimeError("boom")
        if request.path == "/bad":
            return HttpResponse(200, (("Content-Length", "1"),))
        return ok(request)

    _, listener = await start_memory_server(nursery, handler, limits=Limits(request_timeout=10),
                                            error_response=render)
    for path, status in (("/boom", 500), ("/bad", 500), ("/slow", 503)):
        stream = await listener.connect()
        await stream.send_all(b"GET %b HTTP/1.1\r\nHost: h\r\n\r\n" % path.encode())
        out = await read_until_eof(stream)
        assert statuses(out) == [status] and b"X-Error-From: app" in out, out
    stream = await listener.connect()
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n")   # never finished: 408
    out = await read_until_eof(stream)
    assert statuses(out) == [408] and b"X-Error-From: app" in out
    head = await H11Client(await listener.connect()).request("HEAD", "/boom")
    assert head.status == 500 and head.headers["x-error-from"] == "app" and head.body == b""
    assert calls == [500, 500, 503, 408, 500]
    ok_response = await H11Client(await listener.connect()).request("GET", "/")
    assert ok_response.status == 200 and calls == [500, 500, 503, 408, 500]   # never on success


@pytest.mark.parametrize("broken", [
    lambda status: 1 / 0,
    lambda status: "not a response",
    lambda status: HttpResponse(status, (("Content-Length", "9"),)),
])
async def test_broken_error_renderer_falls_back_to_plain_text(nursery, http_log, broken):
    out = await memory_exchange(nursery, b"GET /\r\nHost: h\r\n\r\n", echo, error_response=broken)
    assert statuses(out) == [400] and b"Content-Type: text/plain" in out and b"Bad Request" in out
    assert [r.levelno for r in http_log.records if r.levelno >= logging.INFO] == [logging.ERROR]


async def test_default_errors_stay_plain_text(nursery, http_log):
    out = await memory_exchange(nursery, b"GET /\r\nHost: h\r\n\r\n", echo)
    assert statuses(out) == [400] and b"Content-Type: text/plain; charset=utf-8" in out
    assert out.endswith(b"\r\n\r\nBad Request\n")


async def test_content_length_with_transfer_encoding_is_refused(nursery, http_log):
    """The smuggling shape: h11 alone would let chunked win and serve the hidden request."""
    smuggled = b"GET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"
    raw = (
        b"POST /front HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%b"
        % (5 + len(smuggled), smuggled)
    )
    seen = []
    out = await memory_exchange(nursery, raw, lambda request: seen.append(request.target) or ok(request))
    assert statuses(out) == [400] and seen == []
    assert_quiet(http_log)


async def test_slowloris_gets_408(nursery, autojump_clock, http_log):
    _, listener = await start_memory_server(nursery, ok, limits=Limits(request_timeout=10))
    stream = await listener.connect()
    started = trio.current_time()

    async def drip():
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 1000:
                await stream.send_all(bytes([byte]))
                await trio.sleep(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    nursery.start_soon(drip)
    out = await read_until_eof(stream)
    assert statuses(out) == [408]
    assert 10 <= trio.current_time() - started < 13
    assert_quiet(http_log)


async def test_request_timeout_counts_from_first_byte(nursery, autojump_clock):
    _, listener = await start_memory_server(nursery, ok, limits=Limits(request_timeout=10, idle_timeout=60))
    stream = await listener.connect()
    assert (await H11Client(stream).request("GET", "/")).status == 200
    await trio.sleep(30)  # idle between requests: only the idle timeout applies
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n")
    await trio.sleep(5)
    await stream.send_all(b"\r\n")
    assert statuses(await stream.receive_some(65536)) == [200]


async def test_a_connection_that_sends_nothing_is_closed_after_the_first_byte_timeout(nursery, autojump_clock,
                                                                                      http_log):
    _, listener = await start_memory_server(nursery, ok, limits=Limits(first_byte_timeout=5, idle_timeout=60))
    silent = await listener.connect()
    opened = trio.current_time()
    assert await read_until_eof(silent) == b""
    assert 5 <= trio.current_time() - opened <= 6
    late = await listener.connect()
    await trio.sleep(4)  # one byte in time is enough: then the request timeout applies
    await late.send_all(b"G")
    await trio.sleep(3)
    await late.send_all(b"ET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert statuses(await late.receive_some(65536)) == [200]
    assert_quiet(http_log)


async def test_idle_keep_alive_connection_closed_silently(nursery, autojump_clock, http_log):
    _, listener = await start_memory_server(nursery, ok, limits=Limits(idle_timeout=60))
    stream = await listener.connect()
    client = H11Client(stream)
    assert (await client.request("GET", "/")).status == 200
    idle_from = trio.current_time()
    assert await read_until_eof(stream) == b""
    assert 60 <= trio.current_time() - idle_from <= 61  # one timer tick (1 s) of slack
    assert_quiet(http_log)


async def test_handler_exception_is_500_logged_once(nursery, http_log):
    def handler(request):
        if request.path == "/boom":
            raise RuntimeError("secret-token-in-message")
        return ok(request)

    _, listener = await start_memory_server(nursery, handler)
    stream = await listener.connect()
    response = await H11Client(stream).request("GET", "/boom?X-Amz-Signature=abc")
    assert response.status == 500 and response.headers["connection"] == "close"
    assert await read_until_eof(stream) == b""
    errors = [r for r in http_log.records if r.levelno >= logging.INFO]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR and errors[0].exc_info is None
    assert "RuntimeError" in errors[0].getMessage() and "/boom" in errors[0].getMessage()
    assert "secret" not in errors[0].getMessage() and "Signature" not in errors[0].getMessage()
    assert any(r.exc_info for r in http_log.records if r.levelno == logging.DEBUG)
    assert (await H11Client(await listener.connect()).request("GET", "/fine")).status == 200


@pytest.mark.parametrize(
    "bad",
    [
        lambda request: "not a response",
        lambda request: HttpResponse(200, (("X", "a\nb"),)),
        lambda request: HttpResponse(200, (("Content-Length", "1"),)),
        lambda request: HttpResponse(99),
        lambda request: HttpResponse(200, (), "str body"),
        lambda request: echo_async(request),  # sync callable returning a coroutine: awaited
    ],
)
async def test_bad_handler_results(nursery, http_log, bad):
    _, listener = await start_memory_server(nursery, bad)
    response = await H11Client(await listener.connect()).request("GET", "/")
    if response.status == 200:
        assert json.loads(response.body)["path"] == "/"
    else:
        assert response.status == 500
        assert [r.levelno for r in http_log.records if r.levelno >= logging.INFO] == [logging.ERROR]


async def test_slow_async_handler_gets_503(nursery, autojump_clock, http_log):
    async def slow(request):
        await trio.sleep(100)
        return ok(request)

    _, listener = await start_memory_server(nursery, slow, limits=Limits(request_timeout=10))
    stream = await listener.connect()
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert statuses(await read_until_eof(stream)) == [503]
    assert [r.levelno for r in http_log.records if r.levelno >= logging.INFO] == [logging.WARNING]


async def test_shutdown_grace_bounds_stuck_handlers(nursery, autojump_clock):
    async def stuck(request):
        await trio.sleep_forever()

    server = Server(stuck, limits=Limits(request_timeout=1000), shutdown_grace=5)
    listener = MemoryListener()
    done = trio.Event()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        await server.serve([listener], task_status=task_status)
        done.set()

    await nursery.start(run)
    stream = await listener.connect()
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await trio.sleep(1)
    assert server.connection_count == 1
    server.shutdown()
    began = trio.current_time()
    await done.wait()
    assert 5 <= trio.current_time() - began < 6
    assert await read_until_eof(stream) == b""


# -- over loopback sockets ------------------------------------------------------------


async def test_keep_alive_with_httpx(nursery):
    peers = []

    def handler(request):
        peers.append(request.peer)
        return ok(request)

    running = await start_server(nursery, handler)
    assert running.addresses[0].startswith("127.0.0.1:") and not running.addresses[0].endswith(":0")
    async with httpx.AsyncClient() as client:
        for _ in range(5):
            response = await client.get(running.url + "/latest/meta-data/")
            assert response.status_code == 200 and response.text == "ok"
        head = await client.head(running.url + "/")
        assert head.status_code == 200 and head.headers["content-length"] == "2" and head.content == b""
    assert len(peers) == 6 and len(set(peers)) == 1 and peers[0][0] == "127.0.0.1"


async def test_oversized_requests_with_httpx(nursery, http_log):
    running = await start_server(nursery, echo, limits=Limits(max_body_bytes=1000, max_header_bytes=4096))
    async with httpx.AsyncClient() as client:
        assert (await client.post(running.url, content=b"a" * 1001)).status_code == 413
        chunks = iter([b"a" * 600, b"b" * 600])

        async def chunked():
            for chunk in chunks:
                yield chunk

        assert (await client.post(running.url, content=chunked())).status_code == 413
        assert (await client.get(running.url, headers={"X-Big": "a" * 5000})).status_code == 431
        assert (await client.post(running.url, content=b"a" * 1000)).status_code == 200
    assert_quiet(http_log)


async def test_hostile_clients_do_not_disturb_others(nursery, http_log):
    running = await start_server(nursery, ok)
    host, port = running.host_port()
    async with httpx.AsyncClient() as client:
        assert (await client.get(running.url)).status_code == 200
        liar = await trio.open_tcp_stream(host, port)
        await liar.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort")
        await liar.send_eof()
        assert statuses(await read_until_eof(liar)) == [400]
        await liar.aclose()
        resetter = socket.create_connection((host, port))
        resetter.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nab")
        resetter.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        resetter.close()  # RST
        garbage = await trio.open_tcp_stream(host, port)
        await garbage.send_all(os.urandom(3000))
        assert statuses(await read_until_eof(garbage)) == [400]
        await garbage.aclose()
        await trio.sleep(0.05)
        assert (await client.get(running.url)).status_code == 200
    assert_quiet(http_log)


async def test_at_the_cap_a_new_connection_evicts_the_longest_idle_one(nursery):
    running = await start_server(nursery, ok, limits=Limits(max_connections=2))
    host, port = running.host_port()
    held = [await trio.open_tcp_stream(host, port) for _ in range(2)]
    for stream in held:  # held[0] idle the longest
        assert (await H11Client(stream).request("GET", "/")).status == 200
    newcomer = await trio.open_tcp_stream(host, port)
    with trio.fail_after(5):
        assert (await H11Client(newcomer).request("GET", "/")).status == 200
        assert await read_until_eof(held[0]) == b""  # evicted
    assert (await H11Client(held[1]).request("GET", "/")).status == 200  # still served
    assert running.server.connection_count == 2
    for stream in (held[1], newcomer):
        await stream.aclose()


async def test_at_the_cap_with_nothing_idle_new_connections_wait_in_the_backlog(nursery):
    release = trio.Event()

    async def slow(request):
        await release.wait()
        return ok(request)

    running = await start_server(nursery, slow, limits=Limits(max_connections=2))
    host, port = running.host_port()
    busy = [await trio.open_tcp_stream(host, port) for _ in range(2)]
    for stream in busy:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await trio.sleep(0.2)
    waiting = await trio.open_tcp_stream(host, port)  # the kernel completes the handshake
    await waiting.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    with trio.move_on_after(0.3):
        await waiting.receive_some(65536)
        pytest.fail("a connection beyond the cap was served while every slot was busy")
    release.set()
    with trio.fail_after(5):
        assert statuses(await waiting.receive_some(65536)) == [200]
    for stream in (*busy, waiting):
        await stream.aclose()


async def test_a_remote_peer_may_hold_only_its_share_of_connections(nursery):
    running = await start_server(nursery, ok, limits=Limits(max_connections_per_peer=2), remote=lambda host: True)
    host, port = running.host_port()
    mine = [await trio.open_tcp_stream(host, port) for _ in range(2)]
    for stream in mine:
        assert (await H11Client(stream).request("GET", "/")).status == 200
    third = await trio.open_tcp_stream(host, port)
    with trio.fail_after(5):
        assert await read_until_eof(third) == b""  # closed on accept
    await mine[0].aclose()
    await trio.sleep(0.1)
    again = await trio.open_tcp_stream(host, port)
    assert (await H11Client(again).request("GET", "/")).status == 200
    for stream in (mine[1], again):
        await stream.aclose()


async def test_request_bodies_held_at_once_are_bounded_in_total(nursery):
    release = trio.Event()

    async def slow(request):
        await release.wait()
        return ok(request)

    running = await start_server(nursery, slow, limits=Limits(max_body_bytes=1000, max_buffered_body_bytes=1500))
    host, port = running.host_port()
    first = await trio.open_tcp_stream(host, port)
    await first.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
    await trio.sleep(0.2)  # its body is held while the handler runs
    second = await trio.open_tcp_stream(host, port)
    await second.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000)
    with trio.fail_after(5):
        answer = await read_until_eof(second)
    assert statuses(answer) == [503] and b"connection: close" in answer.lower()
    release.set()
    with trio.fail_after(5):
        assert statuses(await first.receive_some(65536)) == [200]
    third = await trio.open_tcp_stream(host, port)  # the budget came back
    await third.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000)
    with trio.fail_after(5):
        assert statuses(await third.receive_some(65536)) == [200]
    with trio.fail_after(5):  # released once each cycle is over, just after its answer went out
        while running.server._buffered:
            await trio.sleep(0.01)
    for stream in (first, third):
        await stream.aclose()


@needs_ipv6
async def test_ipv6_loopback(nursery):
    running = await start_server(nursery, echo, addresses=("[::1]:0",))
    assert running.addresses[0].startswith("[::1]:")
    async with httpx.AsyncClient() as client:
        seen = (await client.get(running.url + "/six")).json()
    assert seen["peer"][0] == "::1" and seen["local"] == ["::1", running.host_port()[1]]


async def test_several_listeners_at_once(nursery):
    addresses = ["127.0.0.1:0", "127.0.0.1:0"] + (["[::1]:0"] if ipv6_loopback_available() else [])
    running = await start_server(nursery, echo, addresses=addresses)
    assert len(running.addresses) == len(addresses) and len(set(running.addresses)) == len(addresses)
    async with httpx.AsyncClient() as client:
        for index, url in enumerate(running.urls):
            seen = (await client.get(url + "/")).json()
            assert format_address(seen["local"]) == running.addresses[index]


async def test_graceful_shutdown(nursery, http_log):
    handler_started = trio.Event()

    async def handler(request):
        if request.path == "/slow":
            handler_started.set()
            await trio.sleep(0.3)
        return ok(request)

    server = Server(handler, shutdown_grace=5)
    listeners = await open_tcp_listeners(["127.0.0.1:0"])
    host, port = listeners[0].socket.getsockname()
    done = trio.Event()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        await server.serve(listeners, task_status=task_status)
        done.set()

    await nursery.start(run)
    idle = await trio.open_tcp_stream(host, port)
    assert (await H11Client(idle).request("GET", "/")).status == 200
    busy = await trio.open_tcp_stream(host, port)
    await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    await handler_started.wait()
    server.shutdown()
    with trio.fail_after(0.25):
        assert await read_until_eof(idle) == b""  # idle keep-alive connections go at once
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)  # no longer accepting
    out = await read_until_eof(busy)
    assert statuses(out) == [200] and b"Connection: close" in out
    with trio.fail_after(1):
        await done.wait()
    assert_quiet(http_log)


async def test_serve_function_reports_addresses(nursery):
    listeners = await open_tcp_listeners(["127.0.0.1:0"])
    addresses = await nursery.start(wire_serve.serve, listeners, ok)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{addresses[0]}/")).text == "ok"


def _read_ttl(stream: trio.SocketStream) -> int:
    return stream.socket.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)


async def test_ip_ttl_is_set_and_restored_on_the_server_socket(nursery):
    """Reads the server-side socket's IP_TTL from inside the next request's handler."""
    observed = []

    def handler(request):
        observed.append(_read_ttl(running.accepted[0]))
        return HttpResponse(200, (), b"token", ip_ttl=1) if request.path == "/token" else ok(request)

    running = await start_server(nursery, handler, record_streams=True)
    client = H11Client(await trio.open_tcp_stream(*running.host_port()))
    for path in ("/token", "/after", "/later", "/token"):
        assert (await client.request("PUT" if path == "/token" else "GET", path)).status == 200
        await trio.sleep(0.01)  # let the client's ACK arrive
    default = _default_ttl()
    assert observed == [default, 1, default, default]
    assert _read_ttl(running.accepted[0]) == 1


async def test_ip_ttl_kept_while_earlier_bytes_unacknowledged(nursery, monkeypatch):
    """A retransmission of the token response must not leave with the default TTL."""
    queued = iter([5000, 0])  # the send-queue probe: token bytes still unacknowledged, then none
    monkeypatch.setattr(wire_serve, "_unacknowledged_bytes", lambda sock: next(queued))
    observed = []

    def handler(request):
        observed.append(_read_ttl(running.accepted[0]))
        return HttpResponse(200, (), b"token", ip_ttl=1) if request.path == "/token" else ok(request)

    running = await start_server(nursery, handler, record_streams=True)
    client = H11Client(await trio.open_tcp_stream(*running.host_port()))
    for path in ("/token", "/b", "/c", "/d"):
        assert (await client.request("GET", path)).status == 200
    # /b was answered while the token bytes were queued: the TTL stayed 1 (as /c saw);
    # the queue was empty by /c's response, so /d saw the default again.
    default = _default_ttl()
    assert observed == [default, 1, 1, default]


def test_send_queue_probe_sees_unacknowledged_bytes():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        assert wire_serve._unacknowledged_bytes(server) == 0
        server.setblocking(False)
        try:
            for _ in range(1024):  # until the peer's window and our buffer are full
                server.send(b"x" * 65536)
        except BlockingIOError:
            pass
        assert wire_serve._unacknowledged_bytes(server) > 0


def _default_ttl() -> int:
    with socket.socket() as sock:
        return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)


def _sniffer() -> socket.socket:
    try:
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"capturing packets on lo needs Linux and CAP_NET_RAW ({exc})")
    sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # lo is shared: don't drop ours
    sniffer.bind(("lo", 0))
    sniffer.setblocking(False)
    return sniffer


def _segment_ttl(frame: bytes, port: int) -> tuple[bytes, int] | None:
    """(payload tail, TTL or hop limit) of a TCP segment with data from ``port``."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and frame[23] == 6:
        ttl, tcp = frame[22], frame[14 + (frame[14] & 0x0F) * 4 :]
    elif ethertype == b"\x86\xdd" and frame[20] == 6:
        ttl, tcp = frame[21], frame[54:]
    else:
        return None
    if struct.unpack("!H", tcp[:2])[0] != port or len(tcp) <= (tcp[12] >> 4) * 4:
        return None
    return bytes(tcp[-12:]), ttl


async def _capture(sniffer: socket.socket, port: int, seen: dict[bytes, set[int]]) -> None:
    while True:
        await trio.lowlevel.wait_readable(sniffer)
        while True:
            try:
                frame = sniffer.recv(65536)
            except BlockingIOError:
                break
            found = _segment_ttl(frame, port)
            if found:
                seen.setdefault(found[0], set()).add(found[1])


@pytest.mark.parametrize("address", ["127.0.0.1:0", pytest.param("[::1]:0", marks=needs_ipv6)])
async def test_ip_ttl_on_the_wire(nursery, address):
    """Captures the response segments on lo: the token leaves with TTL 1, later ones without."""
    sniffer = _sniffer()

    def handler(request):
        body = request.path[1:].encode().rjust(12, b"-")
        return HttpResponse(200, (), body, ip_ttl=1 if request.path == "/token" else None)

    seen: dict[bytes, set[int]] = {}
    with sniffer:
        running = await start_server(nursery, handler, addresses=(address,))
        async with trio.open_nursery() as capture:
            capture.start_soon(_capture, sniffer, running.host_port()[1], seen)
            stream = await trio.open_tcp_stream(*running.host_port())
            client = H11Client(stream)
            for path in ("/token", "/plain", "/again"):
                await client.request("GET", path)
                await trio.sleep(0.01)
            await stream.aclose()
            with trio.move_on_after(2):
                while len(seen) < 3:
                    await trio.sleep(0.01)
            capture.cancel_scope.cancel()
    assert seen[b"-------token"] == {1}
    assert 1 not in seen[b"-------plain"] and 1 not in seen[b"-------again"]


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


async def test_tls_streams_are_unwrapped_for_address_peer_and_ttl(nursery, tmp_path):
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    accepted: list[trio.SSLStream] = []
    tls = trio.SSLListener((await open_tcp_listeners(["127.0.0.1:0"]))[0], context, https_compatible=True)

    def handler(request):
        ttl = accepted[0].transport_stream.socket.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        return HttpResponse(200, (), json.dumps([request.peer, ttl]).encode(), ip_ttl=1)

    server = Server(handler)
    (address,) = await nursery.start(server.serve, [RecordingListener(tls, accepted)])
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as client:
        first = (await client.get(f"https://{address}/")).json()
        second = (await client.get(f"https://{address}/")).json()
    assert first[0][0] == "127.0.0.1" and first[0] == second[0]
    assert first[1] == _default_ttl() and second[1] == 1


# -- socket activation ------------------------------------------------------------------


def test_listen_fds_follows_sd_listen_fds():
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "imds:container", "OTHER": "x"}
    assert listen_fds(env, 42) == [(3, "imds"), (4, "container")]
    assert env == {"OTHER": "x"}
    env = {"LISTEN_PID": "41", "LISTEN_FDS": "1"}
    assert listen_fds(env, 42) == [] and env == {}
    assert listen_fds({"LISTEN_FDS": "1"}, 42) == []
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "one"}, 42) == [
        (3, "unknown"), (4, "unknown"),
    ]  # fmt: skip
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "x"}
    with pytest.raises(ValueError):
        listen_fds(env, 42)
    assert env == {}
    assert inherited_listeners({}, 42) == []


_ACTIVATE = r"""
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="imds")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2]])
"""

_SERVE_INHERITED = r"""
import os, trio
from wire.http import HttpResponse
from wire.listeners import inherited_listeners
from wire.serve import Server

listeners = inherited_listeners()
leaked = sorted(name for name in os.environ if name.startswith("LISTEN_"))
fd_flags = [os.get_inheritable(3), os.get_blocking(3)]

def handler(request):
    return HttpResponse(200, (), repr((os.getpid(), leaked, fd_flags)).encode())

async def main():
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(Server(handler).serve, listeners)
        print(" ".join(addresses), flush=True)

trio.run(main)
"""


async def test_socket_activation_with_real_fds():
    """A child gets a listening socket at fd 3 with LISTEN_PID = its pid, as systemd does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    address = format_address(sock.getsockname())
    command = [sys.executable, "-c", _ACTIVATE, str(sock.fileno()), _SERVE_INHERITED]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, pass_fds=(sock.fileno(),), cwd=str(REPO), env=env
    )
    try:
        with trio.fail_after(15):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1024)
                assert chunk, "the activated child exited before listening"
                line += chunk
        assert line.decode().split() == [address]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{address}/")
        assert response.status_code == 200
        assert response.text == repr((process.pid, [], [False, False]))
    finally:
        sock.close()
        process.terminate()
        await process.wait()


_ADOPT_ONLY = r"""
from wire.listeners import inherited_listeners
try:
    inherited_listeners()
except ValueError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize("kind", ["file", "udp"])
def test_socket_activation_refuses_what_is_not_a_listening_socket(kind, tmp_path):
    if kind == "file":
        passed = open(tmp_path / "not-a-socket", "w")
    else:
        passed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with passed:
        command = [sys.executable, "-c", _ACTIVATE, str(passed.fileno()), _ADOPT_ONLY]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        done = subprocess.run(
            command, pass_fds=(passed.fileno(),), cwd=str(REPO), env=env, capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: socket activation: fd 3 is not a ")
