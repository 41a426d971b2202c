"""AWS Signature Version 4: signing and verification, as pure functions.

Theory of operation
-------------------
A SigV4 signature is an HMAC chain over a *canonical request*, which both sides
rebuild from what is on the wire::

    canonical request = METHOD \\n URI \\n QUERY \\n name:value lines \\n \\n SIGNED-NAMES \\n PAYLOAD-HASH
    string to sign    = AWS4-HMAC-SHA256 \\n YYYYMMDDTHHMMSSZ \\n SCOPE \\n hex(sha256(canonical request))
    scope             = YYYYMMDD/region/service/aws4_request
    signing key       = HMAC("AWS4" + secret, YYYYMMDD) -> region -> service -> "aws4_request"
    signature         = hex(HMAC(signing key, string to sign))

The signer (``SigV4Auth``, ``presign_url``) and the verifier (``verify``) share
every function here, so one implementation checks the other. Canonicalisation is
botocore's for non-S3 services (S3's rules are not implemented):

- path: dot segments and empty segments removed, then percent-encoded *again*
  (``%20`` on the wire signs as ``%2520``): the "double encoding";
- query: parameters form-decoded (``+`` is a space, as botocore sends spaces),
  re-encoded leaving only unreserved characters bare, sorted by name then value;
  ``name`` without ``=`` signs as ``name=``;
- headers: names lowercased; values trimmed, runs of ASCII whitespace (folded
  lines included) made one space; repeated headers joined with ``,`` in order.

``verify`` takes the request as received and checks, in this order: which auth
form is used (header or presigned query, never both), the syntax of the claim,
the credential scope (terminator, service, region, date = the X-Amz-Date day,
``host`` signed), the clock (header form: +/-15 minutes; presigned: not before
X-Amz-Date - 15 min, not after X-Amz-Date + X-Amz-Expires), the key (via the
caller's ``lookup_secret``), ``x-amz-content-sha256`` against the body, and last
the signature, compared in constant time. Failures raise ``SigV4Error``
subclasses whose ``code``/``http_status``/``message`` mirror AWS's; messages may
echo the request's own Authorization header or scope, never a secret.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import email.utils
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes, urlsplit, urlunsplit

import httpx

from wire.clock import UTC, WallClock, amz_date

__all__ = [
    "ALGORITHM", "Credentials", "IncompleteSignature", "MissingAuthenticationToken",
    "SigV4Auth", "SigV4Error", "SignatureDoesNotMatch", "VerifiedRequest", "authorization_header",
    "canonical_query", "canonical_request", "canonical_uri", "credential_scope", "presign_url",
    "signature", "signing_key", "string_to_sign", "UnknownAccessKey", "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW = _dt.timedelta(minutes=15)
MAX_EXPIRES = 604800  # seconds: one week, the SDKs' and S3's limit
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_EXPIRES = re.compile(r"[0-9]{1,20}")
_WHITESPACE = re.compile(r"[ \t\r\n\v\f]+")
_AUTH_ITEM_SEP = re.compile(r"[,\s]+", re.ASCII)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)}
_SIGNATURE_PARAM = "X-Amz-Signature"
_QUERY_REQUIRED = ("X-Amz-Algorithm", "X-Amz-Credential", _SIGNATURE_PARAM,
                   "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires")
_QUERY_AUTH = frozenset((*_QUERY_REQUIRED, "X-Amz-Security-Token"))
_ALWAYS_SIGNED = frozenset(("host", "content-type", "content-md5"))
_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
             "Check your AWS Secret Access Key and signing method. "
             "Consult the service documentation for details.")


# --- errors ---------------------------------------------------------------


class SigV4Error(Exception):
    """A request that fails SigV4; never instantiated itself.

    Attributes:
        code: AWS's error code, for ``<Code>``.
        http_status: the status AWS answers with.
        message: for ``<Message>``; holds no secret.
    """

    code = ""
    http_status = 0

    def __init__(self, message: str) -> None:
        if type(self) is SigV4Error:
            raise TypeError("tried to directly instantiate SigV4Error")
        super().__init__(message)
        self.message = message


class IncompleteSignature(SigV4Error):
    """The auth is malformed or incomplete."""
    code, http_status = "IncompleteSignature", 400


class SignatureDoesNotMatch(SigV4Error):
    """Wrong signature, wrong scope, or outside the time window."""
    code, http_status = "SignatureDoesNotMatch", 403


class UnknownAccessKey(SigV4Error):
    """``lookup_secret`` knows no such key (or key and token): AWS's ``InvalidClientTokenId``."""
    code, http_status = "InvalidClientTokenId", 403


