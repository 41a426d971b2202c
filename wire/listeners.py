"""Listening sockets for the serving layer: "H:P" addresses and systemd's fds.

``open_tcp_listeners(["127.0.0.1:8169", "[::1]:0"])`` binds each address (port
0 picks a free port); ``format_address(sock.getsockname())`` prints it back as
``127.0.0.1:8169`` or ``[::1]:8169``. ``inherited_listeners()`` takes the
sockets systemd passed under socket activation (sd_listen_fds(3): fds from 3,
``LISTEN_FDS`` of them, only when ``LISTEN_PID`` is our pid), so the daemon can
serve 169.254.169.254:80 with no capabilities (security-and-ops.md §4.2).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping, MutableMapping

import trio

__all__ = [
    "format_address",
    "inherited_listeners",
    "inherited_listeners_by_name",
    "is_loopback_host",
    "listen_fds",
    "open_tcp_listeners",
    "parse_address",
]

SD_LISTEN_FDS_START = 3
_ENV_NAMES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def parse_address(text: str) -> tuple[str, int]:
    """``"H:P"`` or ``"[v6]:P"`` -> ``(host, port)``.

    Raises:
        ValueError: no port, a port outside 0-65535, or a bare IPv6 address.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"listen address {text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host.split("%", 1)[0])
    elif ":" in host:
        raise ValueError(f"listen address {text!r}: write IPv6 addresses as [addr]:port")
    return host, int(port_text)


def is_loopback_host(host: str) -> bool:
    """This machine's loopback: ``localhost`` (and ``*.localhost``), 127.0.0.0/8, ``::1``, or an
    IPv4-mapped ``::ffff:127.x.y.z``; an IPv6 zone id, brackets and a trailing dot are ignored.

    The one loopback predicate: listen-address checks, peers, and URLs (``is_loopback_url``) use it.
    """
    host = host.strip("[]").split("%", 1)[0].rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def format_address(sockname: tuple) -> str:
    """A socket address as ``127.0.0.1:8169`` or ``[::1]:8169``."""
    host, port = sockname[0], sockname[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def open_tcp_listeners(addresses: Iterable[str]) -> list[trio.SocketListener]:
    """Bind and listen on every ``"H:P"`` address, in order.

    A name such as ``localhost`` may resolve to several addresses; each gets a
    listener. On any failure the listeners already opened are closed.

    Raises:
        ValueError: a malformed address.
        OSError: an address could not be bound (in use, not local, ...).
    """
    parsed = [parse_address(text) for text in addresses]
    listeners: list[trio.SocketListener] = []
    try:
        for host, port in parsed:
            listeners.extend(await trio.open_tcp_listeners(port, host=host))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


def listen_fds(environ: MutableMapping[str, str] | Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """The ``(fd, name)`` pairs systemd passed to process ``pid``, and forget them.

    Follows sd_listen_fds(3) with ``unset_environment=1``: the variables are
    removed from ``environ`` (when it is mutable) whatever the outcome, so a
    child we start does not believe the fds are its own. Names come from
    ``LISTEN_FDNAMES`` (colon-separated), else ``"unknown"``.

    Raises:
        ValueError: ``LISTEN_PID`` or ``LISTEN_FDS`` is not a number (a
            broken unit, not a reason to fall back to other addresses).
    """
    values = {name: environ.get(name) for name in _ENV_NAMES}
    if isinstance(environ, MutableMapping):
        for name in _ENV_NAMES:
            environ.pop(name, None)
    pid_text, count_text = values["LISTEN_PID"], values["LISTEN_FDS"]
    if not pid_text or not count_text:
        return []
    if not pid_text.isdigit() or not count_text.isdigit():
        raise ValueError(f"socket activation: bad LISTEN_PID={pid_text!r} or LISTEN_FDS={count_text!r}")
    if int(pid_text) != pid:
        return []  # meant for another process (inherited environment)
    count = int(count_text)
    names = (values["LISTEN_FDNAMES"] or "").split(":")
    if len(names) != count:
        names = ["unknown"] * count
    return [(SD_LISTEN_FDS_START + i, names[i]) for i in range(count)]


def inherited_listeners(
    environ: MutableMapping[str, str] | Mapping[str, str] = os.environ, pid: int | None = None
) -> list[trio.SocketListener]:
    """Listeners for the stream sockets systemd passed us (socket activation).

    Each fd is made close-on-exec and non-blocking and wrapped as a
    ``trio.SocketListener``; an empty list when we were not socket-activated.

    Raises:
        ValueError: malformed variables, or a passed fd that is not a
            listening stream socket.
    """
    listeners: list[trio.SocketListener] = []
    try:
        for fd, _name in listen_fds(environ, os.getpid() if pid is None else pid):
            listeners.append(_adopt(fd))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


def inherited_listeners_by_name(
    environ: MutableMapping[str, str] | Mapping[str, str] = os.environ, pid: int | None = None
) -> dict[str, list[trio.SocketListener]]:
    """``inherited_listeners``, grouped by the name systemd gave each fd (``FileDescriptorName=``
    of its socket unit; ``"unknown"`` without ``LISTEN_FDNAMES``)."""
    names = [name for _fd, name in listen_fds(dict(environ), os.getpid() if pid is None else pid)]
    grouped: dict[str, list[trio.SocketListener]] = {}
    for name, listener in zip(names, inherited_listeners(environ, pid), strict=True):
        grouped.setdefault(name, []).append(listener)
    return grouped


def _adopt(fd: int) -> trio.SocketListener:
    try:
        os.set_inheritable(fd, False)
        os.set_blocking(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"socket activation: fd {fd} is not a usable socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ValueError(f"socket activation: fd {fd} is not a listening stream socket")
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))
