"""The checks of each section of the agent's config file, and of its values.

One function per section (``parse_sts``, ``parse_source``, ``parse_role``,
``parse_metadata``, ``parse_container``, ``parse_control_socket``) turns its ``Table`` into that section's
value or raises ``ConfigError`` naming the key. Part of ``agent.config``,
whose ``parse_config`` calls them in that order; its theory of operation is
there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import ssl
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from agent.config_table import Table, require_section
from agent.config_types import (ACCESS_KEY_ID, AWS_REGION, GLOBAL_REGION, MAX_SOCKET_PATH, MIN_REFRESH_LEAD, ROLE_ARN,
                                SECRET_KEY, RoleConfig, SourceConfig, StsConfig, default_control_socket,
                                default_session_name)
from agent.errors import SourceError
from agent.sources import read_secret_file, read_token_file
from wire.listeners import is_loopback_host
from wire.metrics_endpoint import check_metrics_listen
from metadata_server.config import ContainerConfig, MetadataConfig

_SOURCE_KINDS = {"secret_access_key": "static", "secret_access_key_file": "file", "env": "env",
                 "web_identity_token_file": "web_identity", "keyring": "keyring", "profile": "profile"}
_SOURCES_HELP = ("access_key_id with secret_access_key or secret_access_key_file, env = true, keyring, profile, "
                 "or web_identity_token_file")

_SIGNING_REGION = re.compile(r"[A-Za-z0-9_-]{1,63}")
_POLICY_ARN = re.compile(r"arn:[a-z][a-z0-9-]*:iam::(?:[0-9]{12}|aws):policy/[\x21-\x7e]+", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_SESSION_TEXT = re.compile(r"[\w+=,.@-]*", re.ASCII)
HOSTNAME_FIELD = "{hostname}"
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,256}", re.ASCII)
_KEYRING_NAME = re.compile(r"[\w+=,.@-]{1,128}(/[\w+=,.@-]{1,128})?", re.ASCII)
_PROFILE_NAME = re.compile(r"[^\s\[\]]{1,128}")
_MFA_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII)
_POLICY_CHARS = re.compile(r"[\t\n\r\x20-\xff]*")
_TAG_PUNCT = frozenset("_.:/=+-@")


# --- [sts] -------------------------------------------------------------------------------


def parse_sts(t: Table, base_dir: str) -> StsConfig:
    endpoint = t.string("endpoint_url")
    insecure = t.values.get("insecure_http", False)
    if type(insecure) is not bool:
        raise t.error("insecure_http", "must be true or false")
    if endpoint is not None:
        _check_url(t, endpoint)
        parts = urlsplit(endpoint)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or "") and not insecure:
            raise t.error("endpoint_url", "plain http:// to a host off this machine would send the agent's keys' "
                                          "signatures and the role's secrets in clear: use https://, or set "
                                          "insecure_http = true")
    region = t.string("region", pattern=_SIGNING_REGION, reason="must be a region name such as us-east-1")
    if region is None:
        if endpoint is None:
            raise t.error("region", "required when endpoint_url is omitted (it picks sts.REGION.amazonaws.com)")
        region = "us-east-1"
    elif endpoint is None and not (AWS_REGION.fullmatch(region) or region == GLOBAL_REGION):
        raise t.error("region", f"must be an AWS region such as eu-west-1 (or {GLOBAL_REGION} for "
                                "sts.amazonaws.com) when endpoint_url is omitted")
    timeout = t.values.get("timeout_seconds", 10.0)
    if type(timeout) not in (int, float) or not 0 < timeout <= 300:
        raise t.error("timeout_seconds", "must be a number of seconds above 0 and at most 300")
    ca_bundle = t.path_value("ca_bundle", base_dir)
    if ca_bundle is not None:
        _check_ca_bundle(t, ca_bundle)
    return StsConfig(endpoint, region, float(timeout), ca_bundle)


def _check_url(t: Table, url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise t.error("endpoint_url", "is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error("endpoint_url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise t.error("endpoint_url", "must not hold a user name or password")
    if parts.query or parts.fragment:
        raise t.error("endpoint_url", "must not have a query string or fragment")


def _check_ca_bundle(t: Table, path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise t.error("ca_bundle", f"cannot load {path}: {exc.reason or 'not PEM certificates'}") from None
    except OSError as exc:
        raise t.error("ca_bundle", f"cannot load {path}: {exc.strerror or exc}") from None


# --- [source] ----------------------------------------------------------------------------


def parse_source(t: Table, environ: Mapping[str, str], base_dir: str) -> SourceConfig:
    source = _source_kind(t, environ, base_dir)
    serial = t.string("mfa_serial", pattern=_MFA_SERIAL,
                      reason="must be an MFA device's serial, e.g. arn:aws:iam::123456789012:mfa/NAME")
    if serial is None:
        return source
    if source.kind == "web_identity":
        raise t.error("mfa_serial", "not used with web_identity_token_file (the token proves who calls)")
    return dataclasses.replace(source, mfa_serial=serial)


def _source_kind(t: Table, environ: Mapping[str, str], base_dir: str) -> SourceConfig:
    require_section(t, f"give one credential source: {_SOURCES_HELP}")
    chosen = [key for key in _SOURCE_KINDS if key in t]
    if len(chosen) > 1:
        raise t.error(chosen[1], f"conflicts with {chosen[0]}: give exactly one credential source")
    if not chosen:
        if "access_key_id" in t:
            raise t.error("access_key_id", "needs secret_access_key or secret_access_key_file")
        raise t.error(None, f"give one credential source: {_SOURCES_HELP}")
    kind = _SOURCE_KINDS[chosen[0]]
    if kind in ("static", "file"):
        return _key_source(t, kind, chosen[0], environ, base_dir)
    if "access_key_id" in t:
        raise t.error("access_key_id", "goes only with secret_access_key or secret_access_key_file")
    if kind == "env":
        if t.values["env"] is not True:
            raise t.error("env", "must be true (leave it out otherwise)")
        return SourceConfig("env")
    if kind == "keyring":
        return SourceConfig("keyring", keyring=t.string(
            "keyring", pattern=_KEYRING_NAME, reason="must be a keyring entry name: NAME or SERVICE/NAME"))
    if kind == "profile":
        return SourceConfig("profile", profile=t.string(
            "profile", pattern=_PROFILE_NAME, reason="must be a profile name of ~/.aws/config"))
    token_file = _credential_path(t, "web_identity_token_file", environ, base_dir)
    _check_readable(t, "web_identity_token_file", read_token_file, token_file)
    return SourceConfig("web_identity", web_identity_token_file=token_file)


def _key_source(t: Table, kind: str, secret_key: str, environ: Mapping[str, str], base_dir: str) -> SourceConfig:
    if "access_key_id" not in t:
        raise t.error(secret_key, "needs access_key_id")
    key_id = t.string("access_key_id", pattern=ACCESS_KEY_ID,
                      reason="must be 3-128 letters, digits or underscores")
    if kind == "static":
        value = t.values["secret_access_key"]
        if not isinstance(value, str) or not SECRET_KEY.fullmatch(value):
            raise t.error("secret_access_key", "must be a non-empty string of printable ASCII without spaces")
        return SourceConfig("static", key_id, secret_access_key=value)
    secret_file = _credential_path(t, "secret_access_key_file", environ, base_dir)
    _check_readable(t, "secret_access_key_file", read_secret_file, secret_file)
    return SourceConfig("file", key_id, secret_access_key_file=secret_file)


def _credential_path(t: Table, key: str, environ: Mapping[str, str], base_dir: str) -> str:
    """Relative paths resolve against ``$CREDENTIALS_DIRECTORY`` (systemd), else the config's directory."""
    value = t.string(key)
    if not value:
        raise t.error(key, "must be a non-empty path")
    return os.path.join(environ.get("CREDENTIALS_DIRECTORY") or base_dir, os.path.expanduser(value))


