"""boto3's STS and IAM clients against the backend over a real loopback socket.

One backend per module runs in a thread (its own trio loop and store) with an
injected wall clock that the tests move: expiry, the signature window and TOTP
steps need no sleeping. It is served as ``rolecall backend serve`` serves it: the
async ``Backend`` (calls in worker threads, read-only calls on the read lane) with
the AWS-form layer errors.
botocore signs with the real clock; the backend's clock starts at real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import queue
import threading

import boto3
import pytest
import trio
from botocore.config import Config
from botocore.exceptions import ClientError

from sts_backend import mfa
from sts_backend.app import Backend, layer_error_response
from sts_backend.audit import AuditLog
from sts_backend.iam import bootstrap_admin
from sts_backend.store import Store
from tests.clocks import FixedClock
from wire.listeners import open_tcp_listeners
from wire.serve import Server

pytestmark = pytest.mark.interop

ACCOUNT = "123456789012"
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


class SettableClock(FixedClock):
    """A frozen wall clock the tests move; reset to the real time before each test."""

    def set(self, when: dt.datetime) -> None:
        self._now = when


class ThreadedBackend:
    """The backend app on ``wire.serve.Server`` at 127.0.0.1:0, in a thread of its own."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.clock = SettableClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
        self._ready: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="backend", daemon=True)

    def start(self) -> ThreadedBackend:
        self._thread.start()
        outcome = self._ready.get(timeout=30)
        if isinstance(outcome, BaseException):
            raise outcome
        self.url, self.admin_key = outcome
        return self

    def stop(self) -> None:
        trio.from_thread.run_sync(self._server.shutdown, trio_token=self._token)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        try:
            store = Store.create(self.data_dir, ACCOUNT, self.clock)
            _, key = bootstrap_admin(store)
            audit = AuditLog(os.path.join(self.data_dir, "audit.log"))
            app = Backend(store, self.clock, audit)
            self._server = Server(app, shutdown_grace=2.0, error_response=layer_error_response)
            trio.run(self._serve, key)
            app.close()
            audit.close()
            store.close()
        except BaseException as exc:  # reported to start()
            self._ready.put(exc)

    async def _serve(self, key) -> None:
        self._token = trio.lowlevel.current_trio_token()
        listeners = await open_tcp_listeners(["127.0.0.1:0"])
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(self._server.serve, listeners)
            self._ready.put((f"http://{addresses[0]}", (key.access_key_id, key.secret_access_key)))

    def client(self, service: str, key: tuple[str, ...] | None = None, creds: dict | None = None):
        """A boto3 client with a long-term ``key`` (id, secret) or STS ``creds``."""
        if creds is not None:
            key = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        key = key or self.admin_key
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", config=NO_RETRY,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1],
                            aws_session_token=key[2] if len(key) > 2 else None)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = ThreadedBackend(str(tmp_path_factory.mktemp("backend") / "data")).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def real_time(backend):
    backend.clock.set(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))


@pytest.fixture
def iam(backend):
    return backend.client("iam")


@pytest.fixture
def sts(backend):
    return backend.client("sts")


