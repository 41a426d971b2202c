"""Property tests of the serving layer: hostile or chopped-up bytes never crash or hang it.

Every example runs a fresh ``Server`` on a ``MemoryListener`` (a memory
stream pair per connection) in virtual time (``MockClock``, autojump), so
timeouts cost nothing and a hang fails ``trio.fail_after`` instead of stalling
the suite. The client yields until the server is blocked after each piece it
sends, so a random chunking really is what the server reads.

Oracles: well-formed requests get 200 from the echo handler, which saw
exactly what was sent; anything else gets 4xx (505 only for an HTTP major
version other than 1) and then the connection closes; nothing is logged
above DEBUG.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string

import h11
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import read_until_eof, start_memory_server, statuses
from wire.http import HttpRequest, HttpResponse, Limits

# ROLECALL_FUZZ_EXAMPLES=5000 for a deeper run than the suite's.
EXAMPLES = int(os.environ.get("ROLECALL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
FRAMING_NAMES = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}
LIMITS = Limits(max_body_bytes=4096, max_header_bytes=4096, max_target_bytes=1024)


def echo(request: HttpRequest) -> HttpResponse:
    document = [request.method, request.target, [list(h) for h in request.headers], request.body.decode("latin-1")]
    return HttpResponse(200, (("Content-Type", "application/json"),), json.dumps(document).encode())


def fixed(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (), b"ok")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.loud: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno > logging.DEBUG or record.exc_info:
            self.loud.append(record.getMessage())


def exchange(pieces: list[bytes], handler) -> bytes:
    """Feed ``pieces`` to one server connection, half-close, return all it wrote."""
    records = _Records()
    logger = logging.getLogger("rolecall.http")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)

    async def scenario() -> bytes:
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                server, listener = await start_memory_server(nursery, handler, limits=LIMITS)
                client = await listener.connect()
                try:
                    for piece in pieces:
                        await client.send_all(piece)
                        await trio.testing.wait_all_tasks_blocked()
                    await client.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the server refused and closed before we were done
                out = await read_until_eof(client)
                server.shutdown()
            return out

    try:
        out = trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert not records.loud, records.loud
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a] or [data]


def assert_refused_or_served(out: bytes) -> None:
    codes = statuses(out)
    for index, code in enumerate(codes):
        assert code == 200 or 400 <= code < 500 or code == 505, codes
        if code != 200:
            assert index == len(codes) - 1, f"served after refusing: {codes}"


# -- well-formed requests through h11's client, in random pieces ---------------------

header_names = st.text(TCHAR, min_size=1, max_size=16).filter(lambda n: n.lower() not in FRAMING_NAMES)
header_values = st.from_regex(rb"\A(?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]{0,30}[\x21-\x7e\x80-\xff])?)?\Z")
methods = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"]) | st.text(
    TCHAR, min_size=1, max_size=10
).filter(lambda m: m != "CONNECT")
targets = st.builds(
    lambda path, query: "/" + path + ("?" + query if query else ""),
    st.text(VCHAR, max_size=40),
    st.text(VCHAR, max_size=20),
)


@st.composite
def requests(draw):
    method, target = draw(methods), draw(targets)
    headers = [("Host", b"fuzz.test")] + draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked"] + (["none"] if not body else [])))
    if framing == "length":
        headers.append(("Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", b"chunked"))
    if framing != "none" and draw(st.booleans()):
        headers.append(("Expect", b"100-continue"))
    pieces = [body] if framing != "chunked" else split(body, draw(st.lists(st.integers(0, 3000), max_size=4)))
    client = h11.Connection(h11.CLIENT)
    request = h11.Request(method=method, target=target, headers=headers)
    raw = client.send(request)
    for piece in pieces:
        raw += client.send(h11.Data(data=piece)) if piece else b""
    raw += client.send(h11.EndOfMessage())
    expected = [method, target, [[n.lower(), v.decode("latin-1")] for n, v in headers], body.decode("latin-1")]
    return request, raw, expected


def parse_responses(out: bytes, sent: list[h11.Request]) -> list[tuple[int, bytes]]:
    """The responses in ``out``, parsed by h11 as the client of each request."""
    answers = []
    for request in sent:
        client = h11.Connection(h11.CLIENT)
        client.send(request)
        client.receive_data(out)
        status, body = None, b""
        while True:
            event = client.next_event()
            assert event is not h11.NEED_DATA, "response cut short"
            if type(event) is h11.Response:
                status = event.status_code
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                break
        answers.append((status, body))
        out = client.trailing_data[0]
    assert out == b"", "bytes after the last response"
    return answers


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=3), st.lists(st.integers(0, 20000), max_size=8))
def test_valid_requests_in_random_pieces_are_served(batch, cuts):
    raw = b"".join(r for _, r, _ in batch)
    out = exchange(split(raw, cuts), echo)
    answers = parse_responses(out, [request for request, _, _ in batch])
    for (status, body), (request, _, expected) in zip(answers, batch):
        assert status == 200
        if request.method != b"HEAD":
            assert json.loads(body) == expected


# -- hand-built requests with random, possibly illegal, parts -----------------------

_VALUE_BAD = re.compile(r"[\x00\x0b\x0c]")


@FUZZ
@given(
    method=st.text(TCHAR + "()@,;\x00\x7f", min_size=1, max_size=10),
    target=st.text(VCHAR + "\x00\x7f\x80\xff\t", min_size=1, max_size=40),
    headers=st.lists(
        st.tuples(
            # A leading space would make the line an obs-fold continuation, which h11
            # (allowed by RFC 9112 §5.2) folds into the previous value.
            st.text(TCHAR + " (@\x00\x7f", min_size=1, max_size=12).filter(lambda n: n[0] != " "),
            st.text(VCHAR + " \t\x01\x7f\x80\xe9\xff\x00\x0b\x0c", max_size=20),
        ),
        max_size=5,
    ),
    body=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 2000), max_size=5),
)
def test_random_request_parts(method, target, headers, body, cuts):
    headers = [(n, v) for n, v in headers if n.lower() not in FRAMING_NAMES]
    lines = [f"{method} {target} HTTP/1.1", "Host: fuzz.test", *(f"{n}: {v}" for n, v in headers)]
    lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    out = exchange(split(raw, cuts), echo)
    valid = (
        all(c in TCHAR for c in method)
        and all(c in VCHAR for c in target)
        and all(all(c in TCHAR for c in n) and not _VALUE_BAD.search(v) for n, v in headers)
    )
    if not valid:
        assert statuses(out) == [400]
        return
    assert statuses(out) == [200]
    if method == "HEAD":
        assert out.endswith(b"\r\n\r\n")
        return
    sent = [["host", "fuzz.test"], *([n.lower(), v.strip(" \t")] for n, v in headers)]
    sent.append(["content-length", str(len(body))])
    assert json.loads(out.partition(b"\r\n\r\n")[2]) == [method, target, sent, body.decode("latin-1")]


# -- garbage and mutations -------------------------------------------------------------

VALID = (
    b"GET /latest/api/token HTTP/1.1\r\nHost: h\r\n\r\n"
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
    b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
)


@st.composite
def mutated(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated()), st.lists(st.integers(0, 2000), max_size=6))
def test_garbage_and_mutations_never_crash_or_hang(raw, cuts):
    assert_refused_or_served(exchange(split(raw, cuts), fixed))
