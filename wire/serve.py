"""The h11 <-> trio adapter: serves ``wire.http`` handlers on listeners and streams.

Theory of operation
-------------------
``Server.serve(listeners)`` runs one accept loop per listener and one task per
connection, all under one nursery. At ``Limits.max_connections`` a newly
accepted connection evicts the connection idle longest (a keep-alive
connection between requests, or one that has sent nothing yet: they sit in an
ordered set, so picking one costs O(1)). Only when none is idle does the
server stop accepting, so further clients wait in the kernel's listen backlog
behind requests in progress, never behind idle sockets. A remote peer (not
loopback) may hold ``max_connections_per_peer`` connections; more are closed
on accept. A connection that sends no byte within ``first_byte_timeout`` is
closed. Request bodies held at once, across all connections, from their first
byte until the handler answered (the bodies of unauthenticated requests), are
bounded by ``max_buffered_body_bytes``: past it the request gets 503 with
``Connection: close``.

Each connection is a loop of request cycles. A cycle gets a fresh
``h11.Connection`` (fed the previous cycle's ``trailing_data``, so pipelined
bytes are kept): h11 parses the request and enforces the header-size limit;
we read the whole body (413 past ``max_body_bytes``, checked on
Content-Length up front and while reading chunks), call the handler, and
write the response that ``ResponseEncoder`` built in one ``send_all``. We
never ask h11 to write the response, so its per-response header
normalisation stays off the hot path; h11 would refuse a second request on a
connection whose response it did not see, hence the fresh parser per cycle.

Timeouts: each connection carries a deadline on trio's clock, moved with its
phase: ``first_byte_timeout`` after accept, ``idle_timeout`` after each response, then
``request_timeout`` from a request's first bytes until its response is sent.
One timer task per server wakes every tick (a tenth of the shortest timeout,
at most 1 s) and cancels the ``CancelScope`` of each connection past its
deadline, so a request costs two float stores instead of two trio deadline
updates, and a timeout fires at most one tick late. When a scope is cancelled
the phase says what to do: an incomplete request gets 408, a handler that
overran gets 503 (logged), an idle or stuck-writing connection is closed
silently. Client faults (h11's ``RemoteProtocolError``, the checks in
``wire.http`` such as Content-Length with Transfer-Encoding, oversized target
or body) get a 4xx with
``Connection: close``, after which we half-close and drain briefly so the
client reads the answer instead of a reset. They are logged at DEBUG only.

A handler exception is logged once (one ERROR line: method, path, exception
type; the traceback at DEBUG) and answered 500; the connection then closes.

Every response the layer writes itself (the 4xx refusals, 408, the 500 for a
failed handler, the 503 for an overrunning one) comes from ``error_response``,
a ``status -> HttpResponse`` callable given to ``Server`` (plain text by
default, ``wire.http.error_response``): an application with its own error
format (the backend's AWS ``ErrorResponse`` XML with a request id) passes its
own. It is called only on those error paths, never per request; if it raises
or returns something unsendable, the plain-text answer goes out instead.

``Server.shutdown()`` stops the accept loops and closes the listeners (new
connections are refused), closes idle keep-alive connections, lets requests
in progress finish with ``Connection: close`` for up to ``shutdown_grace``
seconds, then cancels what is left and ``serve()`` returns.

``HttpResponse.ip_ttl`` sets IP_TTL / IPV6_UNICAST_HOPS before the response is
queued. The default is restored before a later response on the same
connection only once the kernel's send queue is empty (every earlier byte
acknowledged); until then a retransmission of the low-TTL response could
leave with the higher TTL, so the lower value is kept.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import logging
import socket
import struct
import termios
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import h11
import trio

from wire.http import (
    CLOSE,
    KEEP_ALIVE,
    Handler,
    HttpRequest,
    HttpResponse,
    Limits,
    RequestRejected,
    ResponseEncoder,
    check_request_line,
    error_response,
    head_size,
    http_version,
    request_framing,
)
from wire.listeners import format_address, is_loopback_host

__all__ = ["ErrorRenderer", "Server", "accept_retrying", "serve"]

log = logging.getLogger("rolecall.http")

_RECEIVE_SIZE = 65536
_ERROR_GRACE = 1.0  # seconds to write a refusal and drain the client's leftovers
_LINGER_BYTES = 256 * 1024
_ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_IDLE, _READING, _HANDLING, _SENDING = range(4)

ErrorRenderer = Callable[[int], HttpResponse]


class _Connection:
    """Per-connection state the server and the cycle loop share."""

    __slots__ = ("stream", "scope", "deadline", "phase", "sock", "peer", "local", "ttl", "received", "line_checked",
                 "held", "caller")

    def __init__(self, stream: trio.abc.Stream, deadline: float) -> None:
        self.stream = stream
        self.scope = trio.CancelScope()  # cancelled by the server: timeout or shutdown
        self.deadline = deadline  # on trio's clock; enforced by Server._enforce_timeouts
        self.phase = _IDLE
        self.ttl: int | None = None  # the IP TTL we set, while it is in force
        self.received = 0  # bytes received in this request cycle
        self.line_checked = False  # request line of this cycle seen complete and valid
        self.held = 0  # body bytes of this cycle counted in the server's buffered total
        self.caller = None  # what Server(identify=...) said of the peer process, once, at accept
        self.sock = _find_socket(stream)
        if self.sock is None or self.sock.family not in (socket.AF_INET, socket.AF_INET6):
            self.sock = self.peer = self.local = None
        else:
            self.peer = self.sock.getpeername()[:2]
            self.local = self.sock.getsockname()[:2]


def _find_socket(wrapper):
    """The trio socket under a stream or listener, through ``trio.SSLStream`` /
    ``trio.SSLListener`` (``transport_stream`` / ``transport_listener``); or None."""
    while wrapper is not None:
        sock = getattr(wrapper, "socket", None)
        if sock is not None:
            return sock
        wrapper = getattr(wrapper, "transport_stream", None) or getattr(wrapper, "transport_listener", None)
    return None


class Server:
    """Serves one handler on any number of listeners, with graceful shutdown.

    Args:
        handler: ``HttpRequest -> HttpResponse``, plain or ``async def``.
        limits: size, time and connection bounds (``wire.http.Limits``).
        date_header: add a ``Date`` header to responses that lack one.
        shutdown_grace: seconds ``shutdown()`` lets requests in progress run.
        wall_time: the clock for ``Date`` (seconds since the epoch).
        error_response: ``status -> HttpResponse`` for the answers the layer
            makes itself (400, 408, 413, 414, 431, 500, 503, 505); called only
            on those paths. Plain text (``wire.http.error_response``) by default.
        remote: whether a peer host counts against ``max_connections_per_peer``
            (default: anything not loopback).
        identify: ``(local, peer) -> identity or None``, called once per TCP
            connection at accept (never per request; keep-alive requests reuse
            it, and nothing is cached across connections, as a port may be
            reused by another process). The identity reaches the handler as
            ``HttpRequest.caller``; one with a ``uid`` counts against
            ``max_connections_per_uid``. Blocking but quick
            (``wire.peer_identity.lookup``: one netlink round trip).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits = Limits(),
        date_header: bool = True,
        shutdown_grace: float = 10.0,
        wall_time: Callable[[], float] = time.time,
        error_response: ErrorRenderer = error_response,
        remote: Callable[[str], bool] = lambda host: not is_loopback_host(host),
        identify: Callable[[tuple[str, int], tuple[str, int]], Any] | None = None,
    ) -> None:
        self._handler = handler
        self._render_error = error_response
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)
        )
        self._limits = limits
        self._encoder = ResponseEncoder(date_header=date_header, wall_time=wall_time)
        self._grace = shutdown_grace
        self._remote = remote
        self._connections: set[_Connection] = set()
        self._idle: dict[_Connection, None] = {}  # idle connections, longest idle first (insertion order)
        self._per_peer: Counter[str] = Counter()  # connections of remote peers, by address
        self._identify = identify
        self._per_uid: Counter[int] = Counter()  # connections of identified local callers, by uid
        self._slot_freed = trio.Event()
        self._buffered = 0  # body bytes held across connections (max_buffered_body_bytes)
        self._shutdown = trio.Event()
        self._closing = False
        self._drained: trio.Event | None = None
        shortest = min(limits.request_timeout, limits.idle_timeout, limits.first_byte_timeout)
        self._tick = min(1.0, max(0.01, shortest / 10))

    @property
    def connection_count(self) -> int:
        """Connections being served right now."""
        return len(self._connections)

    def shutdown(self) -> None:
        """Ask ``serve()`` to finish gracefully (idempotent; call from trio)."""
        self._shutdown.set()

    async def serve(self, listeners: Iterable[trio.abc.Listener], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept and serve connections until ``shutdown()``; owns ``listeners``.

        Reports ``task_status.started(addresses)`` once accepting, with one
        ``"H:P"`` string (``format_address``) per socket listener (also
        under a ``trio.SSLListener``). Returns
        after a graceful shutdown; the listeners are closed either way.
        """
        listeners = list(listeners)
        try:
            async with trio.open_nursery() as connections:
                connections.start_soon(self._enforce_timeouts)
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(self._accept_loop, listener, connections)
                    task_status.started(_addresses(listeners))
                    await self._shutdown.wait()
                    accepting.cancel_scope.cancel()
                await _close_all(listeners)
                await self._drain()
                connections.cancel_scope.cancel()
        finally:
            await _close_all(listeners)

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        try:
            connection = _Connection(stream, trio.current_time() + self._limits.first_byte_timeout)
        except OSError:  # reset before we looked at it
            await trio.aclose_forcefully(stream)
            return
        host = connection.peer[0] if connection.peer else None
        if host is not None and self._remote(host):
            if self._per_peer[host] >= self._limits.max_connections_per_peer:
                log.debug("closed a connection from %s: %d already open", host, self._per_peer[host])
                await trio.aclose_forcefully(stream)
                return
            self._per_peer[host] += 1
        else:
            host = None
        uid = self._identified(connection)
        if uid is not None:
            if self._per_uid[uid] >= self._limits.max_connections_per_uid:
                log.debug("closed a connection of uid %d: %d already open", uid, self._per_uid[uid])
                self._release_peer(host)
                await trio.aclose_forcefully(stream)
                return
            self._per_uid[uid] += 1
        self._connections.add(connection)
        self._idle[connection] = None
        try:
            await self._run(connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away
        except Exception as exc:
            log.error("connection failed: %s", type(exc).__name__)
            log.debug("connection failure", exc_info=exc)
        finally:
            self._connections.discard(connection)
            self._idle.pop(connection, None)
            self._release_body(connection)
            self._release_peer(host)
            if uid is not None:
                self._per_uid[uid] -= 1
                if not self._per_uid[uid]:
                    del self._per_uid[uid]
            self._slot_freed.set()
            if self._drained is not None and not self._connections:
                self._drained.set()
            await trio.aclose_forcefully(stream)

    def _identified(self, connection: _Connection) -> int | None:
        """Ask ``identify`` who is behind the connection; its uid (None: unknown or no hook)."""
        if self._identify is None or connection.peer is None:
            return None
        try:
            connection.caller = self._identify(connection.local, connection.peer)
        except Exception as exc:  # noqa: BLE001 - an unidentified caller, never a failed connection
            log.debug("cannot identify the peer %s: %s", connection.peer, type(exc).__name__)
            return None
        return getattr(connection.caller, "uid", None)

    def _release_peer(self, host: str | None) -> None:
        if host is not None:
            self._per_peer[host] -= 1
            if not self._per_peer[host]:
                del self._per_peer[host]

    def _evict_idlest(self) -> bool:
        """Close the connection idle longest to make room; False when none is idle."""
        for connection in self._idle:
            del self._idle[connection]
            connection.scope.cancel()
            return True
        return False

    def _release_body(self, c: _Connection) -> None:
        self._buffered -= c.held
        c.held = 0

    # -- accepting and shutting down ------------------------------------------

    async def _accept_loop(self, listener: trio.abc.Listener, nursery: trio.Nursery) -> None:
        while True:
            # at the cap, wait only while nothing is idle: an idle socket never holds a client back
            while len(self._connections) >= self._limits.max_connections and not self._idle:
                if self._slot_freed.is_set():
                    self._slot_freed = trio.Event()
                await self._slot_freed.wait()
            stream = await accept_retrying(listener)
            if len(self._connections) >= self._limits.max_connections:
                self._evict_idlest()
            nursery.start_soon(self._serve_connection, stream)

    async def _enforce_timeouts(self) -> None:
        """Cancel each connection whose deadline has passed, checking every tick.

        One coarse timer for all connections: a request then costs two float
        stores instead of two trio deadline updates, and a timeout fires at
        most one tick (<= 1 s, a tenth of the shortest timeout) late.
        """
        while True:
            await trio.sleep(self._tick)
            now = trio.current_time()
            for connection in self._connections:
                if connection.deadline <= now:
                    connection.scope.cancel()

    async def _drain(self) -> None:
        self._closing = True
        self._drained = trio.Event()
        for connection in list(self._connections):
            if connection.phase == _IDLE:
                connection.scope.cancel()
        if not self._connections:
            self._drained.set()
        with trio.move_on_after(self._grace):
            await self._drained.wait()

    # -- one connection ---------------------------------------------------------

    async def _run(self, c: _Connection) -> None:
        with c.scope:
            refusal = await self._cycles(c)
        if c.scope.cancelled_caught:
            refusal = self._timed_out(c)
        if refusal is not None:
            log.debug("refused a request from %s: %s (%d)", c.peer, refusal, refusal.status)
            await self._refuse(c, refusal.status)

    async def _cycles(self, c: _Connection) -> RequestRejected | None:
        """Request cycles until the connection should close; a refusal to send, if any."""
        limits = self._limits
        pending, eof = b"", False
        while True:
            if not pending:
                if eof or self._closing:
                    return None
                pending = await c.stream.receive_some(_RECEIVE_SIZE)  # a request's first bytes
                if not pending:
                    return None  # closed between requests
            c.phase, c.deadline = _READING, trio.current_time() + limits.request_timeout
            self._idle.pop(c, None)
            c.received, c.line_checked = len(pending), False
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
            conn.receive_data(pending)
            if eof:
                conn.receive_data(b"")
            try:
                if not await self._cycle(c, conn):
                    return None
            except RequestRejected as refusal:
                return refusal
            finally:
                self._release_body(c)
            pending, eof = conn.trailing_data
            c.phase, c.deadline = _IDLE, trio.current_time() + limits.idle_timeout
            if not pending:
                self._idle[c] = None  # now the most recently idle

    async def _next_event(self, c: _Connection, conn: h11.Connection):
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                hint = exc.error_status_hint
                raise RequestRejected(hint if 400 <= hint < 500 else 400, str(exc)) from None
            if event is not h11.NEED_DATA:
                return event
            if not c.line_checked and conn.their_state is h11.IDLE:
                c.line_checked = check_request_line(conn.trailing_data[0], self._limits.max_target_bytes)
            data = await c.stream.receive_some(_RECEIVE_SIZE)
            c.received += len(data)
            conn.receive_data(data)

    async def _cycle(self, c: _Connection, conn: h11.Connection) -> bool:
        """Read one request and answer it; False when the connection should close."""
        event = await self._next_event(c, conn)
        if type(event) is not h11.Request:
            return False  # ConnectionClosed between requests
        limits = self._limits
        if len(event.target) > limits.max_target_bytes:
            raise RequestRejected(414, "request-target too long")
        version = _VERSIONS.get(event.http_version) or http_version(event.http_version)
        raw_headers = event.headers.raw_items()
        if len(raw_headers) > limits.max_headers:
            raise RequestRejected(431, "too many header fields")
        headers = tuple([(name.decode("ascii").lower(), value.decode("latin-1")) for name, value in raw_headers])
        if c.received > limits.max_header_bytes:  # h11 checks the size only of heads still incomplete
            if head_size(event.method, event.target, headers) > limits.max_header_bytes:
                raise RequestRejected(431, "request head too large")
        length, close, keep_alive_10 = request_framing(headers, version)
        if length is None or length:
            if length is not None and length > limits.max_body_bytes:
                raise RequestRejected(413, "Content-Length over the limit")
            if conn.they_are_waiting_for_100_continue:
                await c.stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=())))
            body = await self._read_body(c, conn)
        else:
            body = b""
            await self._next_event(c, conn)  # EndOfMessage
        method = event.method.decode("ascii")
        request = HttpRequest(method, event.target.decode("ascii"), headers, body, c.peer, c.local, version, c.caller)
        return await self._respond(c, request, close, keep_alive_10)

    async def _read_body(self, c: _Connection, conn: h11.Connection) -> bytes:
        # One bytearray, not a list of chunks: a body sent as a million one-byte
        # chunks must not cost a million objects.
        body, limit, total = bytearray(), self._limits.max_body_bytes, self._limits.max_buffered_body_bytes
        while True:
            event = await self._next_event(c, conn)
            if type(event) is not h11.Data:
                return bytes(body)  # EndOfMessage
            body += event.data
            c.held += len(event.data)
            self._buffered += len(event.data)
            if len(body) > limit:
                raise RequestRejected(413, "body over the limit")
            if self._buffered > total:
                raise RequestRejected(503, "request bodies held across connections over the limit")

    async def _respond(self, c: _Connection, request: HttpRequest, close: bool, keep_alive_10: bool) -> bool:
        c.phase = _HANDLING
        response = await self._call_handler(request)
        head_only = request.method == "HEAD"
        ttl = None
        if response is not None:
            close = close or self._closing
            connection = CLOSE if close else KEEP_ALIVE if keep_alive_10 else b""
            try:
                data, asked_close = self._encoder.encode(response, head_only=head_only, connection=connection)
                ttl = response.ip_ttl
            except (ValueError, TypeError) as exc:
                _log_handler_failure(request, exc)
                response = None
        if response is None:  # the handler failed: 500, then close
            data, asked_close, close = self._error_bytes(500, head_only), True, True
        c.phase = _SENDING
        if ttl is not None or c.ttl is not None:
            _apply_ttl(c, ttl)
        await c.stream.send_all(data)
        return not (close or asked_close)

    def _error_bytes(self, status: int, head_only: bool = False) -> bytes:
        """The layer's own answer for ``status``, with ``Connection: close``."""
        try:
            data, _ = self._encoder.encode(self._render_error(status), head_only=head_only, connection=CLOSE)
        except Exception as exc:  # a broken renderer must not cost the client its answer
            log.error("error renderer failed for status %d: %s; answered plain text", status, type(exc).__name__)
            log.debug("error renderer failure", exc_info=exc)
            data, _ = self._encoder.encode(error_response(status), head_only=head_only, connection=CLOSE)
        return data

    async def _call_handler(self, request: HttpRequest) -> HttpResponse | None:
        """The handler's response, or None when it failed (logged once)."""
        try:
            response = self._handler(request)
            if self._is_async:
                response = await response
            if type(response) is not HttpResponse:
                if inspect.isawaitable(response):  # a sync callable that returned a coroutine
                    response = await response
                if type(response) is not HttpResponse:
                    raise TypeError(f"handler returned {type(response).__name__}, not HttpResponse")
        except Exception as exc:
            _log_handler_failure(request, exc)
            return None
        return response

    def _timed_out(self, c: _Connection) -> RequestRejected | None:
        if c.phase == _READING:
            return RequestRejected(408, "request timeout")
        if c.phase == _HANDLING:
            log.warning("handler ran past the %s s request timeout; answered 503", self._limits.request_timeout)
            return RequestRejected(503, "handler timeout")
        return None  # idle, shut down, or the client stopped reading

    async def _refuse(self, c: _Connection, status: int) -> None:
        data = self._error_bytes(status)
        with trio.move_on_after(_ERROR_GRACE):
            try:
                await c.stream.send_all(data)
                await _drain_and_close(c.stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def accept_retrying(listener: trio.abc.Listener) -> trio.abc.Stream:
    """The next connection of ``listener``; out of file descriptors or memory, wait 0.1 s and retry.

    EMFILE/ENFILE/ENOMEM/ENOBUFS are passing states of the process or the host,
    not faults of the listener: they must never end the server (or the daemon
    around it). Every accept loop (this layer, the agent's control socket) uses this.
    """
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                raise
            log.warning("accept failed (%s); retrying in 0.1 s", errno.errorcode.get(exc.errno, exc.errno))
            await trio.sleep(0.1)


def _log_handler_failure(request: HttpRequest, exc: BaseException) -> None:
    # The path only: a query string may carry a signature or session token.
    log.error("handler failed on %s %s: %s; answered 500", request.method, request.path[:200], type(exc).__name__)
    log.debug("handler failure", exc_info=exc)


def _apply_ttl(c: _Connection, wanted: int | None) -> None:
    """Set (or, once it is safe, restore) the IP TTL / hop limit of ``c``."""
    sock = c.sock
    if sock is None or wanted == c.ttl:
        return  # not an IP socket (memory streams in tests), or already so
    if wanted is None:
        if _unacknowledged_bytes(sock) != 0:
            return  # keep the low TTL for retransmissions of the earlier bytes
        value = -1  # the kernel's default (route or sysctl)
    else:
        value = wanted
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, value)
        try:  # IPv4-mapped peers on a dual-stack socket
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, value)
        except OSError:
            pass
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, value)
    c.ttl = wanted


