"""The backend's front door: one ``HttpRequest`` in, one ``HttpResponse`` out (no I/O but
an identity provider's keys, fetched by ``jwks`` for AssumeRoleWithWebIdentity).

Theory of operation
-------------------
``Backend.handle`` serves STS (2011-06-15) and IAM (2010-05-08) on one endpoint:

1. read the Query form (POST body and/or the query string);
2. authenticate (``auth.Authenticator``: SigV4, keys, sealed session tokens) —
   the credential scope's service (``sts`` or ``iam``) routes the call; except
   AssumeRoleWithWebIdentity, whose web-identity token is verified instead
   (``sts_web_identity``), signed or not;
3. refuse an unknown Action/Version (``validation.check_operation``: ``InvalidAction``);
4. apply the credential-kind rules (``auth.check_call``: they need only service and
   action, and AWS answers them before looking at parameters, so GetSessionToken
   credentials without MFA get ``InvalidClientTokenId`` on IAM whatever they send);
5. validate the parameters against the service model (``validation.validate``:
   every range, length, pattern and enum), then authorize: IAM actions by the
   caller's identity (and session) policies on ``iam:<Action>`` and
   ``iam.iam_resource_arn``; STS actions inside ``sts.py``;
6. dispatch to ``sts.handle_sts`` or ``iam.handle_iam`` and render the XML.

Authenticated STS calls are throttled per access key (``throttle``: AWS's
``Throttling``, 400, past the key's rate and burst), after validation, so a
malformed call is told what is wrong and a throttled one was well formed.

Every response carries ``x-amzn-RequestId``, ``Content-Type: text/xml`` and
``Date`` (from the injected wall clock, so SDKs that correct their clock from it
see the backend's time). Errors are ``ErrorResponse`` documents with the AWS
code and status; anything unexpected is a 500 ``InternalFailure``, logged as one
line without request data. With a ``metrics.BackendMetrics``, each answer is also
counted (action, code, latency). Every call, answered or refused, is one audit line
(``audit``: bounded for unauthenticated requests). An IAM change runs in one
store transaction with its audit line written and synced inside it: when the
line cannot be written the change is rolled back and the answer is 503 naming
a full disk (or 500), so no change is ever kept or acknowledged unaudited.

Threads and the event loop
--------------------------
``handle`` can block: a write waits up to SQLite's 5 s busy timeout for a write
lock held by another process (``rotate-token-key``, ``set-quota``, a second server
on the data dir), and every acknowledged write waits for its fsync. On the serving
layer the backend is therefore the ``async`` callable ``Backend.__call__``, which
never lets the event loop wait on SQLite. Calls take one of two lanes:

- the **write lane**: ``handle`` on this backend's store in a trio worker thread,
  one call at a time (``trio.CapacityLimiter(1)``), so the store's connection is
  used by one thread at a time. It serves every call that may write (IAM
  mutations, STS calls carrying an MFA code, which consume it,
  ``GetAccessKeyLastUsed``, which flushes key uses) and whatever it cannot classify
  (unsigned or malformed requests);
- the **read lane**: ``handle`` of a second ``Backend`` over ``Store.reader()`` (a
  read-only connection opened, off the loop, on first use), run *inline* on the
  event loop for a local SQLite store, and in up to ``READ_WORKERS`` worker threads,
  each on a reader of its own, for PostgreSQL (``store.inline_reads`` is False: a
  query there is a round trip, which the loop must never wait for):
  ``GetCallerIdentity``, ``GetAccessKeyInfo``, ``AssumeRole``, ``GetSessionToken`` and
  ``GetFederationToken`` without an MFA code (they mint sealed tokens: nothing is
  stored per session), and IAM's ``Get*``/``List*`` and the policy simulator's ``Simulate*``.
  In WAL mode a reader never waits for the write lock, and this connection's
  busy timeout is 0: should SQLite ever report it busy (recovery after a crash
  of another process), the call is answered 503 ``ServiceUnavailable`` (SDKs
  retry it) instead of waiting on the loop. Its connection refuses writes
  (``PRAGMA query_only``), so a misrouted write fails (503) rather than racing
  the write lane.

- the **web-identity lane**: AssumeRoleWithWebIdentity (unsigned: the token is the
  proof), in a trio worker thread, up to ``WEB_IDENTITY_WORKERS`` at once, each worker
  on a read-only ``Store.reader()`` of its own (pooled). Verifying the token may fetch
  the identity provider's keys (``jwks``: seconds at worst, bounded by timeouts), so it
  must run neither on the event loop nor on the write lane, where it would stall every
  write behind a slow provider; it writes nothing (sealed tokens, like AssumeRole).
  The key cache (``jwks.JwksCache``) is shared by the workers.

The lane is chosen from the decoded form (the same parameters the lane then
serves) and the claimed credential scope: ``Action``, and for STS whether a
``TokenCode`` or ``SerialNumber`` is present in any spelling (unverified:
choosing a lane grants nothing; either lane authenticates, validates and
authorizes as ever).

Trade-offs, chosen for honesty and speed: the read lane costs the event loop its
CPU time (signature check, policy evaluation, page-cache reads: a fraction of a
millisecond) exactly as every call did before, but never a lock wait or an fsync;
it needs no thread hand-off, which would cost the hot AssumeRole path about 40 %
of its rate with the GIL ping-pong between the loop and the worker. Writes are
serialised (SQLite serialises them anyway), so a write stuck behind another
process's lock delays the writes queued behind it, up to the busy timeout, then
503. Key uses recorded on either lane go to the write store's buffer; they
are written in one batch by ``maintain`` (a background task of ``server.serve``) on the
write lane, at most once a minute: never on a request's path. ``handle`` and
``handle_httpx`` stay synchronous for tests and in-process use (there, the
caller's thread runs them on this backend's store).
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
import threading
from time import perf_counter
from typing import Any

import httpx
import trio

from sts_backend import iam, iam_boundaries, sts, sts_web_identity
from sts_backend.audit import AuditRecord, NullAudit
from sts_backend.auth import (UNSIGNED_ACTIONS, Authenticator, Principal, check_call, principal_policies,
                              request_context, unsigned_call)
from sts_backend.errors import AccessDenied, BackendError, MfaLockout, ReceiverError, SenderError
from sts_backend.jwks import JwksCache
from sts_backend.metrics import BackendMetrics
from sts_backend.policy import access_denied_message, evaluate
from sts_backend.store_core import StoreUnavailable
from sts_backend.store_keys import KEY_USE_FLUSH_SECONDS
from sts_backend.throttle import KeyThrottle
from sts_backend.validation import check_operation, validate
from wire.clock import WallClock
from wire.http import HttpDate, HttpRequest, HttpResponse
from wire.query import IAM_NAMESPACE, STS_NAMESPACE, QueryError, new_request_id, parse_form, render_error, render_result
from wire.version import version

__all__ = ["Backend", "audit_failure", "layer_error_response", "READ_ONLY_ACTIONS", "store_failure"]

log = logging.getLogger("rolecall.backend")

_NAMESPACES = {"sts": STS_NAMESPACE, "iam": IAM_NAMESPACE}
_SCOPE = re.compile(r"Credential=([A-Za-z0-9]{1,128})/[0-9]{8}/[^/,\s]*/([a-z0-9-]+)/")
_QUERY_SCOPE = re.compile(r"X-Amz-Credential=([A-Za-z0-9]{1,128})%2F[0-9]{8}%2F[^%&]*%2F([a-z0-9-]+)%2F")

# Calls that never write to the store: served on the read lane (see the module docstring).
# STS calls are there only without an MFA code (``_MFA_MARKERS``): checking one consumes it.
# GetAccessKeyLastUsed is not: it flushes buffered key uses first.
READ_ONLY_ACTIONS: dict[str, frozenset[str]] = {
    "sts": frozenset({"GetCallerIdentity", "GetAccessKeyInfo", "AssumeRole", "GetSessionToken",
                      "GetFederationToken"}),
    "iam": frozenset(a for a in iam.HANDLERS
                     if a.startswith(("Get", "List", "Simulate")) and a != "GetAccessKeyLastUsed"),
}
_MFA_MARKERS = ("tokencode", "serialnumber")  # compared with the decoded names, lower-cased
WEB_IDENTITY = "AssumeRoleWithWebIdentity"
WEB_IDENTITY_WORKERS = 4  # web-identity calls in flight at once (each may wait on an identity provider)
READ_WORKERS = 4  # threaded read-lane calls in flight at once (PostgreSQL: each holds a pooled connection)


class _LanePool:
    """Idle ``Backend``s of a threaded lane, each over its own ``store.reader()``: a worker takes
    one (opening it on first use), serves, and puts it back. Thread-safe."""

    def __init__(self, opener, metrics: BackendMetrics | None) -> None:
        self._opener = opener
        self._metrics = metrics
        self._idle: list[Backend] = []
        self._guard = threading.Lock()

    def serve(self, req: HttpRequest, params: dict[str, str]) -> HttpResponse:
        """(worker thread) ``handle`` on an idle lane backend; 503 when none can be opened."""
        with self._guard:
            lane = self._idle.pop() if self._idle else None
        if lane is None:
            try:
                lane = self._opener()
            except Exception as exc:  # noqa: BLE001 - answered as AWS answers an overloaded service
                log.warning("cannot open a store reader for a lane (%s)", type(exc).__name__)
                if self._metrics is not None:
                    self._metrics.store_error(None)
                return layer_error_response(503)
        try:
            return lane.handle(req, params)
        finally:
            with self._guard:
                self._idle.append(lane)

    def close(self) -> None:
        with self._guard:
            lanes, self._idle = self._idle, []
        for lane in lanes:
            lane.store.close()


class Backend:
    """The STS+IAM application over one store.

    Args:
        store: the ``store.Store``: used by one thread at a time (``handle``'s
            caller, or the write lane's worker when served through ``__call__``).
        clock: the wall clock for signatures, expiry, TOTP and ``Date``.
        audit: where audit lines go (``audit.AuditLog``); none kept by default.
        throttle: the per-key STS rate limiter (shared with the read lane).
        web_keys: identity providers' signing keys for AssumeRoleWithWebIdentity
            (``jwks.JwksCache``: fetches over HTTPS); a fresh cache by default.
        secure_transport: every request arrives over TLS (``aws:SecureTransport``).
        metrics: where each call is counted (``metrics.BackendMetrics``); none by default.
    """

    def __init__(self, store: Any, clock: WallClock, audit: Any = None, throttle: KeyThrottle | None = None,
                 web_keys: JwksCache | None = None, *, secure_transport: bool = False,
                 metrics: BackendMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.web_keys = web_keys if web_keys is not None else JwksCache()
        self.clock = clock
        self.audit = audit if audit is not None else NullAudit()
        self.throttle = throttle if throttle is not None else KeyThrottle(lambda: clock.now().timestamp())
        self.secure_transport = secure_transport
        self.authenticator = Authenticator(store, clock, secure_transport=secure_transport)
        self._server = ("Server", f"rolecall/{version()}")
        self._dates = HttpDate()
        self._write_lane: trio.CapacityLimiter | None = None
        self._opening: trio.Lock | None = None
        self._reader: Backend | None = None   # the read lane's backend, opened on first use
        self._reader_failed = False
        self._web_lane: trio.CapacityLimiter | None = None
        self._web_readers = _LanePool(self._lane_backend, self.metrics)
        self._read_lane: trio.CapacityLimiter | None = None   # threaded reads (a database across a socket)
        self._readers = _LanePool(self._lane_backend, self.metrics)

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        """Serve one request on the serving layer without blocking the event loop; never raises.

        Read-only calls run on the read lane (inline on a local SQLite store, whose
        reads never wait for a lock; in a worker thread on a database across a
        socket); everything else runs ``handle`` in the write lane's worker thread.
        The lane is chosen from the decoded form, the same parameters ``handle``
        then serves: no spelling of a name can move a call that writes (an MFA
        code is consumed) onto the read-only lane.
        """
        if self._write_lane is None:
            self._write_lane, self._opening = trio.CapacityLimiter(1), trio.Lock()
            self._web_lane = trio.CapacityLimiter(WEB_IDENTITY_WORKERS)
            self._read_lane = trio.CapacityLimiter(READ_WORKERS)
        try:
            params = _form(req)
        except QueryError:
            params = None  # the write lane parses again and reports it
        if params is not None and params.get("Action") == WEB_IDENTITY and getattr(self.store, "reader", None):
            return await trio.to_thread.run_sync(self._web_readers.serve, req, params, limiter=self._web_lane)
        if not self._reader_failed and params is not None and _reads_only(req, params):
            if not getattr(self.store, "inline_reads", True):
                return await trio.to_thread.run_sync(self._readers.serve, req, params, limiter=self._read_lane)
            reader = self._reader
            if reader is None:
                async with self._opening:
                    if self._reader is None and not self._reader_failed:
                        await trio.to_thread.run_sync(self._open_reader)
                reader = self._reader
            if reader is not None:
                return reader.handle(req, params)
        return await trio.to_thread.run_sync(self.handle, req, params, limiter=self._write_lane)

    async def maintain(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Background upkeep while serving: write buffered access-key uses in one batch every
        ``KEY_USE_FLUSH_SECONDS``, on the write lane, so no request ever waits on that write."""
        task_status.started()
        flush = getattr(self.store, "flush_key_use", None)
        while flush is not None:
            await trio.sleep(KEY_USE_FLUSH_SECONDS)
            if self._write_lane is None:
                self._write_lane, self._opening = trio.CapacityLimiter(1), trio.Lock()
            try:
                await trio.to_thread.run_sync(flush, limiter=self._write_lane)
            except Exception as exc:  # noqa: BLE001 - kept in the buffer; the next round tries again
                log.warning("cannot write access-key last-used records (%s); retrying later", type(exc).__name__)

    def _open_reader(self) -> None:
        """(worker thread) Open the read lane; on failure the write lane serves everything."""
        opener = getattr(self.store, "reader", None)
        if opener is None:
            self._reader_failed = True
            return
        try:
            self._reader = self._lane_backend()
        except Exception as exc:  # noqa: BLE001 - the write lane can serve everything
            log.warning("cannot open the read lane (%s); serving every call on the write lane",
                        type(exc).__name__)
            if self.metrics is not None:
                self.metrics.store_error(None)
            self._reader_failed = True

    def _lane_backend(self) -> Backend:
        """A ``Backend`` over a fresh ``store.reader()``, sharing this one's audit, throttle and caches."""
        return Backend(self.store.reader(), self.clock, self.audit, self.throttle, self.web_keys,
                       secure_transport=self.secure_transport, metrics=self.metrics)

    def lane_statistics(self) -> dict[str, tuple[int, int, int]]:
        """``(busy, queued, workers)`` of each lane (pool saturation): ``write``, ``web_identity``,
        and ``read`` when reads run in threads (a database across a socket); zeros before the
        first call opened them. Call on the event loop."""
        def of(lane: trio.CapacityLimiter | None, workers: int) -> tuple[int, int, int]:
            if lane is None:
                return 0, 0, workers
            stats = lane.statistics()
            return stats.borrowed_tokens, stats.tasks_waiting, workers

        lanes = {"write": of(self._write_lane, 1), "web_identity": of(self._web_lane, WEB_IDENTITY_WORKERS)}
        if not getattr(self.store, "inline_reads", True):
            lanes["read"] = of(self._read_lane, READ_WORKERS)
        return lanes

    def pool_statistics(self) -> tuple[int, int, int] | None:
        """``(in use, waiting, size)`` of the store's connection pool (None: the store has none)."""
        stats = getattr(self.store, "pool_statistics", None)
        return stats() if stats else None

    def close(self) -> None:
        """Close the read lanes' connections (the store itself stays open: its owner closes it).

        Call once no request is in progress; a later async call opens the lanes again.
        """
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.store.close()
        self._web_readers.close()
        self._readers.close()

    def handle(self, req: HttpRequest, params: dict[str, str] | None = None) -> HttpResponse:
        """Serve one Query API request; never raises.

        Args:
            req: the request.
            params: its decoded form when the caller parsed it already (``__call__``).
        """
        started = perf_counter()
        now = self.clock.now()
        record = AuditRecord(time=now, request_id=new_request_id(),
                             source=req.peer[0] if req.peer else None)
        service = _claimed_scope(req, record)
        record.request_bytes = len(req.body) + len(req.query)
        written = False
        try:
            service, action, result, written = self._serve(req, record, now, params)
            status, body = 200, render_result(action, _NAMESPACES[service], result, record.request_id)
        except BackendError as exc:
            status, body = exc.http_status, self._error(exc, service, record)
        except QueryError as exc:
            status, body = 400, self._error(SenderError(exc.code, exc.message), service, record)
        except (sqlite3.Error, StoreUnavailable) as exc:
            if self.metrics is not None:
                self.metrics.store_error(exc)
            failure = store_failure(exc)
            status, body = failure.http_status, self._error(failure, service, record)
        except Exception as exc:  # the edge: a bug must not take the server down or leak details
            log.error("internal failure serving %s %s: %s", service, record.action, type(exc).__name__)
            log.debug("internal failure", exc_info=exc)
            status, body = 500, self._error(ReceiverError(), service, record)
        if not written:
            self.audit.write(record)
        if self.metrics is not None:
            self.metrics.observe(record.action, record.error_code, perf_counter() - started)
        return HttpResponse(status, (("x-amzn-RequestId", record.request_id), ("Content-Type", "text/xml"),
                                     ("Date", self._dates.text(int(now.timestamp()))), self._server), body)

    def _serve(self, req: HttpRequest, record: AuditRecord, now,
               params: dict[str, str] | None) -> tuple[str, str, Any, bool]:
        """``(service, action, result, audited)``: ``audited`` when the line was written already (IAM changes)."""
        if req.method not in ("GET", "POST"):
            raise SenderError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)
        if params is None:
            params = _form(req)
        record.params = params
        action = record.action = params.get("Action")
        if action == WEB_IDENTITY:   # signed or not: the token is the proof
            return "sts", action, self._web_identity(params, record, now), False
        if action in UNSIGNED_ACTIONS and not _signed(req):
            record.service = "sts"
            raise unsigned_call(action)
        principal = self.authenticator.authenticate(req, now)
        service = record.service = principal.service
        record.principal_arn, record.access_key_id = principal.arn, principal.access_key_id
        record.authenticated = True
        if not action:
            raise SenderError("MissingAction", "Missing Action")
        check_operation(service, action, params)   # unknown Action/Version: InvalidAction
        check_call(principal, service, action)      # credential-kind rules before any parameter
        typed = validate(service, action, params)
        if service == "sts":
            if not self.throttle.allow(principal.access_key_id, self.store):
                raise SenderError("Throttling", "Rate exceeded", 400)
            return service, action, sts.handle_sts(action, typed, principal, self.store, now), False
        caller = iam.Caller(principal.account_id, principal.arn, principal.kind,
                            principal.user_name if principal.kind == "user" else None)
        self._authorize_iam(action, typed, principal, caller, now)
        if action in READ_ONLY_ACTIONS["iam"]:
            return service, action, iam.handle_iam(action, typed, caller, self.store, self.clock), False
        # A change and its audit line: both, or neither (the line is synced before the commit, and taken
        # back should the commit fail).
        try:
            with self.audit.change(record) as write_line, self.store.transaction():
                result = iam.handle_iam(action, typed, caller, self.store, self.clock)
                write_line()
        except OSError as exc:
            raise audit_failure(exc) from None
        return service, action, result, True

    def _web_identity(self, params: dict[str, str], record: AuditRecord, now) -> dict:
        """AssumeRoleWithWebIdentity; audited as authenticated (its token redacted) once the token verified."""
        record.service = "sts"
        check_operation("sts", WEB_IDENTITY, params)
        typed = validate("sts", WEB_IDENTITY, params)
        result = sts_web_identity.assume_role_with_web_identity(
            typed, self.store, now, self.web_keys,
            connection={"aws:SourceIp": record.source, "aws:SecureTransport": self.secure_transport})
        record.authenticated, record.principal_arn = True, result["AssumedRoleUser"]["Arn"]
        return result

    def _authorize_iam(self, action: str, params: dict, principal: Principal, caller, now) -> None:
        if principal.kind == "root" and not principal.revoked:
            return
        resource = iam.iam_resource_arn(action, params, caller, principal.account_id, self.store)
        identity, session_policies, boundary = principal_policies(principal, self.store)
        ctx = request_context(principal, f"iam:{action}", resource, now, self.store,
                              resource_tags=iam.iam_resource_tags(action, params, caller, self.store),
                              extra={**iam.iam_request_tags(params),
                                     **iam_boundaries.condition_keys(action, params, self.store)})
        if not evaluate(ctx, identity, session_policies=session_policies, permissions_boundary=boundary).allowed:
            raise AccessDenied(access_denied_message(principal.arn, f"iam:{action}", resource))

    def _error(self, exc: BackendError, service: str, record: AuditRecord) -> bytes:
        record.outcome, record.error_code = "error", exc.code
        if self.metrics is not None:
            self.metrics.error(exc)
        if isinstance(exc, MfaLockout):
            record.event, record.mfa_serial = exc.event, exc.serial
        fault = getattr(exc, "fault", "Sender")
        return render_error(exc.code, exc.message, fault, _NAMESPACES.get(service, STS_NAMESPACE),
                            record.request_id)

    def handle_httpx(self, request: httpx.Request) -> httpx.Response:
        """``handle`` for ``httpx.MockTransport``: the real backend with no sockets."""
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw)
        req = HttpRequest(request.method, request.url.raw_path.decode("ascii"), headers, request.read(),
                          peer=("127.0.0.1", 0))
        response = self.handle(req)
        return httpx.Response(response.status, headers=list(response.headers), content=response.body)


