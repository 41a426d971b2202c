"""Where a profile chain's first credentials come from, besides long-term keys.

- ``credential_process``: the command split with ``shlex`` and run without a
  shell, stdin inherited and stderr captured (for the error line), as botocore
  runs it; its stdout must be the Version-1 JSON. A command that asks rolecall for a profile already being
  resolved up the process tree (``ROLECALL_PROFILE_CHAIN``) is refused: that is
  a loop through ``credential_process``, not a chain.
- ``credential_source = Environment``: ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_CREDENTIAL_EXPIRATION``.
- ``credential_source = EcsContainer``: the container endpoint of
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (or ``..._RELATIVE_URI`` on
  169.254.170.2), with the token of ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``
  (or ``..._TOKEN``).
- ``credential_source = Ec2InstanceMetadata``: IMDSv2 at
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (default ``http://169.254.169.254/``),
  unless ``AWS_EC2_METADATA_DISABLED`` is true.

Each returns ``SourceCredentials`` or raises ``SourceError`` with one line
naming the profile; no secret reaches a message.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import trio

from agent.errors import SourceError, one_line
from agent.sts_client import parse_expiration
from wire.sigv4 import Credentials

__all__ = ["CHAIN_VARIABLE", "PROCESS_TIMEOUT", "SourceCredentials", "container_credentials",
           "environment_credentials", "imds_credentials", "process_credentials", "refuse_loop"]

CHAIN_VARIABLE = "ROLECALL_PROFILE_CHAIN"
PROCESS_TIMEOUT = 300.0  # seconds: a credential_process may itself prompt a person
HTTP_TIMEOUT = 2.0
_MAX_OUTPUT = 64 * 1024
_IMDS = "http://169.254.169.254/"
_ECS_HOST = "http://169.254.170.2"


@dataclass(frozen=True)
class SourceCredentials:
    """Credentials a source produced; ``expiration`` None for long-term ones."""

    credentials: Credentials = field(repr=False)
    expiration: _dt.datetime | None = None
    account_id: str | None = None

    @property
    def access_key_id(self) -> str:
        return self.credentials.access_key_id


def _document(doc: object, where: str, token_field: str) -> SourceCredentials:
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: the answer is not a JSON object")
    key_id, secret, token = doc.get("AccessKeyId"), doc.get("SecretAccessKey"), doc.get(token_field)
    if not (isinstance(key_id, str) and key_id and isinstance(secret, str) and secret):
        raise SourceError(f"{where}: the answer has no AccessKeyId or SecretAccessKey")
    expiration = None
    if doc.get("Expiration") is not None:
        try:
            expiration = parse_expiration(str(doc["Expiration"]))
        except ValueError:
            raise SourceError(f"{where}: Expiration is not an ISO 8601 time") from None
    account = doc.get("AccountId") if isinstance(doc.get("AccountId"), str) else None
    return SourceCredentials(Credentials(key_id, secret, token if isinstance(token, str) and token else None),
                             expiration, account)


async def process_credentials(command: str, profile: str, environ: Mapping[str, str], *,
                              timeout: float = PROCESS_TIMEOUT) -> SourceCredentials:
    """Run ``command`` (the profile's ``credential_process``) and read its Version-1 JSON.

    Raises:
        SourceError: it cannot run, fails, times out, loops, or prints anything else.
    """
    where = f"profile {profile!r}: credential_process"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise SourceError(f"{where} cannot be split into words: {exc}") from None
    if not argv:
        raise SourceError(f"{where} is empty")
    env = dict(environ)
    chain = [p for p in env.get(CHAIN_VARIABLE, "").split(",") if p]
    env[CHAIN_VARIABLE] = ",".join([*chain, profile])
    try:
        with trio.fail_after(timeout):
            done = await trio.run_process(argv, stdin=None, capture_stdout=True, capture_stderr=True, check=False,
                                          env=env)
    except trio.TooSlowError:
        raise SourceError(f"{where} gave no answer within {timeout:g} s") from None
    except OSError as exc:
        raise SourceError(f"{where} cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        detail = one_line(done.stderr.decode("utf-8", "replace"), 300)
        raise SourceError(f"{where} failed (exit status {done.returncode})" + (f": {detail}" if detail else ""))
    try:
        doc = json.loads(done.stdout[:_MAX_OUTPUT])
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{where} printed something that is not JSON") from None
    if not isinstance(doc, dict) or doc.get("Version") != 1 or type(doc.get("Version")) is not int:
        raise SourceError(f"{where} printed an unsupported Version (must be the integer 1)")
    return _document(doc, where, "SessionToken")


def refuse_loop(profile: str, environ: Mapping[str, str]) -> None:
    """Refuse to resolve ``profile`` inside a ``credential_process`` that rolecall ran for it.

    Raises:
        SourceError: the profile is already being resolved up the process tree.
    """
    chain = [p for p in environ.get(CHAIN_VARIABLE, "").split(",") if p]
    if profile in chain:
        raise SourceError("credential_process loop: " + " -> ".join([*chain, profile]))


def environment_credentials(profile: str, environ: Mapping[str, str]) -> SourceCredentials:
    """``credential_source = Environment``.

    Raises:
        SourceError: no ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``.
    """
    doc = {"AccessKeyId": environ.get("AWS_ACCESS_KEY_ID", "").strip(),
           "SecretAccessKey": environ.get("AWS_SECRET_ACCESS_KEY", "").strip(),
           "SessionToken": environ.get("AWS_SESSION_TOKEN", "").strip(),
           "Expiration": environ.get("AWS_CREDENTIAL_EXPIRATION", "").strip() or None}
    if not doc["AccessKeyId"] or not doc["SecretAccessKey"]:
        raise SourceError(f"profile {profile!r}: credential_source = Environment needs AWS_ACCESS_KEY_ID "
                          "and AWS_SECRET_ACCESS_KEY")
    return _document(doc, f"profile {profile!r}: the environment", "SessionToken")


async def _get(client: httpx.AsyncClient, method: str, url: str, where: str, headers: dict) -> bytes:
    """One request's 200 body, at most ``_MAX_OUTPUT`` bytes (an endpoint cannot make us hold more)."""
    try:
        async with client.stream(method, url, headers=headers) as response:
            if response.status_code != 200:
                raise SourceError(f"{where}: HTTP {response.status_code} from {url}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_OUTPUT:
                    raise SourceError(f"{where}: the answer from {url} is larger than {_MAX_OUTPUT} bytes")
            return body
    except httpx.HTTPError as exc:
        raise SourceError(f"{where}: cannot reach {url}: {type(exc).__name__}") from None


def _json(body: bytes, where: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{where}: the answer is not JSON") from None


async def container_credentials(profile: str, environ: Mapping[str, str], *, transport=None) -> SourceCredentials:
    """``credential_source = EcsContainer``.

    Raises:
        SourceError: no endpoint configured, unreachable, refused, or a bad answer.
    """
    where = f"profile {profile!r}: the container endpoint"
    url = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (
        _ECS_HOST + environ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
        if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") else None)
    if not url:
        raise SourceError(f"{where}: neither AWS_CONTAINER_CREDENTIALS_FULL_URI nor ..._RELATIVE_URI is set")
    headers = {"Accept": "application/json"}
    token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
        try:
            with open(environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], encoding="utf-8") as f:
                token = f.read(4096)
        except OSError as exc:
            raise SourceError(f"{where}: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: "
                              f"{exc.strerror or exc}") from None
    if token:
        if "\n" in token or "\r" in token:
            raise SourceError(f"{where}: the authorization token holds a line break")
        headers["Authorization"] = token
    async with httpx.AsyncClient(transport=transport, timeout=HTTP_TIMEOUT, trust_env=False) as client:
        body = await _get(client, "GET", url, where, headers)
    return _document(_json(body, where), where, "Token")


async def imds_credentials(profile: str, environ: Mapping[str, str], *, transport=None) -> SourceCredentials:
    """``credential_source = Ec2InstanceMetadata``: IMDSv2 (token PUT, role name, credentials).

    Raises:
        SourceError: disabled, unreachable, refused, or a bad answer.
    """
    where = f"profile {profile!r}: the instance metadata service"
    if environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        raise SourceError(f"{where} is disabled (AWS_EC2_METADATA_DISABLED)")
    base = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or _IMDS).rstrip("/") + "/"
    async with httpx.AsyncClient(transport=transport, timeout=HTTP_TIMEOUT, trust_env=False) as client:
        token = (await _get(client, "PUT", base + "latest/api/token", where,
                            {"x-aws-ec2-metadata-token-ttl-seconds": "21600"})).decode("ascii", "replace")
        headers = {"x-aws-ec2-metadata-token": token}
        listing = base + "latest/meta-data/iam/security-credentials/"
        role = (await _get(client, "GET", listing, where, headers)).decode("utf-8", "replace").strip()
        if not role or "/" in role or "\n" in role:
            raise SourceError(f"{where}: no role name in {listing}")
        body = await _get(client, "GET", listing + role, where, headers)
    return _document(_json(body, where), where, "Token")
