"""`rolecall doctor`'s systemd rows: the link-local address on ``lo``, the socket units, the service. Pure.

Checked only where PID 1 is systemd and ``rolecall-agent.service`` is installed
(system units, else the user's); elsewhere the three rows are skipped as "not a
systemd host". ``parse_systemctl_show`` and ``addresses_on`` read the output of
``systemctl show`` and ``ip -j addr show dev lo`` that ``cli.doctor_probes`` runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from cli.doctor_checks import Check

__all__ = ["UnitState", "addresses_on", "parse_systemctl_show", "systemd_checks"]


@dataclass(frozen=True)
class UnitState:
    """One unit as ``systemctl show`` reports it."""

    name: str
    load_state: str
    active_state: str = ""
    sub_state: str = ""
    unit_file_state: str = ""

    @property
    def installed(self) -> bool:
        return self.load_state == "loaded"


def systemd_checks(pid1: str, units: Sequence[UnitState], link_local_on_lo: bool | None, scope: str) -> list[Check]:
    """``link-local``, ``socket-units`` and ``agent-unit``: skipped where PID 1 is not systemd or no unit is installed.

    Args:
        pid1: PID 1's name (``/proc/1/comm``).
        units: the rolecall units' states.
        link_local_on_lo: whether 169.254.169.254 is on ``lo`` (None: unknown).
        scope: ``systemctl`` or ``systemctl --user``, for the fixes.
    """
    names = ("link-local", "socket-units", "agent-unit")
    if pid1 != "systemd":
        return [Check(name, "skip", f"not a systemd host (PID 1 is {pid1 or 'unknown'})") for name in names]
    by_name = {unit.name: unit for unit in units if unit.installed}
    if "rolecall-agent.service" not in by_name:
        return [Check(name, "skip", "not a systemd host for rolecall: its units are not installed "
                      "(`rolecall systemd install`)") for name in names]
    return [_link_local(by_name, link_local_on_lo, scope), _sockets(by_name, scope), _agent_unit(by_name, scope)]


def _link_local(by_name: dict[str, UnitState], on_lo: bool | None, scope: str) -> Check:
    if "rolecall-link-local.service" not in by_name:
        return Check("link-local", "skip", "user units: the agent is reached on loopback, not 169.254.169.254")
    if on_lo is None:
        return Check("link-local", "skip", "cannot list lo's addresses here (no `ip`)")
    if on_lo:
        return Check("link-local", "ok", "169.254.169.254 is on lo")
    return Check("link-local", "fail", "169.254.169.254 is not on lo: SDKs here cannot reach the agent by default",
                 f"{scope} enable --now rolecall-link-local.service")


def _sockets(by_name: dict[str, UnitState], scope: str) -> Check:
    sockets = [u for name, u in sorted(by_name.items()) if name.endswith(".socket")]
    if not sockets:
        return Check("socket-units", "fail", "rolecall-agent.socket is not installed",
                     f"`rolecall systemd install`, then {scope} enable --now rolecall-agent.socket")
    down = [u for u in sockets if u.active_state != "active"
            and (u.name == "rolecall-agent.socket" or u.unit_file_state == "enabled")]
    states = ", ".join(f"{u.name} {u.active_state}/{u.sub_state}" for u in sockets)
    if down:
        return Check("socket-units", "fail", states, f"{scope} enable --now {' '.join(u.name for u in down)}")
    return Check("socket-units", "ok", states)


def _agent_unit(by_name: dict[str, UnitState], scope: str) -> Check:
    unit = by_name["rolecall-agent.service"]
    detail = f"rolecall-agent.service {unit.active_state}/{unit.sub_state}, {unit.unit_file_state or 'unknown'}"
    if unit.active_state != "active":
        return Check("agent-unit", "fail", detail, f"journalctl -u rolecall-agent -n 50 says why; then "
                     f"{scope} restart rolecall-agent.service")
    if unit.unit_file_state not in ("enabled", "enabled-runtime", "static", "indirect"):
        return Check("agent-unit", "warn", detail + ": it will not start at boot",
                     f"{scope} enable rolecall-agent.service")
    return Check("agent-unit", "ok", detail)


def parse_systemctl_show(text: str) -> list[UnitState]:
    """``systemctl show --property=Id,LoadState,ActiveState,SubState,UnitFileState UNIT...``: one block per unit."""
    units = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            units.append(UnitState(fields["Id"], fields.get("LoadState", ""), fields.get("ActiveState", ""),
                                   fields.get("SubState", ""), fields.get("UnitFileState", "")))
    return units


def addresses_on(ip_json: str) -> frozenset[str]:
    """The addresses in ``ip -j addr show dev IFACE``'s output."""
    try:
        links = json.loads(ip_json or "[]")
    except ValueError:
        return frozenset()
    return frozenset(info["local"] for link in links if isinstance(link, dict)
                     for info in link.get("addr_info", ()) if isinstance(info, dict) and "local" in info)