def _reads_only(req: HttpRequest, params: dict[str, str]) -> bool:
    """True when the decoded request claims a call that never writes (verified later, in its lane)."""
    scope = _SCOPE.search(req.header("authorization") or "")
    service = scope.group(2) if scope else _query_scope_service(params.get("X-Amz-Credential"))
    reads = READ_ONLY_ACTIONS.get(service or "")
    if reads is None or params.get("Action") not in reads:
        return False
    return service != "sts" or not any(name.lower() in _MFA_MARKERS for name in params)


def _query_scope_service(credential: str | None) -> str | None:
    """The service of a presigned request's ``X-Amz-Credential`` (``KEY/DATE/REGION/SERVICE/aws4_request``)."""
    parts = (credential or "").split("/")
    return parts[3] if len(parts) == 5 else None


# The serving layer's own refusals (malformed HTTP, sizes, timeouts, a failed or
# overrunning handler) as AWS ErrorResponse documents: (code, message, fault).
_LAYER_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("InvalidRequest", "The request is not valid HTTP/1.1.", "Sender"),
    408: ("RequestTimeout", "Your socket connection to the server was not read from or written to within "
                            "the timeout period.", "Sender"),
    413: ("RequestEntityTooLarge", "The request body exceeds the maximum allowed size.", "Sender"),
    414: ("RequestURITooLong", "The request URI exceeds the maximum allowed length.", "Sender"),
    431: ("RequestHeaderSectionTooLarge", "The request header section exceeds the maximum allowed size.",
          "Sender"),
    500: ("InternalFailure", "An internal error occurred.", "Receiver"),
    503: ("ServiceUnavailable", "Service is unable to handle request.", "Receiver"),
    505: ("HttpVersionNotSupported", "The HTTP version is not supported.", "Sender"),
}