def code_of(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def trust(principal: str, actions=("sts:AssumeRole",), condition=None) -> str:
    st = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": list(actions)}
    if condition:
        st["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [st]})


def allow(action, resource="*") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


def new_user(backend, iam, name: str, *policies: str) -> tuple[str, str]:
    iam.create_user(UserName=name)
    for i, document in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def enabled_device(backend, iam, user: str, name: str) -> tuple[str, str]:
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]
    seed = device["Base32StringSeed"].decode()
    assert device["QRCodePNG"].startswith(b"\x89PNG")
    step = mfa.timecode(backend.clock.now())
    iam.enable_mfa_device(UserName=user, SerialNumber=device["SerialNumber"],
                          AuthenticationCode1=mfa.code_at(seed, step - 1), AuthenticationCode2=mfa.code_at(seed, step))
    return device["SerialNumber"], seed


def code(backend, seed: str, steps: int) -> str:
    return mfa.code_at(seed, mfa.timecode(backend.clock.now()) + steps)


# ---- STS --------------------------------------------------------------------------------------

def test_get_caller_identity_and_request_id(backend, sts):
    out = sts.get_caller_identity()
    assert out["Account"] == ACCOUNT and out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert out["UserId"].startswith("AIDA")
    assert len(out["ResponseMetadata"]["RequestId"]) == 36
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == out["ResponseMetadata"]["RequestId"]
    assert "date" in out["ResponseMetadata"]["HTTPHeaders"]


def test_get_session_token_and_rules(backend, sts):
    out = sts.get_session_token(DurationSeconds=900)
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert creds["Expiration"] == backend.clock.now() + dt.timedelta(seconds=900)
    with pytest.raises(ClientError) as info:
        sts.get_session_token(DurationSeconds=129601)
    assert code_of(info) == "ValidationError"
    session_sts = backend.client("sts", creds=creds)
    assert session_sts.get_caller_identity()["Arn"].endswith(":user/admin")
    with pytest.raises(ClientError) as info:
        backend.client("iam", creds=creds).list_users()
    assert code_of(info) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as info:
        session_sts.get_session_token()
    assert code_of(info) == "AccessDenied"


def test_session_token_expiry_and_tampering(backend, sts):
    creds = sts.get_session_token(DurationSeconds=900)["Credentials"]
    raw = bytearray(base64.b64decode(creds["SessionToken"]))
    raw[-3] ^= 1
    tampered = dict(creds, SessionToken=base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ClientError) as info:
        backend.client("sts", creds=tampered).get_caller_identity()
    assert code_of(info) == "InvalidClientTokenId"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    backend.clock.advance(900)
    with pytest.raises(ClientError) as info:
        backend.client("sts", creds=creds).get_caller_identity()
    assert code_of(info) == "ExpiredToken"
    assert info.value.response["Error"]["Message"] == "The security token included in the request is expired"


@pytest.mark.parametrize("minutes,ok", [(16, False), (-16, False), (14, True), (-14, True)])
def test_clock_window(backend, sts, minutes, ok):
    backend.clock.advance(minutes * 60)   # the request looks this far in the past (or future)
    if ok:
        sts.get_caller_identity()
    else:
        with pytest.raises(ClientError) as info:
            sts.get_caller_identity()
        assert code_of(info) == "SignatureDoesNotMatch"


def test_assume_role_success_and_errors(backend, iam, sts):
    arn = iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust(ACCOUNT))["Role"]["Arn"]
    iam.put_role_policy(RoleName="app", PolicyName="all", PolicyDocument=allow("*"))
    out = sts.assume_role(RoleArn=arn, RoleSessionName="web-1", DurationSeconds=900)
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/web-1"
    role_sts = backend.client("sts", creds=out["Credentials"])
    assert role_sts.get_caller_identity()["UserId"] == out["AssumedRoleUser"]["AssumedRoleId"]
    with pytest.raises(ClientError) as info:
        role_sts.get_session_token()
    assert info.value.response["Error"]["Message"] == "Cannot call GetSessionToken with session credentials"
    with pytest.raises(ClientError) as info:
        role_sts.assume_role(RoleArn=arn, RoleSessionName="chained", DurationSeconds=3601)
    assert code_of(info) == "ValidationError" and "role chaining" in info.value.response["Error"]["Message"]
    role_sts.assume_role(RoleArn=arn, RoleSessionName="chained", DurationSeconds=3600)
    with pytest.raises(ClientError) as info:
        sts.assume_role(RoleArn=arn, RoleSessionName="web-1", DurationSeconds=7200)
    assert "MaxSessionDuration" in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/missing", RoleSessionName="web-1")
    assert code_of(info) == "AccessDenied"
    with pytest.raises(sts.exceptions.MalformedPolicyDocumentException):
        sts.assume_role(RoleArn=arn, RoleSessionName="web-1", Policy="{not json")
    with pytest.raises(sts.exceptions.PackedPolicyTooLargeException):
        sts.assume_role(RoleArn=arn, RoleSessionName="web-1", Policy=allow("s3:GetObject", "arn:aws:s3:::x"),
                        Tags=[{"Key": f"k{i}", "Value": "v" * 200} for i in range(12)])


