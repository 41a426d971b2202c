"""`rolecall doctor [--config FILE] [--socket PATH] [--json]`: check this host, one row per check.

    config        the agent's TOML, loaded as `rolecall agent serve` loads it (its exact error line)
    permissions   the config, key and token files, control socket and their directories
                  (``wire.private_files`` rules: secrets 0600, nothing writable by others)
    sts-endpoint  the STS endpoint answers at all (one unsigned request)
    clock-skew    this host's clock against that answer's ``Date``
    sts-identity  GetCallerIdentity signed with the agent's own source keys, when this
                  process may read them (else skipped, saying which and why)
    agent         the agent answers on its control socket, and holds credentials
    imds          the metadata endpoint from this process: IMDSv2 token, role, credentials
    sdk-chain     botocore's credential chain here: which provider, key id's first 4
                  characters, expiry
    link-local, socket-units, agent-unit
                  on a systemd host with rolecall's units installed (else skipped)

Which config: ``--config``, else the first that exists of ``/etc/rolecall/agent.toml``
(the system unit's) and ``$XDG_CONFIG_HOME/rolecall/agent.toml`` (the user unit's; tried
first when not root), then ``rolecall up``'s ``agent.toml`` in its default data dir.
``rolecall agent serve`` itself has no default: these are the paths its units give it.

Where doctor sends packets. Only to endpoints something here names, never to a guess:
the STS endpoint of the config (``[sts] endpoint_url``, else AWS's regional endpoint of
``region``); the control socket; and one metadata endpoint, chosen by this rule
(``cli.doctor_sdk.imds_target``):

1. botocore's ``ec2_metadata_service_endpoint`` here (``AWS_EC2_METADATA_SERVICE_ENDPOINT``
   or the AWS config file), as given: that is where an SDK here goes;
2. else the SDKs' default, 169.254.169.254 (``[fd00:ec2::254]`` in IPv6 mode), but only
   when it is an address of this host (the kernel's answer, ``metadata_server.peers``):
   then a packet to it never leaves the host. Off EC2 and without the link-local
   setup it is not, and doctor does not try it;
3. else the config's first ``[metadata] listen`` address with a fixed port on this host;
4. else nothing: the row is skipped.

botocore's chain runs with the same rule: its instance-metadata provider is left out
when it would fall back to a default address that is not this host's (and its container
provider when ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` points at 169.254.170.2 and that
is not this host's); the row says so. botocore reads this process's environment.

Exit status: 0 when no row failed (``skip`` and ``warn`` do not fail), 1 otherwise.
``--json`` prints ``{"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}``.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cli.doctor_checks import (Report, agent_check, clock_check, config_check, identity_check, permissions_check,
                               sts_endpoint_check)
from cli.doctor_sdk import ImdsTarget, chain_check, chain_plan, imds_check, imds_target
from cli.doctor_systemd import systemd_checks
from cli.runtime import run
from cli.up import default_data_dir

if TYPE_CHECKING:
    from agent.config_types import AgentConfig
    from wire.clock import WallClock

__all__ = ["Options", "config_candidates", "register", "render_json", "render_table", "run_doctor"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the root parser."""
    parser = commands.add_parser("doctor", help="check this host: config, STS, clock, agent, IMDS, SDK chain, "
                                                "systemd, permissions")
    parser.add_argument("--config", metavar="FILE", help="the agent's TOML (default: /etc/rolecall/agent.toml, "
                                                         "$XDG_CONFIG_HOME/rolecall/agent.toml or rolecall up's)")
    parser.add_argument("--socket", metavar="PATH", help="the agent's control socket (default: the config's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(run=_doctor)


def config_candidates(environ: Mapping[str, str], euid: int) -> list[str]:
    """Where the host's agent config is looked for, in order (see the module)."""
    system = "/etc/rolecall/agent.toml"
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    user = os.path.join(base, "rolecall", "agent.toml")
    up = str(default_data_dir(environ) / "agent.toml")
    return [system, user, up] if euid == 0 else [user, system, up]


@dataclass(frozen=True)
class Options:
    """What to check: the config file, and the control socket when not the config's."""

    config: str
    socket: str | None = None


def _load(path: str, environ: Mapping[str, str]):
    """``(config, None, False)``, or ``(None, ConfigError, unreadable by this user only)``."""
    from agent.config import load_config
    from agent.errors import ConfigError

    try:
        return load_config(path, environ=environ), None, False
    except ConfigError as exc:
        denied = os.strerror(errno.EACCES) in exc.reason and os.geteuid() != 0
        return None, exc, denied


def _summary(config: AgentConfig) -> str:
    from agent.sts_client import resolve_endpoint

    roles = f"role {config.role.arn}" if config.role else "no default role"
    if config.roles:
        roles += f" and {len(config.roles)} per-caller roles"
    url = resolve_endpoint(config.sts.endpoint_url, config.sts.region, global_endpoint=config.sts.global_endpoint).url
    return f"{roles}; STS {url}; source {config.source.kind}"


def _listen(config: AgentConfig | None) -> list[tuple[str, int]]:
    from wire.listeners import parse_address

    return [parse_address(address) for address in (config.metadata.listen if config else ())]


@dataclass
class _Seen:
    """What the probes saw (``cli.doctor_probes``), for the verdicts."""

    target: ImdsTarget | None
    chain_plan: tuple[tuple[str, ...], tuple[str, ...]]
    paths: list = field(default_factory=list)
    owners: tuple = (frozenset(), None)
    probes: dict[str, object] = field(default_factory=dict)


async def _look(config: AgentConfig | None, sockets: list[str], clock: WallClock,
                environ: Mapping[str, str], config_path: str) -> _Seen:
    """Run every probe, the independent ones at once."""
    import trio

    from cli import doctor_probes as probes
    from metadata_server.peers import is_local_address

    sdk_endpoint, mode = await trio.to_thread.run_sync(probes.botocore_imds_settings, environ)
    origin = ("AWS_EC2_METADATA_SERVICE_ENDPOINT" if environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") == sdk_endpoint
              else "ec2_metadata_service_endpoint of the AWS config file")
    seen = _Seen(imds_target(sdk_endpoint, mode, _listen(config), is_local_address, origin),
                 chain_plan(environ, sdk_endpoint, mode, is_local_address),
                 probes.path_facts(config_path, config, sockets, environ), probes.trusted_owners())

    async def look(name: str, probe) -> None:
        seen.probes[name] = await probe

    async with trio.open_nursery() as nursery:
        if config is not None:
            nursery.start_soon(look, "sts", probes.probe_sts(config, clock))
            nursery.start_soon(look, "identity", probes.identity(config, clock, environ))
        if seen.target is not None:
            nursery.start_soon(look, "imds", probes.probe_imds(seen.target))
        nursery.start_soon(look, "agent", probes.ask_agent(sockets))
        nursery.start_soon(look, "chain", probes.run_chain(*seen.chain_plan))
        nursery.start_soon(look, "systemd", probes.systemd_facts())
    return seen


async def run_doctor(options: Options, *, clock: WallClock, environ: Mapping[str, str]) -> Report:
    """Check the host: run the probes, judge what they saw.

    Args:
        options: the config file and control socket.
        clock: the wall clock (SigV4 dates, skew, time left).
        environ: the environment for rolecall's own reads; botocore reads ``os.environ``.
    """
    from wire.control import candidate_paths

    config, error, denied = _load(options.config, environ)
    sockets = ([options.socket] if options.socket else [config.control_socket] if config
               else candidate_paths(None, environ))
    seen = await _look(config, sockets, clock, environ, options.config)
    got = seen.probes
    systemd_rows = systemd_checks(*got["systemd"])
    scope = got["systemd"][3]
    start = (f"{scope} start rolecall-agent.service (`journalctl -u rolecall-agent` says why it stopped)"
             if any(row.status != "skip" for row in systemd_rows)
             else f"start it: `rolecall agent serve --config {options.config}`")
    return Report((
        config_check(options.config, error, _summary(config) if config else "", unreadable_here=denied),
        permissions_check(seen.paths, *seen.owners),
        sts_endpoint_check(got.get("sts"), options.config),
        clock_check(got.get("sts")),
        identity_check(got.get("identity"), options.config, got.get("sts")),
        agent_check(got["agent"], start_hint=start),
        imds_check(seen.target, got.get("imds"), clock.now()),
        chain_check(got["chain"], seen.target),
        *systemd_rows,
    ))


def render_table(report: Report) -> str:
    """One line per check (status, name, detail), and under each failure or warning its fix."""
    width = max(len(check.name) for check in report.checks)
    lines = []
    for check in report.checks:
        lines.append(f"{check.status.upper() if check.status == 'fail' else check.status:<5} "
                     f"{check.name:<{width}}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':<5} {'':<{width}}  fix: {check.fix}")
    failed = sum(check.status == "fail" for check in report.checks)
    lines.append("all checks hold" if report.ok else f"{failed} check{'s' if failed > 1 else ''} failed")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    """The report as one JSON object (``Report.to_json``)."""
    return json.dumps(report.to_json())


def _doctor(args: argparse.Namespace) -> int:
    import functools

    from wire.clock import SystemClock

    if not args.debug:   # botocore logs which provider it found at INFO: the sdk-chain row says it
        logging.getLogger("botocore").setLevel(logging.WARNING)
    candidates = config_candidates(os.environ, os.geteuid())
    path = args.config or next((p for p in candidates if os.path.exists(p)), candidates[0])
    body = functools.partial(run_doctor, Options(path, args.socket), clock=SystemClock(), environ=os.environ)
    report = run(body, what="doctor")
    print(render_json(report) if args.json else render_table(report))
    return 0 if report.ok else 1
