"""Credentials for the profiles of ``~/.aws/config``: ``credential-process``, ``export``, ``exec``, ``sessions``.

    rolecall credential-process --profile NAME [--token-code C]
    rolecall export --profile NAME [--format env|json] [--token-code C]
    rolecall exec --profile NAME [--token-code C] -- CMD ...
    rolecall sessions list [--json]
    rolecall sessions clear [--profile NAME]

``credential-process`` reaches this module only on its cold path (the warm
path, ``sdk_shim.credential_process``, answers from the cache before argparse
is even imported). Here the profile is resolved by ``agent.profile_chain``
(MFA prompt on ``/dev/tty`` or a dialog, at most once for parallel callers) and
the Version-1 JSON printed; errors are one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from cli.errors import CliError
from cli.runtime import run

__all__ = ["register", "resolver"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``credential-process``, ``export``, ``exec`` and ``sessions`` to the root parser."""
    cp = commands.add_parser("credential-process", help="print credential_process JSON for a profile")
    _profile_options(cp)
    cp.set_defaults(run=_credential_process)

    export = commands.add_parser("export", help="print a profile's credentials for a shell (env) or as JSON")
    _profile_options(export)
    export.add_argument("--format", choices=("env", "json"), default="env", help="env (default): export lines")
    export.set_defaults(run=_export)

    ex = commands.add_parser("exec", help="run a command with a container-credentials endpoint for a profile")
    _profile_options(ex)
    ex.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")
    ex.set_defaults(run=_exec)

    sessions = commands.add_parser("sessions", help="the session cache: list or clear")
    sub = sessions.add_subparsers(dest="sessions_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="cached sessions (no secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(run=_sessions_list)
    clear = sub.add_parser("clear", help="remove cached sessions")
    clear.add_argument("--profile", metavar="NAME", help="only those whose chain includes this profile")
    clear.set_defaults(run=_sessions_clear)


def _profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, metavar="NAME", help="a profile of ~/.aws/config")
    parser.add_argument("--token-code", metavar="C", help="the MFA code, if one is needed (used once)")


def resolver(token_code: str | None = None):
    """The CLI's ``ProfileResolver``: the keyring, the session cache, the system clock, this terminal."""
    from agent.keystore import KeyStore
    from agent.profile_chain import ProfileResolver
    from wire.clock import SystemClock
    from wire.session_cache import SessionCache

    return ProfileResolver(keystore=KeyStore(), cache=SessionCache(), clock=SystemClock(), token_code=token_code)


def _resolve(args: argparse.Namespace, what: str):
    async def body():
        return await resolver(args.token_code).credentials(args.profile)

    return run(body, what=what)


def _credential_process(args: argparse.Namespace) -> int:
    entry = _resolve(args, "credential-process")
    sys.stdout.write(json.dumps(entry.process_output()) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    entry = _resolve(args, "export")
    doc = entry.process_output()
    if args.format == "json":
        print(json.dumps(doc))
        return 0
    values = {"AWS_ACCESS_KEY_ID": doc["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": doc["SecretAccessKey"],
              "AWS_SESSION_TOKEN": doc["SessionToken"], "AWS_CREDENTIAL_EXPIRATION": doc["Expiration"]}
    print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items()))
    return 0


def _exec(args: argparse.Namespace) -> int:
    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if not command:
        raise CliError("exec: give the command to run after --, e.g. rolecall exec --profile dev -- aws s3 ls")

    async def body() -> int:
        from agent.exec_runner import run_exec
        from wire.clock import SystemClock

        return await run_exec(resolver(args.token_code), args.profile, command, clock=SystemClock())

    if not args.debug:  # the command's own output is what matters; rotations are news only when they fail
        import logging

        logging.getLogger("rolecall.agent.rotation").setLevel(logging.WARNING)

    return run(body, what="exec")


def _sessions_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from wire.session_cache import SessionCache, format_z

    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"Kind": entry.kind, "Profile": entry.profile, "Profiles": list(entry.profiles),
             "AccessKeyId": entry.access_key_id, "Expiration": format_z(entry.expiration),
             "MfaSerial": entry.mfa_serial, "RoleArn": entry.role_arn,
             "Expired": entry.expiration <= now} for _, entry in SessionCache().items()]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no cached sessions")
    for row in rows:
        left = "expired" if row["Expired"] else f"until {row['Expiration']}"
        what = row["RoleArn"] or row["MfaSerial"] or ""
        print(f"{row['Kind']:12} {row['Profile']:20} {row['AccessKeyId']:22} {left:28} {what}".rstrip())
    return 0


def _sessions_clear(args: argparse.Namespace) -> int:
    from wire.session_cache import SessionCache

    removed = SessionCache().clear(args.profile)
    print(f"removed {removed} cached session{'s' if removed != 1 else ''}")
    return 0
