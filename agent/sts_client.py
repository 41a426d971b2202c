"""An STS client on httpx, signing with ``wire.sigv4.SigV4Auth``.

Theory of operation
-------------------
Every call is botocore's Query request: ``POST /`` with the form body
``Action=...&Version=2011-06-15&...`` (lists as ``Name.member.N``) and
``Content-Type: application/x-www-form-urlencoded; charset=utf-8``, signed for
service ``sts`` in the endpoint's signing region (AssumeRoleWithWebIdentity
goes unsigned). ``resolve_endpoint`` picks the URL: any ``endpoint_url`` as
given; else AWS's regional ``https://sts.REGION.amazonaws.com``, or the global
``https://sts.amazonaws.com`` (signed for us-east-1) when asked.

One attempt is bounded by ``timeout`` seconds of trio time (all of it:
connect, send, the whole response), and the response by ``MAX_RESPONSE_BYTES``.
The answer is parsed as untrusted XML (``wire.query``). What can go wrong maps
onto ``agent.errors``:

- an AWS error document -> ``StsError`` with AWS's code, message, status and
  request id; retryable for throttling codes, ``IDPCommunicationError``, 5xx;
- no usable answer (connection refused, timeout, malformed or incomplete
  XML, an error status without an error document) -> ``StsUnavailable``.

Retryable failures are retried up to ``max_attempts`` in all, sleeping a
"full jitter" backoff between attempts (``retry_pause``: ``random() * min(cap,
base * 2**n)``) through the injected ``sleep`` (``trio.sleep``, so MockClock
tests run in virtual time); each attempt is signed afresh. Others raise at
once. ``is_throttling`` tells the caller's own schedule (the rotator's) that
the backend said it is over its rate, so it can back off further. Nothing
here logs or raises a secret: messages name fields, never their values.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random as _random
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from agent.config_types import AWS_REGION
from agent.errors import THROTTLING_CODES, StsError, StsFailure, StsUnavailable, one_line
from metadata_server.credentials import RoleCredentials
from wire.clock import UTC, WallClock
from wire.listeners import is_loopback_host
from wire.query import QueryError, encode_form, flatten, parse_error, parse_response
from wire.sigv4 import Credentials, SigV4Auth
from wire.version import version

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "STS_VERSION",
    "StsClient",
    "StsCredentials",
    "StsEndpoint",
    "THROTTLING_CODES",
    "is_loopback_url",
    "is_throttling",
    "parse_expiration",
    "resolve_endpoint",
    "retry_pause",
]

log = logging.getLogger("rolecall.agent.sts")

STS_VERSION = "2011-06-15"
DEFAULT_TIMEOUT = 10.0
BACKOFF_BASE, BACKOFF_CAP = 1.0, 20.0  # seconds: the first retry waits up to BASE, none more than CAP
MAX_RESPONSE_BYTES = 256 * 1024  # STS answers are a few KiB
GLOBAL_ENDPOINT = "https://sts.amazonaws.com"
_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)?",
                  re.IGNORECASE)
_ASSUMED_ROLE_ARN = re.compile(r"arn:[^:]+:sts::([0-9]{12}):assumed-role/([^/]+)/(.+)")


# --- data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StsEndpoint:
    """Where calls go and the region they are signed for."""

    url: str
    region: str

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL, for messages."""
        return urlsplit(self.url).netloc


