"""The agent's TOML configuration (design.md), checked completely at load.

Theory of operation
-------------------
``parse_config(text, path)`` turns the file's text into frozen dataclasses or
raises ``ConfigError`` whose ``str()`` is one line naming the file, the key and
the reason (``/etc/rolecall/agent.toml: [role] duration_seconds: must be an
integer from 900 to 43200``). Every section and key is checked: unknown ones,
wrong types and bad values are refused, so a file that loads is one the
daemon can run; on SIGHUP the daemon calls ``load_config`` again and keeps the
old config when it raises.

The only reads besides the text itself are the files the config names, to
refuse at load what could never work: ``secret_access_key_file`` and
``web_identity_token_file`` (relative paths resolve against
``$CREDENTIALS_DIRECTORY`` when set, as systemd's ``LoadCredential=`` provides
them, else against the config file's directory), and ``ca_bundle``. Secret
values never reach a message or a ``repr``.

``[source] keyring`` and ``profile`` name long-term keys in the OS keyring
and a profile of the AWS config files; they are read when the agent starts,
not at load. ``mfa_serial`` makes the agent hold an MFA session
(GetSessionToken) of that identity and assume the role from it, so
``duration_seconds`` is then at most 3600 (STS's role-chaining cap).

``[roles.NAME]`` tables (``agent.config_roles``) are per-caller roles: the keys
of ``[role]`` plus ``match``; ``[role]`` is then the default for callers no rule
matches, and may be left out to refuse them. ``match.user`` is resolved to a
uid at load; what this host lacks (a user, a unit) is not an error but a line
of ``rule_warnings(config)``, which the daemon logs at start and on reload.

This module holds the entry points; the checked values are the dataclasses of
``agent.config_types`` (re-exported here), and the checks are in
``agent.config_table`` (the known sections and keys, typed getters) and
``agent.config_sections`` (one function per section). None of them imports
this module, so there is no cycle to break.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Callable, Mapping

from agent.config_sections import (parse_container, parse_control_socket, parse_metadata, parse_metrics_listen,
                                   parse_role, parse_source, parse_sts, refuse_for_web_identity)
from agent.config_roles import lookup_uid, parse_roles, rule_warnings
from agent.config_table import Table, read_sections
from agent.config_types import AgentConfig, RoleConfig, RoleRule
from agent.errors import ConfigError

__all__ = ["load_config", "parse_config", "rule_warnings"]

log = logging.getLogger("rolecall.agent.config")

MAX_CONFIG_BYTES = 1 << 20


# --- entry points -----------------------------------------------------------------------


def load_config(path: str, *, environ: Mapping[str, str] | None = None, uid: int | None = None,
                hostname: str | None = None) -> AgentConfig:
    """Read and check the agent's TOML file.

    Args:
        path: the file.
        environ: for ``$CREDENTIALS_DIRECTORY``, ``$ROLECALL_AGENT_SOCKET`` and
            ``$XDG_RUNTIME_DIR``; default ``os.environ``.
        uid: whose agent this is (root or a user); default ``os.getuid()``.
        hostname: for the default session name; default the host's name.

    Returns:
        The checked configuration.

    Raises:
        ConfigError: the file is unreadable, not TOML, or any key is wrong.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "", f"larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    config = parse_config(text, path, environ=environ, uid=uid, hostname=hostname)
    if config.source.kind == "static" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s holds secret_access_key and is readable by others (mode %o): chmod 600 it",
                    path, stat.S_IMODE(mode))
    return config


def parse_config(text: str, path: str, *, environ: Mapping[str, str] | None = None, uid: int | None = None,
                 hostname: str | None = None, lookup_uid: Callable[[str], int | None] = lookup_uid
                 ) -> AgentConfig:
    """Check the TOML ``text`` of the file ``path`` (named in errors; see ``load_config``).

    ``lookup_uid`` resolves ``[roles.NAME] match.user`` (default: the password database).

    Returns:
        The checked configuration.

    Raises:
        ConfigError: not TOML, an unknown section or key, a wrong type or value.
    """
    environ = os.environ if environ is None else environ
    path = str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(path, "", "not valid TOML: arrays or tables nested too deeply") from None
    tables = read_sections(path, document)
    base_dir = os.path.dirname(os.path.abspath(path))
    sts = parse_sts(tables["sts"], base_dir)
    source = parse_source(tables["source"], environ, base_dir)
    roles = parse_roles(tables["roles"], hostname, lookup_uid)
    # [role] is the default for callers no rule matches; with rules it may be left out to refuse them
    role = parse_role(tables["role"], hostname) if tables["role"].present or not roles else None
    for where, checked, table in _role_tables(tables, role, roles):
        if source.kind == "web_identity":
            refuse_for_web_identity(table)
        if source.mfa_serial and checked.duration_seconds > 3600:
            raise ConfigError(path, f"{where} duration_seconds", "must be at most 3600 with [source] mfa_serial: the "
                              "role is assumed from the MFA session, and STS caps such role chaining at one hour")
    metadata = parse_metadata(tables["metadata"], sts.region)
    container = parse_container(tables["container"], base_dir) if tables["container"].present else None
    _check_container_role(path, container, role, roles)
    control_socket = parse_control_socket(tables["agent"], environ, os.getuid() if uid is None else uid)
    metrics_listen = parse_metrics_listen(tables["agent"])
    return AgentConfig(path, sts, source, role, metadata, container, control_socket, roles, metrics_listen)


def _check_container_role(path: str, container, role: RoleConfig | None, roles: tuple[RoleRule, ...]) -> None:
    """The container endpoint knows callers by their token alone, so it serves one role: a rule's, or [role]."""
    if container is None:
        return
    if container.role is None:
        if role is None:
            raise ConfigError(path, "[container]", 'needs role = "NAME" of a [roles.NAME] table when there is no '
                                                   "[role] (the endpoint serves one role to every token holder)")
    elif container.role not in {r.name for r in roles}:
        known = ", ".join(r.name for r in roles) or "none"
        raise ConfigError(path, "[container] role", f"names no [roles.NAME] table (known: {known}); "
                                                    "leave it out to serve [role]")


def _role_tables(tables: dict[str, Table], role: RoleConfig | None, roles: tuple[RoleRule, ...]):
    """``(where, RoleConfig, Table)`` of ``[role]`` (when given) and of every ``[roles.NAME]``."""
    if role is not None:
        yield "[role]", role, tables["role"]
    for rule in roles:
        yield f"[roles.{rule.name}]", rule.role, Table(tables["roles"].path, f"roles.{rule.name}",
                                                       tables["roles"].values[rule.name])
