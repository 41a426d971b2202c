"""The IMDS handler: pure, from ``HttpRequest`` to ``HttpResponse``.

Theory of operation
-------------------
Every request passes the defences first, in this order, and any failure is a
``403`` with an empty body (nothing worth stealing through DNS rebinding):

1. exactly one ``Host`` header, in the allow-list (``MetadataConfig``);
2. a peer this host may serve (``PeerPolicy``: local, or an allowed network);
3. no ``X-Forwarded-For`` on *any* request (real IMDS refuses it on the token
   PUT and on token-carrying GETs; a proxy in front would make every peer look
   local, so rolecall refuses it everywhere).

Then the path: a leading ``//`` is read as ``/`` (``//latest/api/token`` is the
token path), for clients that join a base URL ending in ``/`` and a path
starting with one. Only exactly two slashes are folded: three or more are left
as they are, so such a path is an unknown one (never a token, never metadata:
404 to a GET/HEAD that passes the token rules, 405 to other methods). Everything
below applies to the normalised path.

Then routing (reference/imds.md §2-5):

- ``/latest/api/token``: ``PUT`` with a TTL 1-21600 issues a sealed token
  (``TokenSealer``) whose response leaves with ``ip_ttl = hop_limit``; bad TTL
  400; ``OPTIONS`` 200; other methods 405 ``Allow: OPTIONS, PUT``. A versioned
  token path or one with a trailing slash: 403.
- anything else is GET/HEAD only (else 405 ``Allow: GET, HEAD``) and needs a
  valid token in ``required`` mode (401 otherwise); a token that is present must
  be valid in either mode (401), and its remaining TTL is echoed on the answer.
- credential paths answer 503 ``{"Code", "Message"}`` while no unexpired
  credentials are held (expiry by the injected wall clock), never a 200 with
  stale or empty keys; other paths are static and pre-rendered.

A trailing slash is optional on every metadata path (botocore asks for
``placement/availability-zone/``). Bodies for a given ``RoleCredentials``
object are rendered once and reused while the holder returns that object.

Per-caller roles: with ``roles`` (a ``RoleSelector``), each request's holder is
the one ``roles(req.caller, peer address)`` picks for the connection's caller
(identified once per connection by the serving layer, ``HttpRequest.caller``),
so ``iam/security-credentials/`` lists exactly that caller's role and
``iam/info`` is that role's; a caller with no role gets 403 with a JSON error
on the credential paths (the other paths are the host's, and answer as ever).
IMDSv2 tokens are then bound to the caller that asked for them
(``TokenSealer`` binding: uid and cgroup id): presented on another caller's
connection, a token is refused (401).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from metadata_server import documents as doc
from metadata_server.config import MetadataConfig, authority_forms, default_instance_id, normalize_host
from metadata_server.credentials import CredentialHolder, RoleCredentials
from metadata_server.peers import PeerPolicy
from metadata_server.tokens import TokenSealer, parse_ttl
from wire.clock import WallClock
from wire.http import HttpRequest, HttpResponse

__all__ = ["ImdsHandler", "RoleSelector", "TOKEN_HEADER", "TOKEN_PATH", "TTL_HEADER", "caller_binding", "path_class",
           "refusal_reason"]

# (the connection's caller identity or None, the peer's address) -> the holder of its role, or None
RoleSelector = Callable[[Any, "str | None"], "CredentialHolder | None"]

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
_TTL_OUT = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
_META = "/latest/meta-data/"
_CREDS = _META + "iam/security-credentials"
_EXT = _META + "iam/security-credentials-extended"
_INFO = _META + "iam/info"

_TEXT = ("Content-Type", "text/plain")
_HTML = ("Content-Type", "text/html")


def _ok(body: bytes) -> HttpResponse:
    return HttpResponse(200, (_TEXT,), body)


def _page(status: int, reason: str, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(status, (_HTML, *extra), doc.xhtml_error(status, reason))


FORBIDDEN = HttpResponse(403, (_TEXT,), b"")
# The same answer for each defence, as distinct objects, so that ``refusal_reason`` can say which
# one refused a request without the handler doing any work for it.
FORBIDDEN_HOST = HttpResponse(403, (_TEXT,), b"")
FORBIDDEN_PEER = HttpResponse(403, (_TEXT,), b"")
FORBIDDEN_HOP = HttpResponse(403, (_TEXT,), b"")
BAD_REQUEST = _page(400, "Bad Request")
UNAUTHORIZED = _page(401, "Unauthorized")
NOT_FOUND = _page(404, "Not Found")
TOKEN_METHOD_NOT_ALLOWED = _page(405, "Method Not Allowed", ("Allow", "OPTIONS, PUT"))
METHOD_NOT_ALLOWED = _page(405, "Method Not Allowed", ("Allow", "GET, HEAD"))
TOKEN_OPTIONS = HttpResponse(200, (_TEXT, ("Allow", "OPTIONS, PUT")), b"")
NO_CREDENTIALS = HttpResponse(
    503,
    (_TEXT,),
    doc.error_document("CredentialsUnavailable", "rolecall holds no valid credentials for this role yet"),
)
NO_ROLE = HttpResponse(
    403,
    (_TEXT,),
    doc.error_document("AccessDenied", "rolecall serves no role to this caller"),
)
EXPIRED_CREDENTIALS = HttpResponse(
    503,
    (_TEXT,),
    doc.error_document("CredentialsExpired", "the credentials rolecall holds have expired; a refresh is pending"),
)


def _trio_clock() -> Callable[[], float]:
    import trio  # here, so the pure handler module itself stays free of trio

    return trio.current_time


def _normal_path(path: str) -> str:
    """``//x`` as ``/x`` (a base URL with a trailing slash joined to ``/x``); any other path unchanged.

    ``///x`` and longer runs are not folded, so they route as unknown paths.
    """
    if path.startswith("//") and not path.startswith("///"):
        return path[1:]
    return path


def _is_token_variant(path: str) -> bool:
    """``/latest/api/token/`` or ``/<version>/api/token[/]``: real IMDS answers 403."""
    parts = path.split("/")
    return len(parts) in (4, 5) and parts[0] == "" and parts[1] != "" and parts[2:4] == ["api", "token"] and (
        len(parts) == 4 or parts[4] == ""
    )


def _is_credential_path(key: str) -> bool:
    """Paths whose answer depends on held credentials (503 while none are valid)."""
    if key in (_CREDS, _EXT, _INFO):
        return True
    return key.startswith(_CREDS + "/") or key.startswith(_EXT + "/")


def path_class(path: str) -> str:
    """A request path's class, a bounded label for metrics: ``token``, ``credentials`` (the paths
    that answer from held credentials), ``metadata`` (the other paths under ``/latest/``) or ``other``."""
    path = _normal_path(path)
    if path == TOKEN_PATH:
        return "token"
    key = path[:-1] if len(path) > 1 and path[-1] == "/" else path
    if _is_credential_path(key):
        return "credentials"
    return "metadata" if path == "/" or path.startswith("/latest") else "other"


def refusal_reason(answer: HttpResponse) -> str | None:
    """Which defence ``answer`` (an ``ImdsHandler`` answer) is the refusal of: ``host``, ``peer``,
    ``hop`` (``X-Forwarded-For``: a proxy in between) or ``token`` (401); None for any other answer."""
    if answer.status == 401:
        return "token"
    if answer.status != 403:
        return None
    if answer is FORBIDDEN_HOST:
        return "host"
    if answer is FORBIDDEN_PEER:
        return "peer"
    return "hop" if answer is FORBIDDEN_HOP else None


class ImdsHandler:
    """An EC2 instance-metadata service over whatever ``holder`` holds.

    Args:
        config: the ``[metadata]`` settings.
        holder: asked on every credential request.
        wall_clock: decides whether held credentials have expired.
        monotonic: the token clock (default ``trio.current_time``; pass
            ``time.monotonic`` or a fake to call the handler outside trio).
        peers: the peer policy (default from ``config.allowed_peers``).
        roles: per-caller roles: picks each caller's holder (``holder`` is then
            unused for credentials); None serves ``holder`` to every caller.
    """

    def __init__(
        self,
        config: MetadataConfig,
        holder: CredentialHolder,
        wall_clock: WallClock,
        monotonic: Callable[[], float] | None = None,
        *,
        peers: PeerPolicy | None = None,
        roles: RoleSelector | None = None,
    ) -> None:
        self._config = config
        self._holder = holder
        self._roles = roles
        # per-caller answers are a function of (caller, peer address), fixed for a connection:
        # (holder, token binding) cached so a keep-alive request pays one dict lookup
        self._callers: dict[tuple[Any, str | None], tuple[CredentialHolder | None, bytes]] = {}
        self._clock = wall_clock
        self._tokens = TokenSealer(monotonic or _trio_clock())
        self._peers = peers or PeerPolicy(config.allowed_peers)
        self._hosts = config.host_allow_list()
        self._dynamic_hosts = config.allowed_hosts is None
        self._local_hosts: dict[tuple[str, int], frozenset[str]] = {}
        self._required = config.required
        instance_id = config.instance_id or default_instance_id()
        self._static = self._static_routes(instance_id)
        self._identity_args = dict(
            region=config.region,
            availability_zone=config.availability_zone,
            instance_id=instance_id,
            pending_time=wall_clock.now(),
        )
        self._identity: tuple[str | None, HttpResponse] | None = None
        self._served: dict[int, tuple[RoleCredentials, dict[str, HttpResponse]]] = {}

    def _static_routes(self, instance_id: str) -> dict[str, HttpResponse]:
        cfg = self._config
        bodies = {
            "/": doc.listing(["latest"]),
            "/latest": doc.listing(["dynamic", "meta-data"]),
            "/latest/meta-data": doc.listing(["iam/", "instance-id", "placement/"]),
            "/latest/meta-data/iam": doc.listing(["info", "security-credentials/"]),
            "/latest/meta-data/instance-id": instance_id.encode(),
            "/latest/meta-data/placement": doc.listing(["availability-zone", "region"]),
            "/latest/meta-data/placement/availability-zone": str(cfg.availability_zone).encode(),
            "/latest/meta-data/placement/region": cfg.region.encode(),
            "/latest/dynamic": doc.listing(["instance-identity/"]),
            "/latest/dynamic/instance-identity": doc.listing(["document"]),
        }
        return {path: _ok(body) for path, body in bodies.items()}

    # -- defences ---------------------------------------------------------

    def _host_allowed(self, req: HttpRequest) -> bool:
        values = req.header_values("host")
        if len(values) != 1:
            return False
        host = values[0].lower()
        if host in self._hosts:
            return True
        host = normalize_host(host)
        if host is None:
            return False
        if host in self._hosts:
            return True
        if not self._dynamic_hosts or req.local is None:
            return False
        local = self._local_hosts.get(req.local)
        if local is None:
            local = frozenset(authority_forms(*req.local))
            if len(self._local_hosts) < 64:
                self._local_hosts[req.local] = local
        return host in local

    def refusal(self, req: HttpRequest) -> HttpResponse | None:
        """The 403 for a request that fails a defence, or None when it may proceed."""
        if not self._host_allowed(req):
            return FORBIDDEN_HOST
        if req.peer is None or not self._peers.allows(req.peer[0]):
            return FORBIDDEN_PEER
        if req.header("x-forwarded-for") is not None:
            return FORBIDDEN_HOP
        return None

    # -- entry point ------------------------------------------------------

    def __call__(self, req: HttpRequest) -> HttpResponse:
        """Answer one request (never raises for any request)."""
        refused = self.refusal(req)
        if refused is not None:
            return refused
        path = _normal_path(req.path)
        if path == TOKEN_PATH:
            return self._token_endpoint(req)
        if _is_token_variant(path):
            return FORBIDDEN
        if req.method != "GET" and req.method != "HEAD":
            return METHOD_NOT_ALLOWED
        token = req.header(TOKEN_HEADER)
        if token is None:
            if self._required:
                return UNAUTHORIZED
            return self._route(path, req)
        remaining = self._tokens.remaining(token, self._caller(req)[1] if self._roles else b"")
        if remaining is None:
            return UNAUTHORIZED
        answer = self._route(path, req)
        ttl = (_TTL_OUT, TokenSealer.header_seconds(remaining))
        return HttpResponse(answer.status, answer.headers + (ttl,), answer.body)

    def _token_endpoint(self, req: HttpRequest) -> HttpResponse:
        if req.method == "PUT":
            ttl = parse_ttl(req.header_values(TTL_HEADER))
            if ttl is None:
                return BAD_REQUEST
            body = self._tokens.issue(ttl, self._caller(req)[1] if self._roles else b"").encode("ascii")
            return HttpResponse(200, (_TEXT, (_TTL_OUT, str(ttl))), body, ip_ttl=self._config.hop_limit)
        if req.method == "OPTIONS":
            return TOKEN_OPTIONS
        return TOKEN_METHOD_NOT_ALLOWED

    # -- routing ----------------------------------------------------------

    def _route(self, path: str, req: HttpRequest) -> HttpResponse:
        key = path[:-1] if len(path) > 1 and path[-1] == "/" else path
        if _is_credential_path(key):
            return self._credential_route(key, req)
        static = self._static.get(key)
        if static is not None:
            return static
        if key == "/latest/dynamic/instance-identity/document":
            return self._identity_document(req)
        return NOT_FOUND

    def _holder_for(self, req: HttpRequest) -> CredentialHolder | None:
        return self._holder if self._roles is None else self._caller(req)[0]

    def _caller(self, req: HttpRequest) -> tuple[CredentialHolder | None, bytes]:
        """(the caller's holder, its token binding), from the cache or the selector."""
        key = (req.caller, req.peer[0] if req.peer else None)
        found = self._callers.get(key)
        if found is None:
            try:
                holder = self._roles(*key)
            except Exception as exc:  # a broken selector serves nobody, never someone else's role
                log.error("role selection failed: %s", type(exc).__name__)
                return None, caller_binding(req.caller)
            if len(self._callers) >= 4096:
                self._callers.clear()
            found = self._callers[key] = (holder, caller_binding(req.caller))
        return found

    def _current(self, holder: CredentialHolder | None) -> RoleCredentials | None:
        if holder is None:
            return None
        try:
            return holder.current()
        except Exception as exc:  # a broken holder must not take the endpoint down
            log.error("credential holder failed: %s", type(exc).__name__)
            return None

    def _credential_route(self, key: str, req: HttpRequest) -> HttpResponse:
        holder = self._holder_for(req)
        if holder is None:
            return NO_ROLE
        creds = self._current(holder)
        if creds is None:
            return NO_CREDENTIALS
        if not creds.expiration > self._clock.now():
            return EXPIRED_CREDENTIALS
        served = self._served.get(id(creds))
        if served is None or served[0] is not creds:
            if len(self._served) >= 256:   # old credentials of rotated roles
                self._served.clear()
            served = self._served[id(creds)] = (creds, self._credential_routes(creds))
        return served[1].get(key, NOT_FOUND)

    def _account_id(self, creds: RoleCredentials | None) -> str | None:
        return self._config.account_id or (creds.account_id if creds is not None else None)

    def _credential_routes(self, creds: RoleCredentials) -> dict[str, HttpResponse]:
        """Every answer that depends on ``creds``, rendered once per credentials object."""
        name = creds.role_name
        account_id = self._account_id(creds)
        bodies = {
            _INFO: doc.profile_info_document(creds, account_id),
            _CREDS: name.encode("ascii"),
            f"{_CREDS}/{name}": doc.credentials_document(creds),
        }
        if account_id is not None:
            extended = creds if creds.account_id == account_id else _with_account(creds, account_id)
            bodies[_EXT] = name.encode("ascii")
            bodies[f"{_EXT}/{name}"] = doc.credentials_document(extended, extended=True)
        return {path: _ok(body) for path, body in bodies.items()}

    def _identity_document(self, req: HttpRequest) -> HttpResponse:
        account_id = self._account_id(self._current(self._holder_for(req)))
        cached = self._identity
        if cached is None or cached[0] != account_id:
            cached = (account_id, _ok(doc.identity_document(account_id=account_id, **self._identity_args)))
            self._identity = cached
        return cached[1]


def caller_binding(caller: Any) -> bytes:
    """What an IMDSv2 token is bound to: the caller's uid and cgroup id (b"" for an
    unidentified caller, whose tokens then work only on unidentified connections)."""
    if caller is None:
        return b""
    return f"{caller.uid}:{caller.cgroup_id}".encode("ascii")


def _with_account(creds: RoleCredentials, account_id: str) -> RoleCredentials:
    return dataclasses.replace(creds, account_id=account_id)