@dataclass(frozen=True, slots=True)
class StsCredentials:
    """Temporary credentials from STS; the secret and the token never appear in ``repr``.

    Args:
        access_key_id: ``ASIA...`` (other forms from other STS servers).
        secret_access_key: the secret (hidden from ``repr``).
        session_token: the session token (hidden from ``repr``).
        expiration: when they expire, timezone-aware UTC.
        assumed_role_arn: ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``
            (AssumeRole*), else None.
        assumed_role_id: ``AROA...:SESSION`` (AssumeRole*), else None.
        source_identity: as STS echoed it, else None.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: _dt.datetime
    assumed_role_arn: str | None = None
    assumed_role_id: str | None = None
    source_identity: str | None = None

    @property
    def role_name(self) -> str | None:
        """The role's name from ``assumed_role_arn`` (no path: STS drops it), or None."""
        match = _ASSUMED_ROLE_ARN.fullmatch(self.assumed_role_arn or "")
        return match.group(2) if match else None

    @property
    def account_id(self) -> str | None:
        """The 12-digit account from ``assumed_role_arn``, or None."""
        match = _ASSUMED_ROLE_ARN.fullmatch(self.assumed_role_arn or "")
        return match.group(1) if match else None

    @property
    def credentials(self) -> Credentials:
        """For signing further calls (role chaining, GetCallerIdentity)."""
        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)

    def to_role_credentials(self, last_updated: _dt.datetime, role_name: str | None = None,
                            account_id: str | None = None) -> RoleCredentials:
        """What the metadata server serves.

        Args:
            last_updated: when they were obtained (timezone-aware).
            role_name: default ``self.role_name`` (pass the configured role's
                name when the STS server sends no assumed-role ARN).
            account_id: default ``self.account_id``.

        Raises:
            ValueError: no role name known, or a malformed one.
        """
        name = role_name or self.role_name
        if name is None:
            raise ValueError("no role name: STS sent no assumed-role ARN and none was given")
        return RoleCredentials(name, self.access_key_id, self.secret_access_key, self.session_token,
                               self.expiration, last_updated, account_id or self.account_id)


# --- pure helpers ------------------------------------------------------------------------


def resolve_endpoint(endpoint_url: str | None, region: str | None, *, global_endpoint: bool = False) -> StsEndpoint:
    """Where STS calls go, and the signing region (sdk-clients.md §8).

    Args:
        endpoint_url: used as given when set (signed for ``region``; us-east-1 when
            that is None or ``aws-global``).
        region: the AWS region; None (or ``aws-global``) means the global endpoint.
        global_endpoint: use ``https://sts.amazonaws.com`` (signed for
            us-east-1) instead of the regional one; China regions have none.

    Returns:
        The endpoint.

    Raises:
        ValueError: no ``endpoint_url`` and a region that is not an AWS region name.
    """
    if endpoint_url:
        return StsEndpoint(endpoint_url, "us-east-1" if region in (None, "aws-global") else region)
    if region is None or region == "aws-global" or (global_endpoint and not region.startswith("cn-")):
        return StsEndpoint(GLOBAL_ENDPOINT, "us-east-1")
    if not AWS_REGION.fullmatch(region):
        raise ValueError(f"region {region!r} is not an AWS region name such as eu-west-1")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return StsEndpoint(f"https://sts.{region}.{suffix}", region)


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine: ``localhost``, 127.0.0.0/8 or ``::1``.

    Such endpoints are reached directly, whatever ``HTTP_PROXY``/``HTTPS_PROXY``/
    ``ALL_PROXY`` say (``NO_PROXY`` need not list them).
    """
    return is_loopback_host(urlsplit(url).hostname or "")


def parse_expiration(text: str) -> _dt.datetime:
    """An STS ``Expiration`` -> aware UTC datetime.

    Accepts ``2019-11-01T20:26:47Z``, ``2011-07-15T23:28:33.359Z``, any number
    of fraction digits, ``+HH:MM`` offsets; no zone means UTC.

    Raises:
        ValueError: anything else.
    """
    match = _ISO.fullmatch(text.strip())
    if match is None:
        raise ValueError("not an ISO 8601 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = UTC
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    when = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz)
    return when.astimezone(UTC)


def retry_pause(attempt: int, rand: float, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to sleep after failed attempt ``attempt`` (1 for the first): full jitter.

    Args:
        attempt: the attempt that failed, from 1.
        rand: a random draw in [0, 1).
        base: the ceiling after the first attempt.
        cap: the largest ceiling.

    Returns:
        ``rand * min(cap, base * 2**(attempt - 1))``.
    """
    return rand * min(cap, base * 2 ** (attempt - 1))


def is_throttling(exc: BaseException) -> bool:
    """True when ``exc`` says the caller is over the backend's rate: a code of ``THROTTLING_CODES``, or HTTP 429."""
    return getattr(exc, "code", None) in THROTTLING_CODES or getattr(exc, "http_status", None) == 429


