"""The shared AWS config files, read as botocore reads them, and a profile's plan.

Theory of operation
-------------------
``AwsConfig.load(environ)`` parses ``AWS_CONFIG_FILE`` (default ``~/.aws/config``)
and ``AWS_SHARED_CREDENTIALS_FILE`` (default ``~/.aws/credentials``) with
``configparser.RawConfigParser``, as botocore's ``configloader`` does: in the
config file ``[default]`` and ``[profile NAME]`` are profiles, ``[services
NAME]`` hold per-service settings, other sections are ignored; in the
credentials file every section is a profile, and its keys override the config
file's. Keys are case-insensitive; an indented block under a key (``s3 =`` /
``  addressing_style = path``) is a nested table. Unknown keys are ignored. A
missing file is an empty one.

``plan(name, stored=...)`` turns a profile into a ``ProfilePlan``: pure data
saying where the chain starts (``Source``) and which roles are assumed from it
(``RoleStep``, innermost first), the MFA serial of a GetSessionToken session
when one is used, and where STS is. It reads no keyring and runs nothing; the
agent's ``profile_chain`` executes it. ``stored`` names the profiles whose
long-term keys sit in rolecall's keyring (from its index file), because those
count as a profile's own keys.

The rules, botocore's unless said otherwise:

- The asked-for profile with ``role_arn`` assumes that role from its
  ``source_profile`` or ``credential_source`` (both: error; neither: the
  profile's own stored or static keys, as aws-vault allows, else error). With
  ``web_identity_token_file`` it is AssumeRoleWithWebIdentity instead.
- A source profile's own static keys (or keys in the keyring) win over its
  ``role_arn``; else its ``role_arn`` is assumed in turn; else its
  ``credential_process`` runs. A loop is an error naming it.
- With long-term keys at the start and an ``mfa_serial`` on the first role
  (or on the profile itself when it has no role), the keys first get an MFA
  session with GetSessionToken, and the roles are assumed from that session
  (aws-vault's "chained MFA"; such AssumeRole calls are capped at one hour).
  A first role asking for more than an hour takes the code on its AssumeRole
  instead. With no role and no MFA the keys still get a GetSessionToken
  session: long-term keys never reach an SDK.
- SSO profiles (``sso_*``) are refused with one line pointing at ``aws sso login``.

Every ``ProfileError`` is one line naming the profile and the file or key.
No secret reaches a message or a ``repr``.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shlex
from collections import namedtuple
from collections.abc import Mapping

__all__ = [
    "AwsConfig",
    "CREDENTIAL_SOURCES",
    "CHAINED_ROLE_LIMIT",
    "ProfileError",
    "ProfilePlan",
    "RoleStep",
    "Source",
    "config_paths",
]

CHAINED_ROLE_LIMIT = 3600  # STS caps AssumeRole with temporary credentials at one hour
CREDENTIAL_SOURCES = {"Environment": "environment", "EcsContainer": "container", "Ec2InstanceMetadata": "imds"}
_SSO_KEYS = ("sso_start_url", "sso_session", "sso_account_id", "sso_role_name", "sso_region")
_STATIC = ("aws_access_key_id", "aws_secret_access_key")
_PROFILE_NAME = re.compile(r"[^\s\[\]]{1,128}")
_TRUE = frozenset({"true"})


class ProfileError(ValueError):
    """A profile cannot be used: missing, malformed, a loop, an unsupported kind. One line."""


def config_paths(environ: Mapping[str, str]) -> tuple[str, str]:
    """``(config file, credentials file)``: the ``AWS_*`` variables, else under ``~/.aws``."""
    home = environ.get("HOME") or os.path.expanduser("~")
    config = environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    credentials = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    expand = (lambda p: os.path.join(home, p[2:]) if p.startswith("~/") else p)
    return expand(config), expand(credentials)


# --- the plan -----------------------------------------------------------------------------


# The plan's types are named tuples, not dataclasses: this module is on the warm path of
# `rolecall credential-process`, where importing dataclasses and building these classes cost
# ~25 ms of a ~75 ms start (python -X importtime). Secrets are kept out of their repr.


class RoleStep(namedtuple("RoleStep", "profile role_arn session_name external_id mfa_serial duration_seconds",
                          defaults=(None, None, None, None))):
    """One AssumeRole (or AssumeRoleWithWebIdentity) of a chain.

    Args:
        profile: the profile that names the role.
        role_arn: ``role_arn``.
        session_name: ``role_session_name``, or None for a generated one.
        external_id: ``external_id`` (hidden from ``repr``).
        mfa_serial: the serial whose code this call must carry, or None (also
            None when an MFA session earlier in the chain already carries it).
        duration_seconds: ``duration_seconds``, or None for STS's default.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"RoleStep(profile={self.profile!r}, role_arn={self.role_arn!r}, session_name={self.session_name!r}, "
                f"mfa_serial={self.mfa_serial!r}, duration_seconds={self.duration_seconds!r})")