class MissingAuthenticationToken(SigV4Error):
    """No SigV4 auth of either form."""
    code, http_status = "MissingAuthenticationToken", 403


# --- data -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An access key, its secret and, for temporary keys, the session token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        token = "None" if self.session_token is None else "'***'"
        return (f"Credentials(access_key_id={self.access_key_id!r}, "
                f"secret_access_key='***', session_token={token})")


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a request proved: who signed it, for which scope, when."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    session_token: str | None = field(repr=False)
    signed_at: _dt.datetime
    presigned: bool


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request says about its own signature, parsed but not yet checked."""

    access_key_id: str
    scope: tuple[str, ...]  # date, region, service, terminator
    signed_headers: tuple[str, ...]
    signature: str
    signed_at: _dt.datetime
    session_token: str | None
    expires: int | None  # None: header form


# --- canonicalisation -----------------------------------------------------


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # never raises, whatever arrived


def _remove_dot_segments(path: str) -> str:
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_uri(path: str) -> str:
    """CanonicalURI of a wire path (still percent-encoded): normalised, then encoded once more."""
    return quote(_utf8(_remove_dot_segments(path) if path else "/"), safe="/~")


def _query_pairs(query: str) -> list[tuple[bytes, bytes]]:
    """Form-decoded (name, value) pairs: ``+`` is a space, as botocore sends spaces."""
    pairs = []
    for piece in filter(None, query.split("&")):
        name, _, value = _utf8(piece.replace("+", " ")).partition(b"=")
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def canonical_query(query: str, *, exclude: str | None = None) -> str:
    """CanonicalQueryString of a raw query (no ``?``), leaving out the parameter ``exclude``."""
    skip = None if exclude is None else _utf8(exclude)
    encoded = sorted((quote(n, safe=""), quote(v, safe="")) for n, v in _query_pairs(query) if n != skip)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_request(method: str, path: str, query: str, headers: Iterable[tuple[str, str]],
                      signed_headers: Sequence[str], payload_hash: str, *,
                      exclude_query: str | None = None) -> str:
    """The canonical request, exactly as AWS hashes it.

    Args:
        method: the HTTP method as sent.
        path: the request-target's path, still percent-encoded.
        query: the raw query string, without ``?``.
        headers: every header as (name, value) pairs; names may repeat.
        signed_headers: the names to sign, in the order of the SignedHeaders list.
        payload_hash: hex SHA-256 of the body.
        exclude_query: a query parameter to leave out (presigned verification).

    Returns:
        The canonical request text.
    """
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    lines = [f"{name}:{','.join(_WHITESPACE.sub(' ', v).strip(' ') for v in values.get(name.lower(), ()))}"
             for name in signed_headers]
    return "\n".join([method, canonical_uri(path), canonical_query(query, exclude=exclude_query),
                      *lines, "", ";".join(signed_headers), payload_hash])


def credential_scope(date: str, region: str, service: str) -> str:
    """``YYYYMMDD/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/{TERMINATOR}"


def string_to_sign(stamp: str, scope: str, canonical: str) -> str:
    """The string to sign for an X-Amz-Date ``stamp``, a scope and a canonical request."""
    digest = hashlib.sha256(_utf8(canonical)).hexdigest()
    return "\n".join([ALGORITHM, stamp, scope, digest])


@functools.lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The 32-byte key derived for one ``YYYYMMDD`` date, region and service.

    Cached (bounded LRU), since verification derives the same keys all day; the
    cache is keyed by the secret but never shown (no repr, no logging).
    """
    key = _utf8("AWS4" + secret)
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, _utf8(part), hashlib.sha256).digest()
    return key


def signature(key: bytes, to_sign: str) -> str:
    """Hex HMAC-SHA256 of the string to sign under a signing key."""
    return hmac.new(key, _utf8(to_sign), hashlib.sha256).hexdigest()


def authorization_header(access_key_id: str, scope: str, signed_headers: Sequence[str], sig: str) -> str:
    """The ``Authorization`` value, in the SDKs' layout."""
    return (f"{ALGORITHM} Credential={access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(signed_headers)}, Signature={sig}")


# --- signing --------------------------------------------------------------


def _names_to_sign(headers: Iterable[tuple[str, str]]) -> list[str]:
    names = {name.lower() for name, _ in headers}
    return sorted(n for n in names if n in _ALWAYS_SIGNED or n.startswith("x-amz-"))


