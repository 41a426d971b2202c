"""Web identity without sockets: the key cache's refresh rules (fake fetch, fake monotonic
clock), token claims checked at an injected wall time, and IAM's OIDC provider limits
over a real store. boto3 over sockets: ``tests/interop/test_backend_web_identity.py``.
"""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from sts_backend import web_identity
from sts_backend.errors import SenderError
from sts_backend.iam import Caller, handle_iam, iam_resource_arn
from sts_backend.jwks import JwksCache, fetch_signing_keys
from sts_backend.store import Store
from tests.clocks import FixedClock
from tests.idp_support import LoopbackIdP

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def idp():
    provider = LoopbackIdP()
    yield provider
    provider.close()


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
    clock[0] = 8000                                                     # stale; the IdP answers, keyless
    fetch.error = web_identity.key_unavailable()
    for _ in range(2):
        with pytest.raises(SenderError) as info:
            cache.key("u", "i", "a")                                    # the stale key is not used
        assert info.value.code == "InvalidIdentityToken"
    assert fetch.calls == 6


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
    for token in (jwt.encode({"iss": "https://x"}, None, algorithm="none"),
                  jwt.encode({"iss": "https://x"}, "secret-key-of-32-bytes-or-more!!", algorithm="HS256")):
        with pytest.raises(SenderError) as info:
            web_identity.peek(token)
        assert info.value.code == "InvalidIdentityToken"


def test_iam_authorizes_oidc_operations_on_the_provider_arn():
    caller = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/admin", "user", "admin")
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp.test/a"
    assert iam_resource_arn("CreateOpenIDConnectProvider", {"Url": "https://idp.test/a"}, caller, ACCOUNT) == arn
    for action in ("GetOpenIDConnectProvider", "DeleteOpenIDConnectProvider", "TagOpenIDConnectProvider",
                   "AddClientIDToOpenIDConnectProvider", "UpdateOpenIDConnectProviderThumbprint"):
        assert iam_resource_arn(action, {"OpenIDConnectProviderArn": arn}, caller, ACCOUNT) == arn
    assert iam_resource_arn("ListOpenIDConnectProviders", {}, caller, ACCOUNT) == "*"
    assert iam_resource_arn("CreateOpenIDConnectProvider", {"Url": "ftp://x"}, caller, ACCOUNT) == "*"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",   # EC2 metadata, plain
    "https://169.254.169.254/keys", "https://[fe80::1]/keys", "https://[fd00:ec2::254]/keys",
    "http://idp.example.test/keys",                                          # plain HTTP off loopback
])
def test_keys_are_never_fetched_from_metadata_addresses_or_plain_http(url):
    """A hostile discovery document cannot point the backend at instance metadata: refused before any
    connection (tests/netguard.py would fail the test had one been tried)."""
    with pytest.raises(SenderError) as info:
        fetch_signing_keys(url, "https://idp.example.test", lambda: 0.0)
    assert info.value.code == "InvalidIdentityToken"
