"""botocore signs, wire.sigv4 verifies; wire.sigv4 signs, botocore agrees.

botocore reads the clock itself (``botocore.auth.get_current_datetime``); the
fixture below pins it to T0 so signatures are reproducible. Nothing is sent:
the boto3 client's requests are captured at ``before-send`` and answered there.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import httpx
import pytest

from tests.clocks import FixedClock
from wire.sigv4 import Credentials, SigV4Auth, SignatureDoesNotMatch, verify

botocore = pytest.importorskip("botocore")
boto3 = pytest.importorskip("boto3")
import botocore.auth  # noqa: E402
import botocore.credentials  # noqa: E402
from botocore.awsrequest import AWSRequest, AWSResponse  # noqa: E402

pytestmark = pytest.mark.interop

T0 = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
KEY_ID, SECRET = "AKIAROLECALLTEST0002", "Zm9vYmFy/secret+key0123456789ABCDEFGHIJK"
TOKEN = "IQoJb3JpZ2luX2VjEPT//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+ab/cd=="
URL = "http://127.0.0.1:8900/"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


@pytest.fixture
def frozen(monkeypatch):
    """botocore's clock, pinned to T0 (it wants a naive UTC datetime)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: T0.replace(tzinfo=None))


def host_of(url: str) -> str:
    """The Host header urllib3 sends for ``url``."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def as_received(method: str, url: str, headers, body) -> dict:
    """verify()'s arguments for a request botocore prepared."""
    parts = urlsplit(url)
    pairs = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in headers.items()]
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.append(("Host", host_of(url)))
    data = body.encode() if isinstance(body, str) else (body or b"")
    return {"method": method, "path": parts.path, "query": parts.query, "headers": pairs, "body": data}


def lookup(key_id, token):
    return SECRET if key_id == KEY_ID else None


def check(request: dict, now=T0, **scope):
    return verify(**request, lookup_secret=lookup, now=now, **scope)


def botocore_signed(method="GET", url=URL, *, token=None, service="sts", region="us-east-1", **kwargs) -> dict:
    request = AWSRequest(method=method, url=url, **kwargs)
    creds = botocore.credentials.Credentials(KEY_ID, SECRET, token)
    botocore.auth.SigV4Auth(creds, service, region).add_auth(request)
    prepared = request.prepare()
    return as_received(prepared.method, prepared.url, prepared.headers, prepared.body)


