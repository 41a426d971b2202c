"""`rolecall systemd install [--user] [--dest DIR] [--executable PATH]`: write the unit files.

The templates live in the repository's ``systemd/`` folder; ``@BINDIR@/rolecall``
becomes the absolute path of the installed ``rolecall`` executable (``--executable``,
else ``shutil.which("rolecall")``, else ``sys.argv[0]`` resolved). System units go to
``/etc/systemd/system`` unless ``--dest`` says otherwise; ``--user`` writes user units
(loopback socket only, no link-local unit, sandboxing a user manager can apply, paths
under ``%E``/``%S``) to ``~/.config/systemd/user``. Nothing else is touched: the agent's
configuration stays the operator's to write (``systemd/agent.toml.example``). Each file
written is printed, then the commands that enable the units: the socket and the
service both, so the agent starts at boot and holds credentials before the first
request (the socket's ``Also=`` does the same for ``enable`` of the socket alone).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from cli.main import CliError

__all__ = ["ENABLE_UNITS", "SYSTEM_UNITS", "USER_UNITS", "register", "render", "template_dir"]

SYSTEM_UNITS = ("rolecall-agent.service", "rolecall-agent.socket", "rolecall-link-local.service",
                "rolecall-backend.service")
USER_UNITS = ("rolecall-agent.service", "rolecall-agent.socket", "rolecall-backend.service")

# Directives a user manager cannot apply (they need privileges or the system's cgroups).
_SYSTEM_ONLY = frozenset({
    "DynamicUser", "User", "Group", "CapabilityBoundingSet", "AmbientCapabilities", "PrivateDevices",
    "PrivateUsers", "PrivateIPC", "PrivateMounts", "PrivateTmp", "ProtectSystem", "ProtectHome",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset", "RemoveIPC", "KeyringMode",
    "DevicePolicy", "IPAddressDeny", "IPAddressAllow", "LoadCredential", "FreeBind",
})
# Enabled together: the service starts at boot (prefetching credentials before any
# request), not on the first connection to the socket.
ENABLE_UNITS = ("rolecall-agent.socket", "rolecall-agent.service")
_NOT_IN_USER_MANAGER = frozenset({"rolecall-link-local.service", "network-online.target", "network-pre.target"})
_DEPENDENCIES = frozenset({"After", "Before", "Wants", "Requires", "WantedBy"})
_USER_PATHS = (
    ("/etc/rolecall/agent.toml", "%E/rolecall/agent.toml"),
    ("/var/lib/rolecall-backend", "%S/rolecall-backend"),
    ("WantedBy=multi-user.target", "WantedBy=default.target"),
)


def template_dir() -> Path:
    """The folder holding the unit templates (``systemd/`` beside the packages)."""
    return Path(__file__).resolve().parent.parent / "systemd"


def _user_line(line: str) -> str | None:
    key, sep, value = line.partition("=")
    key = key.strip()
    if key in _SYSTEM_ONLY or "169.254.169.254" in line:
        return None
    if line.startswith("#") and "rolecall-link-local" in line:
        return None
    if key in _DEPENDENCIES:
        kept = [unit for unit in value.split() if unit not in _NOT_IN_USER_MANAGER]
        if not kept:
            return None
        line = f"{key}={' '.join(kept)}"
    for old, new in _USER_PATHS:
        line = line.replace(old, new)
    return line


def render(text: str, executable: str, *, user: bool = False) -> str:
    """A unit template with the executable filled in (and cut down for a user manager)."""
    text = text.replace("@BINDIR@/rolecall", executable)
    if not user:
        return text
    lines = [_user_line(line) for line in text.splitlines()]
    header = "# User unit written by `rolecall systemd install --user`.\n"
    return header + "\n".join(line for line in lines if line is not None) + "\n"


def _executable(given: str | None) -> str:
    candidate = given or shutil.which("rolecall") or sys.argv[0]
    path = Path(candidate).resolve() if candidate else None
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        raise CliError(f"systemd install: {candidate!r} is not an executable file (use --executable)")
    return str(path)


def _install(args: argparse.Namespace) -> int:
    executable = _executable(args.executable)
    if args.dest:
        dest = Path(args.dest)
    elif args.user:
        dest = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"
    else:
        dest = Path("/etc/systemd/system")
    source = template_dir()
    names = USER_UNITS if args.user else SYSTEM_UNITS
    if not all((source / name).is_file() for name in names):
        raise CliError(f"systemd install: unit templates not found in {source}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            text = render((source / name).read_text(encoding="utf-8"), executable, user=args.user)
            (dest / name).write_text(text, encoding="utf-8")
            os.chmod(dest / name, 0o644)
            print(f"wrote {dest / name}")
    except OSError as exc:
        raise CliError(f"systemd install: cannot write to {dest}: {exc.strerror or exc}") from None
    _next_steps(args.user, executable, source)
    return 0


def _next_steps(user: bool, executable: str, source: Path) -> None:
    scope = "systemctl --user" if user else "systemctl"
    config = "~/.config/rolecall/agent.toml" if user else "/etc/rolecall/agent.toml"
    print(f"next: write {config} (example: {source / 'agent.toml.example'}), then "
          f"`{scope} daemon-reload && {scope} enable --now {' '.join(ENABLE_UNITS)}`")
    if not user and executable.startswith(("/home/", "/root/")):
        print(f"warning: {executable} is under /home or /root, which ProtectHome=yes hides from the "
              "services; install rolecall outside them (e.g. /opt or /usr/local)", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``systemd install`` to the root parser."""
    parser = commands.add_parser("systemd", help="systemd unit files for the agent and the backend")
    sub = parser.add_subparsers(dest="systemd_command", required=True, metavar="SUBCOMMAND")
    install = sub.add_parser("install", help="write the unit files with this rolecall's path in ExecStart")
    install.add_argument("--user", action="store_true", help="user units for `systemctl --user`")
    install.add_argument("--dest", metavar="DIR",
                         help="where to write (default /etc/systemd/system, or ~/.config/systemd/user)")
    install.add_argument("--executable", metavar="PATH", help="the rolecall executable ExecStart runs")
    install.set_defaults(run=_install)
