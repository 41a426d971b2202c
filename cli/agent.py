"""`rolecall agent serve|status`: the host daemon and a look at what it holds.

    rolecall agent serve --config FILE
    rolecall agent status [--json] [--socket PATH]

``serve`` loads the TOML (a bad file exits 1 at once with its one-line
``ConfigError``) and runs ``agent.daemon.run_agent`` until SIGTERM/SIGINT (exit 0).
``status`` asks the running agent over its control socket and prints a summary,
or with ``--json`` the object of design.md (plus ``roles``, one status per role,
when the agent serves per-caller roles); exit 1 with one line when no agent
answers.
"""

from __future__ import annotations

import argparse
import json

from cli.errors import CliError
from cli.runtime import run

__all__ = ["format_status", "register"]

_FIELDS = ("ready", "role_arn", "access_key_id", "expiration", "last_refresh", "next_refresh", "last_error",
           "mfa_serial", "mfa_expiration", "mfa_waiting", "version")
_LABELS = {
    "ready": "ready", "role_arn": "role", "access_key_id": "access key", "expiration": "expires",
    "last_refresh": "last refresh", "next_refresh": "next refresh", "last_error": "last error",
    "mfa_serial": "mfa device", "mfa_expiration": "mfa session", "mfa_waiting": "mfa code", "version": "version",
}
_MFA_FIELDS = ("mfa_serial", "mfa_expiration", "mfa_waiting")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``agent`` command and its sub-commands to the root parser."""
    parser = commands.add_parser("agent", help="the host daemon: rotation, metadata server, control socket")
    sub = parser.add_subparsers(dest="agent_command", required=True, metavar="SUBCOMMAND")
    serve = sub.add_parser("serve", help="run the agent in the foreground (systemd: Type=notify)")
    serve.add_argument("--config", required=True, metavar="FILE", help="the agent's TOML configuration")
    serve.set_defaults(run=_serve)
    status = sub.add_parser("status", help="what the running agent holds")
    status.add_argument("--json", action="store_true", help="print the status object as JSON")
    status.add_argument("--socket", metavar="PATH", help="the agent's control socket")
    status.set_defaults(run=_status)


def _serve(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.daemon import run_agent
    from agent.errors import AgentError

    try:
        config = load_config(args.config)
    except AgentError as exc:
        raise CliError(str(exc)) from None
    run(run_agent, config, what="agent")
    return 0


def format_status(status: dict) -> str:
    """The human summary of a status object, one ``label: value`` line per field."""
    lines = []
    for name in _FIELDS:
        value = status.get(name)
        if name in _MFA_FIELDS and not status.get("mfa_serial"):
            continue
        if name == "ready":
            value = "yes" if value else "no (no credentials yet)"
        elif name == "mfa_expiration":
            value = f"until {value}" if value else "none held"
        elif name == "mfa_waiting":
            value = "needed: run `rolecall mfa login`" if value else "not needed now"
        lines.append(f"{_LABELS[name] + ':':14}{'-' if value in (None, '') else value}")
    for role in status.get("roles") or ():   # per-caller roles: one line each, [role] first
        state = f"until {role.get('expiration')}" if role.get("ready") else "no credentials yet"
        error = f"; last error: {role['last_error']}" if role.get("last_error") else ""
        lines.append(f"{'role ' + (role.get('name') or '(default)') + ':':14}{role.get('role_arn')} {state}{error}")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from wire.control import ControlError, candidate_paths, request

    try:
        answer = request(candidate_paths(args.socket), {"op": "status"})
    except ControlError as exc:
        raise CliError(f"agent status: {exc}") from None
    if "error" in answer:
        raise CliError(f"agent status: the agent refused: {answer['error']}")
    if args.json:
        fields = {name: answer.get(name) for name in _FIELDS}
        if "roles" in answer:
            fields["roles"] = answer["roles"]
        print(json.dumps(fields))
    else:
        print(format_status(answer))
    return 0
