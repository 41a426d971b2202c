"""Refuse, loudly, any connection that would leave this machine's loopback.

Installed for every test by conftest. It patches the stdlib socket methods that
every Python client ends in (urllib3/botocore, httpx/httpcore, trio, asyncio), so
an SDK that falls through to 169.254.169.254 is stopped before a packet leaves.
A refused attempt raises ``OffLoopbackConnection`` (an ``OSError``, so the caller
sees a failed connect) *and* is recorded, and the fixture fails the test even when
the caller swallowed the error — botocore's IMDS fetcher does exactly that.
Children are not covered: give every subprocess a loopback endpoint or
``AWS_EC2_METADATA_DISABLED=true``.
"""

from __future__ import annotations

import ipaddress
import socket

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class OffLoopbackConnection(OSError):
    pass


def _is_loopback_host(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class NetGuard:
    """Patches socket.connect/connect_ex/sendto/sendmsg and getaddrinfo."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._saved: list[tuple[object, str, object]] = []

    def _check(self, sock_family: int, address: object, what: str) -> None:
        if sock_family not in (socket.AF_INET, socket.AF_INET6):
            return  # unix sockets (sd_notify, the control socket) stay on the host
        host = address[0] if isinstance(address, tuple) and address else address
        if not _is_loopback_host(host):
            message = f"test tried to {what} {address!r}: only loopback is allowed"
            self.violations.append(message)
            raise OffLoopbackConnection(message)

    def _patch(self, owner: object, name: str, replacement: object) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def install(self) -> None:
        guard = self
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_sendto = socket.socket.sendto
        real_sendmsg = socket.socket.sendmsg
        real_getaddrinfo = socket.getaddrinfo

        def connect(sock, address):
            guard._check(sock.family, address, "connect to")
            return real_connect(sock, address)

        def connect_ex(sock, address):
            guard._check(sock.family, address, "connect to")
            return real_connect_ex(sock, address)

        def sendto(sock, data, *args):
            guard._check(sock.family, args[-1], "send a datagram to")
            return real_sendto(sock, data, *args)

        def sendmsg(sock, buffers, ancdata=(), flags=0, address=None):
            if address is None:
                return real_sendmsg(sock, buffers, ancdata, flags)
            guard._check(sock.family, address, "send a message to")
            return real_sendmsg(sock, buffers, ancdata, flags, address)

        def getaddrinfo(host, *args, **kwargs):
            # Resolving a literal address sends nothing; resolving a name would
            # ask a DNS server off this machine.
            if host is not None and not _is_loopback_host(host):
                try:
                    ipaddress.ip_address(str(host, "ascii") if isinstance(host, bytes) else host)
                except ValueError:
                    message = f"test tried to resolve {host!r}: no DNS in tests"
                    guard.violations.append(message)
                    raise socket.gaierror(socket.EAI_NONAME, message) from None
            return real_getaddrinfo(host, *args, **kwargs)

        self._patch(socket.socket, "connect", connect)
        self._patch(socket.socket, "connect_ex", connect_ex)
        self._patch(socket.socket, "sendto", sendto)
        self._patch(socket.socket, "sendmsg", sendmsg)
        self._patch(socket, "getaddrinfo", getaddrinfo)

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)
