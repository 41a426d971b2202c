"""Request authentication and the credential rules, through the whole app (no sockets).

Clock window, key status, sealed session tokens (expiry, tampering, rotation,
revocation) and what each kind of temporary credential may call.
"""

from __future__ import annotations

import base64
import json

import pytest

from sts_backend.auth import check_call
from sts_backend.store import Store
from tests.test_sts_ops import ACCOUNT, ADMIN_ROLE_POLICY, Client, Kit, allow, expect, trust
from tests.clocks import FixedClock
from wire.sigv4 import Credentials


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def skewed(client: Client, minutes: float) -> Client:
    """The same credentials, signing with a clock ``minutes`` off the backend's."""
    clock = FixedClock(client.kit.clock.now())
    clock.advance(minutes * 60)
    return Client(client.kit, client.creds, clock)


@pytest.mark.parametrize("minutes", [-16, 16])
def test_signature_outside_15_minutes_is_refused(kit, minutes):
    err = expect("SignatureDoesNotMatch", skewed(kit.admin, minutes).sts, "GetCallerIdentity")
    assert err.status == 403
    assert ("Signature expired" if minutes < 0 else "Signature not yet current") in err.message


@pytest.mark.parametrize("minutes", [-14, 14])
def test_signature_within_15_minutes_is_accepted(kit, minutes):
    assert skewed(kit.admin, minutes).sts("GetCallerIdentity")["Account"] == ACCOUNT


def test_wrong_secret_and_unknown_key(kit):
    wrong = Client(kit, Credentials(kit.admin.creds.access_key_id, "x" * 40))
    assert expect("SignatureDoesNotMatch", wrong.sts, "GetCallerIdentity").status == 403
    unknown = Client(kit, Credentials("AKIAQQQQQQQQQQQQQQQQ", "x" * 40))
    err = expect("InvalidClientTokenId", unknown.sts, "GetCallerIdentity")
    assert (err.status, err.message) == (403, "The security token included in the request is invalid.")


def test_inactive_and_deleted_keys(kit):
    bob = kit.user("bob")
    key_id = bob.creds.access_key_id
    kit.admin.iam("UpdateAccessKey", UserName="bob", AccessKeyId=key_id, Status="Inactive")
    expect("InvalidClientTokenId", bob.sts, "GetCallerIdentity")
    kit.admin.iam("UpdateAccessKey", UserName="bob", AccessKeyId=key_id, Status="Active")
    bob.sts("GetCallerIdentity")
    kit.admin.iam("DeleteAccessKey", UserName="bob", AccessKeyId=key_id)
    expect("InvalidClientTokenId", bob.sts, "GetCallerIdentity")


def test_long_term_key_with_a_session_token_is_refused(kit):
    client = Client(kit, Credentials(kit.admin.creds.access_key_id, kit.admin.creds.secret_access_key, "token"))
    expect("InvalidClientTokenId", client.sts, "GetCallerIdentity")


def test_expired_session_token(kit):
    session = kit.admin.temporary(kit.admin.sts("GetSessionToken", DurationSeconds=900))
    kit.clock.advance(899)
    session.sts("GetCallerIdentity")
    kit.clock.advance(1)
    err = expect("ExpiredToken", session.sts, "GetCallerIdentity")
    assert (err.status, err.message) == (403, "The security token included in the request is expired")


def _flip(token: str, index: int) -> str:
    raw = bytearray(base64.b64decode(token))
    raw[index] ^= 0x20
    return base64.b64encode(bytes(raw)).decode()


def test_tampered_missing_or_swapped_token(kit):
    first = kit.admin.sts("GetSessionToken")["Credentials"]
    second = kit.admin.sts("GetSessionToken")["Credentials"]
    cases = [
        _flip(first["SessionToken"], -5),          # ciphertext
        _flip(first["SessionToken"], 3),           # key id
        second["SessionToken"],                    # another session's (sealed) token
        "",                                        # none at all
    ]
    for token in cases:
        client = Client(kit, Credentials(first["AccessKeyId"], first["SecretAccessKey"], token or None))
        err = expect("InvalidClientTokenId", client.sts, "GetCallerIdentity")
        assert err.status == 403


