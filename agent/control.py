"""The agent's control socket: one JSON request, one JSON response per connection.

Server side (in the daemon's nursery)::

    await nursery.start(serve_control, path, handle)

``handle(request: dict, peer_uid: int | None) -> dict`` (plain or ``async``)
answers ``{"op": "status"}`` and friends; the daemon supplies it. Requests are
one JSON object of at most ``MAX_REQUEST`` bytes, ended by a newline or by the
client's half-close, within ``REQUEST_TIMEOUT`` seconds; anything else gets
``{"error": ...}``. At most ``MAX_CONNECTIONS`` are served at once (the rest
wait in the listen backlog). The socket file is 0600 (a user's agent) or 0660
with group ``rolecall`` (the system service, when that group exists and is ours
or we are root); a parent directory we create is 0700 (0750 with the group). The
group is set with ``chown`` only when the file does not already have it (under
``DynamicUser``/``Group=rolecall`` it does, and the unit's seccomp filter refuses
``chown``); when setting it is refused, the file stays private (0600, a directory
0700) and one warning says so. A stale socket file left by a dead agent is
replaced; a live one is an error.

The client side (stdlib only, for the CLI and the SDK shim) is ``wire.control``.
"""

from __future__ import annotations

import grp
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import trio

from wire.control import MAX_REQUEST, REQUEST_TIMEOUT, ControlError
from wire.private_files import UnsafeDirectory, private_dir
from wire.serve import accept_retrying

__all__ = ["ControlError", "serve_control", "socket_permissions"]

log = logging.getLogger("rolecall.agent")

MAX_CONNECTIONS = 64
GROUP = "rolecall"


# ---- permissions -------------------------------------------------------------------


def socket_permissions(euid: int | None = None, egid: int | None = None) -> tuple[int, int | None]:
    """``(mode, gid)`` for the socket: 0660 + group ``rolecall`` for the system service, else 0600.

    The group is used when it exists and we are root or it is our effective group
    (``User=``/``Group=rolecall`` or ``DynamicUser`` with that group name).
    """
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return 0o600, None
    if euid == 0 or egid == gid:
        return 0o660, gid
    return 0o600, None


def _set_group(path: Path, gid: int) -> bool:
    """Give ``path`` the group ``gid`` unless it has it already; False when that is refused.

    ``chown`` is left out when not needed: the agent's unit filters it out with
    ``SystemCallFilter=~@privileged`` (EPERM), and under ``Group=rolecall`` new
    files already carry the group.
    """
    if os.stat(path).st_gid == gid:
        return True
    try:
        os.chown(path, -1, gid)
    except PermissionError as exc:
        log.warning("cannot give %s the group %s (%s): it stays private to the agent's user", path, GROUP,
                    exc.strerror or type(exc).__name__)
        return False
    return True


def _prepare_directory(directory: Path, gid: int | None) -> None:
    """The socket's directory: created 0700 (0750 with the group), or an existing one that is ours alone."""
    if os.path.lexists(directory):
        private_dir(directory, create=False)  # UnsafeDirectory: another user's, or writable by others
        return
    directory.mkdir(mode=0o700, parents=True)
    if gid is not None and _set_group(directory, gid):
        os.chmod(directory, 0o750)


def _remove_stale(path: Path) -> None:
    """Remove a socket file nobody answers on; refuse when an agent does."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise ControlError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise ControlError(f"another agent is listening on {path}")


def _bind(path: Path) -> socket.socket:
    mode, gid = socket_permissions()
    try:
        _prepare_directory(path.parent, gid)
    except UnsafeDirectory:
        raise
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create {path.parent}: {exc.strerror or exc}") from None
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # No umask change (process-wide, and other threads create files): until the chmod below the
    # socket has the umask's mode, but connecting needs write permission on it, which the usual
    # umask gives no one else, and the directory is ours alone anyway.
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot create the control socket {path}: {exc.strerror or exc}") from None
    if gid is not None and not _set_group(path, gid):
        mode = 0o600
    os.chmod(path, mode)
    sock.listen(64)
    sock.setblocking(False)
    return sock


# ---- server --------------------------------------------------------------------------


def _peer_uid(stream: trio.SocketStream) -> int | None:
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(raw[4:8], "little")


async def _read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(MAX_REQUEST + 1 - len(data))
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    return data.split(b"\n", 1)[0]


def _decode(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # 4 KB of "[" nests too deep to parse
        raise ValueError("request is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("op"), str):
        raise ValueError('request must be a JSON object with a string "op"')
    return value


async def _answer(stream: trio.SocketStream, handle: Callable) -> dict:
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            req = _decode(await _read_request(stream))
    except trio.TooSlowError:
        return {"error": "request timed out"}
    except ValueError as exc:
        return {"error": str(exc)}
    try:
        answer = handle(req, _peer_uid(stream))
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # the daemon's handler must not take the server down
        log.error("control request %r failed: %s", req["op"][:64], type(exc).__name__)
        return {"error": "internal error"}
    return answer


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close and discard what the client still sends (briefly), so it reads our answer, not a reset."""
    await stream.send_eof()
    discarded = 0
    with trio.move_on_after(1.0):
        while discarded < 16 * MAX_REQUEST and (chunk := await stream.receive_some(MAX_REQUEST)):
            discarded += len(chunk)


async def _serve_one(stream: trio.SocketStream, handle: Callable, slots: trio.Semaphore) -> None:
    """One client, whatever it sends: an answer or a closed connection, never an exception out of here."""
    try:
        async with stream:
            answer = await _answer(stream, handle)
            try:
                data = json.dumps(answer).encode() + b"\n"
            except (TypeError, ValueError):
                log.error("control answer is not JSON: %s", type(answer).__name__)
                data = b'{"error": "internal error"}\n'
            await stream.send_all(data)
            await _linger(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception as exc:  # noqa: BLE001 - no input may end the daemon
        log.error("control connection failed: %s", type(exc).__name__)
    finally:
        slots.release()


async def serve_control(path: str | os.PathLike, handle: Callable, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the control socket at ``path`` until cancelled; removes the file on exit.

    Reports ``task_status.started(path)`` once listening.

    Raises:
        ControlError: another agent already answers at ``path``.
        OSError: the directory or socket cannot be created.
    """
    path = Path(path)
    sock = _bind(path)
    inode = os.stat(path).st_ino
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    try:
        slots = trio.Semaphore(MAX_CONNECTIONS)  # more clients wait in the listen backlog
        async with trio.open_nursery() as nursery:
            task_status.started(str(path))
            while True:
                await slots.acquire()
                stream = await accept_retrying(listener)  # EMFILE and friends wait, never end the agent
                nursery.start_soon(_serve_one, stream, handle, slots)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(listener)
        try:
            if os.stat(path).st_ino == inode:  # not a successor agent's socket
                path.unlink()
        except OSError:
            pass
