"""Is a peer this host itself? (security-and-ops.md S1/S2)

Theory of operation
-------------------
A peer is *local* when its address is a loopback address or one assigned to
one of this host's interfaces (in this network namespace) — which includes
169.254.169.254 once it is added to ``lo``. The kernel already knows that set,
so we ask it the cheapest way that cannot be fooled:

1. Loopback (``127.0.0.0/8``, ``::1``, and their IPv4-mapped forms): local.
2. Otherwise try to ``bind()`` a throwaway UDP socket to ``(ip, 0)``. The
   kernel allows that only for an address of this host (``EADDRNOTAVAIL``
   otherwise). Binding sends no packet and needs no privilege.
3. Unless the host lets *any* address be bound (``net.ipv4.ip_nonlocal_bind``
   / ``net.ipv6.ip_nonlocal_bind`` = 1): then step 2 would call every peer
   local, so we read the kernel's own lists instead — the ``/32 host LOCAL``
   entries of ``/proc/net/fib_trie`` and the addresses in
   ``/proc/net/if_inet6``.

Answers are cached per address string in a small LRU with a short TTL, so a
busy peer costs a dict lookup, and an address added or removed is noticed
within ``ttl`` seconds. IPv6 link-local peers (``fe80::/10``) need a scope we
do not get from the serving layer; they are treated as not local unless
``allowed_peers`` names them.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["PeerPolicy", "is_local_address", "local_addresses_from_proc"]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(ip: str) -> _IP | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _nonlocal_bind_enabled(version: int) -> bool:
    name = "ipv4" if version == 4 else "ipv6"
    try:
        with open(f"/proc/sys/net/{name}/ip_nonlocal_bind") as f:
            return f.read().strip() != "0"
    except OSError:
        return False


def _bind_probe(addr: _IP) -> bool:
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(addr), 0))
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL, errno.EAFNOSUPPORT):
                return False
            raise
    return True


def local_addresses_from_proc(
    fib_trie: str = "/proc/net/fib_trie", if_inet6: str = "/proc/net/if_inet6"
) -> frozenset[_IP]:
    """Every address assigned to this namespace's interfaces, from /proc."""
    found: set[_IP] = set()
    try:
        with open(fib_trie) as f:
            last = None
            for line in f:
                text = line.strip()
                if text.startswith("|--"):
                    last = text[3:].strip()
                elif text.startswith("/32 host LOCAL") and last:
                    found.add(ipaddress.IPv4Address(last))
    except OSError:
        pass
    try:
        with open(if_inet6) as f:
            for line in f:
                hexaddr = line.split()[0] if line.strip() else ""
                if len(hexaddr) == 32:
                    found.add(ipaddress.IPv6Address(int(hexaddr, 16)))
    except OSError:
        pass
    return frozenset(found)


def is_local_address(ip: str) -> bool:
    """True when ``ip`` is loopback or an address of this host (uncached)."""
    addr = _parse(ip)
    if addr is None:
        return False
    if addr.is_loopback:
        return True
    if addr.version == 6 and addr.is_link_local:
        return False
    if _nonlocal_bind_enabled(addr.version):
        return addr in local_addresses_from_proc()
    return _bind_probe(addr)


class PeerPolicy:
    """Decides, fast, whether a peer address may be served.

    Args:
        allowed_networks: CIDRs served besides this host's own addresses.
        ttl: seconds an answer is cached.
        size: most addresses cached.
        probe: the uncached locality test (tests substitute one).
        monotonic: the cache's clock.
    """

    __slots__ = ("_networks", "_ttl", "_size", "_probe", "_monotonic", "_cache", "_always")

    def __init__(
        self,
        allowed_networks: Iterable[str] = (),
        *,
        ttl: float = 5.0,
        size: int = 256,
        probe: Callable[[str], bool] = is_local_address,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self._ttl = ttl
        self._size = size
        self._probe = probe
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        # The peers of nearly every request: answered without a clock read.
        self._always = {"127.0.0.1": True, "::1": True, "::ffff:127.0.0.1": True}

    def allows(self, ip: str) -> bool:
        """True when ``ip`` is local or inside an allowed network."""
        fixed = self._always.get(ip)
        if fixed is not None:
            return fixed
        now = self._monotonic()
        hit = self._cache.get(ip)
        if hit is not None and hit[1] > now:
            self._cache.move_to_end(ip)
            return hit[0]
        answer = self._decide(ip)
        self._cache[ip] = (answer, now + self._ttl)
        self._cache.move_to_end(ip)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return answer

    def _decide(self, ip: str) -> bool:
        addr = _parse(ip)
        if addr is None:
            return False
        if any(addr in net for net in self._networks if net.version == addr.version):
            return True
        try:
            return self._probe(ip)
        except OSError:
            return False
