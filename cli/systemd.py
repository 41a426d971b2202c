"""`rolecall systemd install [--user] [--dest DIR] [--sysusers-dir DIR] [--executable PATH]`.

Writes the unit files. The templates are package data of ``cli`` (``cli/systemd_units/``,
read with ``importlib.resources``), so an installed wheel carries them; there is no
other copy. ``@BINDIR@/rolecall`` becomes the absolute path of the installed
``rolecall`` executable (``--executable``, else the ``rolecall`` script running this
command, else ``shutil.which("rolecall")``). System units go to ``/etc/systemd/system``
unless ``--dest`` says otherwise; ``--user`` writes user units (loopback socket only,
no link-local unit, sandboxing a user manager can apply, paths under ``%E``/``%S``) to
``~/.config/systemd/user``.

Identity. The agent's system service runs as the static system user and group
``rolecall`` (``User=rolecall``, ``Group=rolecall``), not under ``DynamicUser=``: its
control socket ``/run/rolecall/agent.sock`` is 0660 with the group ``rolecall`` (see
``agent.control``) so that root and the group's members can run ``rolecall agent
status``, and a dynamic user's group exists only while the service runs and cannot
have members. Hence a sysusers.d(5) snippet, ``rolecall.conf``
(``u rolecall - "rolecall agent" - -``), written with the system units: to
``/etc/sysusers.d`` by default, next to the units with ``--dest``, or to
``--sysusers-dir``. ``systemd-sysusers`` creates the user and group (nologin, home
``/``) at every boot from ``/etc/sysusers.d``; the printed next step has the operator run
it once before enabling the units, which fail with ``217/USER`` while the user is
missing. (The other choice, a 0600 socket with ``status`` run through
``systemctl``/``systemd-run`` as the service's user, would keep ``DynamicUser`` but
leave operators no unprivileged way to ask the agent.) The sandbox that
``DynamicUser=`` implied (``ProtectSystem=strict``, ``ProtectHome``, ``PrivateTmp``,
``RemoveIPC``, ``NoNewPrivileges``, ``RestrictSUIDSGID``) is spelled out in the unit.
The backend runs as the static user ``rolecall-backend`` (a second line of the same
snippet), not a ``DynamicUser=`` either: a dynamic user's state directory is a symlink
into ``/var/lib/private`` owned by a uid that exists only while it runs, which
``wire.private_files.private_dir`` rightly refuses, and the admin commands
(``backend init``, ``rotate-token-key``, ``backup``) must run as the data dir's owner.

Nothing else is touched: the agent's configuration stays the operator's to write
(``agent.toml.example`` among the templates). Each file written is printed, then the
commands that create the user and enable the units: the socket and the service both,
so the agent starts at boot and holds credentials before the first request (the
socket's ``Also=`` does the same for ``enable`` of the socket alone).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from cli.errors import CliError

__all__ = ["ENABLE_UNITS", "SYSTEM_UNITS", "SYSUSERS", "USER_UNITS", "register", "render", "template_dir"]

SYSTEM_UNITS = ("rolecall-agent.service", "rolecall-agent.socket", "rolecall-link-local.service",
                "rolecall-backend.service", "rolecall-container.socket")
USER_UNITS = ("rolecall-agent.service", "rolecall-agent.socket", "rolecall-backend.service")
# The sysusers.d snippet for the agent's and the backend's static users (system units only).
SYSUSERS = "rolecall.conf"
SYSUSERS_DIR = "/etc/sysusers.d"

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


def template_dir() -> Traversable:
    """The unit templates: package data of ``cli`` (``cli/systemd_units/``), in a wheel too."""
    return files("cli") / "systemd_units"


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
    blocks = [_user_block(block) for block in text.strip("\n").split("\n\n")]
    header = "# User unit written by `rolecall systemd install --user`.\n"
    return header + "\n\n".join(block for block in blocks if block is not None) + "\n"


def _user_block(block: str) -> str | None:
    """A paragraph cut down for a user manager; None when all its settings are system-only.

    A paragraph's comments explain its settings, so they go with them (the identity
    paragraph of the agent's unit: ``User=``, ``Group=``, ``LoadCredential=``).
    """
    lines = block.split("\n")
    kept = [line for line in map(_user_line, lines) if line is not None]
    had_settings = any(_is_setting(line) for line in lines)
    if had_settings and not any(_is_setting(line) or line.startswith("[") for line in kept):
        return None
    return "\n".join(kept) if kept else None


def _is_setting(line: str) -> bool:
    return "=" in line and not line.startswith(("#", ";", "["))


def _running_script() -> str | None:
    """The ``rolecall`` console script running this command, if that is how it was started."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if path is not None and path.name == "rolecall" and path.is_file() and os.access(path, os.X_OK):
        return str(path)
    return None


def _executable(given: str | None) -> str:
    candidate = given or _running_script() or shutil.which("rolecall")
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
    if args.user and args.sysusers_dir:
        raise CliError("systemd install: --sysusers-dir is for the system units (user units run as you)")
    source = template_dir()
    names = USER_UNITS if args.user else SYSTEM_UNITS
    if not all((source / name).is_file() for name in (*names, SYSUSERS)):
        raise CliError(f"systemd install: unit templates not found in {source}")
    files_out = [(dest, name, render((source / name).read_text(encoding="utf-8"), executable, user=args.user))
                 for name in names]
    sysusers = None
    if not args.user:
        sysusers = Path(args.sysusers_dir or (dest if args.dest else SYSUSERS_DIR)) / SYSUSERS
        files_out.append((sysusers.parent, SYSUSERS, (source / SYSUSERS).read_text(encoding="utf-8")))
    for directory, name, text in files_out:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text, encoding="utf-8")
            os.chmod(directory / name, 0o644)
        except OSError as exc:
            raise CliError(f"systemd install: cannot write to {directory}: {exc.strerror or exc}") from None
        print(f"wrote {directory / name}")
    _next_steps(args.user, executable, source, sysusers)
    return 0


def _next_steps(user: bool, executable: str, source: Traversable, sysusers: Path | None) -> None:
    scope = "systemctl --user" if user else "systemctl"
    config = "~/.config/rolecall/agent.toml" if user else "/etc/rolecall/agent.toml"
    create_user = f"systemd-sysusers {sysusers} && " if sysusers is not None else ""
    print(f"next: write {config} (example: {source / 'agent.toml.example'}), then "
          f"`{create_user}{scope} daemon-reload && {scope} enable --now {' '.join(ENABLE_UNITS)}`")
    if sysusers is not None:
        print("members of the group rolecall may ask the agent (`rolecall agent status`): "
              "`usermod -aG rolecall NAME`")
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
    install.add_argument("--sysusers-dir", metavar="DIR",
                         help="where the sysusers.d snippet for the user and group rolecall goes "
                              f"(default {SYSUSERS_DIR}, or --dest when given)")
    install.add_argument("--executable", metavar="PATH", help="the rolecall executable ExecStart runs")
    install.set_defaults(run=_install)