def _check_readable(t: Table, key: str, reader, path: str) -> None:
    try:
        reader(path)
    except SourceError as exc:
        raise t.error(key, str(exc)) from None


# --- [role] ------------------------------------------------------------------------------


def parse_role(t: Table, hostname: str | None, default_session: str | None = None) -> RoleConfig:
    """``[role]``, or the role keys of a ``[roles.NAME]`` table.

    Args:
        t: the table.
        hostname: what ``{hostname}`` in ``session_name`` stands for, made
            session-name safe (``default_session_name``); default the host's.
        default_session: the ``session_name`` template when the key is
            absent; None: the host's name.
    """
    require_section(t, 'the agent needs the role it serves (arn = "arn:aws:iam::...")')
    if "arn" not in t:
        raise t.error("arn", "required")
    arn = t.string("arn")
    if not 20 <= len(arn) <= 2048 or not ROLE_ARN.fullmatch(arn):
        raise t.error("arn", "must be a role ARN such as arn:aws:iam::123456789012:role/NAME")
    duration = t.integer("duration_seconds", 900, 43200, 3600)
    return RoleConfig(
        arn=arn,
        session_name=_session_name(t, hostname, default_session),
        duration_seconds=duration,
        external_id=t.string("external_id", pattern=_EXTERNAL_ID,
                             reason="must be 2-1224 characters of letters, digits and +=,.@:/_-"),
        policy=_policy(t),
        policy_arns=_policy_arns(t),
        tags=_tags(t),
        source_identity=t.string("source_identity", pattern=_SOURCE_IDENTITY,
                                 reason="must be 2-256 characters of letters, digits and +=,.@_-"),
        refresh_before_expiry_seconds=_refresh_lead(t, duration),
    )