def layer_error_response(status: int) -> HttpResponse:
    """The backend's form of an answer the serving layer makes itself (``wire.serve.Server``'s
    ``error_response``): an STS-namespace ``ErrorResponse`` with a fresh ``x-amzn-RequestId``.

    Nothing was parsed, so nothing is audited. Any other status gets a generic
    ``InvalidRequest`` (4xx) or ``InternalFailure`` (5xx).
    """
    known = _LAYER_ERRORS.get(status)
    if known is None:
        known = (("InternalFailure", "An internal error occurred.", "Receiver") if status >= 500
                 else ("InvalidRequest", "The request is not valid.", "Sender"))
    code, message, fault = known
    request_id = new_request_id()
    return HttpResponse(status, (("x-amzn-RequestId", request_id), ("Content-Type", "text/xml")),
                        render_error(code, message, fault, STS_NAMESPACE, request_id))


_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def audit_failure(exc: OSError) -> ReceiverError:
    """The answer for a change rolled back because its audit line could not be written."""
    if exc.errno in _DISK_FULL:
        log.error("audit log write failed: the disk is full; the change was rolled back")
        return ReceiverError("ServiceUnavailable", "The audit log's disk is full: changes are refused until space "
                                                   "is freed.", 503)
    log.error("audit log write failed (%s); the change was rolled back", exc.strerror or type(exc).__name__)
    return ReceiverError()