REQUESTS = {
    "get-query-special-characters": dict(params={
        "Action": "GetCallerIdentity", "Version": "2011-06-15", "space": "a b", "plus": "1+1", "slash": "a/b",
        "unicode": "ü✓", "reserved": "*!'();:@&=$,?#[]", "tilde": "~x", "empty": ""}),
    "post-sts-form": dict(method="POST", headers={"Content-Type": FORM_TYPE}, data={
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": "arn:aws:iam::123456789012:role/app",
        "RoleSessionName": "web-1", "ExternalId": "ext+id/=", "Tags.member.1.Key": "k", "Tags.member.1.Value": "v ü"}),
    "session-token": dict(method="POST", token=TOKEN, headers={"Content-Type": FORM_TYPE},
                          data={"Action": "GetCallerIdentity", "Version": "2011-06-15"}),
    "encoded-unicode-path": dict(url=URL + "caf%C3%A9/%E2%9C%93/a%20b"),
    "dot-segments": dict(url=URL + "a/./b/../c//d/?x=1"),
    "date-header": dict(headers={"Date": "replaced by botocore"}),
    "folded-spaces-in-header": dict(headers={"X-Amz-Meta-Note": "  a   b\tc  "}),
    "iam-other-region": dict(method="POST", service="iam", region="eu-west-1", headers={"Content-Type": FORM_TYPE},
                             data={"Action": "ListUsers", "Version": "2010-05-08"}),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_botocore_signed_requests_verify(frozen, name):
    spec = dict(REQUESTS[name])
    request = botocore_signed(**spec)
    result = check(request, now=T0 + dt.timedelta(seconds=3), service=spec.get("service", "sts"))
    assert (result.access_key_id, result.signed_at, result.session_token) == (KEY_ID, T0, spec.get("token"))
    assert result.region == spec.get("region", "us-east-1")


@pytest.mark.parametrize("tamper", [
    lambda r: {**r, "body": r["body"] + b"&Extra=1"},
    lambda r: {**r, "query": "x=2"},
    lambda r: {**r, "path": "/a"},
    lambda r: {**r, "headers": [(k, v + "x" if k.lower() == "content-type" else v) for k, v in r["headers"]]},
], ids=["body", "query", "path", "content-type"])
def test_tampered_botocore_requests_are_refused(frozen, tamper):
    request = botocore_signed("POST", URL + "?x=1", headers={"Content-Type": FORM_TYPE}, data={"Action": "ListUsers"})
    check(request)
    with pytest.raises(SignatureDoesNotMatch):
        check(tamper(request))


def test_botocore_signing_with_the_real_clock_verifies_at_real_now():
    request = botocore_signed("POST", headers={"Content-Type": FORM_TYPE}, data={"Action": "GetCallerIdentity"})
    assert check(request, now=dt.datetime.now(dt.timezone.utc)).access_key_id == KEY_ID


# --- a real boto3 STS client, captured before sending ---------------------------------


def sts_client(token=None):
    return boto3.client("sts", endpoint_url="http://127.0.0.1:1", region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, aws_session_token=token)


class _Body:
    def stream(self):
        yield (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
               b"<Code>Captured</Code><Message>captured</Message></Error><RequestId>r</RequestId></ErrorResponse>")


def captured(client, operation: str, **params) -> dict:
    seen = []

    def capture(request, **_):
        seen.append(as_received(request.method, request.url, request.headers, request.body))
        return AWSResponse(request.url, 400, {}, _Body())

    client.meta.events.register("before-send.sts.*", capture)
    with pytest.raises(botocore.exceptions.ClientError, match="Captured"):
        getattr(client, operation)(**params)
    assert len(seen) == 1
    return seen[0]


CALLS = {
    "get_caller_identity": {},
    "assume_role": dict(RoleArn="arn:aws:iam::123456789012:role/app", RoleSessionName="web-1", DurationSeconds=3600,
                        ExternalId="ext+id/=", Policy='{"Version":"2012-10-17","Statement":[]}',
                        PolicyArns=[{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
                        Tags=[{"Key": "team", "Value": "ops ü"}]),
    "get_session_token": dict(SerialNumber="arn:aws:iam::123456789012:mfa/demo", TokenCode="123456"),
}


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term", "session"])
@pytest.mark.parametrize("operation", CALLS)
def test_boto3_sts_calls_verify(frozen, operation, token):
    request = captured(sts_client(token), operation, **CALLS[operation])
    result = check(request, service="sts", region="us-east-1")
    assert result.session_token == token
    assert set(result.signed_headers) == {"content-type", "host", "x-amz-date"} | ({"x-amz-security-token"} if token else set())


@pytest.mark.parametrize("http_method", ["GET", "POST"])
def test_boto3_presigned_url_verifies(frozen, http_method):
    url = sts_client(TOKEN).generate_presigned_url("get_caller_identity", ExpiresIn=900, HttpMethod=http_method)
    request = as_received(http_method, url, {}, b"")
    result = check(request, now=T0 + dt.timedelta(seconds=899), service="sts", region="us-east-1")
    assert (result.presigned, result.session_token, result.signed_headers) == (True, TOKEN, ("host",))
    with pytest.raises(SignatureDoesNotMatch, match="^Request has expired"):
        check(request, now=T0 + dt.timedelta(seconds=901))


@pytest.mark.parametrize("tamper", [
    lambda r: {**r, "query": r["query"].replace("GetCallerIdentity", "GetSessionToken")},
    lambda r: {**r, "query": r["query"].replace("X-Amz-Expires=900", "X-Amz-Expires=9000")},
    lambda r: {**r, "method": "POST"},
    lambda r: {**r, "headers": [("Host", "127.0.0.1:2")]},
], ids=["action", "expires", "method", "host"])
def test_tampered_boto3_presigned_url_is_refused(frozen, tamper):
    url = sts_client().generate_presigned_url("get_caller_identity", ExpiresIn=900, HttpMethod="GET")
    with pytest.raises(SignatureDoesNotMatch):
        check(tamper(as_received("GET", url, {}, b"")))


# --- the other direction: our signer, botocore's signature --------------------------------


OURS = {
    "post-form-with-token": ("POST", URL, {"Content-Type": FORM_TYPE}, b"Action=GetCallerIdentity&Version=2011-06-15",
                             TOKEN),
    "get-encoded-query": ("GET", URL + "?b=2&a=x%20y&a=%C3%BC&c=%2F%2B", {}, b"", None),
    "encoded-path": ("GET", URL + "caf%C3%A9/./x/../a%20b", {}, b"", None),
    "x-amz-header": ("PUT", URL + "obj", {"X-Amz-Meta-Owner": "  me   too ", "Content-Type": "text/plain"},
                     "ü".encode(), TOKEN),
}


@pytest.mark.parametrize("name", OURS)
def test_our_signature_is_botocores(frozen, name):
    method, url, headers, body, token = OURS[name]
    request = httpx.Request(method, url, headers=headers, content=body)
    ours = next(SigV4Auth(Credentials(KEY_ID, SECRET, token), "us-east-1", "sts", FixedClock(T0))
                .sync_auth_flow(request))
    theirs = AWSRequest(method=method, url=str(request.url), headers=dict(headers), data=body)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY_ID, SECRET, token), "sts", "us-east-1").add_auth(theirs)
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert ours.headers["X-Amz-Date"] == theirs.headers["X-Amz-Date"]
