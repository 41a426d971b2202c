"""The backend's front door: one ``HttpRequest`` in, one ``HttpResponse`` out (no I/O).

Theory of operation
-------------------
``Backend.handle`` serves STS (2011-06-15) and IAM (2010-05-08) on one endpoint:

1. read the Query form (POST body and/or the query string);
2. authenticate (``auth.Authenticator``: SigV4, keys, sealed session tokens) —
   the credential scope's service (``sts`` or ``iam``) routes the call;
3. validate the parameters against the service model (``validation.validate``:
   unknown Action/Version, every range, length, pattern and enum);
4. apply the credential-kind rules (``auth.check_call``), then authorize: IAM
   actions by the caller's identity (and session) policies on ``iam:<Action>``
   and ``iam.iam_resource_arn``; STS actions inside ``sts.py``;
5. dispatch to ``sts.handle_sts`` or ``iam.handle_iam`` and render the XML.

Every response carries ``x-amzn-RequestId``, ``Content-Type: text/xml`` and
``Date`` (from the injected wall clock, so SDKs that correct their clock from it
see the backend's time). Errors are ``ErrorResponse`` documents with the AWS
code and status; anything unexpected is a 500 ``InternalFailure``, logged as one
line without request data. Every call, answered or refused, is one audit line.
"""

from __future__ import annotations

import email.utils
import logging
import re
import sqlite3
from typing import Any

import httpx

from sts_backend import iam, sts
from sts_backend.audit import AuditRecord, NullAudit
from sts_backend.auth import (UNSIGNED_ACTIONS, Authenticator, Principal, check_call, principal_policies,
                              request_context, unsigned_call)
from sts_backend.errors import AccessDenied, BackendError, ReceiverError, SenderError
from sts_backend.policy import access_denied_message, evaluate
from sts_backend.validation import validate
from wire.clock import WallClock
from wire.http import HttpRequest, HttpResponse
from wire.query import IAM_NAMESPACE, STS_NAMESPACE, QueryError, new_request_id, parse_form, render_error, render_result
from wire.sigv4 import SigV4Error

__all__ = ["Backend"]

log = logging.getLogger("rolecall.backend")

_NAMESPACES = {"sts": STS_NAMESPACE, "iam": IAM_NAMESPACE}
_SCOPE = re.compile(r"Credential=([A-Za-z0-9]{1,128})/[0-9]{8}/[^/,\s]*/([a-z0-9-]+)/")
_QUERY_SCOPE = re.compile(r"X-Amz-Credential=([A-Za-z0-9]{1,128})%2F[0-9]{8}%2F[^%&]*%2F([a-z0-9-]+)%2F")


class Backend:
    """The STS+IAM application over one store.

    Args:
        store: the ``store.Store`` (used from the serving thread only).
        clock: the wall clock for signatures, expiry, TOTP and ``Date``.
        audit: where audit lines go (``audit.AuditLog``); none kept by default.
    """

    def __init__(self, store: Any, clock: WallClock, audit: Any = None) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit if audit is not None else NullAudit()
        self.authenticator = Authenticator(store, clock)
        self._date_second = -1
        self._date = ""

    def __call__(self, req: HttpRequest) -> HttpResponse:
        return self.handle(req)

    def handle(self, req: HttpRequest) -> HttpResponse:
        """Serve one Query API request; never raises."""
        now = self.clock.now()
        record = AuditRecord(time=now, request_id=new_request_id(),
                             source=req.peer[0] if req.peer else None)
        service = _claimed_scope(req, record)
        try:
            service, action, result = self._serve(req, record, now)
            status, body = 200, render_result(action, _NAMESPACES[service], result, record.request_id)
        except (BackendError, SigV4Error) as exc:
            status, body = exc.http_status, self._error(exc, service, record)
        except QueryError as exc:
            status, body = 400, self._error(SenderError(exc.code, exc.message), service, record)
        except sqlite3.OperationalError as exc:
            log.warning("store busy or unavailable: %s", type(exc).__name__)
            busy = ReceiverError("ServiceUnavailable", "Service is unable to handle request.", 503)
            status, body = 503, self._error(busy, service, record)
        except Exception as exc:  # the edge: a bug must not take the server down or leak details
            log.error("internal failure serving %s %s: %s", service, record.action, type(exc).__name__)
            log.debug("internal failure", exc_info=exc)
            status, body = 500, self._error(ReceiverError(), service, record)
        self.audit.write(record)
        return HttpResponse(status, (("x-amzn-RequestId", record.request_id), ("Content-Type", "text/xml"),
                                     ("Date", self._http_date(now))), body)

    def _serve(self, req: HttpRequest, record: AuditRecord, now) -> tuple[str, str, Any]:
        if req.method not in ("GET", "POST"):
            raise SenderError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)
        params = _form(req)
        record.params = params
        action = record.action = params.get("Action")
        if action in UNSIGNED_ACTIONS and not _signed(req):
            record.service = "sts"
            raise unsigned_call(action)
        principal = self.authenticator.authenticate(req, now)
        service = record.service = principal.service
        record.principal_arn, record.access_key_id = principal.arn, principal.access_key_id
        if not action:
            raise SenderError("MissingAction", "Missing Action")
        typed = validate(service, action, params)
        check_call(principal, service, action)
        if service == "sts":
            return service, action, sts.handle_sts(action, typed, principal, self.store, now)
        caller = iam.Caller(principal.account_id, principal.arn, principal.kind,
                            principal.user_name if principal.kind == "user" else None)
        self._authorize_iam(action, typed, principal, caller, now)
        return service, action, iam.handle_iam(action, typed, caller, self.store, self.clock)

    def _authorize_iam(self, action: str, params: dict, principal: Principal, caller, now) -> None:
        if principal.kind == "root":
            return
        resource = iam.iam_resource_arn(action, params, caller, principal.account_id, self.store)
        identity, session_policies = principal_policies(principal, self.store)
        ctx = request_context(principal, f"iam:{action}", resource, now)
        if not evaluate(ctx, identity, session_policies=session_policies).allowed:
            raise AccessDenied(access_denied_message(principal.arn, f"iam:{action}", resource))

    def _error(self, exc: BackendError | SigV4Error, service: str, record: AuditRecord) -> bytes:
        record.outcome, record.error_code = "error", exc.code
        fault = getattr(exc, "fault", "Sender")
        return render_error(exc.code, exc.message, fault, _NAMESPACES.get(service, STS_NAMESPACE),
                            record.request_id)

    def _http_date(self, now) -> str:
        second = int(now.timestamp())
        if second != self._date_second:
            self._date_second, self._date = second, email.utils.formatdate(second, usegmt=True)
        return self._date

    def handle_httpx(self, request: httpx.Request) -> httpx.Response:
        """``handle`` for ``httpx.MockTransport``: the real backend with no sockets."""
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw)
        req = HttpRequest(request.method, request.url.raw_path.decode("ascii"), headers, request.read(),
                          peer=("127.0.0.1", 0))
        response = self.handle(req)
        return httpx.Response(response.status, headers=list(response.headers), content=response.body)


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
