"""The ``[roles.NAME]`` tables: per-caller roles, their ``match``, and the warnings they earn at load.

Part of ``agent.config`` (its theory of operation is there). ``parse_roles``
checks each ``[roles.NAME]`` table as ``[role]`` (``parse_role``) plus its
``match`` inline table, and resolves ``user`` to a uid with ``pwd`` at load.
What may be missing now and present later is not an error, since units and
users come and go: ``rule_warnings`` names the rules whose ``user`` or
``unit`` this host does not have, and the daemon logs them at start and on
reload.

Decisions worth knowing:

- A rule's default ``session_name`` is ``NAME@{hostname}`` (``web@host-1``), so
  CloudTrail tells both the rule and the host apart.
- Several rules may serve roles of the same name, even of different ARNs:
  IMDS shows each caller only the one role its rule gives it (as EC2 shows one
  name per instance). Two rules with the same ``match`` are refused: the later
  could never be chosen.
- ``uid`` and ``user`` together are refused (which one would win is a guess).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
from collections.abc import Callable, Iterable

from agent.config_sections import parse_role
from agent.config_table import Table
from agent.config_types import AgentConfig, RoleRule
from metadata_server.callers import CallerMatch

__all__ = ["CGROUP_ROOT", "UNIT_DIRS", "lookup_uid", "parse_roles", "rule_warnings", "unit_known"]

MATCH_KEYS = ("unit", "uid", "user", "cgroup", "peer")
MAX_UID = 4294967294  # uid_t; (uid_t)-1 means "no uid"
# systemd's unit search path for the system manager, most specific first [man:systemd.unit]
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
CGROUP_ROOT = "/sys/fs/cgroup"
_CGROUP_DEPTH = 8  # slices nest by dashes (a-b-c.slice is in a-b.slice); 8 levels is plenty
_CGROUP_DIRS = 10_000  # a bound on the walk, whatever the host runs

# unit names: [man:systemd.unit] "valid unit names consist of ... ASCII letters, digits, ':', '-', '_', '.',
# and '\'" (plus '@' for instances), at most 255 characters
_UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]{1,247}\.(service|scope|slice)", re.ASCII)
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}\$?", re.ASCII)  # useradd's NAME_REGEX, relaxed


def lookup_uid(user: str) -> int | None:
    """``user``'s uid from the password database (``/etc/passwd``, NSS), or None when there is no such user."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def parse_roles(t: Table, hostname: str | None, lookup: Callable[[str], int | None] = lookup_uid
                ) -> tuple[RoleRule, ...]:
    """The ``[roles.NAME]`` rules in file order.

    Args:
        t: the ``[roles]`` table (names and keys already checked by ``read_sections``).
        hostname: for ``{hostname}`` in session names; default the host's.
        lookup: resolves ``match.user`` to a uid, None for an unknown user.

    Raises:
        ConfigError: naming ``[roles.NAME] KEY``.
    """
    rules: list[RoleRule] = []
    for name, values in t.values.items():
        rule_table = Table(t.path, f"roles.{name}", values)
        role = parse_role(rule_table, hostname, default_session=f"{name}@{{hostname}}")
        match = _match(rule_table, lookup)
        for earlier in rules:
            if earlier.match == match:
                raise rule_table.error("match", f"the same as [roles.{earlier.name}] match, which comes first: "
                                                "this rule could never be chosen")
        rules.append(RoleRule(name, role, match))
    return tuple(rules)


def _match(t: Table, lookup: Callable[[str], int | None]) -> CallerMatch:
    value = t.values.get("match")
    if value is None:
        raise t.error("match", 'required: which callers get this role, e.g. match = { unit = "web.service" }')
    if not isinstance(value, dict):
        raise t.error("match", 'must be a table such as { unit = "web.service" }')
    for key in value:
        if key not in MATCH_KEYS:
            raise t.error("match", f"unknown key {key!r} (known: {', '.join(MATCH_KEYS)})")
    if not value:
        raise t.error("match", f"give at least one of {', '.join(MATCH_KEYS)}")
    if "uid" in value and "user" in value:
        raise t.error("match", "give uid or user, not both")
    uid = value.get("uid")
    if uid is not None and (type(uid) is not int or not 0 <= uid <= MAX_UID):
        raise t.error("match.uid", f"must be an integer from 0 to {MAX_UID}")
    user = _string(t, value, "user", _USER, "must be a user name such as www-data")
    if user is not None:
        uid = lookup(user)
    unit = _string(t, value, "unit", _UNIT, "must be a systemd unit name such as web.service "
                                            "(.service, .scope or .slice)")
    return CallerMatch(unit=unit, uid=uid, user=user, cgroup=_cgroup(t, value), peer=_peer(t, value))