def _session_name(t: Table, hostname: str | None, default: str | None) -> str:
    """``session_name`` with ``{hostname}`` replaced; a result past 64 characters is cut to 64.

    The cut only ever shortens what the host's name added, so one file works
    on every host of a fleet; a name written out in full must fit as it is.
    """
    template = t.string("session_name", default)
    if template is None:
        return default_session_name(hostname)
    literal = template.replace(HOSTNAME_FIELD, "")
    name = template.replace(HOSTNAME_FIELD, default_session_name(hostname))[:64]
    if len(literal) > 64 or not _SESSION_NAME.fullmatch(name) or not _SESSION_TEXT.fullmatch(literal):
        raise t.error("session_name", "must be 2-64 characters of letters, digits and +=,.@_- "
                                      "({hostname} stands for the host's name)")
    return name


def _refresh_lead(t: Table, duration: int) -> int | None:
    """``refresh_before_expiry_seconds``: from 600 (botocore's own refresh window: ``rotation``
    would raise anything shorter to it anyway) to ``duration_seconds`` - 300."""
    low, high = MIN_REFRESH_LEAD, duration - 300
    value = t.values.get("refresh_before_expiry_seconds")
    if value is not None and (type(value) is not int or not low <= value <= high):
        raise t.error("refresh_before_expiry_seconds", f"must be an integer from {low} to {high} "
                      f"(botocore refreshes by itself in the last {low // 60} minutes)")
    return value


def refuse_for_web_identity(t: Table) -> None:
    for key in ("external_id", "tags", "source_identity"):
        if key in t:
            raise t.error(key, "not used with web_identity_token_file "
                               "(AssumeRoleWithWebIdentity takes it from the token)")


def _policy(t: Table) -> str | None:
    policy = t.string("policy")
    if policy is None:
        return None
    if not 1 <= len(policy) <= 2048 or not _POLICY_CHARS.fullmatch(policy):
        raise t.error("policy", "must be 1-2048 characters of tab, newline, CR and U+0020-U+00FF")
    try:
        document = json.loads(policy)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise t.error("policy", "must be a JSON policy document (an object)")
    return policy


def _policy_arns(t: Table) -> tuple[str, ...]:
    arns = t.strings("policy_arns") or ()
    if len(arns) > 10:
        raise t.error("policy_arns", "at most 10 policies")
    for i, arn in enumerate(arns, 1):
        if not 20 <= len(arn) <= 2048 or not _POLICY_ARN.fullmatch(arn):
            raise t.error("policy_arns", f"entry {i} is not a policy ARN such as arn:aws:iam::aws:policy/NAME")
    return arns


