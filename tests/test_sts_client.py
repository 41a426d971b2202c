"""agent.sts_client against the REAL included backend, with no sockets.

``Bench`` plugs ``sts_backend.app.Backend.handle_httpx`` into
``httpx.MockTransport``, so every call the client makes goes through the
backend's form parsing, SigV4 verification, validation, authorization and XML
rendering. ``Faults`` wraps that handler to inject 500s, throttling, malformed
XML, slow answers and connection errors. Backoff sleeps are recorded (no time
passes) except in the timeout tests, which run on trio's autojump MockClock.
Real loopback HTTP against moto: tests/interop/test_sts_client_moto.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging

import httpx
import pyotp
import pytest
import trio

from agent.errors import RETRYABLE_CODES, StsError, StsFailure, StsUnavailable
from agent.sts_client import (MAX_RESPONSE_BYTES, StsClient, StsCredentials, StsEndpoint, is_loopback_url,
                              parse_expiration, resolve_endpoint)
from metadata_server.credentials import RoleCredentials
from sts_backend.app import Backend
from sts_backend.iam import bootstrap_admin
from sts_backend.store import Store
from tests.servers import start_server
from wire.clock import UTC
from tests.clocks import FixedClock
from wire.query import encode_form, parse_form, parse_response
from wire.sigv4 import Credentials, SigV4Auth
from wire.version import version

ACCOUNT = "123456789012"
T0 = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:8900"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
OVER_CHAIN = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."


def allow(action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})


def trust(actions=("sts:AssumeRole",), condition=None) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": list(actions)}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class Bench:
    """A fresh backend with an admin; IAM set-up calls; StsClients plugged into it."""

    def __init__(self, data_dir: str) -> None:
        self.clock = FixedClock(T0)
        self.store = Store.create(data_dir, ACCOUNT, self.clock)
        _, key = bootstrap_admin(self.store)
        self.admin = Credentials(key.access_key_id, key.secret_access_key)
        self.backend = Backend(self.store, self.clock)
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []
        self.delays: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.responses.append(self.backend.handle_httpx(request))
        return self.responses[-1]

    async def record_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def client(self, handler=None, **kwargs) -> StsClient:
        kwargs.setdefault("sleep", self.record_sleep)
        return StsClient(ENDPOINT, "us-east-1", clock=self.clock,
                         transport=httpx.MockTransport(handler or self.handle), **kwargs)

    def iam(self, action: str, creds: Credentials | None = None, **params) -> dict:
        """An IAM call signed with ``creds`` (default the admin); raises on errors."""
        form = {"Action": action, "Version": "2010-05-08", **{k: str(v) for k, v in params.items()}}
        auth = SigV4Auth(creds or self.admin, "us-east-1", "iam", self.clock)
        with httpx.Client(transport=httpx.MockTransport(self.backend.handle_httpx), auth=auth) as http:
            response = http.post(ENDPOINT + "/", content=encode_form(form),
                                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        if response.status_code != 200:
            raise AssertionError(response.text)
        return parse_response(response.content, action)

    def role(self, name: str, trust_policy: str, *policies: str, max_session: int = 3600) -> str:
        arn = self.iam("CreateRole", RoleName=name, AssumeRolePolicyDocument=trust_policy,
                       MaxSessionDuration=max_session)["Role"]["Arn"]
        for i, document in enumerate(policies):
            self.iam("PutRolePolicy", RoleName=name, PolicyName=f"p{i}", PolicyDocument=document)
        return arn

    def mfa_device(self, user: str = "admin") -> tuple[str, pyotp.TOTP]:
        """An enabled virtual device: (serial, TOTP from its seed); codes from the next step are fresh."""
        device = self.iam("CreateVirtualMFADevice", VirtualMFADeviceName=f"{user}-mfa")["VirtualMFADevice"]
        totp = pyotp.TOTP(base64.b64decode(device["Base32StringSeed"]).decode())
        now = self.clock.now()
        self.iam("EnableMFADevice", UserName=user, SerialNumber=device["SerialNumber"],
                 AuthenticationCode1=totp.at(now - dt.timedelta(seconds=30)), AuthenticationCode2=totp.at(now))
        return device["SerialNumber"], totp

    def next_code(self, totp: pyotp.TOTP) -> str:
        return totp.at(self.clock.now() + dt.timedelta(seconds=30))

    def sent(self, index: int = -1) -> dict[str, str]:
        return parse_form(self.requests[index].content)


@pytest.fixture
def bench(tmp_path):
    b = Bench(str(tmp_path / "data"))
    yield b
    b.store.close()


# ---- AssumeRole ------------------------------------------------------------------------------


async def test_assume_role(bench):
    arn = bench.role("app", trust(), ALLOW_ALL)
    async with bench.client() as sts:
        creds = await sts.assume_role(bench.admin, arn, "web-1")
        assert creds.access_key_id.startswith("ASIA") and len(creds.secret_access_key) == 40
        assert creds.expiration == T0 + dt.timedelta(hours=1) and creds.expiration.tzinfo is not None
        assert creds.assumed_role_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/web-1"
        assert creds.assumed_role_id.startswith("AROA") and creds.assumed_role_id.endswith(":web-1")
        assert (creds.role_name, creds.account_id, creds.source_identity) == ("app", ACCOUNT, None)
        assert creds.secret_access_key not in repr(creds) and creds.session_token not in repr(creds)
        me = await sts.get_caller_identity(creds.credentials)
    assert me == {"UserId": creds.assumed_role_id, "Account": ACCOUNT, "Arn": creds.assumed_role_arn}


async def test_request_on_the_wire_is_botocores(bench):
    arn = bench.role("app", trust(), ALLOW_ALL)
    async with bench.client() as sts:
        await sts.assume_role(bench.admin, arn, "web-1", duration_seconds=900)
    request = bench.requests[-1]
    assert request.method == "POST" and request.url.raw_path == b"/"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert request.content.startswith(b"Action=AssumeRole&Version=2011-06-15&")
    assert bench.sent() == {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": arn,
                            "RoleSessionName": "web-1", "DurationSeconds": "900"}
    auth = request.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={bench.admin.access_key_id}/20260101/us-east-1/sts/aws4_request")
    assert request.headers["X-Amz-Date"] == "20260101T000010Z"
    assert request.headers["User-Agent"] == f"rolecall-agent/{version()}"


async def test_assume_role_every_parameter(bench):
    serial, totp = bench.mfa_device()
    condition = {"StringEquals": {"sts:ExternalId": "ext-123"}, "Bool": {"aws:MultiFactorAuthPresent": "true"}}
    arn = bench.role("app", trust(("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"), condition), ALLOW_ALL)
    managed = bench.iam("CreatePolicy", PolicyName="list-roles", PolicyDocument=allow("iam:ListRoles"))["Policy"]["Arn"]
    async with bench.client() as sts:
        creds = await sts.assume_role(
            bench.admin, arn, "web-1", duration_seconds=1800, external_id="ext-123", policy=allow("iam:List*"),
            policy_arns=[managed], tags={"team": "blue", "env": "dev"}, transitive_tag_keys=["team"],
            source_identity="alice", serial_number=serial, token_code=bench.next_code(totp))
    assert creds.expiration == T0 + dt.timedelta(seconds=1800) and creds.source_identity == "alice"
    sent = bench.sent()
    assert {k: v for k, v in sent.items() if k.startswith(("PolicyArns", "Tags", "Transitive"))} == {
        "PolicyArns.member.1.arn": managed, "Tags.member.1.Key": "team", "Tags.member.1.Value": "blue",
        "Tags.member.2.Key": "env", "Tags.member.2.Value": "dev", "TransitiveTagKeys.member.1": "team"}
    assert (sent["ExternalId"], sent["SourceIdentity"], sent["SerialNumber"]) == ("ext-123", "alice", serial)
    assert sent["TokenCode"].isdigit() and len(sent["TokenCode"]) == 6
    bench.iam("ListRoles", creds.credentials)         # both session policies allow it
    with pytest.raises(AssertionError, match="AccessDenied"):
        bench.iam("CreateUser", creds.credentials, UserName="mallory")     # neither does


@pytest.mark.parametrize("changes", [{"external_id": None}, {"external_id": "ext-999"},
                                     {"token_code": None, "serial_number": None}])
async def test_assume_role_refused_without_the_right_condition_keys(bench, changes):
    serial, totp = bench.mfa_device()
    condition = {"StringEquals": {"sts:ExternalId": "ext-123"}, "Bool": {"aws:MultiFactorAuthPresent": "true"}}
    arn = bench.role("app", trust(condition=condition))
    params = {"external_id": "ext-123", "serial_number": serial, "token_code": bench.next_code(totp), **changes}
    async with bench.client() as sts:
        with pytest.raises(StsError) as info:
            await sts.assume_role(bench.admin, arn, "web-1", **params)
    error = info.value
    assert (error.code, error.http_status, error.retryable, error.attempts) == ("AccessDenied", 403, False, 1)
    assert error.message == (f"User: arn:aws:iam::{ACCOUNT}:user/admin is not authorized to perform: "
                             f"sts:AssumeRole on resource: {arn}")
    assert len(bench.requests) == 1 and bench.delays == []      # never retried
    assert error.request_id == bench.responses[-1].headers["x-amzn-RequestId"] != ""
    assert str(error) == f"AssumeRole: AccessDenied (HTTP 403): {error.message} [request id {error.request_id}]"


async def test_wrong_mfa_code(bench):
    serial, totp = bench.mfa_device()
    arn = bench.role("app", trust(condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}))
    good = bench.next_code(totp)
    wrong = next(c for c in ("000000", "111111", "222222") if c not in {totp.at(bench.clock.now() + dt.timedelta(
        seconds=30 * s)) for s in (-1, 0, 1)})
    async with bench.client() as sts:
        with pytest.raises(StsError) as info:
            await sts.assume_role(bench.admin, arn, "web-1", serial_number=serial, token_code=wrong)
        assert info.value.code == "AccessDenied"
        assert info.value.message == "MultiFactorAuthentication failed with invalid MFA one time pass code."
        assert (await sts.assume_role(bench.admin, arn, "web-1", serial_number=serial, token_code=good)).role_name == "app"


async def test_validation_error_keeps_awss_message(bench):
    arn = bench.role("app", trust())
    async with bench.client() as sts:
        with pytest.raises(StsError) as info:
            await sts.assume_role(bench.admin, arn, "web-1", duration_seconds=3601)
        assert info.value.code == "ValidationError" and info.value.http_status == 400
        assert info.value.message == "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
        with pytest.raises(StsError) as info:
            await sts.assume_role(bench.admin, arn, "bad name!")
    assert info.value.code == "ValidationError" and "roleSessionName" in info.value.message
    assert bench.delays == []


# ---- chaining --------------------------------------------------------------------------------


async def test_role_chaining_and_its_one_hour_cap(bench):
    first = bench.role("first", trust(), ALLOW_ALL, max_session=43200)
    second = bench.role("second", trust(), max_session=43200)
    async with bench.client() as sts:
        outer = await sts.assume_role(bench.admin, first, "outer", duration_seconds=43200)
        inner = await sts.assume_role(outer.credentials, second, "inner", duration_seconds=3600)
        assert inner.assumed_role_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/second/inner"
        assert inner.expiration == T0 + dt.timedelta(hours=1)
        with pytest.raises(StsError) as info:
            await sts.assume_role(outer.credentials, second, "inner", duration_seconds=3601)
        assert (info.value.code, info.value.message, info.value.retryable) == ("ValidationError", OVER_CHAIN, False)
        assert (await sts.get_caller_identity(inner.credentials))["Arn"] == inner.assumed_role_arn
    assert bench.requests[-2].headers["X-Amz-Security-Token"] == outer.session_token


# ---- GetSessionToken, GetCallerIdentity, AssumeRoleWithWebIdentity --------------------------------


async def test_get_session_token_with_mfa(bench):
    serial, totp = bench.mfa_device()
    async with bench.client() as sts:
        session = await sts.get_session_token(bench.admin, duration_seconds=7200, serial_number=serial,
                                              token_code=bench.next_code(totp))
    assert session.expiration == T0 + dt.timedelta(hours=2)
    assert (session.assumed_role_arn, session.role_name, session.account_id) == (None, None, None)
    assert bench.sent() == {"Action": "GetSessionToken", "Version": "2011-06-15", "DurationSeconds": "7200",
                            "SerialNumber": serial, "TokenCode": bench.sent()["TokenCode"]}
    assert bench.iam("ListUsers", session.credentials)["Users"]      # IAM needs the MFA: it was accepted


async def test_get_session_token_defaults_and_session_refusal(bench):
    async with bench.client() as sts:
        session = await sts.get_session_token(bench.admin)
        assert session.expiration == T0 + dt.timedelta(hours=12)
        assert bench.sent() == {"Action": "GetSessionToken", "Version": "2011-06-15"}
        with pytest.raises(StsError) as info:
            await sts.get_session_token(session.credentials)
    assert (info.value.code, info.value.message) == ("AccessDenied", "Cannot call GetSessionToken with session credentials")


async def test_get_caller_identity_of_a_user(bench):
    async with bench.client() as sts:
        me = await sts.get_caller_identity(bench.admin)
        assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin" and me["Account"] == ACCOUNT
        with pytest.raises(StsError) as info:
            await sts.get_caller_identity(Credentials("AKIAIOSFODNN7EXAMPLE", "nope"))
    assert (info.value.code, info.value.http_status) == ("InvalidClientTokenId", 403)


async def test_web_identity_is_sent_unsigned(bench):
    """The backend verifies the token: one without an issuer is InvalidIdentityToken, surfaced as StsError."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2lnbmF0dXJl"
    async with bench.client() as sts:
        with pytest.raises(StsError) as info:
            await sts.assume_role_with_web_identity(f"arn:aws:iam::{ACCOUNT}:role/app", "web-1", token,
                                                    duration_seconds=900)
    assert info.value.code == "InvalidIdentityToken" and token not in str(info.value)
    request = bench.requests[-1]
    assert "Authorization" not in request.headers and "X-Amz-Date" not in request.headers
    assert bench.sent() == {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/app", "RoleSessionName": "web-1",
                            "WebIdentityToken": token, "DurationSeconds": "900"}


