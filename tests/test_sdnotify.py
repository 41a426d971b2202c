"""sd_notify over a real unix datagram socket: paths, the abstract namespace, the watchdog."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from agent.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier(environ={}, pid=1)
    assert not notifier.enabled
    assert notifier.ready("ready") is False
    assert notifier.stopping() is False
    assert notifier.watchdog is None


def test_ready_status_and_stopping_arrive_as_datagrams(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": path}, pid=1)
    assert notifier.ready("serving role app")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving role app"
    assert notifier.status("line one\nline two")
    assert sock.recv(4096) == b"STATUS=line one line two"  # one field stays one line
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_address():
    name = f"rolecall-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}, pid=1).notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_a_vanished_socket_is_not_an_error(tmp_path):
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}, pid=1)
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.stopping() is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid(environ, expected):
    assert watchdog_interval(environ, 42) == expected


async def test_watchdog_pings_at_half_the_interval(notify_socket, autojump_clock):
    path, sock = notify_socket
    sock.setblocking(False)
    notifier = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, pid=1)
    with trio.move_on_after(9.0):  # pings at t = 0, 2, 4, 6, 8
        await notifier.run_watchdog()
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 5


async def test_watchdog_returns_at_once_without_a_watchdog(notify_socket):
    path, _ = notify_socket
    with trio.fail_after(1):
        await Notifier(environ={"NOTIFY_SOCKET": path}, pid=1).run_watchdog()


@pytest.mark.parametrize("address", ["/run/a\0b", "@" + "x" * 200, "/" + "d" * 300])
def test_an_unusable_notify_socket_is_never_fatal(address):
    notifier = Notifier(environ={"NOTIFY_SOCKET": address}, pid=1)
    assert notifier.enabled and notifier.ready("status \udcff") is False and notifier.stopping() is False
