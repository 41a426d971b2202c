"""The pure IMDS handler: every status, header and byte of reference/imds.md §2-5."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from metadata_server import ImdsHandler, MetadataConfig
from tests.imds_support import SimpleHolder, sample_credentials
from tests.clocks import FixedClock
from wire.http import HttpRequest

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
META = "/latest/meta-data/"
ROLE = "rolecall-test"
CREDS_PATH = META + "iam/security-credentials/" + ROLE
PEER = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.1", 8169)
HOST = ("host", "169.254.169.254")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FixedClock(EPOCH)


@pytest.fixture
def mono():
    return FakeMonotonic()


@pytest.fixture
def creds():
    return sample_credentials(EPOCH)


@pytest.fixture
def holder(creds):
    return SimpleHolder(creds)


def make(holder, clock, mono, **config):
    return ImdsHandler(MetadataConfig(**config), holder, clock, mono)


@pytest.fixture
def imds(holder, clock, mono):
    return make(holder, clock, mono)


def req(method="GET", target=META, *headers, host=HOST, peer=PEER, local=LOCAL, body=b""):
    all_headers = ((host,) if host else ()) + tuple(headers)
    return HttpRequest(method, target, all_headers, body, peer, local)


def put_token(imds, ttl="21600"):
    return imds(req("PUT", "/latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", ttl)))


def token_of(imds, ttl="21600"):
    response = put_token(imds, ttl)
    assert response.status == 200
    return response.body.decode()


def get(imds, path, token=None, *headers):
    extra = (("x-aws-ec2-metadata-token", token),) if token is not None else ()
    return imds(req("GET", path, *extra, *headers))


def header(response, name):
    values = [v for k, v in response.headers if k.lower() == name.lower()]
    return values[0] if values else None


# -- token PUT --------------------------------------------------------------


@pytest.mark.parametrize("ttl", ["1", "60", "21600", "00060"])
def test_token_put_succeeds_and_echoes_ttl(imds, ttl):
    response = put_token(imds, ttl)
    assert response.status == 200
    assert header(response, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == str(int(ttl))
    assert header(response, "Content-Type") == "text/plain"
    assert len(response.body) == 56 and response.body.endswith(b"==")


def test_token_response_leaves_with_hop_limit(holder, clock, mono):
    assert put_token(make(holder, clock, mono)).ip_ttl == 1
    assert put_token(make(holder, clock, mono, hop_limit=2)).ip_ttl == 2
    assert put_token(make(holder, clock, mono, hop_limit=64)).ip_ttl == 64


def test_only_token_responses_set_the_ip_ttl(imds):
    token = token_of(imds)
    assert get(imds, CREDS_PATH, token).ip_ttl is None
    assert get(imds, META, token).ip_ttl is None
    assert put_token(imds, "0").ip_ttl is None


def test_tokens_are_unique(imds):
    assert len({token_of(imds) for _ in range(200)}) == 200


@pytest.mark.parametrize("ttl", ["0", "21601", "-1", "1.5", "abc", "", "１２", "99999999999", "+5", "6 0"])
def test_token_put_with_bad_ttl_is_400(imds, ttl):
    response = put_token(imds, ttl)
    assert response.status == 400
    assert b"400 - Bad Request" in response.body
    assert response.ip_ttl is None


def test_token_put_without_ttl_is_400(imds):
    assert imds(req("PUT", "/latest/api/token")).status == 400


def test_token_put_with_two_ttl_headers_is_400(imds):
    ttl = ("x-aws-ec2-metadata-token-ttl-seconds", "60")
    assert imds(req("PUT", "/latest/api/token", ttl, ttl)).status == 400


def test_token_put_with_x_forwarded_for_is_403(imds):
    response = imds(
        req("PUT", "/latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", "60"), ("x-forwarded-for", "10.0.0.9"))
    )
    assert response.status == 403 and response.body == b""


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "PATCH", "FOO"])
def test_other_methods_on_token_path_are_405_with_allow(imds, method):
    response = imds(req(method, "/latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", "60")))
    assert response.status == 405
    assert header(response, "Allow") == "OPTIONS, PUT"


def test_options_on_token_path_grants_no_cors(imds):
    response = imds(req("OPTIONS", "/latest/api/token", ("origin", "http://evil.example")))
    assert response.status == 200 and response.body == b""
    assert not any(k.lower().startswith("access-control") for k, _ in response.headers)


@pytest.mark.parametrize(
    "target", ["/latest/api/token/", "/2021-03-23/api/token", "/2021-03-23/api/token/", "/1.0/api/token"]
)
def test_versioned_or_slashed_token_path_is_403(imds, target):
    response = imds(req("PUT", target, ("x-aws-ec2-metadata-token-ttl-seconds", "60")))
    assert response.status == 403 and response.body == b""
    assert header(response, "Content-Type") == "text/plain"


# -- GETs, tokens and modes --------------------------------------------------


def test_required_mode_refuses_get_without_token(imds):
    response = get(imds, CREDS_PATH)
    assert response.status == 401
    assert b"<title>401 - Unauthorized</title>" in response.body
    assert header(response, "Content-Type") == "text/html"


def test_optional_mode_serves_imdsv1(holder, clock, mono, creds):
    imds = make(holder, clock, mono, tokens="optional")
    response = get(imds, CREDS_PATH)
    assert response.status == 200
    assert json.loads(response.body)["AccessKeyId"] == creds.access_key_id
    assert header(response, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds") is None


@pytest.mark.parametrize("tokens", ["required", "optional"])
def test_invalid_token_is_401_in_both_modes(holder, clock, mono, tokens):
    imds = make(holder, clock, mono, tokens=tokens)
    good = token_of(imds)
    forged = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    for bad in [forged, "", "x" * 56, good[:-1], good + "A", "é" * 56, "AQAEA" + "=" * 51]:
        assert get(imds, CREDS_PATH, bad).status == 401, bad


def test_token_from_another_server_is_refused(holder, clock, mono):
    other = make(holder, clock, mono)
    assert get(make(holder, clock, mono), CREDS_PATH, token_of(other)).status == 401


def test_token_expires_exactly(imds, mono):
    token = token_of(imds, "60")
    mono.now += 59.999
    response = get(imds, CREDS_PATH, token)
    assert response.status == 200
    assert header(response, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "1"
    mono.now += 0.001
    assert get(imds, CREDS_PATH, token).status == 401


def test_remaining_ttl_header_on_every_token_get(imds, mono):
    token = token_of(imds)
    mono.now += 17.2
    for path in [META, CREDS_PATH, META + "placement/region", "/nothing-here"]:
        response = get(imds, path, token)
        assert header(response, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "21583", path


def test_head_is_allowed(imds):
    token = token_of(imds)
    response = imds(req("HEAD", CREDS_PATH, ("x-aws-ec2-metadata-token", token)))
    assert response.status == 200  # the serving layer drops the body of a HEAD answer


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_only_get_and_head_on_metadata_paths(imds, method):
    token = token_of(imds)
    response = imds(req(method, CREDS_PATH, ("x-aws-ec2-metadata-token", token)))
    assert response.status == 405
    assert header(response, "Allow") == "GET, HEAD"
    assert response.body.find(b"Secret") == -1


# -- bodies -----------------------------------------------------------------


def test_credentials_document_is_byte_exact(imds, creds):
    body = get(imds, CREDS_PATH, token_of(imds)).body
    assert body == (
        "{\n"
        '  "Code" : "Success",\n'
        '  "LastUpdated" : "2026-01-01T00:00:00Z",\n'
        '  "Type" : "AWS-HMAC",\n'
        f'  "AccessKeyId" : "{creds.access_key_id}",\n'
        f'  "SecretAccessKey" : "{creds.secret_access_key}",\n'
        f'  "Token" : "{creds.token}",\n'
        '  "Expiration" : "2026-01-01T06:00:00Z"\n'
        "}"
    ).encode()


def test_credentials_timestamps_drop_fractions_and_offsets(clock, mono):
    odd = dt.timezone(dt.timedelta(hours=2))
    creds = sample_credentials(EPOCH)
    creds = type(creds)(
        creds.role_name, creds.access_key_id, creds.secret_access_key, creds.token,
        expiration=dt.datetime(2026, 1, 1, 8, 0, 0, 123456, tzinfo=odd),
        last_updated=dt.datetime(2026, 1, 1, 1, 59, 59, 999999, tzinfo=odd),
    )
    imds = make(SimpleHolder(creds), clock, mono)
    doc = json.loads(get(imds, CREDS_PATH, token_of(imds)).body)
    assert doc["Expiration"] == "2026-01-01T06:00:00Z"
    assert doc["LastUpdated"] == "2025-12-31T23:59:59Z"
    dt.datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ")


def test_role_listing_is_exactly_the_name(imds):
    token = token_of(imds)
    for path in [META + "iam/security-credentials/", META + "iam/security-credentials"]:
        response = get(imds, path, token)
        assert response.body == ROLE.encode()
        assert header(response, "Content-Type") == "text/plain"


def test_extended_path_adds_account_id(imds, creds):
    token = token_of(imds)
    assert get(imds, META + "iam/security-credentials-extended/", token).body == ROLE.encode()
    body = get(imds, META + "iam/security-credentials-extended/" + ROLE, token).body
    assert body.endswith(b',\n  "AccountId" : "123456789012"\n}')
    assert json.loads(body)["SecretAccessKey"] == creds.secret_access_key


def test_extended_path_is_404_when_the_account_is_unknown(clock, mono):
    imds = make(SimpleHolder(sample_credentials(EPOCH, account_id=None)), clock, mono)
    token = token_of(imds)
    assert get(imds, META + "iam/security-credentials-extended/" + ROLE, token).status == 404
    assert get(imds, CREDS_PATH, token).status == 200


def test_configured_account_id_wins(clock, mono):
    imds = make(SimpleHolder(sample_credentials(EPOCH, account_id=None)), clock, mono, account_id="210987654321")
    token = token_of(imds)
    body = json.loads(get(imds, META + "iam/security-credentials-extended/" + ROLE, token).body)
    assert body["AccountId"] == "210987654321"
    identity = json.loads(get(imds, "/latest/dynamic/instance-identity/document", token).body)
    assert identity["accountId"] == "210987654321"


def test_other_role_is_404(imds):
    response = get(imds, META + "iam/security-credentials/someone-else", token_of(imds))
    assert response.status == 404
    assert response.body.startswith(b'<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html')
    assert b"<title>404 - Not Found</title>" in response.body
    assert header(response, "Content-Type") == "text/html"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/latest/meta-data/", b"iam/\ninstance-id\nplacement/"),
        ("/latest/meta-data", b"iam/\ninstance-id\nplacement/"),
        ("/latest/meta-data/iam/", b"info\nsecurity-credentials/"),
        ("/latest/meta-data/placement/", b"availability-zone\nregion"),
        ("/latest/meta-data/placement/region", b"eu-west-3"),
        ("/latest/meta-data/placement/availability-zone", b"eu-west-3c"),
        ("/latest/meta-data/placement/availability-zone/", b"eu-west-3c"),
        ("/latest/meta-data/instance-id", b"i-0123456789abcdef0"),
        ("/latest/", b"dynamic\nmeta-data"),
        ("/latest/dynamic/", b"instance-identity/"),
        ("/latest/dynamic/instance-identity/", b"document"),
    ],
)
def test_metadata_tree(holder, clock, mono, path, body):
    imds = make(
        holder, clock, mono, region="eu-west-3", availability_zone="eu-west-3c", instance_id="i-0123456789abcdef0"
    )
    response = get(imds, path, token_of(imds))
    assert (response.status, response.body) == (200, body)
    assert header(response, "Content-Type") == "text/plain"


def test_iam_info(imds):
    info = json.loads(get(imds, META + "iam/info", token_of(imds)).body)
    assert info["Code"] == "Success"
    assert info["LastUpdated"] == "2026-01-01T00:00:00Z"
    assert info["InstanceProfileArn"] == f"arn:aws:iam::123456789012:instance-profile/{ROLE}"
    assert info["InstanceProfileId"].startswith("AIPA") and len(info["InstanceProfileId"]) == 21


def test_identity_document(imds):
    body = get(imds, "/latest/dynamic/instance-identity/document", token_of(imds)).body
    doc = json.loads(body)
    assert list(doc)[:3] == ["accountId", "architecture", "availabilityZone"]
    assert doc["region"] == "us-east-1" and doc["availabilityZone"] == "us-east-1a"
    assert doc["instanceId"].startswith("i-") and doc["version"] == "2017-09-30"
    assert b'  "version" : "2017-09-30"\n}' in body


@pytest.mark.parametrize(
    "path", ["/latest/user-data", "/latest/meta-data/ami-id", "///latest/meta-data/", "/latest/meta-data/iam/xyz", "/x"]
)
def test_unknown_paths_are_404(imds, path):
    assert get(imds, path, token_of(imds)).status == 404


# -- a leading "//" is "/" (a base URL ending in "/" joined to a path starting with one) ----------


TTL = ("x-aws-ec2-metadata-token-ttl-seconds", "60")


@pytest.mark.parametrize("hop_limit", [1, 3])
def test_double_slash_token_put_issues_a_token_with_the_hop_limit(holder, clock, mono, hop_limit):
    imds = make(holder, clock, mono, hop_limit=hop_limit)
    response = imds(req("PUT", "//latest/api/token", TTL))
    assert response.status == 200 and response.ip_ttl == hop_limit
    assert header(response, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "60"
    token = response.body.decode()
    assert get(imds, CREDS_PATH, token).status == 200
    assert get(imds, "/" + CREDS_PATH, token).status == 200
    assert imds(req("PUT", "//latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", "0"))).status == 400


@pytest.mark.parametrize(
    "path",
    ["/", "/latest/meta-data/", CREDS_PATH, META + "iam/security-credentials/", META + "iam/info",
     META + "placement/availability-zone/", META + "iam/security-credentials-extended/" + ROLE,
     "/latest/dynamic/instance-identity/document", "/latest/meta-data/ami-id"],
)
def test_double_slash_paths_answer_as_the_single_slash_ones(imds, mono, path):
    token = token_of(imds)
    single, double = get(imds, path, token), get(imds, "/" + path, token)
    assert (double.status, double.headers, double.body) == (single.status, single.headers, single.body)
    assert double.ip_ttl is None


def test_double_slash_paths_keep_every_defence(holder, clock, mono, creds):
    imds = make(holder, clock, mono)
    token = token_of(imds)
    secret = creds.secret_access_key.encode()
    for target, headers in [("//latest/api/token", (TTL,)), ("/" + CREDS_PATH, (("x-aws-ec2-metadata-token", token),))]:
        method = "PUT" if "api/token" in target else "GET"
        refused = [
            imds(req(method, target, *headers, host=("host", "attacker.example"))),  # DNS rebinding
            imds(req(method, target, *headers, host=None)),
            imds(req(method, target, *headers, ("host", "169.254.169.254"))),  # two Host headers
            imds(req(method, target, *headers, peer=("192.0.2.1", 5))),  # not a local peer
            imds(req(method, target, *headers, ("x-forwarded-for", "127.0.0.1"))),
        ]
        for response in refused:
            assert (response.status, response.body, response.ip_ttl) == (403, b"", None), target
    # the token rules: required mode, bad tokens, methods, the token path's variants
    assert get(imds, "/" + CREDS_PATH).status == 401
    assert get(imds, "/" + CREDS_PATH, token[:-1]).status == 401
    assert get(make(holder, clock, mono, tokens="optional"), "/" + CREDS_PATH, "x" * 56).status == 401
    response = imds(req("GET", "//latest/api/token", TTL))
    assert (response.status, header(response, "Allow")) == (405, "OPTIONS, PUT")
    assert imds(req("OPTIONS", "//latest/api/token")).status == 200
    for variant in ["//latest/api/token/", "//2021-03-23/api/token", "//2021-03-23/api/token/"]:
        response = imds(req("PUT", variant, TTL))
        assert (response.status, response.body, response.ip_ttl) == (403, b"", None), variant
    for method in ["PUT", "POST", "DELETE"]:
        response = imds(req(method, "/" + CREDS_PATH, TTL, ("x-aws-ec2-metadata-token", token)))
        assert (response.status, header(response, "Allow")) == (405, "GET, HEAD") and secret not in response.body
    assert get(make(SimpleHolder(None), clock, mono), "/" + CREDS_PATH).status == 401
    unavailable = make(SimpleHolder(None), clock, mono)
    assert get(unavailable, "/" + CREDS_PATH, token_of(unavailable)).status == 503


@pytest.mark.parametrize("slashes", [3, 4, 9])
@pytest.mark.parametrize("tokens", ["required", "optional"])
def test_three_or_more_leading_slashes_reach_nothing(holder, clock, mono, creds, slashes, tokens):
    """Not folded: never a token, never metadata; 404 (or 401 without a token when required), 405 to a PUT."""
    imds = make(holder, clock, mono, tokens=tokens)
    lead = "/" * slashes
    for method in ["PUT", "POST"]:
        response = imds(req(method, lead + "latest/api/token", TTL))
        assert (response.status, header(response, "Allow"), response.ip_ttl) == (405, "GET, HEAD", None)
    token = token_of(imds)
    for path in [lead, lead + "latest/meta-data/", lead + CREDS_PATH[1:], lead + "latest/api/token"]:
        response = get(imds, path, token)
        assert response.status == 404 and creds.secret_access_key.encode() not in response.body, path
        assert get(imds, path).status == (401 if tokens == "required" else 404), path
    assert imds(req("PUT", lead + "latest/api/token/", TTL)).status == 405  # not a token variant either


# -- no valid credentials -----------------------------------------------------


CREDENTIAL_PATHS = [
    META + "iam/security-credentials/",
    CREDS_PATH,
    META + "iam/security-credentials-extended/" + ROLE,
    META + "iam/info",
]


@pytest.mark.parametrize("path", CREDENTIAL_PATHS)
def test_no_credentials_is_503_json(clock, mono, path):
    imds = make(SimpleHolder(None), clock, mono)
    response = get(imds, path, token_of(imds))
    assert response.status == 503
    doc = json.loads(response.body)
    assert set(doc) == {"Code", "Message"}


@pytest.mark.parametrize("path", CREDENTIAL_PATHS)
def test_expired_credentials_are_503_never_200(holder, clock, mono, creds, path):
    imds = make(holder, clock, mono)
    token = token_of(imds)
    clock.advance(6 * 3600 - 1)
    assert get(imds, path, token).status == 200
    clock.advance(1)
    response = get(imds, path, token)
    assert response.status == 503
    assert creds.secret_access_key.encode() not in response.body
    assert json.loads(response.body)["Code"] == "CredentialsExpired"


def test_new_credentials_are_served_at_once(holder, clock, mono):
    imds = make(holder, clock, mono)
    token = token_of(imds)
    fresh = sample_credentials(EPOCH)
    holder.set(fresh)
    assert json.loads(get(imds, CREDS_PATH, token).body)["SecretAccessKey"] == fresh.secret_access_key


def test_static_paths_work_without_credentials(clock, mono):
    imds = make(SimpleHolder(None), clock, mono)
    token = token_of(imds)
    assert get(imds, META + "placement/region", token).status == 200
    assert get(imds, "/latest/dynamic/instance-identity/document", token).status == 200


def test_a_failing_holder_is_a_503_not_a_crash(clock, mono):
    class Broken:
        def current(self):
            raise RuntimeError("boom")

    imds = make(Broken(), clock, mono)
    assert get(imds, CREDS_PATH, token_of(imds)).status == 503
