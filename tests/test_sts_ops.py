"""STS operations through the whole backend app, with no sockets.

``Kit`` plugs ``Backend.handle_httpx`` into ``httpx.MockTransport`` and signs with
``wire.sigv4.SigV4Auth``, so every call goes through form parsing, SigV4
verification, validation, authorization and XML rendering, as over the wire.
The same kit serves tests/test_backend_auth.py. Real SDKs over loopback sockets:
tests/interop/test_backend_*.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import httpx
import pytest

from sts_backend import mfa, sts
from sts_backend.app import Backend
from sts_backend.audit import AuditLog
from sts_backend.iam import bootstrap_admin
from sts_backend.store import Store
from tests.clocks import FixedClock
from wire.query import encode_form, parse_error, parse_response
from wire.sigv4 import Credentials, SigV4Auth
from wire.version import version

ACCOUNT = "123456789012"
T0 = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
VERSIONS = {"sts": "2011-06-15", "iam": "2010-05-08"}
ADMIN_ROLE_POLICY = json.dumps({"Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


class AwsError(Exception):
    """An ErrorResponse from the backend."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def trust(principal: str | dict, actions=("sts:AssumeRole",), condition: dict | None = None) -> str:
    """A trust policy allowing ``principal`` (an ARN, account id or Principal dict)."""
    statement = {"Effect": "Allow", "Principal": principal if isinstance(principal, dict) else {"AWS": principal},
                 "Action": list(actions)}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def allow(action: str, resource: str = "*") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


class Client:
    """Signed Query calls with one set of credentials."""

    def __init__(self, kit: Kit, creds: Credentials, clock=None) -> None:
        self.kit, self.creds = kit, creds
        self.clock = clock or kit.clock
        self.last: httpx.Response | None = None

    def raw(self, service: str, action: str, headers=None, **params) -> httpx.Response:
        auth = SigV4Auth(self.creds, "us-east-1", service, self.clock)
        form = {"Action": action, "Version": VERSIONS[service], **{k: str(v) for k, v in params.items()}}
        with httpx.Client(transport=httpx.MockTransport(self.kit.backend.handle_httpx), auth=auth) as http:
            self.last = http.post("http://127.0.0.1:8900/", content=encode_form(form), headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", **(headers or {})})
        return self.last

    def call(self, service: str, action: str, **params) -> dict:
        response = self.raw(service, action, **params)
        if response.status_code != 200:
            code, message, _ = parse_error(response.content)
            raise AwsError(response.status_code, code, message)
        return parse_response(response.content, action)

    def sts(self, action: str, **params) -> dict:
        return self.call("sts", action, **params)

    def iam(self, action: str, **params) -> dict:
        return self.call("iam", action, **params)

    def temporary(self, result: dict) -> Client:
        """A client with the Credentials of an STS result."""
        c = result["Credentials"]
        return Client(self.kit, Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]))


