"""Web identity: IAM OIDC providers and AssumeRoleWithWebIdentity.

The backend is served as ``rolecall backend serve`` serves it (``Backend`` on
``wire.serve.Server``, 127.0.0.1:0, its own thread and trio loop: the web-identity lane
in worker threads), called by boto3; the identity provider is ``LoopbackIdP`` (real
sockets, real keys, PyJWT tokens). The key cache's refresh rule and the claim checks
are also driven directly, with a fake fetch and a fake monotonic clock.
"""

from __future__ import annotations

import datetime as dt
import json

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec

from sts_backend import web_identity
from sts_backend.errors import SenderError
from sts_backend.iam import Caller, handle_iam
from sts_backend.jwks import JwksCache
from sts_backend.store import Store
from tests.clocks import FixedClock
from tests.idp_support import LoopbackIdP, dead_url, sign
from tests.interop.test_backend_boto3 import ACCOUNT, NO_RETRY, ThreadedBackend

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


def test_oidc_provider_quota_and_client_id_limit(tmp_path):
    clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    store = Store.create(tmp_path / "data", ACCOUNT, clock)
    root = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", "root")
    assert store.quota("OpenIdConnectProvidersPerAccount") == 100
    store.set_quota("OpenIdConnectProvidersPerAccount", 2)
    for i in range(2):
        handle_iam("CreateOpenIDConnectProvider", {"Url": f"https://idp{i}.test"}, root, store, clock)
    with pytest.raises(SenderError) as info:
        handle_iam("CreateOpenIDConnectProvider", {"Url": "https://idp9.test"}, root, store, clock)
    assert (info.value.code, info.value.http_status) == ("LimitExceeded", 409)
    assert info.value.message == "Cannot exceed quota for OpenIdConnectProvidersPerAccount: 2"
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp0.test"
    for i in range(100):
        handle_iam("AddClientIDToOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn, "ClientID": f"c{i}"},
                   root, store, clock)
    with pytest.raises(SenderError) as info:
        handle_iam("AddClientIDToOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn, "ClientID": "one-more"},
                   root, store, clock)
    assert info.value.message == "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100"
    assert len(store.get_oidc_provider(arn).client_ids) == 100
    store.close()


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


# ---- the pure parts ---------------------------------------------------------------------------

class FakeFetch:
    def __init__(self, keys):
        self.keys, self.calls, self.error = keys, 0, None

    def __call__(self, url, issuer):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.keys)


def test_jwks_cache_refresh_rules():
    clock = [0.0]
    fetch = FakeFetch([{"kid": "a", "kty": "RSA"}])
    cache = JwksCache(fetch, monotonic=lambda: clock[0], ttl=3600, refresh_interval=60, retry_after_failure=5)
    assert cache.key("u", "i", "a")["kid"] == "a" and fetch.calls == 1
    assert cache.key("u", "i", "a") and fetch.calls == 1                 # cached
    for at, calls in ((0, 1), (61, 2)):                                 # bogus kids: one refresh a minute
        clock[0] = at
        for _ in range(5):
            with pytest.raises(SenderError) as info:
                cache.key("u", "i", "zzz")
            assert info.value.code == "InvalidIdentityToken"
        assert fetch.calls == calls
    fetch.keys.append({"kid": "b", "kty": "RSA"})                       # the IdP rotated in a new key
    clock[0] = 100
    with pytest.raises(SenderError):
        cache.key("u", "i", "b")                                        # not yet looked for again
    clock[0] = 122
    assert cache.key("u", "i", "b")["kid"] == "b" and fetch.calls == 3
    clock[0] = 4000                                                     # stale, and the IdP is down
    fetch.error = web_identity.idp_unreachable()
    assert cache.key("u", "i", "a")["kid"] == "a" and fetch.calls == 4  # the stale key still serves
    with pytest.raises(SenderError) as info:
        cache.key("u", "i", "c")
    assert info.value.code == "IDPCommunicationError" and fetch.calls == 4  # no retry within 5 s
    clock[0] = 4006
    fetch.error = None
    assert cache.key("u", "i", "a") and fetch.calls == 5


def test_verify_checks_times_against_the_injected_clock(idp):
    now = dt.datetime(2030, 6, 1, tzinfo=dt.timezone.utc)   # far from the real time: no system clock read
    token = idp.token(now, kid="ec-1", azp="app-2", aud=["app-1", "app-2"])
    header = web_identity.peek(token)
    jwk = next(k for k in idp.jwks()["keys"] if k["kid"] == "ec-1")
    identity = web_identity.verify(token, header, jwk, ("app-2",), now)
    assert (identity.audience, identity.aud, identity.azp) == ("app-2", ("app-1", "app-2"), "app-2")
    keys = identity.condition_keys("idp.test")
    assert keys["idp.test:aud"] == "app-2" and keys["idp.test:oaud"] == ["app-1", "app-2"]
    with pytest.raises(SenderError) as info:
        web_identity.verify(token, header, jwk, ("app-1",), now)   # several audiences: azp decides
    assert info.value.message == "Incorrect token audience"
    with pytest.raises(SenderError) as info:
        web_identity.verify(token, header, jwk, ("app-2",), now + dt.timedelta(seconds=600))
    assert info.value.code == "ExpiredTokenException"
    early = now - dt.timedelta(seconds=web_identity.CLOCK_SKEW + 1)
    with pytest.raises(SenderError) as info:
        web_identity.verify(token, header, jwk, ("app-2",), early)   # iat in the future
    assert info.value.code == "InvalidIdentityToken"
    assert web_identity.verify(token, header, jwk, ("app-2",), now - dt.timedelta(seconds=30))


def test_peek_refuses_unsigned_and_hmac_tokens():
    import jwt

    for token in (jwt.encode({"iss": "https://x"}, None, algorithm="none"),
                  jwt.encode({"iss": "https://x"}, "secret-key-of-32-bytes-or-more!!", algorithm="HS256")):
        with pytest.raises(SenderError) as info:
            web_identity.peek(token)
        assert info.value.code == "InvalidIdentityToken"
