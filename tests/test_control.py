"""The control socket: one JSON request and answer per connection, modes, bounds, the client."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
from types import SimpleNamespace

import pytest
import trio

from agent import control
from agent.control import serve_control, socket_permissions
from cli.up import default_data_dir, up_control_socket
from wire.control import MAX_REQUEST, ControlError, candidate_paths, request

STATUS = {"ready": True, "role_arn": "arn:aws:iam::123456789012:role/app", "access_key_id": "ASIAEXAMPLE",
          "expiration": "2026-01-01T01:00:00Z", "last_refresh": "2026-01-01T00:00:00Z",
          "next_refresh": "2026-01-01T00:30:00Z", "last_error": None}


def handle(req, peer_uid):
    if req["op"] == "status":
        return dict(STATUS)
    if req["op"] == "whoami":
        return {"uid": peer_uid}
    return {"error": f"unknown op {req['op']!r}"}


@pytest.fixture
def no_rolecall_group(monkeypatch):
    def missing(name):
        raise KeyError(name)

    monkeypatch.setattr(grp, "getgrnam", missing)


async def _raw(path: str, payload: bytes, *, half_close: bool = True) -> dict:
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(payload)
        if half_close:
            await stream.send_eof()
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return json.loads(data)


async def test_status_round_trip_with_the_sync_client(nursery, tmp_path, no_rolecall_group):
    path = str(tmp_path / "run" / "agent.sock")
    await nursery.start(serve_control, path, handle)
    answer = await trio.to_thread.run_sync(request, path, {"op": "status"})
    assert answer == STATUS
    assert await trio.to_thread.run_sync(request, [str(tmp_path / "none.sock"), path], {"op": "whoami"}) == {
        "uid": os.getuid()}


async def test_user_socket_is_0600_in_a_0700_directory(nursery, tmp_path, no_rolecall_group):
    path = tmp_path / "fresh" / "rolecall" / "agent.sock"
    await nursery.start(serve_control, str(path), handle)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_system_service_permissions_use_the_rolecall_group(monkeypatch):
    monkeypatch.setattr(grp, "getgrnam", lambda name: SimpleNamespace(gr_gid=4242))
    assert socket_permissions(euid=0, egid=0) == (0o660, 4242)
    assert socket_permissions(euid=999, egid=4242) == (0o660, 4242)  # User=/Group=rolecall
    assert socket_permissions(euid=1000, egid=1000) == (0o600, None)  # a user's agent


def test_without_the_group_the_socket_is_private(no_rolecall_group):
    assert socket_permissions(euid=0, egid=0) == (0o600, None)


async def test_bad_requests_get_an_error_answer(nursery, tmp_path, no_rolecall_group):
    path = str(tmp_path / "agent.sock")
    await nursery.start(serve_control, path, handle)
    assert "not JSON" in (await _raw(path, b"hello\n"))["error"]
    assert '"op"' in (await _raw(path, b"[1, 2]\n"))["error"]
    assert "larger than" in (await _raw(path, b"{" + b" " * MAX_REQUEST + b"}\n", half_close=False))["error"]
    assert "unknown op" in (await _raw(path, b'{"op": "reboot"}'))["error"]  # EOF ends a request too


async def test_no_input_ends_the_server(nursery, tmp_path, no_rolecall_group):
    """4 KB of "[" once made json.loads raise RecursionError and ended the agent (and rolecall up)."""
    path = str(tmp_path / "agent.sock")
    await nursery.start(serve_control, path, lambda req, uid: {"unserialisable": object()} if req["op"] == "odd"
                        else handle(req, uid))
    assert "not JSON" in (await _raw(path, b"[" * (MAX_REQUEST - 1) + b"\n"))["error"]
    assert "not JSON" in (await _raw(path, b'{"op": ' + b"[" * 3000 + b"\n"))["error"]
    assert "not JSON" in (await _raw(path, b"\xff\xfe\n"))["error"]
    assert (await _raw(path, b'{"op": "odd"}\n')) == {"error": "internal error"}
    assert (await _raw(path, b'{"op": "status"}\n')) == STATUS  # still serving


async def test_out_of_file_descriptors_the_accept_loop_waits(nursery, tmp_path, no_rolecall_group, monkeypatch):
    import errno

    failures = [OSError(errno.EMFILE, "Too many open files"), OSError(errno.ENFILE, "File table overflow")]
    real_accept = trio.SocketListener.accept

    async def accept(self):
        if failures:
            raise failures.pop(0)
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", accept)
    path = str(tmp_path / "agent.sock")
    await nursery.start(serve_control, path, handle)
    assert (await _raw(path, b'{"op": "status"}\n')) == STATUS and not failures


async def test_a_silent_client_times_out(nursery, tmp_path, no_rolecall_group, autojump_clock):
    path = str(tmp_path / "agent.sock")
    await nursery.start(serve_control, path, handle)
    assert (await _raw(path, b'{"op": "sta', half_close=False))["error"] == "request timed out"


async def test_a_failing_handler_answers_internal_error(nursery, tmp_path, no_rolecall_group, caplog):
    def broken(req, peer_uid):
        raise RuntimeError("secret-looking detail")

    path = str(tmp_path / "agent.sock")
    await nursery.start(serve_control, path, broken)
    assert (await _raw(path, b'{"op": "status"}\n')) == {"error": "internal error"}
    assert "secret-looking" not in caplog.text


async def test_stale_socket_is_replaced_and_a_live_one_refused(nursery, tmp_path, no_rolecall_group):
    path = tmp_path / "agent.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed agent's leftover
    await nursery.start(serve_control, str(path), handle)
    assert (await _raw(str(path), b'{"op": "status"}\n')) == STATUS
    with pytest.raises(ControlError, match="another agent"):
        await serve_control(str(path), handle)


async def test_socket_file_is_removed_on_exit(tmp_path, no_rolecall_group):
    path = tmp_path / "agent.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, str(path), handle)
        assert path.exists()
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_regular_file_in_the_way_is_an_error(tmp_path, no_rolecall_group):
    path = tmp_path / "agent.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket"):
        await serve_control(str(path), handle)


def test_client_without_an_agent_raises_one_line(tmp_path):
    with pytest.raises(ControlError) as info:
        request([str(tmp_path / "a.sock"), str(tmp_path / "b.sock")], {"op": "status"})
    assert "\n" not in str(info.value)
    assert "a.sock: no such socket" in str(info.value) and "b.sock" in str(info.value)


def test_client_times_out_on_a_silent_server(tmp_path):
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(path)
        mute.listen(1)
        with pytest.raises(ControlError, match="no answer within"):
            request(path, {"op": "status"}, timeout=0.2)


def test_candidate_paths_follow_design_md():
    assert candidate_paths("/x.sock", {}) == ["/x.sock"]
    assert candidate_paths(None, {"ROLECALL_AGENT_SOCKET": "/e.sock", "XDG_RUNTIME_DIR": "/r"}) == ["/e.sock"]
    assert candidate_paths(None, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == [
        "/run/user/1000/rolecall/agent.sock", "/run/rolecall/agent.sock"]
    # no runtime dir: `rolecall up`'s socket in its default data dir, then the system service's
    assert candidate_paths(None, {"HOME": "/home/u"}) == [
        "/home/u/.local/share/rolecall/up/agent.sock", "/run/rolecall/agent.sock"]
    assert candidate_paths(None, {"XDG_DATA_HOME": "/d"}) == ["/d/rolecall/up/agent.sock", "/run/rolecall/agent.sock"]


def test_up_and_status_agree_on_the_socket_without_a_runtime_dir(tmp_path):
    """`rolecall up` puts its socket where `agent status` looks first when XDG_RUNTIME_DIR is unset."""
    environ = {"HOME": str(tmp_path)}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("XDG_RUNTIME_DIR", raising=False)
        patch.delenv("ROLECALL_AGENT_SOCKET", raising=False)
        patch.setenv("HOME", str(tmp_path))
        patch.delenv("XDG_DATA_HOME", raising=False)
        assert candidate_paths(None, environ)[0] == up_control_socket(default_data_dir())


def test_module_exports():
    assert set(control.__all__) >= {"serve_control", "ControlError"}


# ---- the group under the agent's seccomp filter (chown refused) ---------------------------------


def _refuse_chown(calls):
    def chown(path, uid, gid, **kwargs):
        calls.append((str(path), gid))
        raise PermissionError(1, "Operation not permitted")
    return chown


async def test_chown_refused_keeps_the_socket_private_and_serving(nursery, tmp_path, monkeypatch, caplog):
    """SystemCallFilter=~@privileged makes chown EPERM: the agent must start anyway, 0600 / 0700."""
    other_gid = os.getegid() + 4242  # a group the new files do not get by default
    monkeypatch.setattr(control, "socket_permissions", lambda: (0o660, other_gid))
    calls: list = []
    monkeypatch.setattr(os, "chown", _refuse_chown(calls))
    path = tmp_path / "fresh" / "agent.sock"
    await nursery.start(serve_control, str(path), handle)
    assert [gid for _, gid in calls] == [other_gid, other_gid]  # the directory, then the socket
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("stays private" in w and "\n" not in w for w in warnings)
    assert (await _raw(str(path), b'{"op": "status"}\n')) == STATUS


async def test_no_chown_when_the_group_is_already_right(nursery, tmp_path, monkeypatch, caplog):
    """Under DynamicUser + Group=rolecall the socket is born with the group: no chown call at all."""
    monkeypatch.setattr(control, "socket_permissions", lambda: (0o660, os.getegid()))
    calls: list = []
    monkeypatch.setattr(os, "chown", _refuse_chown(calls))
    path = tmp_path / "run" / "agent.sock"
    await nursery.start(serve_control, str(path), handle)
    assert calls == [] and "stays private" not in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o660 and path.stat().st_gid == os.getegid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert (await _raw(str(path), b'{"op": "status"}\n')) == STATUS
