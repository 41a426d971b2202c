"""boto3 against the backend's web identity: IAM OIDC providers and AssumeRoleWithWebIdentity.

The backend is served as ``rolecall backend serve`` serves it (``Backend`` on
``wire.serve.Server``, 127.0.0.1:0, its own thread and trio loop, AssumeRoleWithWebIdentity
on the web-identity lane's worker threads), called by boto3 over the socket; the identity
provider is ``tests.idp_support.LoopbackIdP`` (real sockets, real keys, PyJWT tokens).
The rules the sockets cannot show in a few seconds (the key cache's intervals, claims at
an injected time) are in ``tests/test_web_identity.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec

from sts_backend import web_identity
from tests.idp_support import LoopbackIdP, dead_url, sign
from tests.interop.test_backend_boto3 import ACCOUNT, NO_RETRY, ThreadedBackend

pytestmark = pytest.mark.interop

AUD = "sts.amazonaws.com"
THUMB = "0" * 40


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = ThreadedBackend(str(tmp_path_factory.mktemp("backend") / "data")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def idp():
    provider = LoopbackIdP()
    yield provider
    provider.close()


@pytest.fixture(autouse=True)
def real_time(backend, idp):
    backend.clock.set(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    idp.published, idp.issuer_override = {"rsa-1", "ec-1"}, None


@pytest.fixture
def iam(backend):
    return backend.client("iam")


def anonymous_sts(backend):
    """An STS client without credentials: AssumeRoleWithWebIdentity is unsigned."""
    return boto3.client("sts", endpoint_url=backend.url, region_name="us-east-1",
                        config=NO_RETRY.merge(Config(signature_version=UNSIGNED)))


def provider_arn(url: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:oidc-provider/{url.split('://', 1)[1]}"


@pytest.fixture(scope="module")
def registered(backend, idp):
    """The IdP registered once in IAM (client id sts.amazonaws.com)."""
    backend.client("iam").create_open_id_connect_provider(Url=idp.url, ClientIDList=[AUD], ThumbprintList=[THUMB])
    return provider_arn(idp.url)


def web_role(iam, name: str, arn: str, condition: dict | None = None, max_duration: int = 3600) -> str:
    st = {"Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity"}
    if condition:
        st["Condition"] = condition
    trust = json.dumps({"Version": "2012-10-17", "Statement": [st]})
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, MaxSessionDuration=max_duration)["Role"]["Arn"]


def assume(backend, role_arn: str, token: str, **kwargs):
    return anonymous_sts(backend).assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName="web-1",
                                                                WebIdentityToken=token, **kwargs)


def refused(backend, role_arn: str, token: str, **kwargs) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        assume(backend, role_arn, token, **kwargs)
    error = info.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Message"]


# ---- IAM: OpenID Connect providers ------------------------------------------------------------

def test_oidc_provider_round_trip_with_boto3(backend, iam):
    url = "https://token.example.test/org/a"
    arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=["a", "b"], ThumbprintList=[THUMB],
                                              Tags=[{"Key": "team", "Value": "x"}])["OpenIDConnectProviderArn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.example.test/org/a"
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert got["Url"] == "token.example.test/org/a"      # IAM answers without the scheme
    assert (got["ClientIDList"], got["ThumbprintList"]) == (["a", "b"], [THUMB])
    assert got["Tags"] == [{"Key": "team", "Value": "x"}] and got["CreateDate"].tzinfo is not None
    assert {"Arn": arn} in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="c")
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="c")  # idempotent
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="a")
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="zz")
    iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn, ThumbprintList=["1" * 40])
    iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=arn, Tags=[{"Key": "TEAM", "Value": "y"}])
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert (got["ClientIDList"], got["ThumbprintList"]) == (["b", "c"], ["1" * 40])
    assert iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"] == [
        {"Key": "team", "Value": "y"}]
    summary = iam.get_account_summary()["SummaryMap"]["Providers"]
    with pytest.raises(ClientError) as info:
        iam.create_open_id_connect_provider(Url=url, ClientIDList=["a"], ThumbprintList=[THUMB])
    assert (info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "EntityAlreadyExists", 409)
    assert info.value.response["Error"]["Message"] == f"Provider with url {url} already exists."
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert iam.get_account_summary()["SummaryMap"]["Providers"] == summary - 1
    with pytest.raises(ClientError) as info:
        iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert (info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "NoSuchEntity", 404)


@pytest.mark.parametrize("url,thumbprints,code", [
    ("ftp://token.example.test", [THUMB], "ValidationError"),
    ("http://token.example.test", [THUMB], "ValidationError"),      # plain HTTP only on loopback
    ("https://token.example.test?x=1", [THUMB], "ValidationError"),
    ("https://token.example.test/six", [f"{i}" * 40 for i in range(6)], "InvalidInput"),
    ("https://token.example.test/long", ["a" * 41], "ValidationError"),  # the model: exactly 40 characters
])
def test_oidc_provider_refusals(iam, url, thumbprints, code):
    with pytest.raises(ClientError) as info:
        iam.create_open_id_connect_provider(Url=url, ClientIDList=["a"], ThumbprintList=thumbprints)
    assert info.value.response["Error"]["Code"] == code


# ---- AssumeRoleWithWebIdentity over sockets ---------------------------------------------------

@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_rs256_and_es256_tokens_give_working_role_credentials(backend, iam, idp, registered, kid):
    role = web_role(iam, f"web-{kid}", registered)
    now = backend.clock.now()
    out = assume(backend, role, idp.token(now, kid=kid), DurationSeconds=900)
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["Expiration"] == now + dt.timedelta(seconds=900)
    assert out["SubjectFromWebIdentityToken"] == "system:app"
    assert out["Provider"] == idp.url and out["Audience"] == AUD
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/web-{kid}/web-1"
    assert out["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA") and "PackedPolicySize" not in out
    identity = backend.client("sts", creds=creds).get_caller_identity()
    assert identity["Arn"] == out["AssumedRoleUser"]["Arn"]


def test_result_members_in_the_model_order(backend, iam, idp, registered):
    role = web_role(iam, "web-order", registered)
    token = idp.token(backend.clock.now())
    body = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role,
            "RoleSessionName": "web-1", "WebIdentityToken": token,
            "Policy": json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})}
    xml = httpx.post(backend.url, data=body, timeout=10).text
    order = [xml.index(f"<{m}>") for m in ("Credentials", "SubjectFromWebIdentityToken", "AssumedRoleUser",
                                           "PackedPolicySize", "Provider", "Audience")]
    assert order == sorted(order) and "<SourceIdentity>" not in xml
    assert token not in open(f"{backend.data_dir}/audit.log").read()


def test_token_refusals(backend, iam, idp, registered):
    role = web_role(iam, "web-refusals", registered)
    now = backend.clock.now()
    at = int(now.timestamp())
    forged = idp.token(now, key=ec.generate_private_key(ec.SECP256R1()), kid="ec-1")  # same kid, another key
    cases = [
        (idp.token(now, aud="someone-else"), ("InvalidIdentityToken", 400, "Incorrect token audience")),
        (idp.token(now, aud=None), ("InvalidIdentityToken", 400, "Missing a required claim: aud")),
        (idp.token(now - dt.timedelta(seconds=601)),
         ("ExpiredTokenException", 400,
          f"Token expired: current date/time {at} must be before the expiration date/time {at - 1}")),
        (idp.token(now, nbf=at + 3600, exp=at + 7200), ("InvalidIdentityToken", 400, None)),
        (idp.token(now, iss="https://unknown.example.test"),
         ("InvalidIdentityToken", 400, "No OpenIDConnect provider found in your account for "
                                       "https://unknown.example.test")),
        (forged, ("InvalidIdentityToken", 400, None)),
        ("not.a.jwt", ("InvalidIdentityToken", 400, None)),
    ]
    for token, (code, status, message) in cases:
        got = refused(backend, role, token)
        assert got[:2] == (code, status), (token, got)
        assert message is None or got[2] == message


def test_wrong_issuer_in_discovery_is_refused(backend, iam):
    liar = LoopbackIdP()
    try:
        liar.issuer_override = "https://elsewhere.example.test"   # discovery names another issuer
        iam.create_open_id_connect_provider(Url=liar.url, ClientIDList=[AUD], ThumbprintList=[THUMB])
        role = web_role(iam, "web-issuer", provider_arn(liar.url))
        got = refused(backend, role, liar.token(backend.clock.now()))
        assert got == ("InvalidIdentityToken", 400, web_identity.key_unavailable().message)
        assert liar.hits["/jwks"] == 0
    finally:
        liar.close()


def test_unknown_kid_fetches_once_then_is_refused(backend, iam):
    """A stream of made-up kids costs the IdP one fetch (then one a minute: test_jwks_cache_refresh_rules)."""
    fresh = LoopbackIdP()
    try:
        iam.create_open_id_connect_provider(Url=fresh.url, ClientIDList=[AUD], ThumbprintList=[THUMB])
        role = web_role(iam, "web-kid", provider_arn(fresh.url))
        fresh.keys["bogus-1"] = fresh.keys["rsa-1"]          # signs, but is not published
        for _ in range(4):
            assert refused(backend, role, fresh.token(backend.clock.now(), kid="bogus-1")) == (
                "InvalidIdentityToken", 400, web_identity.key_unavailable().message)
        assert fresh.hits["/jwks"] == 1 and fresh.hits["/.well-known/openid-configuration"] == 1
        assert assume(backend, role, fresh.token(backend.clock.now()))["Audience"] == AUD  # from the cache
        assert fresh.hits["/jwks"] == 1
    finally:
        fresh.close()


def test_identity_provider_down(backend, iam):
    url = dead_url()
    iam.create_open_id_connect_provider(Url=url, ClientIDList=[AUD], ThumbprintList=[THUMB])
    role = web_role(iam, "web-down", provider_arn(url))
    assert refused(backend, role, sign(url, backend.clock.now()))[:2] == ("IDPCommunicationError", 400)


@pytest.mark.parametrize("condition,token_claims,allowed", [
    ({"StringEquals": {"{p}:sub": "system:app"}}, {}, True),
    ({"StringEquals": {"{p}:sub": "system:other"}}, {}, False),
    ({"StringEquals": {"{p}:aud": AUD}}, {}, True),
    ({"StringEquals": {"{p}:aud": "other"}}, {}, False),
    ({"ForAnyValue:StringEquals": {"{p}:amr": "mfa"}}, {"amr": ["pwd", "mfa"]}, True),
    ({"ForAnyValue:StringEquals": {"{p}:amr": "mfa"}}, {"amr": ["pwd"]}, False),
    ({"StringLike": {"{p}:sub": "system:*"}, "StringEquals": {"aws:FederatedProvider": "{arn}"}}, {}, True),
])
def test_trust_conditions_on_token_claims(backend, iam, idp, registered, condition, token_claims, allowed):
    prefix = idp.url.split("://", 1)[1]
    text = json.dumps(condition).replace("{p}", prefix).replace("{arn}", registered)
    name = f"web-cond-{abs(hash(text + json.dumps(token_claims))) % 10**8}"
    role = web_role(iam, name, registered, json.loads(text))
    token = idp.token(backend.clock.now(), **token_claims)
    if allowed:
        assert assume(backend, role, token)["AssumedRoleUser"]["Arn"].endswith(f"/{name}/web-1")
    else:
        assert refused(backend, role, token) == ("AccessDenied", 403,
                                                 "Not authorized to perform sts:AssumeRoleWithWebIdentity")


def test_role_rules(backend, iam, idp, registered):
    token = idp.token(backend.clock.now())
    other = web_role(iam, "web-other-provider", provider_arn("https://other.example.test"))
    assert refused(backend, other, token)[0] == "AccessDenied"
    missing = f"arn:aws:iam::{ACCOUNT}:role/no-such-role"
    assert refused(backend, missing, token)[:2] == ("AccessDenied", 403)
    role = web_role(iam, "web-duration", registered, max_duration=3600)
    got = refused(backend, role, token, DurationSeconds=7200)
    assert got == ("ValidationError", 400, "The requested DurationSeconds exceeds the MaxSessionDuration set "
                                           "for this role.")
    assert refused(backend, role, token, ProviderId="www.amazon.com")[0] == "InvalidParameterValue"


def test_assume_role_with_saml_is_still_refused(backend):
    with pytest.raises(ClientError) as info:
        anonymous_sts(backend).assume_role_with_saml(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
                                                     PrincipalArn=f"arn:aws:iam::{ACCOUNT}:saml-provider/x",
                                                     SAMLAssertion="x" * 10)
    assert info.value.response["Error"]["Code"] == "InvalidAction"


def test_a_slow_identity_provider_holds_up_no_other_call(backend, iam):
    """The web-identity lane waits on the IdP in a worker thread: writes and reads go on meanwhile."""
    slow = LoopbackIdP()
    try:
        iam.create_open_id_connect_provider(Url=slow.url, ClientIDList=[AUD], ThumbprintList=[THUMB])
        role = web_role(iam, "web-slow", provider_arn(slow.url))
        slow.gate, outcome = threading.Event(), {}
        caller = threading.Thread(target=lambda: outcome.update(out=assume(backend, role,
                                                                            slow.token(backend.clock.now()))))
        caller.start()
        assert slow.entered.wait(10)                      # the call now waits on the IdP...
        iam.create_user(UserName="created-while-the-idp-is-slow")           # ...a write lane call
        assert backend.client("sts").get_caller_identity()["Account"] == ACCOUNT  # ...a read lane call
        assert caller.is_alive()
        slow.gate.set()
        caller.join(10)
        assert outcome["out"]["Audience"] == AUD
    finally:
        if slow.gate is not None:
            slow.gate.set()
        slow.close()


def test_deleting_the_role_ends_its_web_identity_sessions(backend, iam, idp, registered):
    """Revoked, not broken: GetCallerIdentity still answers, every authorized call is denied, and a
    role re-created under the name (same policy) does not bring the old session back."""
    lister = json.dumps({"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]})
    role = web_role(iam, "web-revoked", registered)
    iam.put_role_policy(RoleName="web-revoked", PolicyName="list", PolicyDocument=lister)
    creds = assume(backend, role, idp.token(backend.clock.now()))["Credentials"]
    backend.client("iam", creds=creds).list_users()
    iam.delete_role_policy(RoleName="web-revoked", PolicyName="list")
    iam.delete_role(RoleName="web-revoked")
    web_role(iam, "web-revoked", registered)
    iam.put_role_policy(RoleName="web-revoked", PolicyName="list", PolicyDocument=lister)
    with pytest.raises(ClientError) as info:
        backend.client("iam", creds=creds).list_users()
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    sts = backend.client("sts", creds=creds)
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/web-revoked/web-1")


def test_source_identity_from_the_token_needs_set_source_identity(backend, iam, idp, registered):
    claim = {"https://aws.amazon.com/source_identity": "alice@example.test"}
    token = idp.token(backend.clock.now(), **claim)
    without = web_role(iam, "web-no-source", registered)
    assert refused(backend, without, token)[0] == "AccessDenied"
    st = {"Effect": "Allow", "Principal": {"Federated": registered},
          "Action": ["sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"]}
    role = iam.create_role(RoleName="web-source", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [st]}))["Role"]["Arn"]
    out = assume(backend, role, token)
    assert out["SourceIdentity"] == "alice@example.test"
    bad = idp.token(backend.clock.now(), **{"https://aws.amazon.com/source_identity": "aws:root"})
    assert refused(backend, role, bad)[0] == "InvalidIdentityToken"