class SigV4Auth(httpx.Auth):
    """Signs each httpx request with SigV4 in the Authorization header.

    Sets ``X-Amz-Date`` (from ``clock``), ``X-Amz-Security-Token`` for temporary
    credentials, and ``Authorization``; signs ``host``, ``content-type``,
    ``content-md5`` and every ``x-amz-*`` header present. Like botocore for
    STS/IAM it sends no ``x-amz-content-sha256``: the body hash is signed anyway.

    Args:
        credentials: the keys to sign with (resolved already: no I/O here).
        region: the credential scope's region.
        service: the credential scope's service (``sts``, ``iam``).
        clock: the wall clock that dates each signature.
    """

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str, service: str, clock: WallClock) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._clock = clock

    def __repr__(self) -> str:
        return f"SigV4Auth({self._credentials!r}, {self._region!r}, {self._service!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        yield request

    def _sign(self, request: httpx.Request) -> None:
        creds, stamp = self._credentials, amz_date(self._clock.now())
        request.headers.pop("Authorization", None)
        request.headers.pop("X-Amz-Security-Token", None)
        request.headers["X-Amz-Date"] = stamp
        if creds.session_token is not None:
            request.headers["X-Amz-Security-Token"] = creds.session_token
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        items = request.headers.multi_items()
        names = _names_to_sign(items)
        payload = hashlib.sha256(request.content).hexdigest()
        canonical = canonical_request(request.method, path, query, items, names, payload)
        scope = credential_scope(stamp[:8], self._region, self._service)
        key = signing_key(creds.secret_access_key, stamp[:8], self._region, self._service)
        sig = signature(key, string_to_sign(stamp, scope, canonical))
        request.headers["Authorization"] = authorization_header(creds.access_key_id, scope, names, sig)


