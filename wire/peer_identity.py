"""Who is on the other end of a loopback TCP connection: the kernel's answer, not the client's word.

Theory of operation
-------------------
A server that accepted a connection from ``peer`` at ``local`` asks the kernel,
through NETLINK_SOCK_DIAG (sock_diag(7)), for the *client's* socket: the TCP
socket whose own address is ``peer`` and whose remote address is ``local``. One
``SOCK_DIAG_BY_FAMILY`` request with an exact ``inet_diag_sockid`` and no
``NLM_F_DUMP`` is an exact lookup (the kernel's ``inet_diag_find_one_icsk``);
the reply is one ``inet_diag_msg`` or an ``NLMSG_ERROR`` (``ENOENT``: no such
socket). The message carries ``idiag_uid`` (the socket owner, ``sock_i_uid``:
the uid that created it, which no later setuid or fd passing changes) and
``idiag_inode``; since Linux 5.7 ``INET_DIAG_CGROUP_ID`` (attribute 21, u64) is
sent unconditionally, with no ``idiag_ext`` bit: the cgroup v2 id of the cgroup
the socket was *created* in (a process that moves afterwards keeps reporting
the old one). Verified on 6.18 by experiment: unprivileged callers get other
users' sockets, uid and cgroup id included (only ``INET_DIAG_MARK`` needs
CAP_NET_ADMIN), as ``ss -tie`` run by any user shows.

What we refuse to believe: a reply whose socket id is not the one we asked for
(the kernel's lookup falls back to *listening* sockets, so a peer port that
some listener also uses would otherwise report the listener's owner), and a
socket with no inode: an orphan (the client closed it) or a TIME_WAIT
mini-socket, whose ``idiag_uid`` is 0 and must never read as root. Both give
``None``, as does a peer that is not on this host (no socket has its address).

The cgroup id is the inode number of the cgroup's directory in the cgroup2
mount (kernfs ids are inode numbers on 64-bit kernels). ``CgroupPaths`` finds
that mount in /proc/self/mountinfo (``/sys/fs/cgroup`` on a pure v2 host,
``/sys/fs/cgroup/unified`` on a hybrid one), walks it on the first miss and
caches id -> path; cgroups come and go, so a later miss walks again, at most
once per ``rewalk_interval`` (1 s) so a stream of unknown ids costs one walk a
second. The path is what ``/proc/PID/cgroup`` shows on its ``0::`` line.

Errors: ``lookup`` returns ``None`` for "no such socket"; anything else the
kernel or the reply does wrong raises ``PeerLookupError`` (an ``OSError``), which
callers treat as an unidentified caller.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CgroupPaths", "DiagReply", "PeerIdentity", "PeerLookupError", "cgroup2_mount", "encode_request",
           "lookup", "parse_reply", "query"]

NETLINK_SOCK_DIAG = 4  # <linux/netlink.h>; Python's socket module lacks the name
SOCK_DIAG_BY_FAMILY = 20  # <linux/sock_diag.h>
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
INET_DIAG_CGROUP_ID = 21  # <linux/inet_diag.h>, Linux 5.7+
_ALL_STATES = 0xFFFFFFFF
_NO_COOKIE = b"\xff" * 8  # INET_DIAG_NOCOOKIE in both words: match any socket generation

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid:
# sport, dport (big-endian), src[16], dst[16], if, cookie[2].
_REQ = struct.Struct("=BBBxI2s2s16s16sI8s")
# inet_diag_msg: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid, inode.
_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
_NLMSGERR = struct.Struct("=i")
_NLATTR = struct.Struct("=HH")
_U64 = struct.Struct("=Q")


class PeerLookupError(OSError):
    """The kernel refused the query or sent a reply we cannot read (never "no such socket")."""


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    uid: int  # the owner (sock_i_uid) of the peer's socket
    cgroup_id: int | None  # INET_DIAG_CGROUP_ID (cgroup v2 id); None when the kernel gave none
    cgroup: str | None  # that cgroup's path in the v2 hierarchy, "/system.slice/web.service"; None if unknown

    @property
    def unit(self) -> str | None:
        """The innermost systemd unit in ``cgroup``: the last component ending in .service or .scope."""
        for part in reversed((self.cgroup or "").split("/")):
            if part.endswith((".service", ".scope")):
                return part
        return None


@dataclass(frozen=True, slots=True)
class DiagReply:
    """The fields of one ``inet_diag_msg`` that identification needs."""

    family: int
    state: int
    src: tuple[bytes, int]  # (packed address, 16 bytes, zero-padded for IPv4; port)
    dst: tuple[bytes, int]
    uid: int
    inode: int
    cgroup_id: int | None


def _sockid(host: str) -> tuple[int, bytes]:
    """``(family, 16-byte address)`` of a textual address; a zone id is ignored."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, address.packed.ljust(16, b"\0")


