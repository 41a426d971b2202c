"""wire.peer_identity: the kernel's owner of a loopback TCP peer, over real sockets.

Two layers. Pure: the request bytes against the kernel's struct layout written out
by hand, replies (one captured from Linux 6.18, the rest hand-made) through
``parse_reply``, ``CgroupPaths`` on a temp tree with an injected clock. Real: loopback
connections, IPv4 and IPv6, checked against ``ss -tep`` and /proc/PID/cgroup; as
root, clients under ``setpriv --reuid=65534`` (bash's /dev/tcp, so no interpreter
needs to be readable by that uid) and in a cgroup v2 group made for the test.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from wire.peer_identity import (
    CgroupPaths,
    PeerIdentity,
    PeerLookupError,
    cgroup2_mount,
    encode_request,
    lookup,
    parse_reply,
    query,
)

ROOT = Path(__file__).resolve().parents[1]
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start clients under another uid")
needs_setpriv = pytest.mark.skipif(not shutil.which("setpriv") or not shutil.which("bash"),
                                   reason="needs setpriv(1) and bash")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="::1 is not available")),
]

# --- pure: request bytes -------------------------------------------------------------------

# struct nlmsghdr + struct inet_diag_req_v2 (<linux/inet_diag.h>), written out field by field.
REQUEST_V4 = bytes.fromhex(
    "48000000" "1400" "0100" "05000000" "00000000"  # len 72, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq 5, pid 0
    "02" "06" "00" "00" "ffffffff"                  # AF_INET, IPPROTO_TCP, no ext, pad, all states
    "9f6c" "87d7"                                   # sport 40812 (the peer), dport 34775 (us), big-endian
    "7f000001" + "00" * 12 +                        # src: 127.0.0.1
    "7f000001" + "00" * 12 +                        # dst: 127.0.0.1
    "00000000" "ffffffffffffffff"                   # any interface, INET_DIAG_NOCOOKIE
)


def test_request_is_an_exact_lookup_of_the_peer_socket():
    assert encode_request(("127.0.0.1", 34775), ("127.0.0.1", 40812), 5) == REQUEST_V4


def test_ipv4_mapped_addresses_ask_for_the_ipv4_socket():
    mapped = encode_request(("::ffff:127.0.0.1", 34775), ("::ffff:127.0.0.1", 40812), 5)
    assert mapped == REQUEST_V4


def test_ipv6_request():
    request = encode_request(("::1", 80), ("::1", 50000), 9)
    assert request[16:18] == bytes([socket.AF_INET6, socket.IPPROTO_TCP])
    assert request[24:28] == bytes.fromhex("c350" "0050")
    assert request[28:44] == request[44:60] == bytes(15) + b"\x01"


@pytest.mark.parametrize("local, peer", [
    (("127.0.0.1", 80), ("::1", 5000)),
    (("localhost", 80), ("127.0.0.1", 5000)),
])
def test_addresses_must_be_literals_of_one_family(local, peer):
    with pytest.raises(ValueError):
        encode_request(local, peer, 1)


# --- pure: replies ---------------------------------------------------------------------------

# The kernel's answer (6.18) about a client of uid 65534 at 127.0.0.1:40812 connected to
# 127.0.0.1:34775, in the root cgroup (id 1); captured from a lookup with seq 1.
CAPTURED = bytes.fromhex(
    "7c00000014000000010000004f240000"  # nlmsghdr: 124 bytes, type 20, seq 1
    "02010000" "9f6c87d7"  # AF_INET, ESTABLISHED; sport 40812, dport 34775
    "7f000001000000000000000000000000" "7f000001000000000000000000000000"
    "00000000" "0210000000000000"  # if, cookie
    "00000000" "00000000" "00000000" "feff0000" "57356a00"  # expires, rqueue, wqueue, uid, inode
    "0500080000000000"  # INET_DIAG_SHUTDOWN
    "08000f0000000000"  # INET_DIAG_MARK (sent to CAP_NET_ADMIN only)
    "0c0015000100000000000000"  # INET_DIAG_CGROUP_ID = 1
    "0600160052000000"  # INET_DIAG_SOCKOPT
)


def _error_reply(seq: int, code: int) -> bytes:
    """NLMSG_ERROR: nlmsghdr, then struct nlmsgerr (int error; the request's nlmsghdr)."""
    echoed = struct.pack("=IHHII", 72, 20, 1, seq, 0)
    return struct.pack("=IHHIIi", 36, 2, 0x100, seq, 0, code) + echoed


def test_captured_reply():
    reply = parse_reply(CAPTURED, 1)
    assert (reply.family, reply.state, reply.uid, reply.inode, reply.cgroup_id) == (
        socket.AF_INET, TCP_ESTABLISHED, NOBODY, 6960471, 1)
    assert reply.src == (socket.inet_aton("127.0.0.1") + bytes(12), 40812)
    assert reply.dst == (socket.inet_aton("127.0.0.1") + bytes(12), 34775)


def test_reply_without_cgroup_attribute():
    no_attributes = struct.pack("=I", 88) + CAPTURED[4:88]
    assert parse_reply(no_attributes, 1).cgroup_id is None


def test_enoent_means_no_such_socket():
    assert parse_reply(_error_reply(7, -errno.ENOENT), 7) is None


def test_other_kernel_errors_raise_with_their_errno():
    with pytest.raises(PeerLookupError) as caught:
        parse_reply(_error_reply(7, -errno.EPERM), 7)
    assert caught.value.errno == errno.EPERM


@pytest.mark.parametrize("data", [
    CAPTURED[:10],                                # not even a header
    CAPTURED[:100],                               # header says 124 bytes
    struct.pack("=I", 80) + CAPTURED[4:80],       # too short for inet_diag_msg
    struct.pack("=IHHII", 16, 2, 0, 1, 0),        # NLMSG_ERROR without its error code
    struct.pack("=IHHII", 16, 3, 0, 1, 0),        # NLMSG_DONE: not an answer to an exact lookup
    CAPTURED[:104] + struct.pack("=HH", 40, 21) + CAPTURED[108:],  # attribute overruns the message
], ids=["headless", "truncated", "short-msg", "short-error", "done", "attribute-overrun"])
def test_malformed_replies_raise(data):
    with pytest.raises(PeerLookupError) as caught:
        parse_reply(data, 1)
    assert caught.value.errno == errno.EBADMSG


def test_reply_to_another_request_raises():
    with pytest.raises(PeerLookupError):
        parse_reply(CAPTURED, 2)


# --- pure: units and cgroup paths ------------------------------------------------------------

@pytest.mark.parametrize("cgroup, unit", [
    ("/system.slice/web.service", "web.service"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo-1.scope", "app-foo-1.scope"),
    ("/system.slice/web.service/payload", "web.service"),
    ("/user.slice/user-1000.slice/user@1000.service", "user@1000.service"),
    ("/system.slice", None),
    ("/", None),
    (None, None),
])
def test_unit_is_the_innermost_service_or_scope(cgroup, unit):
    assert PeerIdentity(1000, 7, cgroup).unit == unit


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cgroup_paths_map_directory_inodes_and_rewalk_at_most_once_a_second(tmp_path):
    (tmp_path / "system.slice" / "web.service").mkdir(parents=True)
    clock = _Clock()
    paths = CgroupPaths(str(tmp_path), clock=clock)
    ino = lambda p: os.stat(tmp_path / p).st_ino  # noqa: E731
    assert paths.path(ino("system.slice/web.service")) == "/system.slice/web.service"
    assert paths.path(ino(".")) == "/"
    assert paths.walks == 1
    (tmp_path / "system.slice" / "db.service").mkdir()
    assert paths.path(ino("system.slice/db.service")) is None  # walked less than a second ago
    assert paths.path(12345678901) is None
    assert paths.walks == 1
    clock.now += 1.0
    assert paths.path(ino("system.slice/db.service")) == "/system.slice/db.service"
    assert paths.walks == 2
    assert paths.path(ino("system.slice/web.service")) == "/system.slice/web.service"  # a hit walks not
    assert paths.walks == 2


def test_cgroup_paths_under_a_namespaced_mount_root(tmp_path):
    (tmp_path / "app").mkdir()
    paths = CgroupPaths(str(tmp_path), "/lxc.payload.c1", clock=_Clock())
    assert paths.path(os.stat(tmp_path / "app").st_ino) == "/lxc.payload.c1/app"


@pytest.mark.parametrize("lines, expected", [
    (["31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"],
     ("/sys/fs/cgroup/unified", "/")),
    (["29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate"],
     ("/sys/fs/cgroup", "/")),
    (["29 23 0:26 /a\\040b /mnt/cg\\040x rw - cgroup2 none rw"], ("/mnt/cg x", "/a b")),
    (["31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw"], None),
], ids=["hybrid", "unified", "escaped", "none"])
def test_cgroup2_mount_from_mountinfo(tmp_path, lines, expected):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("\n".join(lines) + "\n")
    assert cgroup2_mount(str(mountinfo)) == expected


# --- real sockets ----------------------------------------------------------------------------

def _proc_cgroup(pid: int | str = "self") -> str | None:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def _ss(peer: tuple[str, int], local: tuple[str, int]) -> dict[str, str]:
    """uid, ino and cgroup that ``ss -tep`` prints for the client socket peer -> local."""
    if not shutil.which("ss"):
        pytest.skip("ss(8) is not installed")
    fmt = lambda a: f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"  # noqa: E731
    out = subprocess.run(["ss", "-Htnep", "state", "all", "src", fmt(peer), "dst", fmt(local)],
                         capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == 1, out
    fields = dict(re.findall(r"\b(uid|ino|cgroup):(\S+)", out))
    fields.setdefault("uid", "0")  # ss leaves out uid 0
    return fields


def _pair(host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    return listener, client, server


def _ends(server: socket.socket) -> tuple[tuple[str, int], tuple[str, int]]:
    return server.getsockname()[:2], server.getpeername()[:2]


@pytest.mark.parametrize("host", FAMILIES)
def test_own_connection_matches_ss_and_proc(host):
    listener, client, server = _pair(host)
    with listener, client, server:
        local, peer = _ends(server)
        identity = lookup(local, peer)
        assert identity is not None
        assert (identity.uid, identity.cgroup) == (os.getuid(), _proc_cgroup())
        assert identity.cgroup is None or os.stat(cgroup2_mount()[0] + identity.cgroup).st_ino == identity.cgroup_id
        ss = _ss(peer, local)
        assert (int(ss["uid"]), query(local, peer).inode) == (identity.uid, int(ss["ino"]))
        assert os.fstat(client.fileno()).st_ino == query(local, peer).inode
        if "cgroup" in ss:
            assert ss["cgroup"] == identity.cgroup


def test_ipv4_client_of_a_dual_stack_listener():
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
    except OSError as exc:
        listener.close()
        pytest.skip(f"no dual-stack listener: {exc}")
    listener.listen()
    with listener, socket.create_connection(("127.0.0.1", listener.getsockname()[1])):
        server, peer = listener.accept()
        with server:
            assert peer[0] == "::ffff:127.0.0.1"
            assert lookup(server.getsockname()[:2], peer[:2]).uid == os.getuid()


def test_threads_get_their_own_answers():
    """Each thread has its own netlink socket, so concurrent lookups never read each other's reply."""
    pairs = [_pair("127.0.0.1") for _ in range(4)]
    try:
        expected = [(_ends(server), os.fstat(client.fileno()).st_ino) for _, client, server in pairs]

        def inodes(i: int) -> set[bool]:
            (local, peer), inode = expected[i % len(expected)]
            return {query(local, peer).inode == inode for _ in range(200)}

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set().union(*pool.map(inodes, range(16))) == {True}
    finally:
        for sockets in pairs:
            for s in sockets:
                s.close()


def test_closed_client_socket_gives_none():
    listener, client, server = _pair("127.0.0.1")
    with listener, server:
        local, peer = _ends(server)
        client.close()
        orphan = query(local, peer)  # the kernel may still hold it, with no process behind it
        assert orphan is None or orphan.inode == 0
        assert lookup(local, peer) is None


def test_listener_the_kernel_falls_back_to_is_not_the_peer():
    """No socket has the tuple, so the kernel answers with a listener on the peer's port."""
    with socket.socket() as target, socket.socket() as other:
        target.bind(("127.0.0.1", 0))
        target.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        local, fake_peer = target.getsockname(), other.getsockname()
        fallback = query(local, fake_peer)
        assert fallback is not None and fallback.state == TCP_LISTEN
        assert lookup(local, fake_peer) is None


def test_peer_not_on_this_host_gives_none():
    with socket.socket() as target:
        target.bind(("0.0.0.0", 0))
        target.listen()
        port = target.getsockname()[1]
        assert lookup(("127.0.0.1", port), ("192.0.2.7", 40000)) is None
        assert lookup(("127.0.0.1", 40000), ("192.0.2.7", port)) is None  # the listener on *:port


class _Client:
    """A bash client connected over /dev/tcp that holds the connection until its stdin closes."""

    def __init__(self, prefix: list[str], listener: socket.socket) -> None:
        host, port = listener.getsockname()[:2]
        script = f"exec 3<>/dev/tcp/{host}/{port} && read -r _"
        self.process = subprocess.Popen([*prefix, "bash", "-c", script], stdin=subprocess.PIPE)
        self.server, _ = listener.accept()

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.server.close()


SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@needs_root
@needs_setpriv
@pytest.mark.parametrize("host", FAMILIES)
def test_client_of_another_uid(host):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as listener:
        listener.bind((host, 0))
        listener.listen()
        with _Client(SETPRIV_NOBODY, listener) as client:
            local, peer = _ends(client.server)
            identity = lookup(local, peer)
            assert identity.uid == NOBODY
            assert identity.cgroup == _proc_cgroup(client.process.pid)
            assert _ss(peer, local)["uid"] == str(NOBODY)


@needs_root
@needs_setpriv
def test_time_wait_socket_never_reads_as_root():
    """A TIME_WAIT mini-socket reports uid 0; ``lookup`` must not turn that into root."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with _Client(SETPRIV_NOBODY, listener) as client:
            local, peer = _ends(client.server)
            assert lookup(local, peer).uid == NOBODY
        # both ends closed: the client's side is FIN_WAIT or TIME_WAIT, with no inode
        reply = query(local, peer)
        assert reply is None or reply.inode == 0
        assert lookup(local, peer) is None


@needs_root
@needs_setpriv
def test_unprivileged_caller_sees_other_users_sockets():
    """The agent may run as a dedicated user: the lookup must work without root."""
    python = "/usr/bin/python3"
    probe = subprocess.run([*SETPRIV_NOBODY, python, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                           capture_output=True, cwd="/")
    if probe.returncode:
        pytest.skip(f"no Python >= 3.10 that uid {NOBODY} may run at {python}")
    listener, client, server = _pair("127.0.0.1")
    with listener, client, server:
        local, peer = _ends(server)
        code = f"from wire.peer_identity import lookup; print(lookup({local!r}, {peer!r}))"
        out = subprocess.run([*SETPRIV_NOBODY, python, "-c", code], capture_output=True, text=True, cwd="/",
                             env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]})
        if out.returncode and "Permission denied" in out.stderr:
            pytest.skip(f"uid {NOBODY} cannot read {ROOT}")
        assert out.stdout.strip() == repr(lookup(local, peer)), out.stderr
        assert f"uid={os.getuid()}," in out.stdout


@pytest.fixture
def v2_group():
    """A fresh cgroup v2 group ``/rolecall-test-<id>.service/payload``, removed afterwards."""
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount in /proc/self/mountinfo")
    if mount[1] != "/":
        pytest.skip(f"the cgroup2 mount's root is {mount[1]}, not the hierarchy's")
    unit = Path(mount[0]) / f"rolecall-test-{uuid.uuid4().hex[:8]}.service"
    try:
        unit.mkdir()
        (unit / "payload").mkdir()
    except OSError as exc:
        if unit.exists():
            unit.rmdir()
        pytest.skip(f"cannot create a cgroup v2 group under {mount[0]}: {exc}")
    try:
        yield unit / "payload", f"/{unit.name}/payload"
    finally:
        (unit / "payload").rmdir()
        unit.rmdir()


@needs_root
@needs_setpriv
def test_client_in_its_own_cgroup(v2_group):
    directory, path = v2_group
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        # The socket is charged to the cgroup it is created in: join (as root), drop to
        # nobody, then connect.
        join = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join", f"{directory}/cgroup.procs"]
        with _Client([*join, *SETPRIV_NOBODY], listener) as client:
            local, peer = _ends(client.server)
            identity = lookup(local, peer, paths=CgroupPaths())
            assert identity == PeerIdentity(NOBODY, os.stat(directory).st_ino, path)
            assert identity.cgroup == _proc_cgroup(client.process.pid)
            assert identity.unit == directory.parent.name
            assert _ss(peer, local).get("cgroup", path) == path


def test_benchmark_script_runs():
    """bench/peer_identity.py prints its figure (not a timed test: it only has to run)."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "peer_identity.py"), "--lookups", "200"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"lookups/s", out.stdout)