def test_assume_role_with_conditions_policy_and_tags(backend, iam, sts):
    cond = {"StringEquals": {"sts:ExternalId": "ext-1"}}
    actions = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
    arn = iam.create_role(RoleName="vendor", AssumeRolePolicyDocument=trust(ACCOUNT, actions, cond),
                          MaxSessionDuration=7200)["Role"]["Arn"]
    iam.put_role_policy(RoleName="vendor", PolicyName="all", PolicyDocument=allow("*"))
    with pytest.raises(ClientError) as info:
        sts.assume_role(RoleArn=arn, RoleSessionName="s1")
    assert code_of(info) == "AccessDenied"
    out = sts.assume_role(RoleArn=arn, RoleSessionName="s1", ExternalId="ext-1", DurationSeconds=7200,
                          Policy=allow("iam:ListRoles"), PolicyArns=[], Tags=[{"Key": "team", "Value": "blue"}],
                          SourceIdentity="alice")
    assert out["SourceIdentity"] == "alice" and out["PackedPolicySize"] > 0
    session_iam = backend.client("iam", creds=out["Credentials"])
    session_iam.list_roles()
    with pytest.raises(ClientError) as info:
        session_iam.list_users()
    assert code_of(info) == "AccessDenied"


def test_get_federation_token_and_access_key_info(backend, sts):
    out = sts.get_federation_token(Name="partner", Policy=allow("s3:GetObject"), DurationSeconds=900)
    assert out["FederatedUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:federated-user/partner"
    fed = backend.client("sts", creds=out["Credentials"])
    assert fed.get_caller_identity()["UserId"] == f"{ACCOUNT}:partner"
    with pytest.raises(ClientError) as info:
        fed.get_federation_token(Name="again")
    assert code_of(info) == "AccessDenied"
    assert sts.get_access_key_info(AccessKeyId=backend.admin_key[0])["Account"] == ACCOUNT


# ---- MFA through STS ------------------------------------------------------------------------

def test_mfa_codes_through_sts(backend, iam, sts):
    serial, seed = enabled_device(backend, iam, "admin", "admin-phone")
    _, other_seed = enabled_device(backend, iam, "admin", "admin-key")
    backend.clock.advance(120)   # the enable steps are now 4-5 steps old

    def gst(token_code):
        return sts.get_session_token(SerialNumber=serial, TokenCode=token_code, DurationSeconds=900)

    def refused(token_code, message="MultiFactorAuthentication failed with invalid MFA one time pass code."):
        with pytest.raises(ClientError) as info:
            gst(token_code)
        assert code_of(info) == "AccessDenied" and info.value.response["Error"]["Message"] == message

    refused(code(backend, other_seed, 0))          # another device's code
    refused(code(backend, seed, -2))               # two steps behind
    refused(code(backend, seed, 2))                # two steps ahead
    gst(code(backend, seed, -1))                   # one step behind
    refused(code(backend, seed, -1))               # replayed
    gst(code(backend, seed, 1))                    # one step ahead
    refused(code(backend, seed, 0))                # older than the last accepted one
    with pytest.raises(ClientError) as info:
        sts.get_session_token(SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/nobody", TokenCode="123456")
    assert "associated with this user" in info.value.response["Error"]["Message"]


def test_mfa_enable_and_resync(backend, iam):
    iam.create_user(UserName="mfa-user")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="mfa-user-dev")["VirtualMFADevice"]
    serial, seed = device["SerialNumber"], device["Base32StringSeed"].decode()
    step = mfa.timecode(backend.clock.now())
    with pytest.raises(iam.exceptions.InvalidAuthenticationCodeException):
        iam.enable_mfa_device(UserName="mfa-user", SerialNumber=serial, AuthenticationCode1=mfa.code_at(seed, step - 2),
                              AuthenticationCode2=mfa.code_at(seed, step))
    iam.enable_mfa_device(UserName="mfa-user", SerialNumber=serial, AuthenticationCode1=mfa.code_at(seed, step - 1),
                          AuthenticationCode2=mfa.code_at(seed, step))
    backend.clock.advance(150)
    step = mfa.timecode(backend.clock.now())
    iam.resync_mfa_device(UserName="mfa-user", SerialNumber=serial, AuthenticationCode1=mfa.code_at(seed, step + 3),
                          AuthenticationCode2=mfa.code_at(seed, step + 4))
    assert [d["SerialNumber"] for d in iam.list_mfa_devices(UserName="mfa-user")["MFADevices"]] == [serial]
    assert any(d["SerialNumber"] == serial for d in iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")
               ["VirtualMFADevices"])
    iam.deactivate_mfa_device(UserName="mfa-user", SerialNumber=serial)
    iam.delete_virtual_mfa_device(SerialNumber=serial)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_virtual_mfa_device(SerialNumber=serial)
    iam.delete_user(UserName="mfa-user")


# ---- IAM: every operation, success and error paths ----------------------------------------------

def test_iam_users_keys_and_groups(backend, iam):
    user = iam.create_user(UserName="dev-1", Path="/eng/", Tags=[{"Key": "team", "Value": "blue"}])["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/eng/dev-1" and user["UserId"].startswith("AIDA")
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_user(UserName="DEV-1")
    assert iam.get_user(UserName="dev-1")["User"]["Tags"] == [{"Key": "team", "Value": "blue"}]
    assert iam.get_user()["User"]["UserName"] == "admin"
    assert "dev-1" in [u["UserName"] for u in iam.list_users(PathPrefix="/eng/")["Users"]]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="nobody")
    keys = [iam.create_access_key(UserName="dev-1")["AccessKey"] for _ in range(2)]
    assert all(len(k["SecretAccessKey"]) == 40 and k["Status"] == "Active" for k in keys)
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.create_access_key(UserName="dev-1")
    iam.update_access_key(UserName="dev-1", AccessKeyId=keys[0]["AccessKeyId"], Status="Inactive")
    listed = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="dev-1")["AccessKeyMetadata"]}
    assert listed == {keys[0]["AccessKeyId"]: "Inactive", keys[1]["AccessKeyId"]: "Active"}
    boto3_user = backend.client("sts", key=(keys[1]["AccessKeyId"], keys[1]["SecretAccessKey"]))
    boto3_user.get_caller_identity()
    last = iam.get_access_key_last_used(AccessKeyId=keys[1]["AccessKeyId"])
    assert last["UserName"] == "dev-1" and last["AccessKeyLastUsed"]["ServiceName"] == "sts"
    with pytest.raises(ClientError) as info:
        backend.client("sts", key=(keys[0]["AccessKeyId"], keys[0]["SecretAccessKey"])).get_caller_identity()
    assert code_of(info) == "InvalidClientTokenId"
    iam.create_group(GroupName="eng", Path="/eng/")
    iam.add_user_to_group(GroupName="eng", UserName="dev-1")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="dev-1")["Groups"]] == ["eng"]
    assert [u["UserName"] for u in iam.get_group(GroupName="eng")["Users"]] == ["dev-1"]
    assert "eng" in [g["GroupName"] for g in iam.list_groups()["Groups"]]
    iam.tag_user(UserName="dev-1", Tags=[{"Key": "env", "Value": "prod"}])
    iam.untag_user(UserName="dev-1", TagKeys=["team"])
    assert iam.list_user_tags(UserName="dev-1")["Tags"] == [{"Key": "env", "Value": "prod"}]
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_user(UserName="dev-1")
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_group(GroupName="eng")
    iam.remove_user_from_group(GroupName="eng", UserName="dev-1")
    iam.delete_group(GroupName="eng")
    for key in keys:
        iam.delete_access_key(UserName="dev-1", AccessKeyId=key["AccessKeyId"])
    iam.delete_user(UserName="dev-1")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_user(UserName="dev-1")