class Kit:
    """A fresh backend over a fresh store, with an admin and helpers to build scenarios."""

    def __init__(self, data_dir, clock: FixedClock | None = None) -> None:
        self.clock = clock or FixedClock(T0)
        self.data_dir = data_dir
        self.store = Store.create(data_dir, ACCOUNT, self.clock)
        user, key = bootstrap_admin(self.store)
        self.audit = AuditLog(os.path.join(data_dir, "audit.log"))
        self.backend = Backend(self.store, self.clock, self.audit)
        self.admin = Client(self, Credentials(key.access_key_id, key.secret_access_key))

    def user(self, name: str, *policies: str) -> Client:
        """A user with inline ``policies`` and a key: a client signing with it."""
        self.admin.iam("CreateUser", UserName=name)
        for i, document in enumerate(policies):
            self.admin.iam("PutUserPolicy", UserName=name, PolicyName=f"p{i}", PolicyDocument=document)
        key = self.admin.iam("CreateAccessKey", UserName=name)["AccessKey"]
        return Client(self, Credentials(key["AccessKeyId"], key["SecretAccessKey"]))

    def role(self, name: str, trust_policy: str, *policies: str, max_session: int = 3600) -> str:
        arn = self.admin.iam("CreateRole", RoleName=name, AssumeRolePolicyDocument=trust_policy,
                             MaxSessionDuration=max_session)["Role"]["Arn"]
        for i, document in enumerate(policies):
            self.admin.iam("PutRolePolicy", RoleName=name, PolicyName=f"p{i}", PolicyDocument=document)
        return arn

    def mfa_device(self, user: str, name: str | None = None) -> tuple[str, str]:
        """An enabled virtual MFA device for ``user``: (serial, seed). Codes from the next step work."""
        import base64

        out = self.admin.iam("CreateVirtualMFADevice", VirtualMFADeviceName=name or f"{user}-mfa")
        device = out["VirtualMFADevice"]
        seed = base64.b64decode(device["Base32StringSeed"]).decode()
        step = mfa.timecode(self.clock.now())
        self.admin.iam("EnableMFADevice", UserName=user, SerialNumber=device["SerialNumber"],
                       AuthenticationCode1=mfa.code_at(seed, step - 1), AuthenticationCode2=mfa.code_at(seed, step))
        return device["SerialNumber"], seed

    def code(self, seed: str, steps: int = 1) -> str:
        return mfa.code_at(seed, mfa.timecode(self.clock.now()) + steps)

    def close(self) -> None:
        self.audit.close()
        self.store.close()


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def expect(code: str, fn, *args, **kwargs) -> AwsError:
    with pytest.raises(AwsError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


# ---- GetCallerIdentity / wire shape --------------------------------------------------------

def test_get_caller_identity_and_response_headers(kit):
    out = kit.admin.sts("GetCallerIdentity")
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert out["Account"] == ACCOUNT and out["UserId"].startswith("AIDA")
    headers = kit.admin.last.headers
    assert headers["x-amzn-RequestId"] == out["ResponseMetadata"]["RequestId"]
    assert headers["Content-Type"] == "text/xml"
    assert headers["Date"] == "Thu, 01 Jan 2026 00:00:10 GMT"
    assert headers["Server"] == f"rolecall/{version()}" != "rolecall/0+unknown"


def test_get_caller_identity_is_never_denied(kit):
    deny_all = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})
    bob = kit.user("bob", deny_all)
    assert bob.sts("GetCallerIdentity")["Arn"].endswith(":user/bob")


def test_error_document_shape(kit):
    err = expect("ValidationError", kit.admin.sts, "GetSessionToken", DurationSeconds=600)
    assert err.status == 400
    assert err.message == ("1 validation error detected: Value '600' at 'durationSeconds' failed to satisfy "
                           "constraint: Member must have value greater than or equal to 900")
    body = kit.admin.last.content.decode()
    assert body.startswith('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender')
    assert kit.admin.last.headers["x-amzn-RequestId"] in body


def test_unknown_action_and_version(kit):
    expect("InvalidAction", kit.admin.sts, "GetEverything")
    response = kit.admin.raw("sts", "GetCallerIdentity", Version="2010-05-08")
    assert response.status_code == 400 and parse_error(response.content)[0] == "InvalidAction"