def presign_url(method: str, url: str, credentials: Credentials, *, region: str, service: str,
                when: _dt.datetime, expires: int = 900) -> str:
    """A presigned URL (query-string auth) for a request with an empty body.

    Signs only ``host``: the client must send ``Host`` as the URL's host[:port].

    Args:
        method: the method the URL will be used with.
        url: absolute URL; its query parameters are kept and signed.
        credentials: the signer's credentials; a token goes in X-Amz-Security-Token.
        region: scope region.
        service: scope service.
        when: signing time (timezone-aware).
        expires: X-Amz-Expires in seconds, 1 to 604800.

    Returns:
        The URL with the X-Amz-* parameters, X-Amz-Signature last.

    Raises:
        ValueError: ``expires`` out of range.
    """
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds, not {expires}")
    parts = urlsplit(url)
    host, stamp = parts.netloc.rpartition("@")[2], amz_date(when)
    scope = credential_scope(stamp[:8], region, service)
    params = [("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{credentials.access_key_id}/{scope}"),
              ("X-Amz-Date", stamp), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    if credentials.session_token is not None:
        params.append(("X-Amz-Security-Token", credentials.session_token))
    added = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
    query = f"{parts.query}&{added}" if parts.query else added
    path = parts.path or "/"
    canonical = canonical_request(method, path, query, [("host", host)], ["host"], hashlib.sha256(b"").hexdigest())
    key = signing_key(credentials.secret_access_key, stamp[:8], region, service)
    sig = signature(key, string_to_sign(stamp, scope, canonical))
    return urlunsplit((parts.scheme, parts.netloc, path, f"{query}&{_SIGNATURE_PARAM}={sig}", ""))


# --- verification ---------------------------------------------------------


def _echo(text: str) -> str:
    return text.translate(_CONTROLS)


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    found = [value for key, value in headers if key.lower() == name]
    return ",".join(found) if found else None


def _parse_date(raw: str, *, http: bool = False) -> _dt.datetime:
    """X-Amz-Date (ISO 8601 basic); with ``http`` (a Date header) an RFC 7231 date too."""
    when = None
    if _AMZ_DATE.fullmatch(raw):
        with contextlib.suppress(ValueError):
            when = _dt.datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    elif http:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            parsed = email.utils.parsedate_to_datetime(raw)  # naive for "-0000" (botocore's form): UTC
            when = parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    if when is None:
        raise IncompleteSignature(f"Date must be in ISO-8601 'basic format'. Got '{_echo(raw)}'. "
                                  "See http://en.wikipedia.org/wiki/ISO_8601")
    return when


def _credential(raw: str) -> tuple[str, tuple[str, ...]]:
    parts = raw.split("/")
    if len(parts) != 5:
        raise IncompleteSignature("Credential must have exactly 5 slash-delimited elements, "
                                  f"e.g. keyid/date/region/service/term, got '{_echo(raw)}'")
    return parts[0], tuple(parts[1:])


def _auth_fields(value: str) -> dict[str, str]:
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme != ALGORITHM:
        # Not SigV4: it may carry someone's bearer secret, so echo only its hash.
        digest = base64.b64encode(hashlib.sha256(_utf8(value)).digest()).decode()
        raise IncompleteSignature(f"Unsupported Authorization type; expected '{ALGORITHM}'. Authorization "
                                  f"header (hashed with SHA-256 and encoded with Base64): '{digest}'.")
    fields: dict[str, str] = {}
    for item in filter(None, _AUTH_ITEM_SEP.split(rest)):
        key, eq, val = item.partition("=")
        if not eq:
            raise IncompleteSignature(f"'{_echo(item)}' not a valid key=value pair (missing equal-sign) "
                                      f"in Authorization header: '{_echo(value)}'.")
        if key in fields:
            raise IncompleteSignature(f"Authorization header has '{_echo(key)}' more than once. "
                                      f"Authorization={_echo(value)}")
        fields[key] = val
    return fields


def _header_claim(value: str, headers: Sequence[tuple[str, str]]) -> _Claim:
    fields = _auth_fields(value)
    amz, http_date = _header(headers, "x-amz-date"), _header(headers, "date")
    missing = [f"Authorization header requires '{k}' parameter."
               for k in ("Credential", "Signature", "SignedHeaders") if k not in fields]
    if amz is None and http_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise IncompleteSignature(" ".join(missing) + f" Authorization={_echo(value)}")
    signed_at = _parse_date(amz) if amz is not None else _parse_date(http_date or "", http=True)
    key_id, scope = _credential(fields["Credential"])
    return _Claim(key_id, scope, tuple(fields["SignedHeaders"].split(";")), fields["Signature"],
                  signed_at, _header(headers, "x-amz-security-token"), None)


def _parse_expires(raw: str) -> int:
    if not _EXPIRES.fullmatch(raw):
        raise IncompleteSignature(f"X-Amz-Expires should be a number of seconds, got '{_echo(raw)}'")
    expires = int(raw)
    if expires > MAX_EXPIRES:
        raise IncompleteSignature(f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}")
    if expires < 1:
        raise IncompleteSignature("X-Amz-Expires must be at least 1 second")
    return expires


def _query_auth(query: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in _query_pairs(query):
        key = name.decode("utf-8", "replace")
        if key in _QUERY_AUTH:
            params.setdefault(key, []).append(value.decode("utf-8", "replace"))
    return params


def _query_claim(params: dict[str, list[str]]) -> _Claim:
    repeated = sorted(k for k, v in params.items() if len(v) > 1)
    if repeated:
        raise IncompleteSignature(f"AWS query-string parameter '{repeated[0]}' must appear only once. "
                                  "Re-examine the query-string parameters.")
    missing = [f"'{k}'" for k in _QUERY_REQUIRED if k not in params]
    if missing:
        raise IncompleteSignature(f"AWS query-string parameters must include {', '.join(missing)}. "
                                  "Re-examine the query-string parameters.")
    one = {k: v[0] for k, v in params.items()}
    if one["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    expires = _parse_expires(one["X-Amz-Expires"])
    key_id, scope = _credential(one["X-Amz-Credential"])
    return _Claim(key_id, scope, tuple(one["X-Amz-SignedHeaders"].split(";")), one[_SIGNATURE_PARAM],
                  _parse_date(one["X-Amz-Date"]), one.get("X-Amz-Security-Token"), expires)


def _claim(headers: Sequence[tuple[str, str]], query: str) -> _Claim:
    authorization = [value for name, value in headers if name.lower() == "authorization"]
    params = _query_auth(query)
    presigned = any(k in params for k in ("X-Amz-Algorithm", "X-Amz-Credential", _SIGNATURE_PARAM))
    if authorization and presigned:
        raise IncompleteSignature("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
                                  "or the Authorization header should be specified")
    if presigned:
        return _query_claim(params)
    if not authorization:
        raise MissingAuthenticationToken("Request is missing Authentication Token")
    if len(authorization) > 1:
        raise IncompleteSignature("Only one Authorization header allowed")
    return _header_claim(authorization[0], headers)


def _check_scope(claim: _Claim, service: str | None, region: str | None) -> None:
    date, scope_region, scope_service, terminator = claim.scope
    if terminator != TERMINATOR:
        raise SignatureDoesNotMatch("Credential should be scoped with a valid terminator: "
                                    f"'{TERMINATOR}', not '{_echo(terminator)}'. ")
    if service is not None and scope_service != service:
        raise SignatureDoesNotMatch(f"Credential should be scoped to correct service: '{service}'. ")
    if not scope_region or (region is not None and scope_region != region):
        raise SignatureDoesNotMatch(f"Credential should be scoped to a valid region, not '{_echo(scope_region)}'. ")
    stamp = amz_date(claim.signed_at)
    if date != stamp[:8]:
        raise SignatureDoesNotMatch("Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                                    f"of date from HTTP: '{_echo(date)}' != '{stamp[:8]}', from '{stamp}'.")
    if "host" not in (name.lower() for name in claim.signed_headers):
        raise IncompleteSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")


def _check_time(claim: _Claim, now: _dt.datetime) -> None:
    signed_at = claim.signed_at
    if claim.expires is None and signed_at < now - MAX_SKEW:
        raise SignatureDoesNotMatch(f"Signature expired: {amz_date(signed_at)} is now earlier than "
                                    f"{amz_date(now - MAX_SKEW)} ({amz_date(now)} - 15 min.)")
    if signed_at > now + MAX_SKEW:
        raise SignatureDoesNotMatch(f"Signature not yet current: {amz_date(signed_at)} is still later than "
                                    f"{amz_date(now + MAX_SKEW)} ({amz_date(now)} + 15 min.)")
    if claim.expires is not None and now > signed_at + _dt.timedelta(seconds=claim.expires):
        raise SignatureDoesNotMatch(f"Request has expired: X-Amz-Date {amz_date(signed_at)} + X-Amz-Expires "
                                    f"{claim.expires} s is earlier than {amz_date(now)}")


def _payload_hash(headers: Sequence[tuple[str, str]], body: bytes) -> str:
    actual = hashlib.sha256(body).hexdigest()
    claimed = _header(headers, "x-amz-content-sha256")
    if claimed is not None and claimed != actual:
        # S3 answers XAmzContentSHA256Mismatch (400); STS/IAM have no such code, so
        # this is a signature failure: the body is not the one the client signed.
        raise SignatureDoesNotMatch("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return actual


def verify(method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes,
           lookup_secret: Callable[[str, str | None], str | None], now: _dt.datetime, *,
           service: str | None = None, region: str | None = None) -> VerifiedRequest:
    """Check a request's SigV4 signature, header or presigned-query form.

    Args:
        method: the HTTP method as received.
        path: the request-target's path, as received (still percent-encoded).
        query: the request-target's query without ``?`` ("" when none), as received.
        headers: (name, value) pairs as received; names may repeat.
        body: the request body.
        lookup_secret: ``(access_key_id, session_token or None) -> secret or None``;
            None means no such key. Its own exceptions propagate untouched.
        now: the current time, timezone-aware.
        service: the scope's service must be this (None: any).
        region: the scope's region must be this (None: any non-empty region).

    Returns:
        The verified identity, scope and signing time.

    Raises:
        MissingAuthenticationToken: no auth at all.
        IncompleteSignature: malformed or conflicting auth.
        SignatureDoesNotMatch: bad scope, clock, payload hash or signature.
        UnknownAccessKey: ``lookup_secret`` returned None (AWS's ``InvalidClientTokenId``).
    """
    if now.tzinfo is None:
        raise ValueError("verify needs a timezone-aware 'now'")
    headers = list(headers)
    claim = _claim(headers, query)
    _check_scope(claim, service, region)
    _check_time(claim, now)
    secret = lookup_secret(claim.access_key_id, claim.session_token)
    if secret is None:
        raise UnknownAccessKey("The security token included in the request is invalid.")
    payload = _payload_hash(headers, body)
    presigned = claim.expires is not None
    canonical = canonical_request(method, path, query, headers, claim.signed_headers, payload,
                                  exclude_query=_SIGNATURE_PARAM if presigned else None)
    date, scope_region, scope_service, _ = claim.scope
    stamp = amz_date(claim.signed_at)
    expected = signature(signing_key(secret, date, scope_region, scope_service),
                         string_to_sign(stamp, "/".join(claim.scope), canonical))
    if not hmac.compare_digest(expected.encode(), _utf8(claim.signature)):
        raise SignatureDoesNotMatch(_MISMATCH)
    return VerifiedRequest(claim.access_key_id, date, scope_region, scope_service, claim.signed_headers,
                           claim.session_token, claim.signed_at, presigned)