def test_iam_roles(backend, iam):
    role = iam.create_role(RoleName="svc", AssumeRolePolicyDocument=trust(ACCOUNT), Description="a service",
                           MaxSessionDuration=7200, Tags=[{"Key": "a", "Value": "1"}])["Role"]
    assert role["RoleId"].startswith("AROA") and role["MaxSessionDuration"] == 7200
    assert iam.get_role(RoleName="svc")["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Action"] == ["sts:AssumeRole"]
    with pytest.raises(ClientError) as info:
        iam.create_role(RoleName="bad", AssumeRolePolicyDocument=trust(ACCOUNT), MaxSessionDuration=43201)
    assert code_of(info) == "ValidationError"
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_role(RoleName="bad", AssumeRolePolicyDocument="{]")
    iam.update_role(RoleName="svc", MaxSessionDuration=3600)
    iam.update_role_description(RoleName="svc", Description="changed")
    iam.update_assume_role_policy(RoleName="svc", PolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:user/admin"))
    assert "svc" in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    iam.tag_role(RoleName="svc", Tags=[{"Key": "b", "Value": "2"}])
    iam.untag_role(RoleName="svc", TagKeys=["a"])
    assert iam.list_role_tags(RoleName="svc")["Tags"] == [{"Key": "b", "Value": "2"}]
    iam.put_role_policy(RoleName="svc", PolicyName="inline", PolicyDocument=allow("s3:*"))
    assert iam.get_role_policy(RoleName="svc", PolicyName="inline")["PolicyDocument"]["Statement"][0]["Action"] == "s3:*"
    assert iam.list_role_policies(RoleName="svc")["PolicyNames"] == ["inline"]
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_role(RoleName="svc")
    iam.delete_role_policy(RoleName="svc", PolicyName="inline")
    iam.delete_role(RoleName="svc")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="svc")