def test_token_key_rotation_keeps_old_tokens(kit, tmp_path):
    old = kit.admin.temporary(kit.admin.sts("GetSessionToken"))
    other_process = Store.open(kit.data_dir, kit.clock)
    new_id = other_process.add_token_key()
    other_process.close()
    fresh = kit.admin.sts("GetSessionToken")["Credentials"]
    assert base64.b64decode(fresh["SessionToken"])[1:5] == new_id.to_bytes(4, "big")
    old.sts("GetCallerIdentity")
    kit.admin.temporary({"Credentials": fresh}).sts("GetCallerIdentity")


def test_revocation_role_deleted_key_deactivated_sessions_revoked(kit):
    """A revoked session is denied every authorized call, and GetCallerIdentity still answers it
    (AWS answers every valid principal); the reason is never disclosed."""
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    bob = kit.user("bob", allow("sts:AssumeRole"))
    session = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    session.iam("ListUsers")

    def revoked(client) -> None:
        who = client.sts("GetCallerIdentity")["Arn"]
        assert who.startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/")
        err = expect("AccessDenied", client.iam, "ListUsers")
        assert err.message == f"User: {who} is not authorized to perform: iam:ListUsers on resource: *"

    kit.admin.iam("UpdateAccessKey", UserName="bob", AccessKeyId=bob.creds.access_key_id, Status="Inactive")
    revoked(session)
    kit.admin.iam("UpdateAccessKey", UserName="bob", AccessKeyId=bob.creds.access_key_id, Status="Active")
    session.iam("ListUsers")
    kit.clock.advance(1)
    kit.store.revoke_sessions("role", "app")
    revoked(session)
    later = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s2"))
    later.iam("ListUsers")
    kit.admin.iam("DeleteRolePolicy", RoleName="app", PolicyName="p0")
    kit.admin.iam("DeleteRole", RoleName="app")
    revoked(later)
    kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)   # same name, new role id: old sessions stay dead
    revoked(later)


def test_session_token_credentials_rules(kit):
    plain = kit.admin.temporary(kit.admin.sts("GetSessionToken"))
    expect("InvalidClientTokenId", plain.iam, "ListUsers")
    for action, params in (("GetSessionToken", {}), ("GetFederationToken", {"Name": "fed"}),
                           ("GetAccessKeyInfo", {"AccessKeyId": kit.admin.creds.access_key_id})):
        err = expect("AccessDenied", plain.sts, action, **params)
        assert err.message == f"Cannot call {action} with session credentials"
    plain.sts("GetCallerIdentity")


def test_credential_rules_come_before_parameter_validation(kit):
    """The credential-kind refusal wins over a ValidationError (check_call before validate)."""
    plain = kit.admin.temporary(kit.admin.sts("GetSessionToken"))
    err = expect("InvalidClientTokenId", plain.iam, "ListUsers", MaxItems=0)
    assert err.status == 403
    expect("InvalidClientTokenId", plain.iam, "CreateUser", UserName="")
    err = expect("AccessDenied", plain.sts, "GetSessionToken", DurationSeconds=1)
    assert (err.status, err.message) == (403, "Cannot call GetSessionToken with session credentials")
    expect("InvalidAction", plain.iam, "GetEverything")          # unknown actions stay InvalidAction
    expect("InvalidAction", plain.sts, "GetEverything")
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    role = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    err = expect("AccessDenied", role.sts, "GetSessionToken", DurationSeconds=1)
    assert (err.status, err.message) == (403, "Cannot call GetSessionToken with session credentials")
    err = expect("AccessDenied", role.sts, "GetFederationToken", Name="")
    assert err.message == "Cannot call GetFederationToken with session credentials"
    expect("ValidationError", role.iam, "ListUsers", MaxItems=0)   # allowed callers still get validation
    expect("ValidationError", kit.admin.sts, "GetSessionToken", DurationSeconds=1)


def test_role_session_cannot_mint_session_or_federation_tokens(kit):
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    role = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    err = expect("AccessDenied", role.sts, "GetSessionToken")
    assert err.message == "Cannot call GetSessionToken with session credentials"
    expect("AccessDenied", role.sts, "GetFederationToken", Name="fed")
    role.iam("ListUsers")   # role sessions may use IAM as their policies allow
    role.sts("GetAccessKeyInfo", AccessKeyId=kit.admin.creds.access_key_id)


