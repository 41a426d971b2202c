"""The harness itself: the sandbox and the net guard must actually hold."""

import os
import socket

import pytest
import trio

from tests.netguard import NetGuard, OffLoopbackConnection


def test_aws_environment_is_scrubbed(aws_sandbox):
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["HOME"] == str(aws_sandbox)
    assert os.environ["AWS_CONFIG_FILE"].startswith(str(aws_sandbox))
    leaked = [k for k in os.environ if k.startswith("AWS_")]
    assert sorted(leaked) == ["AWS_CONFIG_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_SHARED_CREDENTIALS_FILE"]


@pytest.mark.parametrize("address", [("169.254.169.254", 80), ("fd00:ec2::254", 80, 0, 0), ("10.1.2.3", 443)])
def test_guard_refuses_off_loopback_connects(address):
    guard = NetGuard()
    guard.install()
    try:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            with pytest.raises(OffLoopbackConnection):
                s.connect(address)
    finally:
        guard.uninstall()
    assert guard.violations and address[0] in guard.violations[0]


def test_guard_refuses_dns():
    guard = NetGuard()
    guard.install()
    try:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("sts.amazonaws.com", 443)
    finally:
        guard.uninstall()
    assert guard.violations


def test_guard_catches_swallowed_errors(netguard):
    """botocore swallows connect errors; the record still fails the test."""
    try:
        socket.create_connection(("169.254.169.254", 80), timeout=0.1)
    except OSError:
        pass
    assert "169.254.169.254" in netguard.violations[-1]
    del netguard.violations[-1]  # this test expected it


async def test_guard_allows_loopback():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.aclose()
    for listener in listeners:
        await listener.aclose()


async def test_wall_clock_follows_mock_clock(autojump_clock, wall_clock):
    before = wall_clock.now()
    await trio.sleep(3600)
    assert (wall_clock.now() - before).total_seconds() == 3600
    wall_clock.jump(-7200)
    assert (wall_clock.now() - before).total_seconds() == -3600


@pytest.fixture(scope="module")
def module_environment():
    """What a module-scoped fixture sees: set up before any per-test fixture runs."""
    return dict(os.environ), socket.socket.connect


def test_module_fixtures_are_sandboxed_and_guarded(module_environment):
    environ, connect = module_environment
    assert environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not any(k.startswith("AWS_") and k not in (
        "AWS_CONFIG_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_SHARED_CREDENTIALS_FILE") for k in environ)
    assert not any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in environ)
    assert environ["HOME"] != os.path.expanduser("~root")
    assert connect.__module__ == "tests.netguard"


def test_guard_refuses_off_loopback_sendmsg():
    guard = NetGuard()
    guard.install()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(OffLoopbackConnection):
                s.sendmsg([b"x"], [], 0, ("192.0.2.1", 9))
    finally:
        guard.uninstall()
    assert guard.violations