def _string(t: Table, match: dict, key: str, pattern: re.Pattern | None = None, reason: str = "") -> str | None:
    value = match.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise t.error(f"match.{key}", "must be a string")
    if pattern is not None and not pattern.fullmatch(value):
        raise t.error(f"match.{key}", reason)
    return value


def _cgroup(t: Table, match: dict) -> str | None:
    """An absolute path, normalized without a trailing ``/`` (``/`` itself: every cgroup)."""
    value = _string(t, match, "cgroup")
    if value is None:
        return None
    path = value.rstrip("/") or "/"
    parts = path.split("/")[1:] if path != "/" else []
    if not value.startswith("/") or len(path) > 4096 or not path.isprintable() \
            or any(p in ("", ".", "..") for p in parts):
        raise t.error("match.cgroup", "must be an absolute cgroup path such as /system.slice/web.service")
    return path


def _peer(t: Table, match: dict) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    value = _string(t, match, "peer")
    if value is None:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise t.error("match.peer", "must be an IP network such as 172.17.0.0/16 (or one address)") from None


# --- warnings ----------------------------------------------------------------------------


def rule_warnings(config: AgentConfig, *, unit_dirs: Iterable[str] = UNIT_DIRS,
                  cgroup_root: str = CGROUP_ROOT) -> list[str]:
    """One line for each rule that names what this host does not have (yet), in file order.

    A ``user`` that named no user at load (the rule matches no one until the
    agent reloads), a ``unit`` with no unit file in ``unit_dirs`` and no
    running unit's cgroup in the slices under ``cgroup_root`` (a unit of a
    user's manager, below ``user@UID.service``, is never matched), a ``peer`` network outside
    ``[metadata] allowed_peers`` (its callers are refused before any rule
    unless they are this host's own addresses). Reads the file system, never
    runs a command.

    Returns:
        ``FILE: [roles.NAME] match.KEY: REASON`` lines, for the daemon to log.
    """
    unit_dirs = tuple(unit_dirs)
    allowed = [ipaddress.ip_network(p, strict=False) for p in config.metadata.allowed_peers]
    lines = []
    for rule in config.roles:
        m, where = rule.match, f"{config.path}: [roles.{rule.name}] match"
        if m.user is not None and m.uid is None:
            lines.append(f"{where}.user: no user {m.user!r} on this host: the rule matches no caller "
                         "until the user exists and the agent reloads")
        if m.unit is not None and not unit_known(m.unit, unit_dirs, cgroup_root):
            lines.append(f"{where}.unit: no unit file or running unit {m.unit!r} on this host: "
                         "the rule matches no caller until the unit runs")
        if m.peer is not None and not m.peer.is_loopback and not any(_within(m.peer, a) for a in allowed):
            lines.append(f"{where}.peer: {m.peer} is not within [metadata] allowed_peers: callers from it "
                         "(but this host's own addresses) are refused before any rule")
    return lines


def _within(network, allowed) -> bool:
    return network.version == allowed.version and network.subnet_of(allowed)


def unit_known(unit: str, unit_dirs: Iterable[str] = UNIT_DIRS, cgroup_root: str = CGROUP_ROOT) -> bool:
    """True when a unit file provides ``unit`` (an instance ``a@b.service`` by its template
    ``a@.service`` too), or the system manager runs it (its cgroup under the slices)."""
    names = [unit]
    prefix, at, instance = unit.partition("@")
    if at and not instance.startswith("."):
        names.append(f"{prefix}@{instance[instance.rfind('.'):]}")
    if any(os.path.lexists(os.path.join(d, n)) for d in unit_dirs for n in names):
        return True
    # cgroup v2 at the root; a hybrid host has the unified tree (or systemd's v1 one) below it
    roots = [cgroup_root] + [os.path.join(cgroup_root, d) for d in ("unified", "systemd")]
    return any(_running(root, unit) for root in roots)


def _running(root: str, unit: str) -> bool:
    """Is there a group ``unit`` under ``root``, looking only through slices (as ``select`` matches)?

    Breadth-first and bounded in depth and count, whatever the host runs.
    """
    level, seen = [root], 0
    for _ in range(_CGROUP_DEPTH):
        below = []
        for path in level:
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                if entry.name == unit and entry.is_dir(follow_symlinks=False):
                    return True
                if entry.name.endswith(".slice") and entry.is_dir(follow_symlinks=False):
                    below.append(entry.path)
                    seen += 1
                    if seen >= _CGROUP_DIRS:
                        return False
        level = below
    return False