# ---- fault injection ------------------------------------------------------------------------------


def error_doc(code: str, message: str = "") -> bytes:
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-{code}</RequestId>"
            f"</ErrorResponse>").encode()


class Faults:
    """The backend behind a script of faults: each request takes the next one; then the backend answers."""

    def __init__(self, bench: Bench, *faults) -> None:
        self.bench, self.faults = bench, list(faults)
        self.requests: list[httpx.Request] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.faults:
            return self.bench.handle(request)
        fault = self.faults.pop(0)
        if isinstance(fault, (int, float)) and not isinstance(fault, bool):
            await trio.sleep(fault)      # slow: then the real answer
            return self.bench.handle(request)
        if isinstance(fault, Exception):
            raise fault
        return fault


def status(code: int, body: bytes = b"", **headers) -> httpx.Response:
    return httpx.Response(code, content=body, headers=headers)


MALFORMED = status(200, b"<AssumeRoleResponse><AssumeRoleResult><Credentials>")
THROTTLED = status(400, error_doc("Throttling", "Rate exceeded"))


@pytest.fixture
def role_arn(bench):
    return bench.role("app", trust())


async def run(bench: Bench, role_arn: str, *faults, **kwargs) -> tuple[StsCredentials, Faults]:
    handler = Faults(bench, *faults)
    async with bench.client(handler, **kwargs) as sts:
        return await sts.assume_role(bench.admin, role_arn, "web-1"), handler