def _query_key(local: tuple[str, int], peer: tuple[str, int]) -> tuple[int, tuple[bytes, int], tuple[bytes, int]]:
    """``(family, src, dst)`` of the client's socket: src is the peer, dst is our end.

    Two IPv4-mapped addresses (a dual-stack listener's view of an IPv4 client) become AF_INET,
    the family of the client's socket.
    """
    local_ip, peer_ip = (ipaddress.ip_address(a[0].split("%", 1)[0]) for a in (local, peer))
    if local_ip.version == 6 and peer_ip.version == 6 and local_ip.ipv4_mapped and peer_ip.ipv4_mapped:
        local, peer = (str(local_ip.ipv4_mapped), local[1]), (str(peer_ip.ipv4_mapped), peer[1])
    family, src = _sockid(peer[0])
    local_family, dst = _sockid(local[0])
    if family != local_family:
        raise ValueError(f"peer {peer[0]!r} and local {local[0]!r} are of different address families")
    return family, (src, peer[1]), (dst, local[1])


def encode_request(local: tuple[str, int], peer: tuple[str, int], seq: int) -> bytes:
    """The netlink message asking for the client socket of the connection ``peer`` -> ``local``."""
    return _encode(_query_key(local, peer), seq)


def _encode(key: tuple[int, tuple[bytes, int], tuple[bytes, int]], seq: int) -> bytes:
    family, (src, sport), (dst, dport) = key
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES,
                     sport.to_bytes(2, "big"), dport.to_bytes(2, "big"), src, dst, 0, _NO_COOKIE)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def _attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """Netlink attributes (type -> payload) in ``data[offset:end]``."""
    found = {}
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            raise PeerLookupError(errno.EBADMSG, f"sock_diag reply: attribute of length {length} overruns")
        found[kind & 0x3FFF] = data[offset + _NLATTR.size:offset + length]  # drop NLA_F_NESTED/BYTEORDER
        offset += (length + 3) & ~3
    return found


def parse_reply(data: bytes, seq: int) -> DiagReply | None:
    """The ``inet_diag_msg`` of our exact lookup ``seq``; ``None`` for ENOENT ("no such socket").

    Raises:
        PeerLookupError: a truncated or foreign message, or another kernel error (its errno).
    """
    if len(data) < _NLMSGHDR.size:
        raise PeerLookupError(errno.EBADMSG, f"sock_diag reply of {len(data)} bytes has no header")
    length, kind, _flags, reply_seq, _pid = _NLMSGHDR.unpack_from(data)
    if length < _NLMSGHDR.size or length > len(data):
        raise PeerLookupError(errno.EBADMSG, f"sock_diag reply truncated: {len(data)} of {length} bytes")
    if reply_seq != seq:
        raise PeerLookupError(errno.EBADMSG, f"sock_diag reply to request {reply_seq}, not {seq}")
    if kind == NLMSG_ERROR:
        if length < _NLMSGHDR.size + _NLMSGERR.size:
            raise PeerLookupError(errno.EBADMSG, "sock_diag error reply truncated")
        (code,) = _NLMSGERR.unpack_from(data, _NLMSGHDR.size)
        if -code == errno.ENOENT:
            return None
        raise PeerLookupError(-code, f"sock_diag: {os.strerror(-code)}")
    if kind != SOCK_DIAG_BY_FAMILY or length < _NLMSGHDR.size + _MSG.size:
        raise PeerLookupError(errno.EBADMSG, f"sock_diag reply of type {kind}, {length} bytes")
    (family, state, _timer, _retrans, sport, dport, src, dst, _if, _cookie,
     _expires, _rqueue, _wqueue, uid, inode) = _MSG.unpack_from(data, _NLMSGHDR.size)
    attributes = _attributes(data, _NLMSGHDR.size + _MSG.size, length)
    cgroup = attributes.get(INET_DIAG_CGROUP_ID)
    cgroup_id = _U64.unpack(cgroup)[0] if cgroup is not None and len(cgroup) == _U64.size else None
    return DiagReply(family, state, (src, int.from_bytes(sport, "big")), (dst, int.from_bytes(dport, "big")),
                     uid, inode, cgroup_id)


