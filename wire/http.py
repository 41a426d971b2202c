"""HTTP/1.1 requests and responses as data, and the exact bytes of a response.

This is the pure half of rolecall's one HTTP serving layer: no trio, no
sockets, so handlers (the IMDS routes, the STS/IAM backend) import it cheaply
and their tests need no stream. The I/O half, the h11 <-> trio adapter, is
``wire.serve`` (``Server``, ``serve``); listening sockets come from
``wire.listeners``.

Theory of operation
-------------------
A handler is ``Callable[[HttpRequest], HttpResponse]`` or an ``async def`` of
the same shape. It sees a fully read request: the serving layer has already
enforced the ``Limits``, read the whole body, and turned h11's bytes into
``str`` (header names lower-cased; values decoded as Latin-1, so no byte is
lost). It answers with status, headers and body only: framing is the
layer's business. The layer adds ``Content-Length`` (none on 204/304),
``Date`` (optional, formatted once per second) and ``Connection`` when it is
going to close, drops the body of a ``HEAD`` response, and refuses handler
headers it owns (``Content-Length``, ``Transfer-Encoding``, any
``Connection`` but ``close``, which a handler may send to end the connection).

h11 parses every request. Responses are written by ``ResponseEncoder`` rather
than by ``h11.Connection.send``: a handler's header tuple is validated (h11's
token grammar for names; values with no control character but HTAB) and
encoded once, then cached, so the credential GET path
costs a dict lookup and one ``%``-format instead of h11's per-response
header normalisation. ``wire.serve`` keeps the two sides in step by starting
a fresh ``h11.Connection`` for each request cycle (fed with the previous
one's ``trailing_data``) instead of calling ``send``/``start_next_cycle``.

``HttpResponse.ip_ttl`` asks the layer to send that response with the given
IP TTL / IPv6 hop limit (IMDSv2 token responses leave with hop limit 1).

The request rules h11 leaves to a server live here too, as pure functions
that raise ``RequestRejected(status)``: refusing Content-Length together with
Transfer-Encoding (request smuggling), the HTTP version, keep-alive for
HTTP/1.0, and an early look at the request line so binary garbage gets 400
before the head is complete. Every client fault maps to a 4xx (h11's 501
hint for an unknown transfer coding becomes 400), except 505 for an HTTP
major version other than 1.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Union

__all__ = [
    "Handler",
    "HttpDate",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "RequestRejected",
    "ResponseEncoder",
    "check_request_line",
    "error_response",
    "head_size",
    "http_version",
    "request_framing",
]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete request as the handler sees it.

    ``target`` is the raw request-target (path and query, undecoded).
    ``headers`` keeps the client's order and repeats; names are lower-case.
    ``peer``/``local`` are ``(host, port)`` of the two socket ends, ``None``
    when the stream is not a socket (tests over memory streams). ``caller`` is
    what the server's ``identify`` hook said of the connection's peer process
    (``wire.peer_identity.PeerIdentity``), once per connection; None without a
    hook or when the peer could not be identified.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    peer: tuple[str, int] | None = None
    local: tuple[str, int] | None = None
    http_version: str = "1.1"
    caller: Any = None

    @property
    def path(self) -> str:
        """The target up to the first ``?``, still percent-encoded."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string after the first ``?`` ("" if none)."""
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What a handler returns. The layer adds the framing headers.

    ``ip_ttl``: when set, the bytes of this response leave with this IP TTL
    (IPv4) or unicast hop limit (IPv6); see ``wire.serve`` for when the
    socket's default is restored.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    ip_ttl: int | None = None