async def fail(bench: Bench, role_arn: str, *faults, **kwargs) -> tuple[StsFailure, Faults]:
    handler = Faults(bench, *faults)
    async with bench.client(handler, **kwargs) as sts:
        with pytest.raises(StsFailure) as info:
            await sts.assume_role(bench.admin, role_arn, "web-1")
    return info.value, handler


async def test_500_is_retried_then_succeeds(bench, role_arn):
    creds, handler = await run(bench, role_arn, status(500, error_doc("InternalFailure")), random=lambda: 0.5)
    assert creds.role_name == "app" and handler.calls == 2 and bench.delays == [0.5]


async def test_throttling_is_retried(bench, role_arn):
    creds, handler = await run(bench, role_arn, THROTTLED, THROTTLED, random=lambda: 0.5)
    assert handler.calls == 3 and bench.delays == [0.5, 1.0]


async def test_persistent_throttling_gives_up_with_awss_error(bench, role_arn, caplog):
    with caplog.at_level(logging.WARNING, logger="rolecall.agent.sts"):
        error, handler = await fail(bench, role_arn, *[THROTTLED] * 9, random=lambda: 0.999)
    assert isinstance(error, StsError) and (error.code, error.message, error.http_status) == ("Throttling", "Rate exceeded", 400)
    assert error.retryable and error.attempts == 4 and handler.calls == 4
    assert bench.delays == pytest.approx([0.999, 1.998, 3.996])
    assert [r.getMessage().endswith(f"(attempt {n} of 4); retrying in {d:.2f} s") for n, (r, d) in
            enumerate(zip(caplog.records, bench.delays), 1)] == [True] * 3
    assert "Throttling (HTTP 400): Rate exceeded" in caplog.records[0].getMessage()
    assert bench.admin.secret_access_key not in caplog.text