def test_unsigned_requests(kit):
    with httpx.Client(transport=httpx.MockTransport(kit.backend.handle_httpx)) as http:
        r = http.post("http://127.0.0.1/", content=b"Action=GetCallerIdentity&Version=2011-06-15")
        assert (r.status_code, parse_error(r.content)[0]) == (403, "MissingAuthenticationToken")
        r = http.post("http://127.0.0.1/", content=b"Action=AssumeRoleWithSAML&Version=2011-06-15")
        assert (r.status_code, parse_error(r.content)[0]) == (400, "InvalidAction")
        r = http.post("http://127.0.0.1/", content=b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15")
        assert (r.status_code, parse_error(r.content)[0]) == (400, "ValidationError")  # no RoleArn, token...
        r = http.put("http://127.0.0.1/", content=b"Action=GetCallerIdentity")
        assert r.status_code == 405


@pytest.mark.parametrize("status,code,fault", [
    (400, "InvalidRequest", "Sender"), (408, "RequestTimeout", "Sender"),
    (413, "RequestEntityTooLarge", "Sender"), (414, "RequestURITooLong", "Sender"),
    (431, "RequestHeaderSectionTooLarge", "Sender"), (500, "InternalFailure", "Receiver"),
    (503, "ServiceUnavailable", "Receiver"), (505, "HttpVersionNotSupported", "Sender"),
    (418, "InvalidRequest", "Sender"), (502, "InternalFailure", "Receiver"),
])
def test_layer_errors_are_aws_error_responses(status, code, fault):
    """What the serving layer answers by itself, in the backend's form (fresh request id each time)."""
    from sts_backend.app import layer_error_response
    from wire.http import ResponseEncoder

    first, second = layer_error_response(status), layer_error_response(status)
    assert first.status == status
    headers = dict(first.headers)
    assert headers["Content-Type"] == "text/xml"
    request_id = headers["x-amzn-RequestId"]
    assert request_id != dict(second.headers)["x-amzn-RequestId"]
    body = first.body.decode()
    assert body.startswith(f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{fault}')
    assert parse_error(first.body)[0] == code and parse_error(first.body)[2] == request_id
    ResponseEncoder().encode(first)   # sendable as it is


def test_get_with_query_string(kit):
    auth = SigV4Auth(kit.admin.creds, "us-east-1", "sts", kit.clock)
    with httpx.Client(transport=httpx.MockTransport(kit.backend.handle_httpx), auth=auth) as http:
        r = http.get("http://127.0.0.1:8900/?Action=GetCallerIdentity&Version=2011-06-15")
    assert r.status_code == 200 and b"<Arn>arn:aws:iam::123456789012:user/admin</Arn>" in r.content


def test_unexpected_exception_is_internal_failure(kit, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("secret-ish detail")

    monkeypatch.setitem(sts.HANDLERS, "GetCallerIdentity", broken)
    err = expect("InternalFailure", kit.admin.sts, "GetCallerIdentity")
    assert err.status == 500 and "secret-ish" not in err.message
    assert b"<Type>Receiver</Type>" in kit.admin.last.content
    assert "secret-ish" not in caplog.text and "RuntimeError" in caplog.text


# ---- GetSessionToken -----------------------------------------------------------------------

def test_get_session_token_defaults_and_limits(kit):
    out = kit.admin.sts("GetSessionToken")
    creds = out["Credentials"]
    assert creds["Expiration"] == "2026-01-01T12:00:10Z"
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert len(creds["SecretAccessKey"]) == 40 and 200 < len(creds["SessionToken"]) < 2000
    assert kit.admin.sts("GetSessionToken", DurationSeconds=129600)["Credentials"]["Expiration"] == "2026-01-02T12:00:10Z"
    expect("ValidationError", kit.admin.sts, "GetSessionToken", DurationSeconds=129601)
    assert kit.admin.temporary(out).sts("GetCallerIdentity")["Arn"].endswith(":user/admin")


def test_get_session_token_with_mfa(kit):
    serial, seed = kit.mfa_device("admin")
    out = kit.admin.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 1))
    session = kit.admin.temporary(out)
    assert session.iam("ListUsers")["Users"]  # MFA sessions may call IAM


def test_mfa_codes(kit):
    """Wrong, replayed, another device's; +-1 step accepted, +-2 refused."""
    serial, seed = kit.mfa_device("admin")
    _, other_seed = kit.mfa_device("admin", "second")
    gst = kit.admin.sts
    bad = "MultiFactorAuthentication failed with invalid MFA one time pass code."
    window = {kit.code(seed, step) for step in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in window)
    assert expect("AccessDenied", gst, "GetSessionToken", SerialNumber=serial, TokenCode=wrong).message == bad
    expect("AccessDenied", gst, "GetSessionToken", SerialNumber=serial, TokenCode=kit.code(other_seed, 1))
    expect("AccessDenied", gst, "GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 2))
    gst("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 1))
    expect("AccessDenied", gst, "GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 1))  # replay
    kit.clock.advance(90)   # now the used step is 2 back; step -1 is new
    expect("AccessDenied", gst, "GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, -2))
    gst("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, -1))
    gst("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 0))


def test_mfa_device_errors(kit):
    serial, seed = kit.mfa_device("admin")
    bob = kit.user("bob")
    unknown = ("MultiFactorAuthentication failed, unable to validate MFA code. Please verify your MFA serial "
               "number is valid and associated with this user.")
    err = expect("AccessDenied", bob.sts, "GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed))
    assert err.message == unknown
    err = expect("AccessDenied", kit.admin.sts, "GetSessionToken", SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/nope",
                 TokenCode="123456")
    assert err.message == unknown
    expect("AccessDenied", kit.admin.sts, "GetSessionToken", SerialNumber=serial)
    expect("ValidationError", kit.admin.sts, "GetSessionToken", SerialNumber=serial, TokenCode="12345")


# ---- AssumeRole ----------------------------------------------------------------------------

def test_assume_role_result(kit):
    arn = kit.role("app", trust(ACCOUNT))
    out = kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="web-1")
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/web-1"
    assert out["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    assert out["AssumedRoleUser"]["AssumedRoleId"].endswith(":web-1")
    assert out["Credentials"]["Expiration"] == "2026-01-01T01:00:10Z"
    assert "PackedPolicySize" not in out and "SourceIdentity" not in out
    me = kit.admin.temporary(out).sts("GetCallerIdentity")
    assert me["Arn"] == out["AssumedRoleUser"]["Arn"] and me["UserId"] == out["AssumedRoleUser"]["AssumedRoleId"]


def test_assume_role_path_and_refusals(kit):
    arn = kit.admin.iam("CreateRole", RoleName="deep", Path="/team/", AssumeRolePolicyDocument=trust(ACCOUNT))["Role"]["Arn"]
    out = kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1")
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deep/s1"
    denied = expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=f"arn:aws:iam::{ACCOUNT}:role/nope",
                    RoleSessionName="s1")
    assert denied.message == (f"User: arn:aws:iam::{ACCOUNT}:user/admin is not authorized to perform: "
                              f"sts:AssumeRole on resource: arn:aws:iam::{ACCOUNT}:role/nope")
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=f"arn:aws:iam::{ACCOUNT}:role/deep", RoleSessionName="s1")
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn="arn:aws:iam::999999999999:role/deep", RoleSessionName="s1")
    assert expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn="not-an-arn-at-all-really",
                  RoleSessionName="s1").message == "Request ARN is invalid"
    expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="bad name!")


def test_trust_and_identity_policies(kit):
    """Trust naming the user is enough; trust naming the account needs an identity Allow; Deny wins."""
    bob = kit.user("bob")
    named = kit.role("named", trust(f"arn:aws:iam::{ACCOUNT}:user/bob"))
    by_account = kit.role("by-account", trust(ACCOUNT))
    bob.sts("AssumeRole", RoleArn=named, RoleSessionName="s1")
    expect("AccessDenied", bob.sts, "AssumeRole", RoleArn=by_account, RoleSessionName="s1")
    carol = kit.user("carol", allow("sts:AssumeRole", by_account))
    carol.sts("AssumeRole", RoleArn=by_account, RoleSessionName="s1")
    expect("AccessDenied", carol.sts, "AssumeRole", RoleArn=named, RoleSessionName="s1")
    deny = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "*"}]})
    kit.admin.iam("PutUserPolicy", UserName="bob", PolicyName="deny", PolicyDocument=deny)
    expect("AccessDenied", bob.sts, "AssumeRole", RoleArn=named, RoleSessionName="s1")