def _owner(reply: DiagReply | None, family: int, src: tuple[bytes, int], dst: tuple[bytes, int]) -> DiagReply | None:
    """``reply`` when it is the live socket we asked for, else ``None`` (see the module docstring)."""
    if reply is None or (reply.family, reply.src, reply.dst) != (family, src, dst):
        return None  # a listener the kernel fell back to, or not our socket at all
    return reply if reply.inode else None  # orphaned or TIME_WAIT: no owner left (and uid reads 0)


class CgroupPaths:
    """cgroup v2 id -> path in the v2 hierarchy ("/system.slice/web.service"), cached.

    Args:
        mount: the cgroup2 mount point; by default the one in /proc/self/mountinfo.
        prefix: the mount's root within the hierarchy (mountinfo's fourth field); "/" normally.
        clock: monotonic seconds, injected so tests control when a miss may walk again.
        rewalk_interval: the least time between two walks of the tree.
    """

    def __init__(self, mount: str | None = None, prefix: str = "/", *,
                 clock: Callable[[], float] = time.monotonic, rewalk_interval: float = 1.0) -> None:
        self._mount, self._prefix = mount, prefix
        self._found_mount = mount is not None
        self._clock, self._interval = clock, rewalk_interval
        self._paths: dict[int, str] = {}
        self._walked_at: float | None = None
        self._lock = threading.Lock()
        self.walks = 0  # how many times the tree was walked (for tests and stats)

    def path(self, cgroup_id: int) -> str | None:
        """The path of ``cgroup_id``, walking the tree on a miss at most once per interval."""
        found = self._paths.get(cgroup_id)
        if found is not None:
            return found
        with self._lock:
            if cgroup_id not in self._paths and self._may_walk():
                self._paths = self._walk()
        return self._paths.get(cgroup_id)

    def _may_walk(self) -> bool:
        now = self._clock()
        if self._walked_at is not None and now - self._walked_at < self._interval:
            return False
        self._walked_at = now
        return True

    def _walk(self) -> dict[int, str]:
        if not self._found_mount:
            self._mount, self._prefix = cgroup2_mount() or (None, "/")
            self._found_mount = True
        if self._mount is None:
            return {}
        self.walks += 1
        try:
            paths = {os.stat(self._mount).st_ino: self._prefix}
        except OSError:
            return {}
        pending = [(self._mount, self._prefix.rstrip("/"))]
        while pending:
            directory, name = pending.pop()
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            path = f"{name}/{entry.name}"
                            paths[entry.inode()] = path
                            pending.append((entry.path, path))
            except OSError:
                continue  # removed while we walked, or not ours to read
        return paths


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
    """``(mount point, root within the hierarchy)`` of the first cgroup2 mount, or ``None``."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        fields, _, tail = line.partition(" - ")
        if tail.split(" ", 1)[0] == "cgroup2":
            parts = fields.split(" ")
            return _unescape(parts[4]), _unescape(parts[3])
    return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


_local = threading.local()
_seq = itertools.count(1)
_default_paths = CgroupPaths()


def _diag_socket() -> socket.socket:
    """This thread's sock_diag socket: one per thread, so concurrent lookups never share replies."""
    sock = getattr(_local, "sock", None)
    if sock is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        sock.settimeout(1.0)  # the kernel answers within send(); this only bounds a broken kernel
        sock.connect((0, 0))
        _local.sock = sock
    return sock