async def test_backoff_is_capped(bench, role_arn):
    await fail(bench, role_arn, *[status(503, error_doc("ServiceUnavailable"))] * 9, max_attempts=8,
               random=lambda: 0.999, backoff_base=1.0, backoff_cap=5.0)
    assert bench.delays == pytest.approx([0.999, 1.998, 3.996, 4.995, 4.995, 4.995, 4.995])


async def test_malformed_xml_is_unavailable(bench, role_arn):
    error, handler = await fail(bench, role_arn, *[MALFORMED] * 4)
    assert isinstance(error, StsUnavailable) and error.retryable and handler.calls == 4
    assert str(error).startswith("AssumeRole: malformed response from 127.0.0.1:8900: malformed XML: ")
    creds, handler = await run(bench, role_arn, MALFORMED)
    assert handler.calls == 2 and creds.role_name == "app"


@pytest.mark.parametrize("body, what", [
    (b"<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>", "no Credentials"),
    (b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId>"
     b"<SecretAccessKey>TOPSECRET</SecretAccessKey><Expiration>2026-01-01T01:00:00Z</Expiration></Credentials>"
     b"</AssumeRoleResult></AssumeRoleResponse>", "no Credentials/SessionToken"),
    (b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId>"
     b"<SecretAccessKey>TOPSECRET</SecretAccessKey><SessionToken>TOKENSECRET</SessionToken>"
     b"<Expiration>tomorrow TOPSECRET</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
     "Credentials/Expiration is not an ISO 8601 time"),
    (b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId>"
     b"<SecretAccessKey>TOP SECRET</SecretAccessKey><SessionToken>TOKENSECRET</SessionToken>"
     b"<Expiration>2026-01-01T01:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
     "Credentials/SecretAccessKey is not printable ASCII"),
    (b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
     "expected <AssumeRoleResponse>, got <ErrorResponse>"),
    (b'<!DOCTYPE x [<!ENTITY a "TOPSECRET">]><AssumeRoleResponse>&a;</AssumeRoleResponse>', "malformed XML"),
])
async def test_incomplete_answers_name_what_is_missing_never_the_secret(bench, role_arn, body, what):
    error, _ = await fail(bench, role_arn, *[status(200, body)] * 4)
    assert isinstance(error, StsUnavailable) and what in str(error)
    assert "SECRET" not in str(error) and "\n" not in str(error)