def test_duration_limits(kit):
    short = kit.role("short", trust(ACCOUNT))
    long = kit.role("long", trust(ACCOUNT), max_session=43200)
    err = expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn=short, RoleSessionName="s1", DurationSeconds=3601)
    assert err.message == "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    out = kit.admin.sts("AssumeRole", RoleArn=long, RoleSessionName="s1", DurationSeconds=43200)
    assert out["Credentials"]["Expiration"] == "2026-01-01T12:00:10Z"
    expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn=long, RoleSessionName="s1", DurationSeconds=899)


@pytest.mark.parametrize("via", ["role", "session-token"])
def test_role_chaining_capped_at_one_hour(kit, via):
    long = kit.role("long", trust(ACCOUNT), ADMIN_ROLE_POLICY, max_session=43200)
    if via == "role":
        first = kit.admin.sts("AssumeRole", RoleArn=long, RoleSessionName="first")
    else:
        first = kit.admin.sts("GetSessionToken")
    chained = kit.admin.temporary(first)
    err = expect("ValidationError", chained.sts, "AssumeRole", RoleArn=long, RoleSessionName="s1", DurationSeconds=3601)
    assert err.message == ("The requested DurationSeconds exceeds the 1 hour session limit for roles "
                           "assumed by role chaining.")
    out = chained.sts("AssumeRole", RoleArn=long, RoleSessionName="s1", DurationSeconds=3600)
    assert out["Credentials"]["Expiration"] == "2026-01-01T01:00:10Z"


MFA_TRUST = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}


def test_mfa_trust_condition_and_carry(kit):
    arn = kit.role("mfa-only", trust(ACCOUNT, condition=MFA_TRUST))
    serial, seed = kit.mfa_device("admin")
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1")
    kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1", SerialNumber=serial, TokenCode=kit.code(seed, 1))
    plain = kit.admin.temporary(kit.admin.sts("GetSessionToken"))
    expect("AccessDenied", plain.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1")
    kit.clock.advance(30)
    with_mfa = kit.admin.temporary(kit.admin.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 1)))
    role = with_mfa.temporary(with_mfa.sts("AssumeRole", RoleArn=arn, RoleSessionName="carried"))
    assert role.sts("GetCallerIdentity")["Arn"].endswith("assumed-role/mfa-only/carried")