def _ask(request: bytes, seq: int) -> DiagReply | None:
    """Send ``request`` on this thread's socket and read its answer; a socket that failed is dropped."""
    try:
        sock = _diag_socket()
    except OSError as exc:  # no AF_NETLINK, or no sock_diag in this kernel
        raise PeerLookupError(exc.errno, f"sock_diag socket: {exc.strerror}") from exc
    try:
        sock.send(request)
        while True:
            data = sock.recv(65536)
            try:
                return parse_reply(data, seq)
            except PeerLookupError:
                if len(data) >= _NLMSGHDR.size and _NLMSGHDR.unpack_from(data)[3] < seq:
                    continue  # a late answer to a request that failed earlier on this thread
                raise
    except OSError as exc:
        _local.sock = None
        sock.close()
        if isinstance(exc, PeerLookupError):
            raise
        raise PeerLookupError(exc.errno or errno.EIO, f"sock_diag: {exc.strerror or exc}") from exc


def query(local: tuple[str, int], peer: tuple[str, int]) -> DiagReply | None:
    """The kernel's raw answer for the client socket of ``peer`` -> ``local``, unchecked.

    ``lookup`` is what callers want; this shows what it refuses (a listener, an orphan).

    Raises:
        PeerLookupError: as ``lookup``.
    """
    seq = next(_seq) & 0xFFFFFFFF
    return _ask(encode_request(local, peer, seq), seq)


def lookup(local: tuple[str, int], peer: tuple[str, int], *, paths: CgroupPaths | None = None) -> PeerIdentity | None:
    """The owner of the client socket of a loopback TCP connection that this host accepted at
    `local` from `peer` (both as the server's socket reports them, IPv4 or IPv6). Blocking; one
    netlink round trip plus a cached cgroup-path lookup. None when the kernel does not know the
    socket (gone already) or the peer is not on this host.

    Raises:
        PeerLookupError: the kernel refused the query or answered garbage (treat as unidentified).
        ValueError: an address that is not an IP literal.
    """
    key = _query_key(local, peer)
    seq = next(_seq) & 0xFFFFFFFF
    reply = _owner(_ask(_encode(key, seq), seq), *key)
    if reply is None:
        return None
    cgroup = None if reply.cgroup_id is None else (paths or _default_paths).path(reply.cgroup_id)
    return PeerIdentity(reply.uid, reply.cgroup_id, cgroup)


def self_check() -> str | None:
    """Why callers cannot be identified here, or None when they can: one loopback connection of
    our own, looked up as a server would (run once at start, so a sandbox that forbids netlink
    is one clear log line instead of every caller silently unidentified)."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server, \
                socket.create_connection(server.getsockname()[:2], timeout=2) as client:
            accepted, _ = server.accept()
            with accepted:
                found = lookup(accepted.getsockname()[:2], accepted.getpeername()[:2])
            mine = client.getsockname()[:2]
    except OSError as exc:
        return f"the kernel's socket diagnostics are not available ({exc.strerror or exc})"
    if found is None:
        return f"the kernel did not report the owner of our own test connection from {mine[0]}:{mine[1]}"
    return None


def all_uids_visible(uid_map: str = "/proc/self/uid_map") -> bool:
    """True unless this process runs in a user namespace that maps only some uids (systemd's
    ``PrivateUsers=yes``): there the kernel reports every unmapped owner as the overflow uid
    65534, so uids can tell no two other users apart."""
    try:
        with open(uid_map, encoding="ascii") as f:
            ranges = [line.split() for line in f if line.strip()]
    except OSError:
        return True   # no /proc: nothing says uids are hidden
    return any(r == ["0", "0", "4294967295"] for r in ranges)