async def test_error_status_without_an_error_document(bench, role_arn):
    error, handler = await fail(bench, role_arn, *[status(502, b"<html>Bad Gateway</html>")] * 4)
    assert isinstance(error, StsUnavailable) and error.retryable and error.http_status == 502 and handler.calls == 4
    assert str(error) == "AssumeRole: HTTP 502 from 127.0.0.1:8900 without an AWS error document"
    error, handler = await fail(bench, role_arn, status(404, b"not here"))
    assert isinstance(error, StsUnavailable) and not error.retryable and handler.calls == 1


async def test_connection_errors_are_retried(bench, role_arn):
    creds, handler = await run(bench, role_arn, httpx.ConnectError("[Errno 111] Connection refused"))
    assert handler.calls == 2 and creds.role_name == "app"
    error, _ = await fail(bench, role_arn, *[httpx.ConnectError("[Errno 111] Connection refused")] * 4)
    assert isinstance(error, StsUnavailable) and error.attempts == 4
    assert str(error) == "AssumeRole: cannot reach 127.0.0.1:8900: [Errno 111] Connection refused"
    error, _ = await fail(bench, role_arn, *[httpx.ReadTimeout("timed out")] * 4)
    assert str(error) == "AssumeRole: timed out talking to 127.0.0.1:8900 (ReadTimeout)"


