"""The agent's control protocol, client side: one JSON request, one JSON response per connection.

The agent (``agent.control``) serves it on a unix socket; the CLI, the
``credential_process`` warm path and the botocore shim ask it with ``request``.
A request is one JSON object with a string ``"op"`` on one line (at most
``MAX_REQUEST`` bytes); the answer is one JSON object (``{"error": ...}`` on
refusal). Stdlib only: the warm path imports this before anything heavy.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence

__all__ = ["ControlError", "MAX_REQUEST", "MAX_RESPONSE", "REQUEST_TIMEOUT", "candidate_paths", "request",
           "user_paths"]

MAX_REQUEST = 4096
MAX_RESPONSE = 65536
REQUEST_TIMEOUT = 5.0


class ControlError(Exception):
    """No agent answered on the control socket, or its answer was unusable."""


def user_paths(environ: Mapping[str, str] | None = None) -> list[str]:
    """Where a user's own agent listens: ``$ROLECALL_AGENT_SOCKET``, else ``$XDG_RUNTIME_DIR/rolecall/agent.sock``."""
    environ = os.environ if environ is None else environ
    if environ.get("ROLECALL_AGENT_SOCKET"):
        return [environ["ROLECALL_AGENT_SOCKET"]]
    if environ.get("XDG_RUNTIME_DIR"):
        return [os.path.join(environ["XDG_RUNTIME_DIR"], "rolecall", "agent.sock")]
    return []


def candidate_paths(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Where to look for a running agent, most specific first (design.md, "Where things live").

    Without ``$XDG_RUNTIME_DIR`` (sudo, containers, a bare login), ``rolecall up`` keeps
    its socket in its default data dir rather than in the system service's
    ``/run/rolecall``: that place is asked first (a missing socket is skipped)."""
    environ = os.environ if environ is None else environ
    if explicit:
        return [explicit]
    paths = user_paths(environ)
    if environ.get("ROLECALL_AGENT_SOCKET"):
        return paths
    if not paths:
        data = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                            ".local", "share")
        paths = [os.path.join(data, "rolecall", "up", "agent.sock")]   # cli.up.default_data_dir()'s
    return [*paths, "/run/rolecall/agent.sock"]


def _exchange(path: str, message: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while len(data) <= MAX_RESPONSE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlError(f"the agent at {path} sent an unreadable answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the agent at {path} sent an unreadable answer")
    return answer


def request(paths: str | os.PathLike | Sequence[str], message: dict, *, timeout: float = REQUEST_TIMEOUT) -> dict:
    """Send ``message`` to the first agent that answers; return its JSON answer.

    Raises:
        ControlError: no agent answers at any of ``paths`` (one-line reason).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    reasons = []
    for path in paths:
        try:
            return _exchange(str(path), message, timeout)
        except FileNotFoundError:
            reasons.append(f"{path}: no such socket")
        except socket.timeout:
            reasons.append(f"{path}: no answer within {timeout:g} s")
        except OSError as exc:
            reasons.append(f"{path}: {exc.strerror or type(exc).__name__}")
    raise ControlError("no agent answers (" + "; ".join(reasons) + ")")
