"""The container-credentials endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI``).

What botocore's ``ContainerProvider`` and the JS SDK's ``fromHttp`` read
(reference/sdk-clients.md §3): ``GET <path>`` with ``Authorization: <token>``
verbatim, answered with ``{AccessKeyId, SecretAccessKey, Token, Expiration,
AccountId}`` as JSON. The token is 256 random bits, compared in constant time,
and handed to clients in a 0600 file with no trailing newline (botocore and JS
both reject a header value with ``\\n``). Anything unauthorised gets a 403 with
a JSON message and nothing else; the endpoint listens on loopback only.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets

from metadata_server.credentials import CredentialHolder, RoleCredentials
from wire.clock import WallClock, iso_z
from wire.private_files import write_private
from wire.http import HttpRequest, HttpResponse

__all__ = ["ContainerHandler", "new_container_token", "write_token_file"]

log = logging.getLogger(__name__)

_JSON = ("Content-Type", "application/json")


def _json(status: int, body: dict, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(status, (_JSON, *extra), json.dumps(body).encode("utf-8"))


FORBIDDEN = _json(403, {"Message": "Authorization header missing or invalid"})
NOT_FOUND = _json(404, {"Message": "Not found"})
METHOD_NOT_ALLOWED = _json(405, {"Message": "Method not allowed"}, ("Allow", "GET, HEAD"))
NO_CREDENTIALS = _json(
    503, {"Code": "CredentialsUnavailable", "Message": "rolecall holds no valid credentials yet"}
)


def new_container_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def write_token_file(path: str | os.PathLike[str], token: str | None = None) -> str:
    """Write a bearer token to ``path`` (mode 0600, no trailing newline) and return it.

    The file is replaced atomically, so a client re-reading it (botocore does,
    on every fetch) sees the old token or the new one, never half of either.

    Args:
        path: the token file (``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``).
        token: the token to write; a new ``new_container_token()`` by default.

    Raises:
        ValueError: the token contains whitespace or control characters.
        OSError: the file could not be written.
    """
    token = new_container_token() if token is None else token
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("a container token must be printable ASCII without spaces")
    write_private(path, token.encode("ascii"), durable=True)
    return token


def credentials_body(creds: RoleCredentials) -> bytes:
    """The JSON the container endpoint serves for ``creds``."""
    body = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": iso_z(creds.expiration),
    }
    if creds.account_id is not None:
        body["AccountId"] = creds.account_id
    return json.dumps(body).encode("utf-8")


class ContainerHandler:
    """Serves ``holder``'s credentials to callers that present ``token``.

    Args:
        holder: asked on every request.
        token: the bearer token clients must send in ``Authorization``.
        wall_clock: decides whether held credentials have expired.
        path: the one path served.
    """

    def __init__(
        self, holder: CredentialHolder, token: str, wall_clock: WallClock, *, path: str = "/v1/credentials"
    ) -> None:
        if len(token) < 32:
            raise ValueError("the container token must be at least 32 characters")
        self._holder = holder
        self._token = token.encode("latin-1")
        self._clock = wall_clock
        self._path = path
        self._served: tuple[RoleCredentials | None, bytes] = (None, b"")

    def __repr__(self) -> str:
        return f"ContainerHandler(path={self._path!r}, token=<hidden>)"

    def _authorized(self, req: HttpRequest) -> bool:
        values = req.header_values("authorization")
        if len(values) != 1:
            return False
        return hmac.compare_digest(values[0].encode("latin-1"), self._token)

    def __call__(self, req: HttpRequest) -> HttpResponse:
        """Answer one request (never raises for any request)."""
        if not self._authorized(req):
            return FORBIDDEN
        if req.method != "GET" and req.method != "HEAD":
            return METHOD_NOT_ALLOWED
        if req.path != self._path:
            return NOT_FOUND
        try:
            creds = self._holder.current()
        except Exception as exc:  # a broken holder must not take the endpoint down
            log.error("credential holder failed: %s", type(exc).__name__)
            creds = None
        if creds is None or not creds.expiration > self._clock.now():
            return NO_CREDENTIALS
        served, body = self._served
        if served is not creds:
            body = credentials_body(creds)
            self._served = (creds, body)
        return HttpResponse(200, (_JSON,), body)