def store_failure(exc: sqlite3.Error | StoreUnavailable) -> ReceiverError:
    """The answer for a store error: 503 when it is busy, locked or unreachable (SDKs retry), 503
    naming a full disk, else a 500 logged with its detail at ERROR (a bug or damage, not load)."""
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return ReceiverError("ServiceUnavailable", "Service is unable to handle request.", 503)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes carry the primary in the low byte
    if primary in _BUSY:
        log.warning("store busy: %s", getattr(exc, "sqlite_errorname", type(exc).__name__))
        return ReceiverError("ServiceUnavailable", "Service is unable to handle request.", 503)
    if primary == sqlite3.SQLITE_FULL:
        log.error("store write failed: the data directory's disk is full")
        return ReceiverError("ServiceUnavailable", "The backend's disk is full: writes fail until space is freed.",
                             503)
    log.error("store failure: %s: %s", getattr(exc, "sqlite_errorname", type(exc).__name__), exc)
    return ReceiverError()


def _form(req: HttpRequest) -> dict[str, str]:
    """Query-string and body parameters together (a name in both is refused)."""
    params = parse_form(req.query) if req.query else {}
    if req.method == "POST" and req.body:
        body = parse_form(req.body)
        both = params.keys() & body.keys()
        if both:
            raise QueryError(f"parameter {min(both)} is given more than once", "InvalidQueryParameter")
        params.update(body)
    return params


def _signed(req: HttpRequest) -> bool:
    return req.header("authorization") is not None or "X-Amz-Signature=" in req.query


def _claimed_scope(req: HttpRequest, record: AuditRecord) -> str:
    """The service the request claims (for the error namespace) and its key id, unverified."""
    found = _SCOPE.search(req.header("authorization") or "") or _QUERY_SCOPE.search(req.query)
    if found is None:
        return "sts"
    record.access_key_id = found.group(1)
    return found.group(2) if found.group(2) in _NAMESPACES else "sts"
