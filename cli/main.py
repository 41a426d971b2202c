"""`rolecall`: parse the command line, dispatch, turn errors into one line.

Exit status: 0 success; 1 a clear one-line error on stderr; 2 usage (argparse).
No traceback reaches a user unless ``--debug``. Each command group registers its
own sub-parser from a small module here (``cli/backend.py`` and so on); this file
only holds the root and the error edge.

``rolecall credential-process --profile X`` is run by SDKs on every new
process, so it is tried first on a warm path (``sdk_shim.credential_process``)
that imports nothing heavy; only when that cannot answer is the full parser
built. Command modules import their components inside the command functions, so
``rolecall --help`` stays cheap too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cli.errors import CliError

__all__ = ["CliError", "build_parser", "main"]


def build_parser():
    """The root ``argparse`` parser with every command group registered."""
    import argparse

    from cli import agent, backend, doctor, keys, mfa, profiles, systemd, up  # each registers its own sub-parser

    class Version(argparse.Action):   # reads the metadata only when asked, so --help stays cheap
        def __call__(self, parser, namespace, values, option_string=None):
            from wire.version import version

            print(f"rolecall {version()}")
            parser.exit()

    parser = argparse.ArgumentParser(prog="rolecall", description="Short-lived AWS credentials for every process on a host.")
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up.register(commands)
    backend.register(commands)
    agent.register(commands)
    systemd.register(commands)
    profiles.register(commands)
    keys.register(commands)
    mfa.register(commands)
    doctor.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["credential-process"]:
        from sdk_shim.credential_process import run_warm

        status = run_warm(argv)
        if status is not None:
            return status
    return _run(argv)


def _run(argv: list[str]) -> int:
    import logging

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP call is noise
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
    sys.exit(main())