async def test_oversized_answers(bench, role_arn):
    big = b"<x>" + b"a" * MAX_RESPONSE_BYTES + b"</x>"
    error, _ = await fail(bench, role_arn, status(200, big), max_attempts=1)
    assert str(error) == f"AssumeRole: response from 127.0.0.1:8900 larger than {MAX_RESPONSE_BYTES} bytes"

    async def stream():              # no Content-Length: counted while reading
        for _ in range(MAX_RESPONSE_BYTES // 4096 + 2):
            yield b"a" * 4096

    error, _ = await fail(bench, role_arn, httpx.Response(200, content=stream()), max_attempts=1)
    assert "larger than" in str(error) and error.retryable


async def test_slow_answers_time_out_and_are_retried(bench, role_arn, autojump_clock):
    start = trio.current_time()
    creds, handler = await run(bench, role_arn, 60, timeout=10, sleep=trio.sleep, random=lambda: 0.5)
    assert creds.role_name == "app" and handler.calls == 2
    assert trio.current_time() - start == pytest.approx(10.5)      # one timeout, one backoff


async def test_always_too_slow_is_unavailable(bench, role_arn, autojump_clock):
    start = trio.current_time()
    error, handler = await fail(bench, role_arn, *[3600] * 4, timeout=10, sleep=trio.sleep, random=lambda: 0.5)
    assert isinstance(error, StsUnavailable) and error.retryable and handler.calls == 4
    assert str(error) == "AssumeRole: no answer from 127.0.0.1:8900 within 10 s"
    assert trio.current_time() - start == pytest.approx(4 * 10 + 0.5 + 1 + 2)


async def test_slow_but_in_time_is_fine(bench, role_arn, autojump_clock):
    creds, handler = await run(bench, role_arn, 9.5, timeout=10, sleep=trio.sleep)
    assert handler.calls == 1 and creds.role_name == "app"


async def test_outer_cancellation_is_not_swallowed(bench, role_arn, autojump_clock):
    with trio.move_on_after(5) as scope:
        await run(bench, role_arn, 3600, timeout=10, sleep=trio.sleep)
    assert scope.cancelled_caught


async def test_each_attempt_is_signed_afresh(bench, role_arn):
    handler = Faults(bench, THROTTLED)

    async def tick(seconds: float) -> None:
        bench.clock.advance(60)

    async with bench.client(handler, sleep=tick) as sts:
        await sts.assume_role(bench.admin, role_arn, "web-1")
    assert [r.headers["X-Amz-Date"] for r in handler.requests] == ["20260101T000010Z", "20260101T000110Z"]


async def test_one_attempt_only(bench, role_arn):
    error, handler = await fail(bench, role_arn, THROTTLED, max_attempts=1)
    assert error.attempts == 1 and handler.calls == 1 and bench.delays == []
    with pytest.raises(ValueError):
        StsClient(ENDPOINT, "us-east-1", clock=bench.clock, max_attempts=0)


# ---- errors: what is retryable ---------------------------------------------------------------


@pytest.mark.parametrize("code, status_code, retryable", [
    ("Throttling", 400, True), ("ThrottlingException", 400, True), ("RequestLimitExceeded", 400, True),
    ("IDPCommunicationError", 400, True), ("InternalFailure", 500, True), ("ServiceUnavailable", 503, True),
    ("SomethingNew", 500, True), ("SomethingNew", 429, True),
    ("AccessDenied", 403, False), ("ValidationError", 400, False), ("InvalidClientTokenId", 403, False),
    ("ExpiredToken", 403, False), ("SignatureDoesNotMatch", 403, False), ("RegionDisabledException", 403, False),
])
def test_retryable_codes(code, status_code, retryable):
    assert StsError("AssumeRole", code, "m", status_code).retryable is retryable


def test_error_messages_are_one_line():
    error = StsError("AssumeRole", "Access\nDenied", "line one\r\nline two\x00", 403, "rid\n")
    assert str(error) == "AssumeRole: Access Denied (HTTP 403): line one line two [request id rid]"
    assert str(StsError("GetCallerIdentity", "X", "", 400)) == "GetCallerIdentity: X (HTTP 400)"
    assert len(StsError("A", "C", "m" * 5000, 400).message) == 1024
    with pytest.raises(TypeError):
        StsFailure("AssumeRole", "x")
    assert {"Throttling", "RequestLimitExceeded", "IDPCommunicationError"} <= RETRYABLE_CODES


@pytest.mark.parametrize("status_code, retryable", [(None, True), (200, True), (500, True), (503, True),
                                                    (429, True), (404, False), (403, False)])
def test_unavailable_retryable(status_code, retryable):
    assert StsUnavailable("AssumeRole", "x", status_code).retryable is retryable


# ---- endpoints, expirations, credentials (pure) -------------------------------------------------


@pytest.mark.parametrize("endpoint_url, region, global_endpoint, expected", [
    (None, "us-east-1", False, StsEndpoint("https://sts.us-east-1.amazonaws.com", "us-east-1")),
    (None, "eu-west-1", False, StsEndpoint("https://sts.eu-west-1.amazonaws.com", "eu-west-1")),
    (None, "eu-west-1", True, StsEndpoint("https://sts.amazonaws.com", "us-east-1")),
    (None, "us-gov-west-1", False, StsEndpoint("https://sts.us-gov-west-1.amazonaws.com", "us-gov-west-1")),
    (None, "cn-north-1", False, StsEndpoint("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1")),
    (None, "cn-north-1", True, StsEndpoint("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1")),
    (None, None, False, StsEndpoint("https://sts.amazonaws.com", "us-east-1")),
    (None, "aws-global", False, StsEndpoint("https://sts.amazonaws.com", "us-east-1")),
    ("http://127.0.0.1:8900", "us-east-1", False, StsEndpoint("http://127.0.0.1:8900", "us-east-1")),
    ("http://127.0.0.1:8900", None, False, StsEndpoint("http://127.0.0.1:8900", "us-east-1")),
    ("http://127.0.0.1:8900", "aws-global", False, StsEndpoint("http://127.0.0.1:8900", "us-east-1")),
    ("https://minio.local:9000/", "local", True, StsEndpoint("https://minio.local:9000/", "local")),
    ("https://sts.amazonaws.com", "us-east-1", False, StsEndpoint("https://sts.amazonaws.com", "us-east-1")),
])
def test_resolve_endpoint(endpoint_url, region, global_endpoint, expected):
    assert resolve_endpoint(endpoint_url, region, global_endpoint=global_endpoint) == expected


def test_resolve_endpoint_refuses_a_non_region():
    with pytest.raises(ValueError, match="not an AWS region"):
        resolve_endpoint(None, "evil.example.com/x")


async def test_client_signs_for_the_endpoints_region():
    seen = []
    aws = StsClient(None, "eu-west-1", clock=FixedClock(T0), transport=httpx.MockTransport(
        lambda r: seen.append(r) or httpx.Response(500)), max_attempts=1)
    async with aws:
        with pytest.raises(StsUnavailable):
            await aws.get_caller_identity(Credentials("AKIAIOSFODNN7EXAMPLE", "s"))
    assert (seen[0].url.host, seen[0].url.raw_path) == ("sts.eu-west-1.amazonaws.com", b"/")
    assert "/eu-west-1/sts/aws4_request" in seen[0].headers["Authorization"]
    assert repr(aws) == "StsClient('https://sts.eu-west-1.amazonaws.com', region='eu-west-1')"


@pytest.mark.parametrize("text, expected", [
    ("2019-11-01T20:26:47Z", dt.datetime(2019, 11, 1, 20, 26, 47, tzinfo=UTC)),
    ("2011-07-15T23:28:33.359Z", dt.datetime(2011, 7, 15, 23, 28, 33, 359000, tzinfo=UTC)),
    ("2011-07-15T23:28:33.123456789Z", dt.datetime(2011, 7, 15, 23, 28, 33, 123456, tzinfo=UTC)),
    ("2011-07-15T23:28:33+02:00", dt.datetime(2011, 7, 15, 21, 28, 33, tzinfo=UTC)),
    ("2011-07-15T23:28:33-0130", dt.datetime(2011, 7, 16, 0, 58, 33, tzinfo=UTC)),
    ("2011-07-15T23:28:33", dt.datetime(2011, 7, 15, 23, 28, 33, tzinfo=UTC)),
    (" 2011-07-15T23:28:33z\n", dt.datetime(2011, 7, 15, 23, 28, 33, tzinfo=UTC)),
])
def test_parse_expiration(text, expected):
    when = parse_expiration(text)
    assert when == expected and when.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "tomorrow", "1700000000", "2011-13-01T00:00:00Z", "2011-07-15"])
