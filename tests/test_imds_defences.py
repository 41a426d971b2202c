"""Host allow-list (DNS rebinding), peer checks and X-Forwarded-For (security-and-ops.md S1-S5)."""

from __future__ import annotations

import datetime as dt

import pytest

from metadata_server import ImdsHandler, MetadataConfig, PeerPolicy
from tests.imds_support import SimpleHolder, sample_credentials
from tests.clocks import FixedClock
from wire.http import HttpRequest

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CREDS_PATH = "/latest/meta-data/iam/security-credentials/rolecall-test"
TTL = ("x-aws-ec2-metadata-token-ttl-seconds", "60")


@pytest.fixture
def creds():
    return sample_credentials(EPOCH)


def make(creds, peers=None, **config):
    return ImdsHandler(MetadataConfig(**config), SimpleHolder(creds), FixedClock(EPOCH), lambda: 5.0, peers=peers)


def request(method, target, headers, peer=("127.0.0.1", 5), local=("127.0.0.1", 8169)):
    return HttpRequest(method, target, tuple(headers), b"", peer, local)


def fetch(imds, host, peer=("127.0.0.1", 5), local=("127.0.0.1", 8169), extra=()):
    """Token PUT then credential GET as one client would; the two responses."""
    hosts = [("host", host)] if host is not None else []
    put = imds(request("PUT", "/latest/api/token", [*hosts, TTL, *extra], peer, local))
    token = put.body.decode() if put.status == 200 else "x"
    got = imds(request("GET", CREDS_PATH, [*hosts, ("x-aws-ec2-metadata-token", token), *extra], peer, local))
    return put, got


def assert_refused(responses, creds):
    for response in responses:
        assert response.status == 403
        assert response.body == b""
        assert response.ip_ttl is None


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.169.254:80",
        "[fd00:ec2::254]",
        "[fd00:ec2::254]:80",
        "[FD00:EC2::254]",
        "[fd00:ec2:0:0:0:0:0:254]:80",
        "127.0.0.1:8169",
    ],
)
def test_allowed_hosts(creds, host):
    put, got = fetch(make(creds), host)
    assert (put.status, got.status) == (200, 200)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8169",
        "169.254.169.254.nip.io",
        "169.254.169.254:8080",
        "localhost:8169",
        "127.0.0.1",
        "127.0.0.1:9999",
        "[::1]:8169",
        "",
        "169.254.169.254:",
        "169.254.169.254:80:80",
        "[fd00:ec2::254",
        None,
    ],
)
def test_dns_rebinding_and_other_hosts_are_refused(creds, host):
    assert_refused(fetch(make(creds), host), creds)


def test_two_host_headers_are_refused(creds):
    imds = make(creds)
    response = imds(request("PUT", "/latest/api/token", [("host", "169.254.169.254"), ("host", "evil.example"), TTL]))
    assert response.status == 403


def test_host_is_checked_before_anything_else(creds):
    imds = make(creds, tokens="optional")
    for method, path in [("GET", CREDS_PATH), ("GET", "/nope"), ("POST", "/latest/api/token"), ("PUT", "/x")]:
        response = imds(request(method, path, [("host", "evil.example")]))
        assert (response.status, response.body) == (403, b""), (method, path)


def test_the_address_a_request_arrived_on_is_allowed(creds):
    """Listening on port 0: the real port is allowed, and only on that listener."""
    imds = make(creds, listen=("127.0.0.1:0", "[::1]:0"))
    assert fetch(imds, "127.0.0.1:41234", local=("127.0.0.1", 41234))[1].status == 200
    assert fetch(imds, "[::1]:41235", peer=("::1", 9), local=("::1", 41235))[1].status == 200
    assert fetch(imds, "127.0.0.1:41235", local=("127.0.0.1", 41234))[1].status == 403


def test_port_80_listener_accepts_the_bare_host(creds):
    imds = make(creds, listen=("127.0.0.1:80",))
    assert fetch(imds, "127.0.0.1", local=("127.0.0.1", 80))[1].status == 200
    assert fetch(imds, "127.0.0.1:80", local=("127.0.0.1", 80))[1].status == 200


def test_configured_allowed_hosts_replace_the_default(creds):
    imds = make(creds, allowed_hosts=("localhost:8169",))
    assert fetch(imds, "localhost:8169")[1].status == 200
    assert fetch(imds, "LOCALHOST:8169")[1].status == 200
    assert_refused(fetch(imds, "169.254.169.254"), creds)
    assert_refused(fetch(imds, "127.0.0.1:8169"), creds)


# -- peers ---------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["192.0.2.1", "10.1.2.3", "8.8.8.8", "2001:db8::1", "fe80::1", "not-an-ip"])
def test_non_local_peers_are_refused(creds, peer):
    assert_refused(fetch(make(creds), "169.254.169.254", peer=(peer, 5)), creds)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_are_served(creds, peer):
    put, got = fetch(make(creds), "169.254.169.254", peer=(peer, 5))
    assert (put.status, got.status) == (200, 200)


def test_a_local_interface_address_is_a_local_peer(creds):
    """169.254.169.254 on lo (or any own address) counts: the policy asks the kernel."""
    peers = PeerPolicy(probe=lambda ip: ip == "169.254.169.254")
    put, got = fetch(make(creds, peers=peers), "169.254.169.254", peer=("169.254.169.254", 5))
    assert (put.status, got.status) == (200, 200)


def test_allowed_peers_add_networks(creds):
    imds = make(creds, allowed_peers=("172.17.0.0/16",), hop_limit=2)
    put, got = fetch(imds, "169.254.169.254", peer=("172.17.0.5", 5))
    assert (put.status, got.status) == (200, 200)
    assert put.ip_ttl == 2
    assert_refused(fetch(imds, "169.254.169.254", peer=("172.18.0.5", 5)), creds)
    assert fetch(imds, "169.254.169.254", peer=("127.0.0.1", 5))[1].status == 200


def test_request_without_a_peer_is_refused(creds):
    imds = make(creds)
    response = imds(HttpRequest("PUT", "/latest/api/token", (("host", "169.254.169.254"), TTL)))
    assert response.status == 403


# -- X-Forwarded-For -----------------------------------------------------------------


@pytest.mark.parametrize("tokens", ["required", "optional"])
@pytest.mark.parametrize("value", ["10.0.0.1", "127.0.0.1", ""])
def test_x_forwarded_for_is_refused(creds, tokens, value):
    imds = make(creds, tokens=tokens)
    xff = ("x-forwarded-for", value)
    assert_refused(fetch(imds, "169.254.169.254", extra=(xff,)), creds)
    put, _ = fetch(imds, "169.254.169.254")
    good = put.body.decode()
    response = imds(
        request("GET", CREDS_PATH, [("host", "169.254.169.254"), ("x-aws-ec2-metadata-token", good), xff])
    )
    assert response.status == 403 and response.body == b""
    if tokens == "optional":
        response = imds(request("GET", CREDS_PATH, [("host", "169.254.169.254"), xff]))
        assert response.status == 403