def test_mfa_age_condition(kit):
    recent = {"NumericLessThan": {"aws:MultiFactorAuthAge": "600"}}
    arn = kit.role("fresh-mfa", trust(ACCOUNT, condition=recent))
    serial, seed = kit.mfa_device("admin")
    session = kit.admin.temporary(kit.admin.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 1)))
    kit.clock.advance(300)
    session.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1")
    kit.clock.advance(400)
    expect("AccessDenied", session.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1")


def test_external_id(kit):
    arn = kit.role("vendor", trust(ACCOUNT, condition={"StringEquals": {"sts:ExternalId": "ext-123"}}))
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1")
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1", ExternalId="ext-999")
    kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1", ExternalId="ext-123")


def test_session_policy_limits_the_session(kit):
    arn = kit.role("admin-role", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    out = kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1", Policy=allow("iam:ListUsers"))
    assert int(out["PackedPolicySize"]) >= 1
    session = kit.admin.temporary(out)
    session.iam("ListUsers")
    expect("AccessDenied", session.iam, "ListRoles")
    unrestricted = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    unrestricted.iam("ListRoles")


def test_session_policy_arns(kit):
    arn = kit.role("admin-role", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    policy = kit.admin.iam("CreatePolicy", PolicyName="list-roles", PolicyDocument=allow("iam:ListRoles"))["Policy"]["Arn"]
    out = kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1", **{"PolicyArns.member.1.arn": policy})
    session = kit.admin.temporary(out)
    session.iam("ListRoles")
    expect("AccessDenied", session.iam, "ListUsers")
    kit.admin.iam("DeletePolicy", PolicyArn=policy)
    expect("AccessDenied", session.iam, "ListRoles")   # a vanished session policy never widens
    many = {f"PolicyArns.member.{i}.arn": policy for i in range(1, 12)}
    expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1", **many)
    expect("InvalidParameterValue", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1",
           **{"PolicyArns.member.1.arn": policy})


@pytest.mark.parametrize("action,params", [
    ("AssumeRole", {"RoleSessionName": "s1"}),
    ("GetFederationToken", {"Name": "fed"}),
])
@pytest.mark.parametrize("item", [
    {"PolicyArns.member.1.Arn": "POLICY"},                     # wrong case: not the model's member
    {"PolicyArns.member.1": "POLICY"},                         # no member at all
    {"PolicyArns.member.1.arn": "POLICY", "PolicyArns.member.2.Arn": "POLICY"},
])
def test_policy_arns_item_without_arn_is_refused(kit, action, params, item):
    """A PolicyArns item without ``arn`` must not be dropped: the session would be wider than asked."""
    arn = kit.role("admin-role", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    policy = kit.admin.iam("CreatePolicy", PolicyName="list-roles",
                           PolicyDocument=allow("iam:ListRoles"))["Policy"]["Arn"]
    if action == "AssumeRole":
        params = {**params, "RoleArn": arn}
    given = {key: policy if value == "POLICY" else value for key, value in item.items()}
    err = expect("ValidationError", kit.admin.sts, action, **params, **given)
    index = len(item)
    assert err.status == 400
    assert err.message == (f"1 validation error detected: Value null at 'policyArns.{index}.member.arn' failed to "
                           "satisfy constraint: Member must not be null")


def test_session_policy_size_and_syntax(kit):
    arn = kit.role("r", trust(ACCOUNT))
    big = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::" + "b" * 2000}]})
    assert len(big) > 2048
    err = expect("ValidationError", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1", Policy=big)
    assert "Member must have length less than or equal to 2048" in err.message
    expect("MalformedPolicyDocument", kit.admin.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1", Policy="{nope")


def test_tags_and_source_identity_need_trust(kit):
    plain = kit.role("plain", trust(ACCOUNT))
    tagging = kit.role("tagging", trust(ACCOUNT, actions=("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")),
                       allow("sts:AssumeRole"))
    tags = {"Tags.member.1.Key": "team", "Tags.member.1.Value": "blue"}
    err = expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=plain, RoleSessionName="s1", **tags)
    assert "sts:TagSession" in err.message
    expect("AccessDenied", kit.admin.sts, "AssumeRole", RoleArn=plain, RoleSessionName="s1", SourceIdentity="alice")
    out = kit.admin.sts("AssumeRole", RoleArn=tagging, RoleSessionName="s1", SourceIdentity="alice", **tags)
    assert out["SourceIdentity"] == "alice" and int(out["PackedPolicySize"]) > 0
    dup = {**tags, "Tags.member.2.Key": "TEAM", "Tags.member.2.Value": "red"}
    expect("InvalidParameterValue", kit.admin.sts, "AssumeRole", RoleArn=tagging, RoleSessionName="s1", **dup)
    chained = kit.admin.temporary(out).sts("AssumeRole", RoleArn=tagging, RoleSessionName="next")
    assert chained["SourceIdentity"] == "alice"   # source identity sticks to the chain


# ---- GetFederationToken / GetAccessKeyInfo -------------------------------------------------

def test_get_federation_token(kit):
    out = kit.admin.sts("GetFederationToken", Name="partner", Policy=allow("iam:ListUsers"))
    assert out["FederatedUser"] == {"FederatedUserId": f"{ACCOUNT}:partner",
                                    "Arn": f"arn:aws:sts::{ACCOUNT}:federated-user/partner"}
    assert out["Credentials"]["Expiration"] == "2026-01-01T12:00:10Z"
    fed = kit.admin.temporary(out)
    assert fed.sts("GetCallerIdentity")["UserId"] == f"{ACCOUNT}:partner"
    arn = kit.role("r", trust(ACCOUNT))
    assert expect("AccessDenied", fed.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1").status == 403
    expect("AccessDenied", fed.sts, "GetFederationToken", Name="again")
    expect("InvalidClientTokenId", fed.iam, "ListUsers")
    bob = kit.user("bob")
    err = expect("AccessDenied", bob.sts, "GetFederationToken", Name="partner")
    assert err.message.endswith(f"sts:GetFederationToken on resource: arn:aws:sts::{ACCOUNT}:federated-user/partner")
    big = allow("s3:GetObject", "arn:aws:s3:::" + "c" * 2100)
    expect("ValidationError", kit.admin.sts, "GetFederationToken", Name="partner", Policy=big)


def test_get_access_key_info(kit):
    bob = kit.user("bob")
    assert kit.admin.sts("GetAccessKeyInfo", AccessKeyId=bob.creds.access_key_id)["Account"] == ACCOUNT
    assert kit.admin.sts("GetAccessKeyInfo", AccessKeyId="ASIAQQQQQQQQQQQQQQQQ")["Account"] == ACCOUNT
    expect("InvalidParameterValue", kit.admin.sts, "GetAccessKeyInfo", AccessKeyId="AKIAQQQQQQQQQQQQQQQQ")
    expect("AccessDenied", bob.sts, "GetAccessKeyInfo", AccessKeyId=bob.creds.access_key_id)


# ---- audit ------------------------------------------------------------------------------------

def test_audit_log_has_every_call_and_no_secret(kit):
    serial, seed = kit.mfa_device("admin")
    code = kit.code(seed, 1)
    out = kit.admin.sts("GetSessionToken", SerialNumber=serial, TokenCode=code)
    expect("AccessDenied", kit.admin.sts, "GetSessionToken", SerialNumber=serial, TokenCode=code)
    key = kit.admin.iam("CreateAccessKey", UserName="admin")["AccessKey"]
    kit.admin.temporary(out).sts("GetCallerIdentity")
    path = os.path.join(kit.data_dir, "audit.log")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = open(path, encoding="utf-8").read()
    lines = [json.loads(line) for line in text.splitlines()]
    for secret in (code, out["Credentials"]["SecretAccessKey"], out["Credentials"]["SessionToken"],
                   key["SecretAccessKey"], kit.admin.creds.secret_access_key, seed):
        assert secret not in text
    gst = [rec for rec in lines if rec["action"] == "GetSessionToken"]
    assert [rec["outcome"] for rec in gst] == ["ok", "error"] and gst[1]["error_code"] == "AccessDenied"
    assert gst[0]["params"]["SerialNumber"] == serial and "TokenCode" not in gst[0]["params"]
    assert gst[0]["principal_arn"].endswith(":user/admin") and gst[0]["source"] == "127.0.0.1"
    assert lines[-1]["access_key_id"] == out["Credentials"]["AccessKeyId"]
    assert all(len(rec["request_id"]) == 36 for rec in lines)