def test_parse_expiration_refuses(text):
    with pytest.raises(ValueError):
        parse_expiration(text)


def test_sts_credentials_helpers():
    creds = StsCredentials("ASIAEXAMPLE", "TOPSECRET", "TOKENSECRET", T0,
                           assumed_role_arn="arn:aws:sts::123456789012:assumed-role/app/web-1",
                           assumed_role_id="AROAEXAMPLE:web-1")
    assert (creds.role_name, creds.account_id) == ("app", "123456789012")
    assert creds.credentials == Credentials("ASIAEXAMPLE", "TOPSECRET", "TOKENSECRET")
    assert "SECRET" not in repr(creds) and "SECRET" not in str(creds)
    served = creds.to_role_credentials(T0 - dt.timedelta(hours=1))
    assert served == RoleCredentials("app", "ASIAEXAMPLE", "TOPSECRET", "TOKENSECRET", T0,
                                     T0 - dt.timedelta(hours=1), "123456789012")
    bare = StsCredentials("KEY", "TOPSECRET", "TOKENSECRET", T0)     # e.g. MinIO: no assumed-role ARN
    assert bare.role_name is None
    assert bare.to_role_credentials(T0, role_name="app", account_id="123456789012").role_name == "app"
    with pytest.raises(ValueError, match="no role name"):
        bare.to_role_credentials(T0)


