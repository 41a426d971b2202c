"""metadata_server.callers: which [roles.NAME] rule holds for a caller (pure, tables of cases)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from metadata_server.callers import CallerMatch, CallerRule, matches, select, system_units

WEB_CGROUP = "/system.slice/web.service"
USER_APP = "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service"


@dataclass(frozen=True)
class Peer:
    """A stand-in for wire.peer_identity.PeerIdentity: unit is given, not derived."""

    uid: int
    cgroup: str | None = None
    unit: str | None = None


WEB = Peer(33, WEB_CGROUP, "web.service")
# uid 1000 made a group named web.service in its own delegated tree and moved itself there
SPOOF = Peer(1000, "/user.slice/user-1000.slice/user@1000.service/app.slice/web.service", "web.service")
APP = Peer(1000, USER_APP, "x.service")
NO_CGROUP = Peer(33)
net = ipaddress.ip_network


@pytest.mark.parametrize("match, identity, peer_ip, expected", [
    # unit: the system unit the caller runs in, or a slice above it
    (CallerMatch(unit="web.service"), WEB, "127.0.0.1", True),
    (CallerMatch(unit="system.slice"), WEB, "127.0.0.1", True),
    (CallerMatch(unit="db.service"), WEB, "127.0.0.1", False),
    (CallerMatch(unit="user@1000.service"), APP, "127.0.0.1", True),
    (CallerMatch(unit="user-1000.slice"), APP, "127.0.0.1", True),
    (CallerMatch(unit="user@1001.service"), APP, "127.0.0.1", False),
    (CallerMatch(unit="web"), WEB, "127.0.0.1", False),  # a whole component, not a prefix
    (CallerMatch(unit="web.service"), NO_CGROUP, "127.0.0.1", False),
    # ... never a name below it: user@.service has Delegate=yes, so uid 1000 names those groups itself
    (CallerMatch(unit="x.service"), APP, "127.0.0.1", False),
    (CallerMatch(unit="app.slice"), APP, "127.0.0.1", False),
    (CallerMatch(unit="web.service"), SPOOF, "127.0.0.1", False),
    (CallerMatch(unit="web.service"), Peer(33, None, "web.service"), "127.0.0.1", False),  # unit alone: untrusted
    (CallerMatch(unit="web.service"), Peer(0, "/system.slice/docker.service/web.service", "web.service"),
     "127.0.0.1", False),
    # uid, and user as resolved at load
    (CallerMatch(uid=33), WEB, "127.0.0.1", True),
    (CallerMatch(uid=0), WEB, "127.0.0.1", False),
    (CallerMatch(uid=33, user="www-data"), WEB, "127.0.0.1", True),
    (CallerMatch(uid=34, user="www-data"), WEB, "127.0.0.1", False),
    (CallerMatch(user="nosuchuser"), WEB, "127.0.0.1", False),  # named no user at load: matches no one
    (CallerMatch(user="nosuchuser", peer=net("127.0.0.0/8")), WEB, "127.0.0.1", False),
    # cgroup: that group or one below it, never a sibling sharing a prefix
    (CallerMatch(cgroup=WEB_CGROUP), WEB, "127.0.0.1", True),
    (CallerMatch(cgroup="/system.slice"), WEB, "127.0.0.1", True),
    (CallerMatch(cgroup="/"), WEB, "127.0.0.1", True),
    (CallerMatch(cgroup="/system.slice/web"), WEB, "127.0.0.1", False),
    (CallerMatch(cgroup="/system.slice/web.service/child"), WEB, "127.0.0.1", False),
    (CallerMatch(cgroup="/user.slice"), WEB, "127.0.0.1", False),
    (CallerMatch(cgroup=WEB_CGROUP), Peer(33, WEB_CGROUP + "/", "web.service"), "127.0.0.1", True),
    (CallerMatch(cgroup="/"), NO_CGROUP, "127.0.0.1", False),
    # peer
    (CallerMatch(peer=net("172.17.0.0/16")), None, "172.17.0.5", True),
    (CallerMatch(peer=net("172.17.0.0/16")), None, "172.18.0.5", False),
    (CallerMatch(peer=net("172.17.0.0/16")), None, "::ffff:172.17.0.5", True),  # dual-stack socket
    (CallerMatch(peer=net("::ffff:172.17.0.0/112")), None, "::ffff:172.17.0.5", True),
    (CallerMatch(peer=net("fd00:1::/64")), None, "fd00:1::7", True),
    (CallerMatch(peer=net("fe80::/64")), None, "fe80::1%eth0", True),
    (CallerMatch(peer=net("fd00:1::/64")), None, "172.17.0.5", False),
    (CallerMatch(peer=net("172.17.0.0/16")), None, "not-an-ip", False),
    (CallerMatch(peer=net("127.0.0.0/8")), WEB, "127.0.0.1", True),
    # AND of fields
    (CallerMatch(unit="web.service", uid=33), WEB, "127.0.0.1", True),
    (CallerMatch(unit="web.service", uid=0), WEB, "127.0.0.1", False),
    (CallerMatch(uid=33, peer=net("127.0.0.0/8")), WEB, "127.0.0.1", True),
    (CallerMatch(uid=33, peer=net("127.0.0.0/8")), WEB, "10.0.0.1", False),
    (CallerMatch(cgroup="/system.slice", unit="db.service"), WEB, "127.0.0.1", False),
    # an unidentified caller satisfies only peer
    (CallerMatch(uid=33), None, "127.0.0.1", False),
    (CallerMatch(unit="web.service"), None, "127.0.0.1", False),
    (CallerMatch(cgroup="/"), None, "127.0.0.1", False),
    (CallerMatch(uid=33, peer=net("127.0.0.0/8")), None, "127.0.0.1", False),
])
def test_matches(match, identity, peer_ip, expected):
    assert matches(match, identity, peer_ip) is expected


RULES = (
    CallerRule("web", CallerMatch(unit="web.service")),
    CallerRule("www", CallerMatch(uid=33)),
    CallerRule("containers", CallerMatch(peer=net("172.17.0.0/16"))),
    CallerRule("users", CallerMatch(cgroup="/user.slice")),
)


@pytest.mark.parametrize("identity, peer_ip, expected", [
    (WEB, "127.0.0.1", "web"),  # the first of two that hold: file order
    (Peer(33, "/system.slice/cron.service", "cron.service"), "127.0.0.1", "www"),
    (APP, "127.0.0.1", "users"),
    (None, "172.17.0.9", "containers"),
    (Peer(0, "/system.slice/sshd.service", "sshd.service"), "172.17.0.9", "containers"),
    (Peer(0, "/system.slice/sshd.service", "sshd.service"), "127.0.0.1", None),
    (None, "127.0.0.1", None),  # unidentified, not a peer rule: the default role or 403
])
def test_select_first_rule_in_file_order(identity, peer_ip, expected):
    rule = select(RULES, identity, peer_ip)
    assert (rule.name if rule else None) == expected


@pytest.mark.parametrize("cgroup, units", [
    ("/system.slice/web.service", ("system.slice", "web.service")),
    ("/system.slice/web.service/worker", ("system.slice", "web.service")),
    (USER_APP, ("user.slice", "user-1000.slice", "user@1000.service")),
    ("/user.slice/user-1000.slice/session-3.scope", ("user.slice", "user-1000.slice", "session-3.scope")),
    ("/machine.slice/machine-c1.scope/payload/system.slice/web.service", ("machine.slice", "machine-c1.scope")),
    ("/init.scope", ("init.scope",)),
    ("/", ()),
    ("/docker/abc/web.service", ()),  # a group PID 1 did not make: nothing below it counts
])
def test_system_units(cgroup, units):
    assert system_units(cgroup) == units


def test_select_with_no_rules():
    assert select((), WEB, "127.0.0.1") is None


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give at least one of unit, uid, user, cgroup, peer"),
    ({"cgroup": "system.slice"}, "cgroup must be an absolute path such as /system.slice/web.service"),
    ({"cgroup": "/system.slice/"}, "cgroup must be an absolute path such as /system.slice/web.service"),
    ({"cgroup": "/a//b"}, "cgroup must be an absolute path such as /system.slice/web.service"),
    ({"cgroup": "/a/../b"}, "cgroup must be an absolute path such as /system.slice/web.service"),
])
def test_caller_match_refuses(kwargs, message):
    with pytest.raises(ValueError) as info:
        CallerMatch(**kwargs)
    assert str(info.value) == message