Handler = Callable[[HttpRequest], Union[HttpResponse, Awaitable[HttpResponse]]]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the server hold or wait for.

    Args:
        max_target_bytes: longest request-target; longer is answered 414.
        max_header_bytes: request line plus headers (h11's
            ``max_incomplete_event_size``); more is answered 431.
        max_headers: header fields in one request; more is answered 431
            (each costs Python objects well beyond its few bytes on the wire).
        max_body_bytes: largest body, checked against Content-Length before
            reading and while reading a chunked body; more is answered 413.
        request_timeout: seconds from a request's first byte until its
            response is sent; an incomplete request then gets 408.
        idle_timeout: seconds a keep-alive connection may sit between
            requests before it is closed silently. Both timeouts are checked
            by one timer per server, so they fire up to a tick late (a tenth
            of the shorter one, at most 1 s).
        max_connections: connections served at once. At the cap a new
            connection evicts the one idle longest (a keep-alive connection
            between requests, or one that has sent nothing yet); when none is
            idle, the server stops accepting and new connections wait in the
            kernel backlog.
        first_byte_timeout: seconds from accept until a connection's first
            byte; a connection that sends nothing is closed then (it costs a
            slot and has proved nothing).
        max_connections_per_peer: connections at once from one remote address
            (loopback peers all share one address, so they are exempt: there
            the defence is eviction and the first-byte timeout); more are closed
            at once.
        max_buffered_body_bytes: request-body bytes held at once across all
            connections, from their first byte until the handler has answered
            (the bodies of requests not yet authenticated); past it, 503 with
            ``Connection: close``.
        max_connections_per_uid: connections at once from the loopback
            processes of one user, when the server identifies its callers
            (``Server(identify=...)``); more are closed at once, so one local
            user cannot fill the server for the others.
    """

    max_target_bytes: int = 8 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_body_bytes: int = 1024 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 1024
    first_byte_timeout: float = 5.0
    max_connections_per_peer: int = 256
    max_buffered_body_bytes: int = 64 * 1024 * 1024
    max_connections_per_uid: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_target_bytes", "max_header_bytes", "max_headers", "max_connections",
                     "max_connections_per_peer", "max_connections_per_uid"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        for name in ("max_body_bytes", "request_timeout", "idle_timeout", "first_byte_timeout",
                     "max_buffered_body_bytes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Limits.{name} must not be negative")


# h11's grammar (h11/_abnf.py), so what we send is what h11 would accept. Values
# are stricter than h11's reader: no control characters other than HTAB.
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")
_LAYER_OWNED = frozenset({"content-length", "transfer-encoding"})
_CACHE_SIZE = 256

CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus if s.value >= 200}


class HttpDate:
    """The HTTP ``Date`` of a second (IMF-fixdate), formatted once per second: the one cache of it."""

    __slots__ = ("_second", "_text", "_line")

    def __init__(self) -> None:
        self._second, self._text, self._line = -1, "", b""

    def _at(self, second: int) -> None:
        if second != self._second:
            self._text = email.utils.formatdate(second, usegmt=True)
            self._line = b"Date: %b\r\n" % self._text.encode("ascii")
            self._second = second

    def text(self, second: int) -> str:
        """``Thu, 01 Jan 2026 00:00:00 GMT`` for ``second`` (seconds since the epoch)."""
        self._at(second)
        return self._text

    def line(self, second: int) -> bytes:
        """``Date: ...\\r\\n``, ready to send."""
        self._at(second)
        return self._line


class ResponseEncoder:
    """Turns ``HttpResponse`` into the bytes of an HTTP/1.1 response.

    One encoder serves a whole server; it caches the encoded form of each
    distinct header tuple (bounded) and the ``Date`` line (per second).
    ``wall_time`` is the clock for ``Date`` (seconds since the epoch).
    """

    __slots__ = ("_date", "_wall_time", "_dates", "_headers")

    def __init__(self, *, date_header: bool = True, wall_time: Callable[[], float] = time.time) -> None:
        self._date = date_header
        self._wall_time = wall_time
        self._dates = HttpDate()
        # headers tuple -> (encoded lines, has Date, asks to close)
        self._headers: dict[tuple[tuple[str, str], ...], tuple[bytes, bool, bool]] = {}

    def encode(
        self, response: HttpResponse, *, head_only: bool = False, connection: bytes = b""
    ) -> tuple[bytes, bool]:
        """The response's bytes, and whether the handler asked to close.

        Args:
            response: what the handler returned.
            head_only: answer to HEAD: headers (with the body's length) only.
            connection: ``CLOSE``, ``KEEP_ALIVE`` or ``b""``: the layer's own
                ``Connection`` header line.

        Raises:
            ValueError: the response is not sendable (status out of 200-599,
                an illegal header, or a header the layer owns).
        """
        entry = self._headers.get(response.headers)
        if entry is None:
            entry = self._learn(response.headers)
        lines, has_date, wants_close = entry
        status = response.status
        status_line = _STATUS_LINES.get(status) or self._other_status(status)
        body = response.body
        if status == 204 or status == 304:
            length, body = b"", b""
        else:
            length = b"Content-Length: %d\r\n" % len(body)
        date = self._current_date() if self._date and not has_date else b""
        if wants_close:
            connection = b""
        head = b"%b%b%b%b%b\r\n" % (status_line, lines, length, date, connection)
        if head_only or not body:
            return head, wants_close
        return head + body, wants_close

    def _current_date(self) -> bytes:
        return self._dates.line(int(self._wall_time()))

    @staticmethod
    def _other_status(status: int) -> bytes:
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"handler returned status {status!r}; must be an int in 200-599")
        return _status_line(status)

    def _learn(self, headers: tuple[tuple[str, str], ...]) -> tuple[bytes, bool, bool]:
        lines = []
        has_date = wants_close = False
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise ValueError(f"illegal response header {name!r}")
            lower = name.lower()
            if lower in _LAYER_OWNED:
                raise ValueError(f"the serving layer sets {name}; handlers must not")
            has_date = has_date or lower == "date"
            if lower == "connection":
                if [token.strip() for token in value.lower().split(",")] != ["close"]:
                    raise ValueError("handlers may set only 'Connection: close'; the layer manages keep-alive")
                wants_close = True
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        entry = (b"".join(lines), has_date, wants_close)
        if len(self._headers) >= _CACHE_SIZE:
            self._headers.clear()
        self._headers[headers] = entry
        return entry


_TEXT = (("Content-Type", "text/plain; charset=utf-8"),)


def error_response(status: int) -> HttpResponse:
    """The layer's own plain-text answer for ``status`` (4xx/5xx)."""
    return HttpResponse(status, _TEXT, f"{HTTPStatus(status).phrase}\n".encode("ascii"))


# -- request rules h11 leaves to the server ------------------------------------------


class RequestRejected(Exception):
    """A client fault: the layer answers ``status`` with ``Connection: close``."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def http_version(raw: bytes) -> str:
    """The version of a request line: HTTP/1.x beyond 1.1 is served as 1.1
    (RFC 9110 §2.5); any other major version is rejected with 505."""
    if not raw.startswith(b"1."):
        raise RequestRejected(505, "HTTP version not supported")
    return raw.decode("ascii")


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def request_framing(headers: tuple[tuple[str, str], ...], version: str) -> tuple[int | None, bool, bool]:
    """``(body length or None if chunked, close after, HTTP/1.0 keep-alive)``.

    h11 has already validated Content-Length and Transfer-Encoding; it lets
    Transfer-Encoding win over Content-Length (RFC 9112 §6.3), but a request
    carrying both is the classic smuggling vector, so it is rejected (400).
    HTTP/1.0 closes unless the client asked for keep-alive.
    """
    length: int | None = 0
    seen_length = chunked = False
    tokens = ""
    for name, value in headers:
        if name in _FRAMING:
            if name == "content-length":
                seen_length, length = True, int(value)
            elif name == "transfer-encoding":
                chunked = True
            else:
                tokens += "," + value.lower()
    if chunked:
        if seen_length:
            raise RequestRejected(400, "both Content-Length and Transfer-Encoding")
        length = None
    wanted = {token.strip() for token in tokens.split(",")} if tokens else ()
    if version != "1.0":
        return length, "close" in wanted, False
    keep_alive = "keep-alive" in wanted and "close" not in wanted
    return length, not keep_alive, keep_alive


_TCHAR = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]"
_REQUEST_LINE = re.compile(_TCHAR + rb"+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?")
_REQUEST_LINE_START = re.compile(_TCHAR + rb"*(?: [\x21-\x7e]*(?: [HTP/0-9.]{0,8}\r?)?)?")


def check_request_line(buffered: bytes, max_target: int) -> bool:
    """Reject a head whose first line cannot become a request line; True once it is whole.

    h11 parses a request head only when it is complete, so without this a
    client sending binary or a never-ending first line would hold the
    connection until the request timeout instead of getting 400 at once.
    The serving layer calls it only while a head is incomplete.
    """
    line, newline, _ = buffered.partition(b"\n")
    if newline:
        if not _REQUEST_LINE.fullmatch(line):
            raise RequestRejected(400, "illegal request line")
        return True
    if len(line) > max_target + 64:
        raise RequestRejected(414, "request line too long")
    if not _REQUEST_LINE_START.fullmatch(line):
        raise RequestRejected(400, "illegal request line")
    return False


def head_size(method: bytes, target: bytes, headers: tuple[tuple[str, str], ...]) -> int:
    """Bytes of a request head, less optional whitespace (for ``max_header_bytes``)."""
    return len(method) + len(target) + 12 + sum(len(name) + len(value) + 4 for name, value in headers)
