"""A small OpenID Connect identity provider on loopback, for web-identity tests.

``LoopbackIdP`` serves ``/.well-known/openid-configuration`` and its JWKS from a
``ThreadingHTTPServer`` on 127.0.0.1:0 (its own threads, so it answers whatever loop or
thread the backend runs in). Keys are made with ``cryptography``: one RSA key (RS256)
and one P-256 key (ES256); ``token()`` signs claims with PyJWT. ``hits`` counts
requests per path; ``issuer_override`` makes discovery name another issuer; while ``gate``
(a ``threading.Event``) is set to an unset event, every answer waits for it (a slow IdP
without sleeping); ``entered`` is set when a request arrives.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["LoopbackIdP", "dead_url", "sign"]

_KEYS: dict[str, tuple] = {}


def _key(name: str):
    """Keys are slow to make (RSA): one of each per test session."""
    if name not in _KEYS:
        _KEYS[name] = (rsa.generate_private_key(65537, 2048) if name.startswith("rsa")
                       else ec.generate_private_key(ec.SECP256R1()))
    return _KEYS[name]


class LoopbackIdP:
    """An identity provider at ``url`` (http://127.0.0.1:PORT) until ``close()``."""

    def __init__(self) -> None:
        self.keys = {"rsa-1": ("RS256", _key("rsa-1")), "ec-1": ("ES256", _key("ec-1"))}
        self.published = {"rsa-1", "ec-1"}
        self.issuer_override: str | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.hits: Counter[str] = Counter()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                idp.hits[self.path] += 1
                idp.entered.set()
                if idp.gate is not None:
                    idp.gate.wait(timeout=30)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": idp.issuer_override or idp.url, "jwks_uri": idp.url + "/jwks"}
                elif self.path == "/jwks":
                    body = idp.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="idp", daemon=True)
        self._thread.start()

    def jwks(self) -> dict:
        keys = []
        for kid in sorted(self.published):
            alg, private = self.keys[kid]
            algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
            jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": keys}

    def token(self, now: dt.datetime, *, kid: str = "rsa-1", key=None, lifetime: int = 600, **claims) -> str:
        """A signed ID token from this provider (``sign``)."""
        alg, private = self.keys[kid]
        return sign(self.url, now, kid=kid, alg=alg, key=key or private, lifetime=lifetime, **claims)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def sign(issuer: str, now: dt.datetime, *, kid: str = "rsa-1", alg: str = "RS256", key=None, lifetime: int = 600,
         **claims) -> str:
    """An ID token: iss, sub "system:app", aud "sts.amazonaws.com", iat/exp around ``now``
    (a claim given as None is left out); signed with ``key`` (the session's rsa-1 key)."""
    at = int(now.timestamp())
    payload = {"iss": issuer, "sub": "system:app", "aud": "sts.amazonaws.com", "iat": at, "exp": at + lifetime,
               **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key or _key("rsa-1"), algorithm=alg, headers={"kid": kid})


def dead_url() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens (the port was bound, then freed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"
