"""The IMDS over real loopback sockets: listeners, wire bytes, hop limit, virtual-time expiry."""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import socket
import struct

import pytest
import trio

from metadata_server import MetadataConfig, serve_metadata
from tests.imds_support import SimpleHolder, http_request, sample_credentials
from wire.clock import SystemClock
from tests.servers import requires_ipv6

ROLE = "rolecall-test"
CREDS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"


async def start(nursery, holder, clock, **config):
    config.setdefault("listen", ("127.0.0.1:0",))
    return await nursery.start(serve_metadata, MetadataConfig(**config), holder, clock)


async def token_for(address, ttl="21600"):
    status, headers, body = await http_request(address, "PUT", "/latest/api/token", [(TTL_HEADER, ttl)])
    assert status == 200, body
    return body.decode()


@requires_ipv6
async def test_serves_on_ipv4_and_ipv6_and_reports_addresses(nursery):
    creds = sample_credentials(SystemClock().now())
    addresses = await start(nursery, SimpleHolder(creds), SystemClock(), listen=("127.0.0.1:0", "[::1]:0"))
    assert addresses[0].startswith("127.0.0.1:") and addresses[1].startswith("[::1]:")
    for address in addresses:
        token = await token_for(address)
        status, headers, body = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
        assert status == 200 and creds.secret_access_key.encode() in body
        assert headers["content-type"] == "text/plain"
        assert headers["content-length"] == str(len(body))
        assert headers[TTL_HEADER] == "21600"
        # the serving address itself is an allowed Host
        status, _, _ = await http_request(
            address, "GET", CREDS_PATH, [("Host", address), ("X-aws-ec2-metadata-token", token)]
        )
        assert status == 200
    nursery.cancel_scope.cancel()


async def test_inherited_listeners_are_served(nursery):
    """Socket activation: the server takes the sockets it is handed and binds nothing itself."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    creds = sample_credentials(SystemClock().now())
    config = MetadataConfig(listen=("127.0.0.1:1",))  # would fail to bind as non-root; must be ignored
    addresses = await nursery.start(
        lambda task_status: serve_metadata(config, SimpleHolder(creds), SystemClock(), listeners=listeners,
                                           task_status=task_status)
    )
    token = await token_for(addresses[0])
    status, _, _ = await http_request(addresses[0], "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 200
    nursery.cancel_scope.cancel()


async def test_head_and_refusals_over_the_wire(nursery):
    creds = sample_credentials(SystemClock().now())
    (address,) = await start(nursery, SimpleHolder(creds), SystemClock())
    token = await token_for(address)
    status, headers, body = await http_request(address, "HEAD", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert (status, body) == (200, b"") and int(headers["content-length"]) > 100
    status, headers, body = await http_request(address, "GET", "/latest/api/token")
    assert (status, headers["allow"]) == (405, "OPTIONS, PUT")
    status, headers, body = await http_request(
        address, "GET", CREDS_PATH, [("Host", "attacker.example:80"), ("X-aws-ec2-metadata-token", token)]
    )
    assert (status, body, headers["content-length"]) == (403, b"", "0")
    status, _, body = await http_request(address, "PUT", "/latest/api/token/", [(TTL_HEADER, "60")])
    assert (status, body) == (403, b"")
    nursery.cancel_scope.cancel()


async def test_a_leading_double_slash_over_the_wire(nursery):
    """``http://H:P/`` + ``/latest/...``: the serving layer hands ``//`` to the handler, which reads it as ``/``."""
    creds = sample_credentials(SystemClock().now())
    (address,) = await start(nursery, SimpleHolder(creds), SystemClock())
    status, headers, body = await http_request(address, "PUT", "//latest/api/token", [(TTL_HEADER, "60")])
    assert (status, headers[TTL_HEADER]) == (200, "60")
    token = [("X-aws-ec2-metadata-token", body.decode())]
    status, headers, body = await http_request(address, "GET", "/" + CREDS_PATH, token)
    assert status == 200 and creds.secret_access_key.encode() in body and headers[TTL_HEADER] == "60"
    status, _, body = await http_request(address, "GET", "//" + CREDS_PATH, token)  # three: not folded
    assert status == 404 and creds.secret_access_key.encode() not in body
    status, _, _ = await http_request(address, "PUT", "///latest/api/token", [(TTL_HEADER, "60")])
    assert status == 405
    status, _, body = await http_request(address, "GET", "/" + CREDS_PATH, [*token, ("Host", "attacker.example")])
    assert (status, body) == (403, b"")
    nursery.cancel_scope.cancel()


async def test_no_credentials_answers_503_at_once(nursery):
    holder = SimpleHolder(None)
    (address,) = await start(nursery, holder, SystemClock())
    token = await token_for(address)
    with trio.fail_after(1):
        status, headers, body = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 503 and b'"Code" : "CredentialsUnavailable"' in body
    holder.set(sample_credentials(SystemClock().now()))
    status, _, _ = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 200
    nursery.cancel_scope.cancel()


# -- virtual time: MockClock drives both the token clock and the wall clock -------------


async def test_token_expires_in_virtual_time(nursery, autojump_clock, wall_clock):
    holder = SimpleHolder(sample_credentials(wall_clock.now()))
    (address,) = await start(nursery, holder, wall_clock)
    token = await token_for(address, "60")
    await trio.sleep(59.5)
    status, headers, _ = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert (status, headers[TTL_HEADER]) == (200, "1")
    await trio.sleep(0.5)
    status, headers, body = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 401 and b"401 - Unauthorized" in body and TTL_HEADER not in headers
    nursery.cancel_scope.cancel()


