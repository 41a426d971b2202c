"""`rolecall`: parse the command line, dispatch, turn errors into one line.

Exit status: 0 success; 1 a clear one-line error on stderr; 2 usage (argparse).
No traceback reaches a user unless ``--debug``. Each command group registers its
own sub-parser from a small module here (``cli/backend.py`` and so on); this file
only holds the root and the error edge.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

# Commands of the public contract (design.md) whose components do not exist yet.
# They refuse with exit 1 rather than pretend; each moves to its own module when built.
_NOT_YET = {
    "credential-process": "the credential_process helper is not built yet",
    "keys": "the keyring store is not built yet",
    "mfa": "the MFA session helper is not built yet",
    "exec": "rolecall exec is not built yet",
}


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _not_yet(reason: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise CliError(f"rolecall {args.command}: {reason}")

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rolecall", description="Short-lived AWS credentials for every process on a host.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, reason in _NOT_YET.items():
        sub = commands.add_parser(name, help=f"(not available yet: {reason})")
        sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        sub.set_defaults(run=_not_yet(reason))
    from cli import agent, backend, systemd, up  # each command group registers its own sub-parser

    up.register(commands)
    backend.register(commands)
    agent.register(commands)
    systemd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args) or 0
    except CliError as exc:
        print(f"rolecall: {exc}" if not str(exc).startswith("rolecall") else str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the edge: one line, unless --debug
        if args.debug:
            raise
        print(f"rolecall: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run as `python -m cli.main`: dispatch through the imported module so that the
    # CliError the command modules raise is the class the edge above catches.
    from cli.main import main as _main

    sys.exit(_main())