def test_mfa_present_is_absent_for_long_term_keys(kit):
    """A Deny on ``Bool aws:MultiFactorAuthPresent false`` misses long-term keys (the key is absent)."""
    deny_without_mfa = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:*", "sts:AssumeRole"], "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}]})
    bob = kit.user("bob", deny_without_mfa)
    bob.iam("ListUsers")
    arn = kit.role("same", trust(ACCOUNT), deny_without_mfa)
    role = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    expect("AccessDenied", role.iam, "ListUsers")
    serial, seed = kit.mfa_device("bob")
    with_mfa = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s2",
                                     SerialNumber=serial, TokenCode=kit.code(seed, 1)))
    with_mfa.iam("ListUsers")


def test_iam_authorization_uses_identity_policies(kit):
    bob = kit.user("bob", allow("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/bob"))
    assert bob.iam("GetUser")["User"]["UserName"] == "bob"
    err = expect("AccessDenied", bob.iam, "GetUser", UserName="admin")
    assert err.message == (f"User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: iam:GetUser "
                           f"on resource: arn:aws:iam::{ACCOUNT}:user/admin")
    expect("AccessDenied", bob.iam, "CreateUser", UserName="mallory")


def test_scope_service_must_be_sts_or_iam(kit):
    import httpx

    from wire.sigv4 import SigV4Auth

    auth = SigV4Auth(kit.admin.creds, "eu-west-1", "s3", kit.clock)
    with httpx.Client(transport=httpx.MockTransport(kit.backend.handle_httpx), auth=auth) as http:
        r = http.post("http://127.0.0.1/", content=b"Action=GetCallerIdentity&Version=2011-06-15")
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    auth = SigV4Auth(kit.admin.creds, "ap-south-2", "iam", kit.clock)   # any region
    with httpx.Client(transport=httpx.MockTransport(kit.backend.handle_httpx), auth=auth) as http:
        r = http.post("http://127.0.0.1/", content=b"Action=ListUsers&Version=2010-05-08")
    assert r.status_code == 200 and b"<ListUsersResponse" in r.content


def test_check_call_table():
    """The credential-kind rules as a table, without HTTP."""
    from dataclasses import replace

    from sts_backend.auth import Principal
    from sts_backend.errors import AccessDenied, InvalidClientTokenId
    from tests.test_tokens import make_session

    user = Principal("user", "arn:aws:iam::1:user/u", "1", "AIDA", "AKIA", "u", "sts", "us-east-1")
    check_call(user, "sts", "GetFederationToken")
    check_call(user, "iam", "CreateUser")
    root = replace(user, kind="root")
    with pytest.raises(AccessDenied):
        check_call(root, "sts", "AssumeRole")
    check_call(root, "sts", "GetSessionToken")
    gst_mfa = replace(user, session=make_session(kind="GetSessionToken", mfa_authenticated=True))
    check_call(gst_mfa, "iam", "CreateUser")
    check_call(gst_mfa, "sts", "AssumeRole")
    gst_plain = replace(user, session=make_session(kind="GetSessionToken", mfa_authenticated=False))
    with pytest.raises(InvalidClientTokenId):
        check_call(gst_plain, "iam", "ListUsers")
    role = replace(user, kind="assumed-role", session=make_session())
    check_call(role, "iam", "ListUsers")
    check_call(role, "sts", "AssumeRole")
    with pytest.raises(AccessDenied):
        check_call(role, "sts", "GetFederationToken")
    fed = replace(user, kind="federated-user", session=make_session(kind="GetFederationToken"))
    check_call(fed, "sts", "GetCallerIdentity")
    with pytest.raises(AccessDenied):
        check_call(fed, "sts", "AssumeRole")


@pytest.mark.parametrize("address,tls,insecure,ok", [
    ("127.0.0.1:8900", False, False, True),
    ("127.0.0.2:0", False, False, True),
    ("[::1]:0", False, False, True),
    ("localhost:8900", False, False, True),
    ("0.0.0.0:8900", False, False, False),
    ("[::]:8900", False, False, False),
    ("10.1.2.3:8900", False, False, False),
    ("backend.example:8900", False, False, False),
    ("0.0.0.0:8900", True, False, True),
    ("0.0.0.0:8900", False, True, True),
])
def test_plain_http_only_on_loopback(address, tls, insecure, ok):
    from sts_backend.server import ListenRefused, check_listen

    if ok:
        check_listen([address], tls=tls, insecure_http=insecure)
    else:
        with pytest.raises(ListenRefused):
            check_listen([address], tls=tls, insecure_http=insecure)