class Source(namedtuple("Source", "kind profile access_key_id secret_access_key session_token command token_file role "
                                  "endpoint", defaults=(None,) * 7)):
    """Where a chain's first credentials come from.

    Args:
        kind: ``keys`` (the profile's long-term keys: keyring, then the files),
            ``process`` (its ``credential_process``), ``web_identity`` (a token
            file for AssumeRoleWithWebIdentity of ``role``), or a
            ``credential_source``: ``environment``, ``container``, ``imds``.
        profile: the profile it belongs to.
        access_key_id: static keys from the files, when they hold them.
        secret_access_key: ditto (hidden from ``repr``).
        session_token: ditto, for temporary static keys (hidden from ``repr``).
        command: ``credential_process``.
        token_file: ``web_identity_token_file``.
        role: the web-identity role (a ``RoleStep``).
        endpoint: for ``container`` and ``imds``: the endpoint the credentials come from.

    For ``environment``, ``access_key_id`` and ``session_token`` are the
    environment's, so that the cache key tells apart the identities behind it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"Source(kind={self.kind!r}, profile={self.profile!r}, access_key_id={self.access_key_id!r}, "
                f"command={self.command!r}, token_file={self.token_file!r}, role={self.role!r}, "
                f"endpoint={self.endpoint!r})")

    @property
    def long_term(self) -> bool:
        """Long-term keys (GetSessionToken may be called with them): ``keys`` without a session token."""
        return self.kind == "keys" and self.session_token is None


class ProfilePlan(namedtuple("ProfilePlan", "profile chain source roles session_mfa_serial session session_duration "
                                            "mfa_process region sts_endpoint iam_endpoint ca_bundle account_id",
                             defaults=((), None, False) + (None,) * 8)):
    """How a profile's credentials are made (see the module's rules).

    Args:
        profile: the profile asked for.
        chain: the profiles walked, asked-for first.
        source: where the chain starts.
        roles: the AssumeRole calls, in the order they are made.
        session_mfa_serial: the serial of the GetSessionToken session made
            from the source's long-term keys (the roles are assumed from it, or
            with no roles it is the result), or None for a session without MFA.
        session: True when the source is long-term keys that get such a
            session. With no roles, a source that turns out to give long-term
            keys at run time (a ``credential_process``) gets one too.
        session_duration: the profile's ``duration_seconds`` when the session
            is the result itself (no roles), else None.
        mfa_process: ``mfa_process``, a command that prints a code.
        region: the region, or None for STS's global endpoint.
        sts_endpoint: ``endpoint_url`` for STS, or None for AWS's.
        iam_endpoint: ditto for IAM.
        ca_bundle: ``ca_bundle`` / ``AWS_CA_BUNDLE``.
        account_id: ``aws_account_id`` of the profile.
    """

    __slots__ = ()

    def cache_key(self) -> str:
        """A file-safe key for this plan's result: every field that shapes the credentials, no secret.

        Two plans that would make different credentials never share a key
        (security-and-ops.md S13): the profiles, the source (its key id, not its
        secret), each role's parameters (the external id hashed), the MFA
        serials, the endpoint and the region all go in.
        """
        source = self.source
        identity = {
            "profile": self.profile, "chain": self.chain,
            "source": [source.kind, source.profile, source.access_key_id, source.command, source.token_file,
                       _digest(source.session_token), source.endpoint],
            "roles": [[r.profile, r.role_arn, r.session_name, _digest(r.external_id), r.mfa_serial,
                       r.duration_seconds] for r in ((source.role,) if source.role else ()) + self.roles],
            "session": [self.session, self.session_mfa_serial, self.session_duration],
            "sts": [self.sts_endpoint, self.region],
        }
        return "profile-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:40]

    @property
    def mfa_serials(self) -> tuple[str, ...]:
        """Every serial whose code the chain may need, in order."""
        serials = [self.session_mfa_serial] + [r.mfa_serial for r in self.roles]
        return tuple(s for s in serials if s)


def _digest(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()[:16]


# --- the files ----------------------------------------------------------------------------


def _parse(path: str) -> dict[str, dict[str, object]]:
    """Sections of one INI file (botocore's ``raw_config_parse``); a missing file is empty."""
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path} is not UTF-8 text") from None
    except configparser.Error as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProfileError(f"{path}: not a valid config file: {reason}") from None
    sections: dict[str, dict[str, object]] = {}
    for name in parser.sections():
        values: dict[str, object] = {}
        for key, value in parser.items(name):
            values[key] = _nested(value, path) if value.startswith("\n") else value
        sections[name] = values
    return sections


