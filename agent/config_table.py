"""Typed access to the config file's tables: the known sections and keys.

``read_sections`` refuses unknown sections and keys and gives every known section
a ``Table``, whose getters raise ``ConfigError`` naming the file, the section
and the key. Part of ``agent.config`` (its theory of operation is there); the
per-section checks that use these tables are in ``agent.config_sections``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from agent.errors import ConfigError

SECTIONS: dict[str, tuple[str, ...]] = {
    "sts": ("endpoint_url", "region", "timeout_seconds", "ca_bundle", "insecure_http"),
    "source": ("access_key_id", "secret_access_key", "secret_access_key_file", "env", "keyring",
               "profile", "web_identity_token_file", "mfa_serial"),
    "role": ("arn", "session_name", "duration_seconds", "external_id", "policy", "policy_arns", "tags",
             "source_identity", "refresh_before_expiry_seconds"),
    "metadata": ("listen", "tokens", "hop_limit", "allowed_hosts", "allowed_peers", "region",
                 "availability_zone", "instance_id"),
    "container": ("listen", "token_file", "role"),
    "agent": ("control_socket", "metrics_listen", "metrics_allow_remote"),
    "roles": (),  # a table of [roles.NAME] tables: ROLE_RULE_KEYS, checked by read_sections
}
ROLE_RULE_KEYS = (*SECTIONS["role"], "match")
ROLE_RULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


class Table:
    """One section's table, with getters that raise ``ConfigError`` naming the key."""

    def __init__(self, path: str, name: str, values: dict[str, Any] | None) -> None:
        self.path, self.name = path, name
        self.present = values is not None
        self.values = values if values is not None else {}

    def error(self, key: str | None, reason: str) -> ConfigError:
        where = f"[{self.name}] {key}" if key else f"[{self.name}]"
        return ConfigError(self.path, where, reason)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def string(self, key: str, default: str | None = None, *, pattern: re.Pattern | None = None,
               reason: str = "") -> str | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, reason)
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.values.get(key, default)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise self.error(key, f"must be an integer from {low} to {high}")
        return value

    def strings(self, key: str, *, one_allowed: bool = False) -> tuple[str, ...] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if one_allowed and isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a string or an array of strings" if one_allowed
                             else "must be an array of strings")
        return tuple(value)

    def path_value(self, key: str, base_dir: str) -> str | None:
        value = self.string(key)
        if value is not None and not value:
            raise self.error(key, "must not be empty")
        return None if value is None else os.path.join(base_dir, os.path.expanduser(value))


def read_sections(path: str, document: dict[str, Any]) -> dict[str, Table]:
    for name, value in document.items():
        if name not in SECTIONS:
            kind = "section" if isinstance(value, dict) else "key (keys belong in a section)"
            raise ConfigError(path, f"[{name}]" if isinstance(value, dict) else name,
                              f"unknown {kind}; known sections: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(path, f"[{name}]", "must be a table")
        if name == "roles":
            _check_role_rules(path, value)
            continue
        for key in value:
            if key not in SECTIONS[name]:
                raise ConfigError(path, f"[{name}] {key}", "unknown key")
    return {name: Table(path, name, document.get(name)) for name in SECTIONS}


def _check_role_rules(path: str, rules: dict[str, Any]) -> None:
    """``[roles]`` holds only ``[roles.NAME]`` tables of ``ROLE_RULE_KEYS``, NAME a plain TOML key."""
    for name, table in rules.items():
        if not ROLE_RULE_NAME.fullmatch(name):
            raise ConfigError(path, "[roles]", f"table name {name!r} must be 1-64 letters, digits, _ or -")
        if not isinstance(table, dict):
            raise ConfigError(path, f"[roles] {name}", "must be a table: [roles.NAME] with the keys of [role] "
                                                       "and match")
        for key in table:
            if key not in ROLE_RULE_KEYS:
                raise ConfigError(path, f"[roles.{name}] {key}", "unknown key")


def require_section(t: Table, hint: str) -> Table:
    if not t.present:
        raise t.error(None, f"missing section: {hint}")
    return t
