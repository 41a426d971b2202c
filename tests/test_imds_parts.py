"""The metadata server's parts: sealed tokens, peer locality, config checks, records, API."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import struct

import pytest

import metadata_server
from metadata_server import MetadataConfig, PeerPolicy, RoleCredentials, TokenSealer
from metadata_server import peers as peers_module
from metadata_server.config import ContainerConfig, default_instance_id, normalize_host
from metadata_server.peers import is_local_address, local_addresses_from_proc
from tests.imds_support import SimpleHolder, sample_credentials
from metadata_server.tokens import parse_ttl

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


# -- tokens ------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 50.0

    def __call__(self):
        return self.t


def test_token_shape_and_round_trip():
    clock = Clock()
    sealer = TokenSealer(clock)
    token = sealer.issue(300)
    assert len(token) == 56 and token.endswith("==")
    assert len(base64.urlsafe_b64decode(token)) == 40
    assert sealer.remaining(token) == 300
    clock.t += 299.5
    assert sealer.remaining(token) == pytest.approx(0.5)
    assert TokenSealer.header_seconds(0.5) == "1"
    clock.t += 0.5
    assert sealer.remaining(token) is None


def test_every_single_bit_flip_is_refused():
    sealer = TokenSealer(Clock())
    raw = bytearray(base64.urlsafe_b64decode(sealer.issue(60)))
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        assert sealer.remaining(base64.urlsafe_b64encode(bytes(flipped)).decode()) is None


def test_extending_the_expiry_needs_the_key():
    """The expiry is authenticated: rewriting it to later breaks the MAC."""
    clock = Clock()
    sealer = TokenSealer(clock)
    raw = base64.urlsafe_b64decode(sealer.issue(1))
    later = struct.pack(">d", clock.t + 10_000)
    forged = base64.urlsafe_b64encode(later + raw[8:]).decode()
    assert sealer.remaining(forged) is None


def test_tokens_with_another_key_or_garbage_are_refused():
    clock = Clock()
    a, b = TokenSealer(clock), TokenSealer(clock)
    assert b.remaining(a.issue(60)) is None
    for junk in ["", "A" * 56, "!" * 56, "é" * 56, a.issue(60)[:-2] + "\n\n", " " + a.issue(60)[1:]]:
        assert a.remaining(junk) is None


def test_token_memory_is_bounded():
    sealer = TokenSealer(Clock())
    for _ in range(10_000):
        sealer.issue(21600)
    assert not hasattr(sealer, "__dict__")  # slots only: key and clock, no per-token state


def test_token_key_is_hidden_and_fixed_keys_are_checked():
    assert "key" not in repr(TokenSealer(Clock(), key=b"k" * 32)).replace("key hidden", "")
    with pytest.raises(ValueError):
        TokenSealer(Clock(), key=b"short")
    with pytest.raises(ValueError):
        TokenSealer(Clock()).issue(0)


@pytest.mark.parametrize(
    ("values", "ttl"),
    [(["1"], 1), (["21600"], 21600), ([" 60 "], 60), (["0"], None), (["21601"], None), ([], None),
     (["1", "1"], None), (["٣"], None), (["1e3"], None), (["123456789"], None)],
)
def test_parse_ttl(values, ttl):
    assert parse_ttl(values) == ttl


# -- peers -------------------------------------------------------------------------


def test_loopback_and_unassigned_addresses():
    assert is_local_address("127.0.0.1")
    assert is_local_address("127.0.0.2")  # all of 127/8 is on lo
    assert is_local_address("::1")
    assert is_local_address("::ffff:127.0.0.3")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: never assigned here; binding sends nothing
    assert not is_local_address("2001:db8::7")
    assert not is_local_address("fe80::1")
    assert not is_local_address("bogus")


def test_every_interface_address_is_local():
    """The kernel's own list (/proc) and the bind probe agree on this host's addresses."""
    addresses = local_addresses_from_proc()
    assert ipaddress.ip_address("127.0.0.1") in addresses
    for addr in addresses:
        if addr.version == 6 and addr.is_link_local:
            continue
        assert is_local_address(str(addr)), addr


def test_nonlocal_bind_hosts_fall_back_to_proc(monkeypatch):
    monkeypatch.setattr(peers_module, "_nonlocal_bind_enabled", lambda version: True)
    monkeypatch.setattr(peers_module, "_bind_probe", lambda addr: pytest.fail("bind probe used"))
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.1")


def test_proc_parsing(tmp_path):
    fib = tmp_path / "fib_trie"
    fib.write_text(
        "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 169.254.169.254\n        /32 host LOCAL\n"
        "     |-- 10.0.0.0\n        /24 link UNICAST\n"
    )
    inet6 = tmp_path / "if_inet6"
    inet6.write_text("fd000ec2000000000000000000000254 01 80 00 80       lo\n")
    found = local_addresses_from_proc(str(fib), str(inet6))
    assert found == {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def test_peer_cache_is_bounded_and_expires():
    calls = []
    now = [0.0]

    def probe(ip):
        calls.append(ip)
        return ip.endswith(".1")

    policy = PeerPolicy(probe=probe, ttl=5.0, size=3, monotonic=lambda: now[0])
    assert policy.allows("10.0.0.1") and not policy.allows("10.0.0.2")
    assert policy.allows("10.0.0.1")
    assert calls == ["10.0.0.1", "10.0.0.2"]
    for i in range(3, 10):
        policy.allows(f"10.0.0.{i}")
    assert len(policy._cache) == 3
    now[0] = 6.0
    policy.allows("10.0.0.9")
    assert calls[-1] == "10.0.0.9"
    assert policy.allows("127.0.0.1") and calls[-1] == "10.0.0.9"  # loopback never probes


def test_probe_errors_deny():
    def probe(ip):
        raise PermissionError

    assert not PeerPolicy(probe=probe).allows("10.9.9.9")


# -- config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tokens": "sometimes"},
        {"hop_limit": 0},
        {"hop_limit": 65},
        {"hop_limit": True},
        {"hop_limit": "1"},
        {"listen": ("127.0.0.1",)},
        {"listen": ("::1:80",)},
        {"allowed_peers": ("10.0.0.0/33",)},
        {"allowed_hosts": ("a:b",)},
        {"region": "Mars"},
        {"availability_zone": "eu-west-1a"},
        {"instance_id": "x-1"},
        {"account_id": "12345"},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        MetadataConfig(**kwargs)


def test_config_defaults():
    config = MetadataConfig(listen=["127.0.0.1:8169", "[::1]:8169"], allowed_peers="10.0.0.0/8")
    assert config.tokens == "required" and config.required and config.hop_limit == 1
    assert config.listen == ("127.0.0.1:8169", "[::1]:8169")
    assert config.allowed_peers == ("10.0.0.0/8",)
    assert config.availability_zone == "us-east-1a"
    assert config.host_allow_list() >= {"169.254.169.254", "169.254.169.254:80", "[fd00:ec2::254]",
                                        "[fd00:ec2::254]:80", "127.0.0.1:8169", "[::1]:8169"}


def test_normalize_host():
    assert normalize_host("[FD00:EC2:0::254]:80") == "[fd00:ec2::254]:80"
    assert normalize_host("Example.COM") == "example.com"
    assert normalize_host("[::1") is None and normalize_host(":80") is None and normalize_host("a:") is None


def test_default_instance_id_is_stable():
    assert default_instance_id() == default_instance_id()
    assert default_instance_id().startswith("i-") and len(default_instance_id()) == 19


def test_container_config_is_loopback_only():
    assert ContainerConfig().listen == ("127.0.0.1:0",)
    ContainerConfig(listen=("[::1]:0", "localhost:0"))
    with pytest.raises(ValueError):
        ContainerConfig(listen=("0.0.0.0:0",))
    with pytest.raises(ValueError):
        ContainerConfig(path="credentials")


# -- credentials ------------------------------------------------------------------


def test_credentials_hide_secrets():
    creds = sample_credentials(EPOCH)
    text = repr(creds) + str(creds) + repr(SimpleHolder(creds))
    assert creds.secret_access_key not in text and creds.token not in text
    assert creds.access_key_id in text


@pytest.mark.parametrize(
    "change",
    [
        {"role_name": "a b"},
        {"role_name": "a/b"},
        {"role_name": ""},
        {"role_name": "r\n"},
        {"secret_access_key": ""},
        {"account_id": "12"},
        {"expiration": dt.datetime(2026, 1, 1)},
    ],
)
def test_bad_credentials_are_refused(change):
    base = dict(
        role_name="r", access_key_id="ASIA1", secret_access_key="s", token="t",
        expiration=EPOCH, last_updated=EPOCH, account_id=None,
    )
    with pytest.raises(ValueError):
        RoleCredentials(**{**base, **change})


def test_simple_holder():
    holder = SimpleHolder()
    assert holder.current() is None
    creds = sample_credentials(EPOCH)
    holder.set(creds)
    assert holder.current() is creds
    holder.clear()
    assert holder.current() is None
    assert isinstance(holder, metadata_server.CredentialHolder)


def test_public_api():
    assert sorted(metadata_server.__all__) == metadata_server.__all__
    for name in metadata_server.__all__:
        assert getattr(metadata_server, name) is not None