def _nested(value: str, path: str) -> dict[str, str]:
    """An indented block ``key =`` / ``  sub = value`` as a table (botocore's ``_parse_nested``; keys keep case).

    Raises:
        ProfileError: a line of the block has no ``=`` (botocore refuses the file too).
    """
    table = {}
    for line in value.strip().splitlines():
        key, sep, item = line.partition("=")
        if not sep:
            raise ProfileError(f"{path}: not a valid config file: the nested line {line.strip()!r} has no '='")
        table[key.strip()] = item.strip()
    return table


class AwsConfig:
    """The profiles and ``[services]`` tables of the two files.

    Args:
        profiles: profile name -> its keys (credentials file merged over config file).
        services: ``[services NAME]`` -> service -> its keys.
        environ: the environment (endpoints, region, ``credential_source``).
        paths: ``(config file, credentials file)``, for messages.
    """

    def __init__(self, profiles: dict[str, dict[str, object]], services: dict[str, dict[str, object]],
                 environ: Mapping[str, str], paths: tuple[str, str]) -> None:
        self.profiles, self.services, self.environ, self.paths = profiles, services, environ, paths

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> AwsConfig:
        """Read both files as botocore does.

        Raises:
            ProfileError: a file exists but cannot be read or parsed.
        """
        environ = os.environ if environ is None else environ
        config_path, credentials_path = paths = config_paths(environ)
        profiles: dict[str, dict[str, object]] = {}
        services: dict[str, dict[str, object]] = {}
        for section, values in _parse(config_path).items():
            try:
                words = shlex.split(section)  # botocore: [profile "my name"] is the profile `my name`
            except ValueError:
                continue
            if section == "default":
                profiles["default"] = values  # a later [profile default] replaces it, as in botocore
            elif len(words) == 2 and words[0] == "profile":
                profiles[words[1]] = values
            elif len(words) == 2 and words[0] == "services":
                services[words[1]] = values
        for section, values in _parse(credentials_path).items():
            profiles.setdefault(section, {}).update(values)
        return cls(profiles, services, environ, paths)

    def __contains__(self, name: str) -> bool:
        return name in self.profiles

    def get(self, name: str, key: str) -> str | None:
        """A profile's string value for ``key`` (blank counts as absent), or None."""
        value = self.profiles.get(name, {}).get(key)
        return value.strip() or None if isinstance(value, str) else None

    # --- the plan --------------------------------------------------------------------------

    def plan(self, name: str, *, stored: frozenset[str] | set[str] = frozenset()) -> ProfilePlan:
        """How profile ``name``'s credentials are made (the module's rules).

        Args:
            name: the profile.
            stored: profiles with long-term keys in rolecall's keyring.

        Raises:
            ProfileError: unknown profile, a loop, an SSO profile, a bad value, no credentials.
        """
        if not _PROFILE_NAME.fullmatch(name or ""):
            raise ProfileError(f"{name!r} is not a profile name")
        if name not in self.profiles and name not in stored:
            config, credentials = self.paths
            raise ProfileError(f"profile {name!r} not found in {config} or {credentials}")
        chain: list[str] = []
        roles: list[RoleStep] = []
        current, source = name, None
        while source is None:
            if current in chain:
                raise ProfileError("profile loop: " + " -> ".join([*chain, current]))
            if current not in self.profiles and current not in stored:
                raise ProfileError(f"profile {chain[-1]!r}: source_profile {current!r} not found in {self.paths[0]}")
            chain.append(current)
            self._refuse_sso(current)
            source, next_profile = self._step(current, current == name, roles, stored)
            current = next_profile or current
        roles.reverse()
        return self._finish(name, tuple(chain), source, roles)

    def _step(self, name: str, asked: bool, roles: list[RoleStep],
              stored: frozenset[str] | set[str]) -> tuple[Source | None, str | None]:
        """One profile of the walk: its ``Source`` (ending the walk), or the next profile to visit."""
        own_keys = self._keys_source(name, stored)
        role_arn = self.get(name, "role_arn")
        if role_arn and not (own_keys and not asked):
            step = self._role_step(name, role_arn)
            token_file = self.get(name, "web_identity_token_file")
            if token_file:
                return Source("web_identity", name, token_file=os.path.expanduser(token_file), role=step), None
            roles.append(step)
            source_profile, credential_source = self.get(name, "source_profile"), self.get(name, "credential_source")
            if source_profile and credential_source:
                raise ProfileError(f"profile {name!r} has both source_profile and credential_source: keep one")
            if credential_source:
                if credential_source not in CREDENTIAL_SOURCES:
                    raise ProfileError(f"profile {name!r}: credential_source {credential_source!r} must be one of "
                                       + ", ".join(CREDENTIAL_SOURCES))
                return self._credential_source(name, CREDENTIAL_SOURCES[credential_source]), None
            if source_profile and source_profile != name:
                return None, source_profile
            if own_keys:
                return own_keys, None
            raise ProfileError(f"profile {name!r} has role_arn but no source_profile or credential_source"
                               if not source_profile else
                               f"profile {name!r} is its own source_profile but has no keys: "
                               f"run `rolecall keys add --profile {name}`")
        if own_keys:
            return own_keys, None
        command = self.get(name, "credential_process")
        if command:
            return Source("process", name, command=command), None
        raise ProfileError(f"profile {name!r} has no credentials: run `rolecall keys add --profile {name}`, "
                           "or give it role_arn and source_profile")

    def _credential_source(self, name: str, kind: str) -> Source:
        """A ``credential_source``, with what identifies it (see ``Source``) read from the environment."""
        env = self.environ
        if kind == "environment":
            return Source(kind, name, access_key_id=env.get("AWS_ACCESS_KEY_ID", "").strip() or None,
                          session_token=env.get("AWS_SESSION_TOKEN", "").strip() or None)
        if kind == "container":
            return Source(kind, name, endpoint=env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                          or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
        return Source(kind, name, endpoint=env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT"))

    def _keys_source(self, name: str, stored: frozenset[str] | set[str]) -> Source | None:
        key_id, secret = self.get(name, "aws_access_key_id"), self.get(name, "aws_secret_access_key")
        if name in stored:
            return Source("keys", name)
        if key_id and secret:
            return Source("keys", name, key_id, secret, self.get(name, "aws_session_token"))
        if key_id or secret:
            missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
            raise ProfileError(f"profile {name!r} has {_STATIC[0] if key_id else _STATIC[1]} but no {missing}")
        return None

    def _role_step(self, name: str, role_arn: str) -> RoleStep:
        return RoleStep(name, role_arn, self.get(name, "role_session_name"), self.get(name, "external_id"),
                        self.get(name, "mfa_serial"), self._duration(name))

    def _duration(self, name: str) -> int | None:
        text = self.get(name, "duration_seconds")
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()) or not 900 <= int(text) <= 43200:
            raise ProfileError(f"profile {name!r}: duration_seconds must be a whole number from 900 to 43200")
        return int(text)

    def _refuse_sso(self, name: str) -> None:
        if any(self.get(name, key) for key in _SSO_KEYS) and not self.get(name, "role_arn"):
            raise ProfileError(f"profile {name!r} uses IAM Identity Center (sso_*), which rolecall does not "
                               f"support: run `aws sso login --profile {name}` and use the SDK's own SSO support")

    def _finish(self, name: str, chain: tuple[str, ...], source: Source, roles: list[RoleStep]) -> ProfilePlan:
        session_serial, session, session_duration = None, False, None
        if not roles and source.kind != "web_identity":
            # the result is a session of the source's keys (when they turn out long-term, for a process)
            session, session_serial, session_duration = source.long_term, self.get(name, "mfa_serial"), \
                self._duration(name)
        elif source.long_term and roles and roles[0].mfa_serial and \
                (roles[0].duration_seconds or 3600) <= CHAINED_ROLE_LIMIT:
            session, session_serial = True, roles[0].mfa_serial
        if session_serial:  # the session carries MFA: steps asking for the same serial need no code
            roles = [r._replace(mfa_serial=None) if r.mfa_serial == session_serial else r for r in roles]
        mfa_process = next((self.get(p, "mfa_process") for p in chain if self.get(p, "mfa_process")), None)
        return ProfilePlan(
            name, chain, source, tuple(roles), session_serial, session, session_duration, mfa_process,
            self._region(chain), self.endpoint(name, "sts"), self.endpoint(name, "iam"),
            self.environ.get("AWS_CA_BUNDLE") or self.get(name, "ca_bundle"), self.get(name, "aws_account_id"))

    def _region(self, chain: tuple[str, ...]) -> str | None:
        for value in (self.environ.get("AWS_REGION"), self.environ.get("AWS_DEFAULT_REGION"),
                      *(self.get(p, "region") for p in chain)):
            if value and value.strip():
                return value.strip()
        return None

    def endpoint(self, name: str, service: str) -> str | None:
        """The configured endpoint of ``service`` for profile ``name``, or None for AWS's own.

        botocore's order: ``AWS_ENDPOINT_URL_<SERVICE>``, the profile's
        ``[services]`` table, ``AWS_ENDPOINT_URL``, the profile's
        ``endpoint_url``; none when ``ignore_configured_endpoint_urls`` is true.
        """
        env = self.environ
        ignore = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") or self.get(name, "ignore_configured_endpoint_urls")
        if ignore and ignore.strip().lower() in _TRUE:
            return None
        services_name = self.get(name, "services")
        table = self.services.get(services_name or "", {}).get(service)
        service_url = table.get("endpoint_url") if isinstance(table, dict) else None
        for value in (env.get(f"AWS_ENDPOINT_URL_{service.upper()}"), service_url, env.get("AWS_ENDPOINT_URL"),
                      self.get(name, "endpoint_url")):
            if value and value.strip():
                return value.strip()
        return None
