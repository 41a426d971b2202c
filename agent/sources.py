"""The agent's own identity: where the keys it signs STS calls with come from.

Two small interfaces, because there are two ways to reach the role:

- a ``CredentialSource`` hands out ``wire.sigv4.Credentials`` that sign an
  ``AssumeRole`` call: ``StaticSource`` (keys in the config file),
  ``FileSecretSource`` (the secret in a file: systemd ``LoadCredential=``),
  ``EnvSource`` (``AWS_ACCESS_KEY_ID``...). Temporary credentials here (an
  ``AWS_SESSION_TOKEN``) make the AssumeRole a chained one, capped at 1 h.
- a ``WebIdentitySource`` hands out a token for the unsigned
  ``AssumeRoleWithWebIdentity``, read from its file on every call (projected
  tokens are rotated on disk by whoever writes them).

``source_from_config`` builds the one a ``[source]`` table asks for, and
``fetch_role_credentials`` makes the STS call that fits it, so the rotation
needs neither distinction. ``reload()`` (the daemon calls it on SIGHUP)
re-reads a secret file; a failed reload keeps the previous secret.

Files are small and local, so they are read synchronously. No secret appears
in an exception or a ``repr``: messages name paths and variables only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agent.config_types import SECRET_KEY
from agent.errors import SourceError
from wire.sigv4 import Credentials

if TYPE_CHECKING:
    from agent.config_types import RoleConfig, SourceConfig
    from agent.sts_client import StsClient, StsCredentials

__all__ = [
    "CredentialSource",
    "EnvSource",
    "FileSecretSource",
    "MAX_SECRET_FILE",
    "MAX_TOKEN_LENGTH",
    "StaticSource",
    "WebIdentitySource",
    "fetch_role_credentials",
    "read_secret_file",
    "read_token_file",
    "source_from_config",
]

MAX_SECRET_FILE = 4096
MAX_TOKEN_LENGTH = 20000  # WebIdentityToken: 4-20000 characters (sts-iam.md §4)
_TOKEN = re.compile(r"[\x21-\x7e]{4,20000}")


# --- interfaces ---------------------------------------------------------------------------


@runtime_checkable
class CredentialSource(Protocol):
    """Credentials to sign STS calls with (the agent's own identity).

    Attributes:
        description: what it is, for logs and status (never a secret).
    """

    description: str

    async def get(self) -> Credentials:
        """The credentials to sign the next call with.

        Raises:
            SourceError: they cannot be had.
        """

    def reload(self) -> None:
        """Re-read whatever can change on disk (SIGHUP); keep the old value on failure.

        Raises:
            SourceError: the re-read failed (the previous value stays in use).
        """


# --- files --------------------------------------------------------------------------------


def _read_small(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        raise SourceError(f"{path} is larger than {limit} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SourceError(f"{path} is not UTF-8 text") from None


def read_secret_file(path: str) -> str:
    """The secret access key in ``path`` (surrounding whitespace and newlines dropped).

    Args:
        path: the file (for systemd credentials, under ``$CREDENTIALS_DIRECTORY``).

    Returns:
        The secret.

    Raises:
        SourceError: unreadable, larger than ``MAX_SECRET_FILE``, empty, or not
            one printable-ASCII word. The message never holds the content.
    """
    secret = _read_small(path, MAX_SECRET_FILE)
    if not secret:
        raise SourceError(f"{path} is empty")
    if not SECRET_KEY.fullmatch(secret):
        raise SourceError(f"{path} must hold one secret key: printable ASCII without spaces")
    return secret


def read_token_file(path: str) -> str:
    """The web-identity token (a JWT) in ``path``, surrounding whitespace dropped.

    Args:
        path: the token file.

    Returns:
        The token.

    Raises:
        SourceError: unreadable, empty, not 4-20000 printable-ASCII
            characters. The message never holds the content.
    """
    token = _read_small(path, MAX_TOKEN_LENGTH + 2)  # room for a CRLF
    if not token:
        raise SourceError(f"{path} is empty")
    if not _TOKEN.fullmatch(token):
        raise SourceError(f"{path} must hold one token of 4-{MAX_TOKEN_LENGTH} printable ASCII characters")
    return token


# --- the sources --------------------------------------------------------------------------


class StaticSource:
    """Keys given directly (``[source] access_key_id`` + ``secret_access_key``).

    Args:
        access_key_id: the key id.
        secret_access_key: the secret.
        session_token: for temporary keys.
    """

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None = None) -> None:
        self._credentials = Credentials(access_key_id, secret_access_key, session_token)
        self.description = f"static key {access_key_id}"

    async def get(self) -> Credentials:
        return self._credentials

    def reload(self) -> None:
        """Nothing to re-read: a new config builds a new source."""

    def __repr__(self) -> str:
        return f"StaticSource({self._credentials!r})"


class FileSecretSource:
    """``access_key_id`` from the config, the secret from a file read at start and on ``reload()``.

    Args:
        access_key_id: the key id.
        path: the secret's file (absolute; see ``agent.config``).

    Raises:
        SourceError: the file is unusable at start (see ``read_secret_file``).
    """

    def __init__(self, access_key_id: str, path: str) -> None:
        self.access_key_id, self.path = access_key_id, path
        self.description = f"key {access_key_id} with its secret in {path}"
        self._credentials = Credentials(access_key_id, read_secret_file(path))

    async def get(self) -> Credentials:
        return self._credentials

    def reload(self) -> None:
        """Read the file again (it may hold a rotated secret).

        Raises:
            SourceError: unusable now; the previous secret stays in use.
        """
        self._credentials = Credentials(self.access_key_id, read_secret_file(self.path))

    def __repr__(self) -> str:
        return f"FileSecretSource({self.access_key_id!r}, {self.path!r})"


class EnvSource:
    """``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``, read at start.

    Args:
        environ: the environment; default ``os.environ``.

    Raises:
        SourceError: the key id or the secret is missing or empty.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._credentials = self._read()
        self.description = f"environment key {self._credentials.access_key_id}"

    def _read(self) -> Credentials:
        key_id = self._environ.get("AWS_ACCESS_KEY_ID", "").strip()
        secret = self._environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
        if not key_id or not secret:
            raise SourceError("[source] env = true needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                              "in the agent's environment")
        return Credentials(key_id, secret, self._environ.get("AWS_SESSION_TOKEN", "").strip() or None)

    async def get(self) -> Credentials:
        return self._credentials

    def reload(self) -> None:
        """Read the variables again (a process's environment rarely changes).

        Raises:
            SourceError: now missing; the previous keys stay in use.
        """
        self._credentials = self._read()

    def __repr__(self) -> str:
        return f"EnvSource({self._credentials!r})"


class WebIdentitySource:
    """A web-identity token file, read on every ``token()`` call (for AssumeRoleWithWebIdentity).

    Args:
        path: the token file (absolute).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"web identity token in {path}"

    async def token(self) -> str:
        """The file's current token.

        Raises:
            SourceError: see ``read_token_file``.
        """
        return read_token_file(self.path)

    def reload(self) -> None:
        """Nothing to do: the file is read on every call."""

    def __repr__(self) -> str:
        return f"WebIdentitySource({self.path!r})"


# --- wiring ----------------------------------------------------------------------------------


def source_from_config(config: SourceConfig, *,
                       environ: Mapping[str, str] | None = None) -> CredentialSource | WebIdentitySource:
    """The source a checked ``[source]`` table describes.

    Args:
        config: ``AgentConfig.source``.
        environ: for ``env`` sources; default ``os.environ``.

    Returns:
        A ``CredentialSource``, or a ``WebIdentitySource`` for ``web_identity``.

    Raises:
        SourceError: a file or the environment is unusable now.
    """
    if config.kind == "static":
        return StaticSource(config.access_key_id, config.secret_access_key)
    if config.kind == "file":
        return FileSecretSource(config.access_key_id, config.secret_access_key_file)
    if config.kind == "env":
        return EnvSource(environ)
    if config.kind == "web_identity":
        return WebIdentitySource(config.web_identity_token_file)
    raise ValueError(f"unknown source kind {config.kind!r}")


async def fetch_role_credentials(client: StsClient, source: CredentialSource | WebIdentitySource,
                                 role: RoleConfig) -> StsCredentials:
    """Get credentials for ``role`` the way ``source`` allows: one STS call.

    AssumeRole signed with ``await source.get()``, or AssumeRoleWithWebIdentity
    with ``await source.token()`` (which takes no external id, tags or source
    identity: those come from the token; the config refuses them).

    Args:
        client: the STS client.
        source: from ``source_from_config``.
        role: ``AgentConfig.role``.

    Returns:
        The role's new credentials.

    Raises:
        SourceError: the source is unusable.
        StsError, StsUnavailable: the call failed (after the client's retries).
    """
    common = {"duration_seconds": role.duration_seconds, "policy": role.policy, "policy_arns": role.policy_arns}
    if isinstance(source, WebIdentitySource):
        return await client.assume_role_with_web_identity(role.arn, role.session_name, await source.token(),
                                                          **common)
    return await client.assume_role(await source.get(), role.arn, role.session_name, external_id=role.external_id,
                                    tags=role.tags, source_identity=role.source_identity, **common)