def _tag_members(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[dict[str, str]] | None:
    items = tags.items() if isinstance(tags, Mapping) else tags
    members = [{"Key": key, "Value": value} for key, value in items]
    return members or None


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


# --- the client --------------------------------------------------------------------------


class StsClient:
    """STS calls with timeouts, bounded retries and AWS's errors kept.

    Use as ``async with StsClient(...) as sts:`` or call ``aclose()``.

    Args:
        endpoint_url: any STS endpoint (``http://127.0.0.1:8900``), or None
            for AWS (see ``resolve_endpoint``).
        region: the signing region; with no ``endpoint_url``, the AWS region.
        clock: the wall clock that dates signatures.
        timeout: seconds for one attempt, all of it.
        transport: an httpx transport (tests: ``httpx.MockTransport``).
        verify: TLS verification: True, False, a CA bundle path or an
            ``ssl.SSLContext``.
        max_attempts: attempts per call, at least 1.
        sleep: awaited between attempts with the delay in seconds.
        global_endpoint: with no ``endpoint_url``, use sts.amazonaws.com.
        backoff_base: the first retry waits up to this many seconds.
        backoff_cap: no wait exceeds this.
        random: a float in [0, 1) for the jitter.
        observe: called after each attempt with ``(action, answered, seconds)`` on trio's
            clock (``answered``: a parsed success); the agent's metrics.

    Raises:
        ValueError: a bad region or ``max_attempts``.
        OSError, ssl.SSLError: the CA bundle cannot be loaded.
    """

    def __init__(self, endpoint_url: str | None, region: str | None, *, clock: WallClock,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 verify: ssl.SSLContext | str | bool = True, max_attempts: int = 4,
                 sleep: Callable[[float], Awaitable[Any]] = trio.sleep, global_endpoint: bool = False,
                 backoff_base: float = BACKOFF_BASE, backoff_cap: float = BACKOFF_CAP,
                 random: Callable[[], float] = _random.random,
                 observe: Callable[[str, bool, float], None] | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.endpoint = resolve_endpoint(endpoint_url, region, global_endpoint=global_endpoint)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._clock, self._sleep, self._random, self._observe = clock, sleep, random, observe
        self._backoff = (backoff_base, backoff_cap)
        # Proxies from the environment (HTTP_PROXY...) serve remote endpoints (a corporate
        # network's way out to AWS), never a loopback one: the answers carry secrets.
        self._http = httpx.AsyncClient(transport=transport, verify=_ssl_context(verify),
                                       timeout=httpx.Timeout(timeout), follow_redirects=False,
                                       headers={"User-Agent": f"rolecall-agent/{version()}"},
                                       trust_env=not is_loopback_url(self.endpoint.url))

    def __repr__(self) -> str:
        return f"StsClient({self.endpoint.url!r}, region={self.endpoint.region!r})"

    async def __aenter__(self) -> StsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # --- operations ---------------------------------------------------------------------

    async def assume_role(self, credentials: Credentials, role_arn: str, session_name: str, *,
                          duration_seconds: int | None = None, external_id: str | None = None,
                          policy: str | None = None, policy_arns: Iterable[str] = (),
                          tags: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                          transitive_tag_keys: Iterable[str] = (), source_identity: str | None = None,
                          serial_number: str | None = None, token_code: str | None = None) -> StsCredentials:
        """AssumeRole, signed with ``credentials`` (temporary ones chain: 1 h cap).

        Args:
            credentials: the caller's keys.
            role_arn: ``RoleArn``.
            session_name: ``RoleSessionName``.
            duration_seconds: ``DurationSeconds`` (STS default 3600).
            external_id: ``ExternalId``.
            policy: ``Policy``, an inline session policy (JSON text).
            policy_arns: ``PolicyArns``, managed session policies.
            tags: ``Tags``, as a mapping or ``(key, value)`` pairs.
            transitive_tag_keys: ``TransitiveTagKeys``.
            source_identity: ``SourceIdentity``.
            serial_number: ``SerialNumber`` of the caller's MFA device.
            token_code: ``TokenCode``, the device's current code.

        Returns:
            The role's credentials, with ``assumed_role_arn``/``_id``.

        Raises:
            StsError: AWS refused (``AccessDenied``, ``ValidationError``...), or
                a retryable refusal persisted through every attempt.
            StsUnavailable: no usable answer after every attempt.
        """
        result = await self._call("AssumeRole", {
            "RoleArn": role_arn, "RoleSessionName": session_name,
            "PolicyArns": [{"arn": arn} for arn in policy_arns] or None, "Policy": policy,
            "DurationSeconds": duration_seconds, "Tags": _tag_members(tags),
            "TransitiveTagKeys": list(transitive_tag_keys) or None, "ExternalId": external_id,
            "SerialNumber": serial_number, "TokenCode": token_code, "SourceIdentity": source_identity,
        }, credentials)
        return self._credentials_from("AssumeRole", result)

    async def get_session_token(self, credentials: Credentials, *, duration_seconds: int | None = None,
                                serial_number: str | None = None, token_code: str | None = None) -> StsCredentials:
        """GetSessionToken (long-term IAM-user keys only), with MFA when given.

        Args:
            credentials: the user's long-term keys.
            duration_seconds: ``DurationSeconds`` (STS default 43200).
            serial_number: ``SerialNumber`` of the MFA device.
            token_code: ``TokenCode``.

        Returns:
            Session credentials (no assumed-role fields).

        Raises:
            StsError, StsUnavailable: as ``assume_role``.
        """
        result = await self._call("GetSessionToken", {
            "DurationSeconds": duration_seconds, "SerialNumber": serial_number, "TokenCode": token_code,
        }, credentials)
        return self._credentials_from("GetSessionToken", result)

    async def assume_role_with_web_identity(self, role_arn: str, session_name: str, web_identity_token: str, *,
                                            duration_seconds: int | None = None, policy: str | None = None,
                                            policy_arns: Iterable[str] = (),
                                            provider_id: str | None = None) -> StsCredentials:
        """AssumeRoleWithWebIdentity: unsigned, the token proves who calls.

        Args:
            role_arn: ``RoleArn``.
            session_name: ``RoleSessionName``.
            web_identity_token: ``WebIdentityToken`` (a secret: never logged).
            duration_seconds: ``DurationSeconds``.
            policy: ``Policy``.
            policy_arns: ``PolicyArns``.
            provider_id: ``ProviderId`` (OAuth 2.0 providers only).

        Returns:
            The role's credentials.

        Raises:
            StsError, StsUnavailable: as ``assume_role``.
        """
        result = await self._call("AssumeRoleWithWebIdentity", {
            "RoleArn": role_arn, "RoleSessionName": session_name, "WebIdentityToken": web_identity_token,
            "ProviderId": provider_id, "PolicyArns": [{"arn": arn} for arn in policy_arns] or None,
            "Policy": policy, "DurationSeconds": duration_seconds,
        }, None)
        return self._credentials_from("AssumeRoleWithWebIdentity", result)

    async def get_caller_identity(self, credentials: Credentials) -> dict[str, str]:
        """GetCallerIdentity: who ``credentials`` are.

        Returns:
            ``{"UserId", "Account", "Arn"}`` (the ones the server sent).

        Raises:
            StsError, StsUnavailable: as ``assume_role`` (also when no ``Arn`` came).
        """
        result = await self._call("GetCallerIdentity", {}, credentials)
        identity = {k: result[k] for k in ("UserId", "Account", "Arn") if isinstance(result.get(k), str)}
        if not identity.get("Arn"):
            raise StsUnavailable("GetCallerIdentity", f"malformed response from {self.endpoint.host}: no Arn", 200)
        return identity

    # --- one call: attempts and retries --------------------------------------------------

    async def _call(self, action: str, params: Mapping[str, Any], credentials: Credentials | None) -> dict:
        body = encode_form({"Action": action, "Version": STS_VERSION, **flatten(params)})
        auth = SigV4Auth(credentials, self.endpoint.region, "sts", self._clock) if credentials else None
        attempt = 1
        while True:
            try:
                return await self._attempt(action, body, auth)
            except StsFailure as exc:
                exc.attempts = attempt
                if not exc.retryable or attempt >= self.max_attempts:
                    raise
                delay = self._delay(attempt)
                log.warning("%s (attempt %d of %d); retrying in %.2f s", exc, attempt, self.max_attempts, delay)
            await self._sleep(delay)
            attempt += 1

    def _delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))) (``retry_pause``)."""
        base, cap = self._backoff
        return retry_pause(attempt, self._random(), base=base, cap=cap)

    async def _attempt(self, action: str, body: bytes, auth: SigV4Auth | None) -> dict:
        started, answered = trio.current_time(), False
        try:
            with trio.move_on_after(self.timeout):
                status, headers, content = await self._exchange(action, body, auth)
                result = self._parse(action, status, headers, content)
                answered = True
                return result
            raise StsUnavailable(action, f"no answer from {self.endpoint.host} within {self.timeout:g} s")
        finally:
            if self._observe is not None:
                self._observe(action, answered, trio.current_time() - started)

    async def _exchange(self, action: str, body: bytes, auth: SigV4Auth | None) -> tuple[int, httpx.Headers, bytes]:
        host = self.endpoint.host
        try:
            async with self._http.stream("POST", self.endpoint.url, content=body, auth=auth,
                                         headers={"Content-Type": _CONTENT_TYPE}) as response:
                return response.status_code, response.headers, await self._read(action, response)
        except httpx.TimeoutException as exc:
            raise StsUnavailable(action, f"timed out talking to {host} ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            raise StsUnavailable(action, f"cannot reach {host}: {str(exc) or type(exc).__name__}") from exc

    async def _read(self, action: str, response: httpx.Response) -> bytes:
        too_big = f"response from {self.endpoint.host} larger than {MAX_RESPONSE_BYTES} bytes"
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
            raise StsUnavailable(action, too_big, response.status_code)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise StsUnavailable(action, too_big, response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, action: str, status: int, headers: httpx.Headers, content: bytes) -> dict:
        host = self.endpoint.host
        if 200 <= status < 300:
            try:
                return parse_response(content, action, max_bytes=MAX_RESPONSE_BYTES)
            except QueryError as exc:
                raise StsUnavailable(action, f"malformed response from {host}: {exc.message}", status) from exc
        try:
            code, message, request_id = parse_error(content, max_bytes=MAX_RESPONSE_BYTES)
        except QueryError:
            raise StsUnavailable(action, f"HTTP {status} from {host} without an AWS error document", status) from None
        raise StsError(action, code, message, status, request_id or headers.get("x-amzn-RequestId", ""))

    # --- results --------------------------------------------------------------------------

    def _credentials_from(self, action: str, result: dict) -> StsCredentials:
        def malformed(what: str) -> StsUnavailable:
            return StsUnavailable(action, f"malformed response from {self.endpoint.host}: {what}", 200)

        creds = result.get("Credentials")
        if not isinstance(creds, dict):
            raise malformed("no Credentials")
        for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
            value = creds.get(name)
            if not isinstance(value, str) or not value.strip():
                raise malformed(f"no Credentials/{name}")
            if name != "Expiration" and not _PRINTABLE.fullmatch(value):
                raise malformed(f"Credentials/{name} is not printable ASCII")
        try:
            expiration = parse_expiration(creds["Expiration"])
        except ValueError:
            raise malformed("Credentials/Expiration is not an ISO 8601 time") from None
        user = result.get("AssumedRoleUser")
        user = user if isinstance(user, dict) else {}
        source_identity = result.get("SourceIdentity")
        return StsCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expiration,
            assumed_role_arn=_text_or_none(user.get("Arn")), assumed_role_id=_text_or_none(user.get("AssumedRoleId")),
            source_identity=_text_or_none(source_identity),
        )


def _text_or_none(value: Any) -> str | None:
    return one_line(value, 2048) if isinstance(value, str) and value.strip() else None