def _unacknowledged_bytes(sock) -> int:
    """Bytes in the TCP send queue (sent but unacknowledged, or unsent)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return -1  # unknown: treat as not yet safe
    return struct.unpack("i", raw)[0]


async def _drain_and_close(stream: trio.abc.Stream) -> None:
    """Half-close, then read and discard until EOF (bounded) before closing.

    Closing with unread input makes the kernel send a reset, which can
    destroy the response we just wrote before the client reads it.
    """
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    drained = 0
    while drained < _LINGER_BYTES:
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            return
        drained += len(data)


async def _close_all(listeners: list[trio.abc.Listener]) -> None:
    with trio.CancelScope(shield=True):
        for listener in listeners:
            await trio.aclose_forcefully(listener)


def _addresses(listeners: list[trio.abc.Listener]) -> list[str]:
    sockets = [_find_socket(listener) for listener in listeners]
    return [format_address(sock.getsockname()) for sock in sockets if sock is not None]


async def serve(
    listeners: Iterable[trio.abc.Listener],
    handler: Handler,
    *,
    limits: Limits = Limits(),
    date_header: bool = True,
    shutdown_grace: float = 10.0,
    error_response: ErrorRenderer = error_response,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``listeners`` until cancelled (``Server`` for shutdown).

    Reports ``task_status.started(["H:P", ...])`` once accepting.
    """
    server = Server(handler, limits=limits, date_header=date_header, shutdown_grace=shutdown_grace,
                    error_response=error_response)
    await server.serve(listeners, task_status=task_status)
