"""Which per-caller role a connection gets: the ``[roles.NAME] match`` rules and ``select``.

Theory of operation
-------------------
The serving layer identifies the caller of each connection once, at accept
(the kernel-reported owner of the peer socket: its uid and cgroup, see
``wire.peer_identity``), and asks ``select`` which rule holds for it. Rules
are tried in file order and the first whose every given field holds wins
(the fields of one ``CallerMatch`` are ANDed). No rule: the caller gets the
default ``[role]``, or 403 when there is none. The answer is never another
caller's role: a field that cannot be checked (no identity, no cgroup, a user
name that named no user at load) does not hold.

Pure: no I/O, no agent imports (metadata_server must not import agent).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CallerMatch", "CallerRule", "Identity", "holder_selector", "matches", "select", "system_units"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Identity(Protocol):
    """What ``select`` reads of ``wire.peer_identity.PeerIdentity`` (a stand-in until it lands).

    Attributes:
        uid: the peer socket's owner.
        cgroup: its cgroup v2 path (``/system.slice/web.service``), or None when unknown.
        unit: the innermost ``.service``/``.scope`` component of ``cgroup``, or
            None; not used by ``select`` (see ``system_units``).
    """

    @property
    def uid(self) -> int: ...

    @property
    def cgroup(self) -> str | None: ...

    @property
    def unit(self) -> str | None: ...


@dataclass(frozen=True)
class CallerMatch:
    """The ``match = { ... }`` of one ``[roles.NAME]``: every field given must hold.

    Args:
        unit: ``web.service``: the system unit the caller runs in, or a
            slice above it (``system_units``): ``user@1000.service`` matches
            ``/user.slice/user-1000.slice/user@1000.service/app.slice/x.service``,
            ``x.service`` does not (uid 1000 names its own sub-groups: match
            those by ``cgroup``, which then means "any process uid 1000 moves
            there").
        uid: the socket owner's uid (also what ``user`` resolved to at load).
        user: the user name as written, kept for messages; when it named no
            user at load, ``uid`` is None and the rule matches no one.
        cgroup: ``/system.slice/web.service``: that cgroup or one below it.
        peer: the peer's IP is in this network (callers not on this host, e.g.
            containers on a bridge); the only field an unidentified caller can
            satisfy.

    Raises:
        ValueError: no field given, or ``cgroup`` not a normalized absolute path.
    """

    unit: str | None = None
    uid: int | None = None
    user: str | None = None
    cgroup: str | None = None
    peer: IpNetwork | None = None

    def __post_init__(self) -> None:
        if all(v is None for v in (self.unit, self.uid, self.user, self.cgroup, self.peer)):
            raise ValueError("give at least one of unit, uid, user, cgroup, peer")
        if self.cgroup is not None and not _normal_cgroup(self.cgroup):
            raise ValueError("cgroup must be an absolute path such as /system.slice/web.service")


@dataclass(frozen=True)
class CallerRule:
    """One ``[roles.NAME]`` as the metadata server sees it: the table's name and its match."""

    name: str
    match: CallerMatch


def _normal_cgroup(path: str) -> bool:
    if path == "/":
        return True
    parts = path.split("/")
    return parts[0] == "" and all(p not in ("", ".", "..") for p in parts[1:])


def _in_cgroup(path: str | None, top: str) -> bool:
    if path is None:
        return False
    path = path.rstrip("/") or "/"
    return top == "/" and path.startswith("/") or path == top or path.startswith(top + "/")


def system_units(cgroup: str) -> tuple[str, ...]:
    """The units the system manager (PID 1) put a cgroup in: its slices and its first service or scope.

    Below the first ``.service``/``.scope`` the tree is that unit's own when
    it has ``Delegate=yes``, and ``user@.service`` always has: uid 1000 may
    create ``.../user@1000.service/web.service`` and move itself there. So
    names below it prove nothing about who the caller is, and are not matched
    (``identity.unit``, the innermost such name, is not trusted for the same
    reason). [man:systemd.resource-control Delegate=]
    """
    units = []
    for part in cgroup.split("/"):
        if part.endswith(".slice"):
            units.append(part)
        elif part.endswith((".service", ".scope")):
            units.append(part)
            break
        elif part:
            break  # not a unit: a group PID 1 did not make (or the root's own)
    return tuple(units)


def _has_unit(identity: Identity, unit: str) -> bool:
    return identity.cgroup is not None and unit in system_units(identity.cgroup)


def _peer_in(peer_ip: str, network: IpNetwork) -> bool:
    try:
        address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None and network.version == 4:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address in network


def matches(match: CallerMatch, identity: Identity | None, peer_ip: str) -> bool:
    """True when every field ``match`` gives holds for this caller.

    Args:
        match: the rule's match.
        identity: the kernel's word on the peer socket, or None when it could
            not be identified (then only ``peer`` can hold).
        peer_ip: the peer's address as the socket reports it.
    """
    if match.peer is not None and not _peer_in(peer_ip, match.peer):
        return False
    if match.user is not None and match.uid is None:
        return False  # the user named no one at load
    if match.unit is None and match.uid is None and match.cgroup is None:
        return True
    if identity is None:
        return False
    return ((match.uid is None or identity.uid == match.uid)
            and (match.unit is None or _has_unit(identity, match.unit))
            and (match.cgroup is None or _in_cgroup(identity.cgroup, match.cgroup)))


def select(rules: Sequence[CallerRule], identity: Identity | None, peer_ip: str) -> CallerRule | None:
    """The first rule (file order) whose match holds for this caller.

    Args:
        rules: the ``[roles.NAME]`` rules in file order.
        identity: the caller's identity, or None when it could not be
            identified: such a caller matches only rules of ``peer`` alone.
        peer_ip: the peer's address.

    Returns:
        The rule, or None when no rule holds: the caller gets the default
        role, or 403 when there is none.
    """
    for rule in rules:
        if matches(rule.match, identity, peer_ip):
            return rule
    return None


def holder_selector(rules: Sequence[CallerRule], holders: Mapping[str, Any], default: Any = None
                    ) -> Callable[[Identity | None, str | None], Any]:
    """``ImdsHandler``'s ``roles``: ``(identity, peer address) -> holder``.

    Args:
        rules: the rules in file order.
        holders: each rule's credential holder, by the rule's name.
        default: the holder of the default ``[role]``, or None to refuse callers no rule matches.
    """
    rules = tuple(rules)

    def holder_for(identity: Identity | None, peer_ip: str | None) -> Any:
        rule = select(rules, identity, peer_ip or "")
        return holders[rule.name] if rule is not None else default

    return holder_for