# ---- proxies from the environment: never for loopback ---------------------------------------------

DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: any proxied call fails


@pytest.fixture
def dead_proxies(monkeypatch):
    """Every proxy variable httpx reads points at a dead proxy, and NO_PROXY does not rescue loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_a_loopback_endpoint_is_reached_directly_despite_proxy_variables(nursery, bench, dead_proxies):
    async def backend(request):
        return bench.backend.handle(request)

    running = await start_server(nursery, backend)
    async with StsClient(running.url, "us-east-1", clock=bench.clock, max_attempts=1) as sts:
        identity = await sts.get_caller_identity(bench.admin)
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    # the same call through httpx's defaults would have gone to the dead proxy
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as proxied:
            await proxied.post(running.url + "/", content=b"Action=GetCallerIdentity")


def test_remote_endpoints_keep_honouring_proxies(dead_proxies):
    remote = StsClient(None, "eu-west-1", clock=FixedClock(T0))
    local = StsClient("http://localhost:8900", "us-east-1", clock=FixedClock(T0))
    assert remote._http.trust_env is True and local._http.trust_env is False


@pytest.mark.parametrize("url, loopback", [
    ("http://127.0.0.1:8900", True), ("http://127.9.8.7/", True), ("http://[::1]:8900", True),
    ("http://localhost:8900", True), ("http://LOCALHOST.", True), ("http://sts.localhost:1", True),
    ("http://[::ffff:127.0.0.1]:80", True), ("https://sts.amazonaws.com", False),
    ("https://sts.eu-west-1.amazonaws.com", False), ("http://10.0.0.1:8900", False), ("http://[::2]/", False),
    ("http://localhost.example.com", False), ("http://169.254.169.254", False),
])
def test_is_loopback_url(url, loopback):
    assert is_loopback_url(url) is loopback