async def test_credentials_expire_in_virtual_time(nursery, autojump_clock, wall_clock):
    creds = sample_credentials(wall_clock.now(), lifetime=dt.timedelta(hours=1))
    (address,) = await start(nursery, SimpleHolder(creds), wall_clock)
    await trio.sleep(creds.expiration.timestamp() - wall_clock.now().timestamp() - 1)
    token = await token_for(address)
    status, _, body = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 200
    await trio.sleep(1)
    status, _, body = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 503 and creds.secret_access_key.encode() not in body
    nursery.cancel_scope.cancel()


async def test_wall_clock_jump_expires_credentials(nursery, autojump_clock, wall_clock):
    """A resume from sleep (wall clock jumps, monotonic does not) never serves expired keys."""
    creds = sample_credentials(wall_clock.now())
    (address,) = await start(nursery, SimpleHolder(creds), wall_clock)
    token = await token_for(address)
    wall_clock.jump(7 * 3600)
    status, _, _ = await http_request(address, "GET", CREDS_PATH, [("X-aws-ec2-metadata-token", token)])
    assert status == 503
    nursery.cancel_scope.cancel()


# -- the token response leaves with the hop limit (observed on lo, as root) -------------


def _port_filter(port: int) -> bytes:
    """Classic BPF for lo's Ethernet framing: keep TCP segments from ``port`` (IPv4 or IPv6)."""
    program = [
        (0x28, 0, 0, 12),  # 0: A = ethertype
        (0x15, 0, 5, 0x0800),  # 1: IPv4? else 7
        (0x30, 0, 0, 23),  # 2: A = protocol
        (0x15, 0, 9, 6),  # 3: TCP? else drop
        (0xB1, 0, 0, 14),  # 4: X = IPv4 header length
        (0x48, 0, 0, 14),  # 5: A = source port
        (0x05, 0, 0, 4),  # 6: goto 11
        (0x15, 0, 5, 0x86DD),  # 7: IPv6? else drop
        (0x30, 0, 0, 20),  # 8: A = next header
        (0x15, 0, 3, 6),  # 9: TCP? else drop
        (0x28, 0, 0, 54),  # 10: A = source port
        (0x15, 0, 1, port),  # 11: our port? else drop
        (0x06, 0, 0, 262144),  # 12: keep
        (0x06, 0, 0, 0),  # 13: drop
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


def _sniffer(port: int):
    """An AF_PACKET socket on lo that sees only the server's segments (other tests load lo too)."""
    if os.geteuid() != 0 or not hasattr(socket, "AF_PACKET"):
        pytest.skip("needs root and AF_PACKET to read IP TTLs off lo")
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # nothing queued before the filter
    code = ctypes.create_string_buffer(_port_filter(port))
    program = struct.pack("HL", len(code.raw) // 8, ctypes.addressof(code))
    sniffer.setsockopt(socket.SOL_SOCKET, 26, program)  # SO_ATTACH_FILTER
    sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sniffer.bind(("lo", 0x0003))  # ETH_P_ALL; CPython applies htons to the protocol
    sniffer.setblocking(False)
    return sniffer


def _ttls_from(sniffer, port):
    """(TTL or hop limit, TCP payload) of each packet sent from ``port`` on lo."""
    found = []
    while True:
        try:
            frame = sniffer.recv(65535)
        except BlockingIOError:
            return found
        packet = frame[14:]
        if packet[0] >> 4 == 4 and packet[9] == 6:
            ttl, tcp = packet[8], packet[(packet[0] & 0xF) * 4 :]
        elif packet[0] >> 4 == 6 and packet[6] == 6:
            ttl, tcp = packet[7], packet[40:]
        else:
            continue
        if struct.unpack("!H", tcp[:2])[0] == port:
            payload = tcp[(tcp[12] >> 4) * 4 :]
            if payload:
                found.append((ttl, payload))


@pytest.mark.parametrize("token_path", ["/latest/api/token", "//latest/api/token"])
@pytest.mark.parametrize("listen", ["127.0.0.1:0", pytest.param("[::1]:0", marks=requires_ipv6)])
@pytest.mark.parametrize("hop_limit", [1, 3])
async def test_token_response_hop_limit_on_the_wire(nursery, listen, hop_limit, token_path):
    creds = sample_credentials(SystemClock().now())
    (address,) = await start(nursery, SimpleHolder(creds), SystemClock(), listen=(listen,), hop_limit=hop_limit)
    port = int(address.rsplit(":", 1)[1])
    sniffer = _sniffer(port)
    with sniffer:
        stream = await trio.open_tcp_stream(address.rsplit(":", 1)[0].strip("[]"), port)
        async with stream:  # one keep-alive connection: PUT, then GET
            await stream.send_all(
                b"PUT " + token_path.encode() + b" HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n"
            )
            reply = await stream.receive_some(65536)
            token = reply.rsplit(b"\r\n\r\n", 1)[1]
            await trio.sleep(0.05)
            await stream.send_all(
                b"GET " + CREDS_PATH.encode() + b" HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                b"X-aws-ec2-metadata-token: " + token + b"\r\n\r\n"
            )
            await stream.receive_some(65536)
            await trio.sleep(0.05)
        seen = _ttls_from(sniffer, port)
    token_ttls = {ttl for ttl, payload in seen if token in payload and b"AccessKeyId" not in payload}
    creds_ttls = {ttl for ttl, payload in seen if b"AccessKeyId" in payload}
    assert token_ttls == {hop_limit}
    assert creds_ttls and hop_limit not in creds_ttls
    nursery.cancel_scope.cancel()
