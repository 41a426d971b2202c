"""Hypothesis against the pure handlers: no crash, no 5xx, no credential bytes where they do not belong.

Requests mix the shapes real clients send (valid tokens, the real paths, the
allowed Host values) with arbitrary methods, paths, headers and bodies, so both
the refusals and the successful answers are exercised.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadata_server import ContainerHandler, ImdsHandler, MetadataConfig
from metadata_server.imds import _is_credential_path
from tests.imds_support import SimpleHolder, sample_credentials
from tests.clocks import FixedClock
from wire.http import HttpRequest, HttpResponse

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CREDS = sample_credentials(EPOCH)
SECRETS = [CREDS.secret_access_key.encode(), CREDS.token.encode(), CREDS.access_key_id.encode()]
CONTAINER_TOKEN = "c" * 43
CLOCK = FixedClock(EPOCH)

HANDLERS = {
    (mode, held): ImdsHandler(
        MetadataConfig(tokens=mode), SimpleHolder(CREDS if held else None), CLOCK, lambda: 100.0
    )
    for mode in ("required", "optional")
    for held in (True, False)
}
VALID_TOKENS = {key: handler._tokens.issue(21600) for key, handler in HANDLERS.items()}

REAL_PATHS = [
    "/latest/api/token",
    "/latest/api/token/",
    "/2021-03-23/api/token",
    "/",
    "/latest/",
    "/latest/meta-data/",
    "/latest/meta-data/iam/",
    "/latest/meta-data/iam/info",
    "/latest/meta-data/iam/security-credentials/",
    f"/latest/meta-data/iam/security-credentials/{CREDS.role_name}",
    f"/latest/meta-data/iam/security-credentials-extended/{CREDS.role_name}",
    "/latest/meta-data/placement/availability-zone/",
    "/latest/dynamic/instance-identity/document",
    "/v1/credentials",
]
segment = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#/"), max_size=12)
paths = st.one_of(
    st.sampled_from(REAL_PATHS),
    st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.tuples(st.sampled_from(REAL_PATHS), segment).map(lambda p: p[0] + p[1]),
)
queries = st.one_of(st.just(""), segment.map(lambda q: "?" + q))
methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"]),
    st.text(st.characters(min_codepoint=0x41, max_codepoint=0x5A), min_size=1, max_size=8),
)
values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80).map(str.strip)
names = st.one_of(
    st.sampled_from(
        ["host", "x-aws-ec2-metadata-token", "x-aws-ec2-metadata-token-ttl-seconds", "x-forwarded-for",
         "authorization", "content-type", "origin", "forwarded"]
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)
# Mostly what real clients send, so the fuzz reaches the routes and not only the refusals.
good_hosts = st.sampled_from(["169.254.169.254", "169.254.169.254:80", "[fd00:ec2::254]", "127.0.0.1:8169"])
hosts = st.one_of(good_hosts, good_hosts, good_hosts, st.just("evil.example"), values)
good_peers = st.sampled_from(["127.0.0.1", "::1", "127.0.0.2"])
peers = st.one_of(good_peers, good_peers, good_peers, st.sampled_from(["192.0.2.1", "10.0.0.1"]), values)
usual_methods = st.sampled_from(["GET", "GET", "GET", "PUT", "HEAD"])


extra_names = st.one_of(
    st.sampled_from(["content-type", "origin", "forwarded", "user-agent", "accept"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)


@st.composite
def requests(draw, key):
    """Seven in ten requests look like a real local client's; the rest are anything."""
    realistic = draw(st.integers(0, 9)) < 7
    headers = []
    if realistic or draw(st.booleans()):
        headers.append(("host", draw(good_hosts if realistic else hosts)))
    if draw(st.booleans()):
        headers.append(("x-aws-ec2-metadata-token", draw(st.one_of(st.just(VALID_TOKENS[key]), values))))
    if draw(st.booleans()):
        ttl = draw(st.one_of(st.integers(-5, 30000).map(str), values))
        headers.append(("x-aws-ec2-metadata-token-ttl-seconds", ttl))
    if draw(st.booleans()):
        headers.append(("authorization", draw(st.one_of(st.just(CONTAINER_TOKEN), values))))
    headers += draw(st.lists(st.tuples(extra_names if realistic else names, values), max_size=3))
    headers = draw(st.permutations(headers))
    return HttpRequest(
        draw(usual_methods if realistic else methods),
        draw(paths) + draw(queries),
        tuple(headers),
        draw(st.binary(max_size=64)),
        (draw(good_peers if realistic else peers), draw(st.integers(0, 65535))),
        draw(st.sampled_from([("127.0.0.1", 8169), ("::1", 8169), ("127.0.0.1", 80)])),
    )


def leaks(response: HttpResponse) -> bool:
    header_bytes = "".join(k + v for k, v in response.headers).encode("latin-1")
    return any(secret in response.body or secret in header_bytes for secret in SECRETS)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(sorted(HANDLERS)).flatmap(lambda key: st.tuples(st.just(key), requests(key))))
def test_imds_handler_never_fails_or_leaks(case):
    key, request = case
    held = key[1]
    response = HANDLERS[key](request)
    assert isinstance(response, HttpResponse)
    assert response.status in {200, 400, 401, 403, 404, 405, 503}
    key_path = request.path[:-1] if len(request.path) > 1 and request.path.endswith("/") else request.path
    if response.status == 503:
        assert not held and _is_credential_path(key_path)
    if response.status != 200:
        assert not leaks(response)
    elif leaks(response):
        assert request.method in ("GET", "HEAD") and "/security-credentials" in request.path
    if response.ip_ttl is not None:
        assert (request.method, request.path, response.status) == ("PUT", "/latest/api/token", 200)
    for name, value in response.headers:  # the serving layer would refuse anything else
        assert name.isascii() and value.isprintable() and "\n" not in value


CONTAINER = ContainerHandler(SimpleHolder(CREDS), CONTAINER_TOKEN, CLOCK)


@FUZZ
@given(requests(("required", True)))
def test_container_handler_never_fails_or_leaks(request):
    response = CONTAINER(request)
    assert response.status in {200, 403, 404, 405}
    if response.status != 200:
        assert not leaks(response)
    else:
        assert request.header_values("authorization") == [CONTAINER_TOKEN]