def _tag_text_ok(text: str) -> bool:
    return all(c in _TAG_PUNCT or unicodedata.category(c)[0] in "LNZ" for c in text)


def _tags(t: Table) -> tuple[tuple[str, str], ...]:
    tags = t.values.get("tags")
    if tags is None:
        return ()
    if not isinstance(tags, dict):
        raise t.error("tags", "must be a table of key = \"value\"")
    if len(tags) > 50:
        raise t.error("tags", "at most 50 tags")
    seen: set[str] = set()
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or not _tag_text_ok(key):
            raise t.error("tags", f"tag key {key!r} must be 1-128 letters, digits, spaces or _.:/=+-@")
        if not isinstance(value, str) or len(value) > 256 or not _tag_text_ok(value):
            raise t.error("tags", f"tag {key!r}: value must be a string of 0-256 letters, digits, spaces or _.:/=+-@")
        if key.lower() in seen:
            raise t.error("tags", f"tag key {key!r} is given twice (tag keys ignore case)")
        seen.add(key.lower())
    return tuple(tags.items())


# --- [metadata], [container], [agent] ----------------------------------------------------

_METADATA_STRINGS = ("tokens", "region", "availability_zone", "instance_id")
# Which other keys a key's check depends on, to find the key a ValueError is about.
_METADATA_NEEDS = {"availability_zone": ("region",)}


def parse_metadata(t: Table, sts_region: str) -> MetadataConfig:
    values: dict[str, Any] = {}
    for key in ("listen", "allowed_hosts", "allowed_peers"):
        if key in t:
            values[key] = t.strings(key, one_allowed=True)
    for key in _METADATA_STRINGS:
        if key in t:
            values[key] = t.string(key)
    if "hop_limit" in t:
        values["hop_limit"] = t.integer("hop_limit", 1, 64)
    if "region" not in values and AWS_REGION.fullmatch(sts_region):
        values["region"] = sts_region
    return _build(t, MetadataConfig, values, _METADATA_NEEDS)


def parse_container(t: Table, base_dir: str) -> ContainerConfig:
    values: dict[str, Any] = {}
    if "listen" in t:
        values["listen"] = t.strings("listen", one_allowed=True)
    if "token_file" in t:
        values["token_file"] = t.path_value("token_file", base_dir)
    if "role" in t:
        values["role"] = t.string("role")
    return _build(t, ContainerConfig, values, {})


def _build(t: Table, cls, values: dict[str, Any], needs: dict[str, tuple[str, ...]]):
    """``cls(**values)``, with a ``ValueError`` reported against the key it is about."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise t.error(_culprit(cls, values, needs), str(exc)) from None


def _culprit(cls, values: dict[str, Any], needs: dict[str, tuple[str, ...]]) -> str | None:
    for key in values:
        alone = {k: values[k] for k in (*needs.get(key, ()), key) if k in values}
        try:
            cls(**alone)
        except ValueError:
            return key
    return None


def parse_control_socket(t: Table, environ: Mapping[str, str], uid: int) -> str:
    if "control_socket" not in t:
        return default_control_socket(environ, uid)
    value = t.string("control_socket")
    if not os.path.isabs(value):
        raise t.error("control_socket", "must be an absolute path")
    if len(os.fsencode(value)) > MAX_SOCKET_PATH:
        raise t.error("control_socket", f"must be at most {MAX_SOCKET_PATH} bytes (a unix socket path)")
    return value


def parse_metrics_listen(t: Table) -> str | None:
    """``[agent] metrics_listen``: the ``"H:P"`` of the Prometheus endpoint, off (None) by default;
    loopback only unless ``metrics_allow_remote = true`` (as ``[sts] insecure_http`` opts in)."""
    allow_remote = t.values.get("metrics_allow_remote", False)
    if type(allow_remote) is not bool:
        raise t.error("metrics_allow_remote", "must be true or false")
    address = t.string("metrics_listen")
    if address is None:
        return None
    try:
        check_metrics_listen(address, allow_remote=allow_remote, opt_in="metrics_allow_remote = true")
    except ValueError as exc:
        raise t.error("metrics_listen", str(exc)) from None
    return address