def test_iam_policies(backend, iam):
    iam.create_user(UserName="pol-user")
    iam.create_group(GroupName="pol-group")
    iam.create_role(RoleName="pol-role", AssumeRolePolicyDocument=trust(ACCOUNT))
    arn = iam.create_policy(PolicyName="read", PolicyDocument=allow("s3:GetObject"), Description="d")["Policy"]["Arn"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_policy(PolicyName="broken", PolicyDocument='{"Statement": "nope"}')
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
    assert arn in [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=allow("s3:*"), SetAsDefault=True)
    assert iam.get_policy_version(PolicyArn=arn, VersionId="v2")["PolicyVersion"]["IsDefaultVersion"] is True
    assert sorted(v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]) == ["v1", "v2"]
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    for kind, name in (("user", "pol-user"), ("group", "pol-group"), ("role", "pol-role")):
        getattr(iam, f"attach_{kind}_policy")(**{f"{kind.capitalize()}Name": name, "PolicyArn": arn})
        listed = getattr(iam, f"list_attached_{kind}_policies")(**{f"{kind.capitalize()}Name": name})
        assert [p["PolicyArn"] for p in listed["AttachedPolicies"]] == [arn]
        getattr(iam, f"put_{kind}_policy")(**{f"{kind.capitalize()}Name": name, "PolicyName": "in",
                                              "PolicyDocument": allow("sqs:*")})
        assert getattr(iam, f"list_{kind}_policies")(**{f"{kind.capitalize()}Name": name})["PolicyNames"] == ["in"]
        got = getattr(iam, f"get_{kind}_policy")(**{f"{kind.capitalize()}Name": name, "PolicyName": "in"})
        assert got["PolicyDocument"]["Statement"][0]["Action"] == "sqs:*"
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_policy(PolicyArn=arn)
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.put_user_policy(UserName="pol-user", PolicyName="huge",
                            PolicyDocument=allow("s3:GetObject", "arn:aws:s3:::" + "x" * 2100))
    for kind, name in (("user", "pol-user"), ("group", "pol-group"), ("role", "pol-role")):
        getattr(iam, f"detach_{kind}_policy")(**{f"{kind.capitalize()}Name": name, "PolicyArn": arn})
        getattr(iam, f"delete_{kind}_policy")(**{f"{kind.capitalize()}Name": name, "PolicyName": "in"})
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn=arn)


def test_iam_account(backend, iam):
    iam.create_account_alias(AccountAlias="rolecall-lab")
    assert iam.list_account_aliases()["AccountAliases"] == ["rolecall-lab"]
    summary = iam.get_account_summary()["SummaryMap"]
    assert summary["AccessKeysPerUserQuota"] == 2 and summary["Users"] >= 1
    iam.delete_account_alias(AccountAlias="rolecall-lab")
    assert iam.list_account_aliases()["AccountAliases"] == []
