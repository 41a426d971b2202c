"""The daemon in-process, over real loopback sockets, against the included backend.

The backend runs in the same trio run (``sts_backend.server.serve`` on port 0)
and the agent reaches it over loopback HTTP. Tests where time matters use
``autojump_clock`` with the ``wall_clock`` fixture shared by the backend and
the agent. The last section runs ``rolecall agent serve`` (and the backend) as
subprocesses in real time: logs, sd_notify, SIGHUP/SIGTERM, socket activation,
a backend outage.

The helpers at the top (``Backend``, ``agent_config``) are also used by
``tests/interop/test_agent_e2e.py``.
"""

from __future__ import annotations

import json
import subprocess
import os
import signal
import socket
import stat
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import trio

from agent.config import load_config
from agent.daemon import run_agent, status_document
from agent.demo import DemoAccount, Keys, seed_demo
from agent.sdnotify import Notifier
from tests.imds_support import http_request
from sts_backend import server as backend_server
from sts_backend.app import Backend
from sts_backend.iam import bootstrap_admin
from sts_backend.store import Store
from wire.clock import SystemClock
from wire.http import HttpResponse
from wire.query import parse_form
from wire.version import version

CREDS = "/latest/meta-data/iam/security-credentials/"


# ---- helpers shared with the interop tests ---------------------------------------------


class StsBackend:
    """The included backend on loopback in a nursery, counting calls per Action.

    ``assume_role_delay`` slows AssumeRole (trio time); ``outage`` answers every
    call 503 as if the backend were down behind a proxy.
    """

    def __init__(self, data_dir: Path, clock) -> None:
        self.store = Store.create(data_dir, clock=clock)
        _, key = bootstrap_admin(self.store)
        self.admin = Keys(key.access_key_id, key.secret_access_key)
        self.app, self.clock = Backend(self.store, clock), clock
        self.calls: Counter[str] = Counter()
        self.assume_role_delay = 0.0
        self.url = ""
        self._stop = self._done = None

    async def __call__(self, req) -> HttpResponse:
        action = parse_form(req.body).get("Action", "")
        self.calls[action] += 1
        if action == "AssumeRole" and self.assume_role_delay:
            await trio.sleep(self.assume_role_delay)
        return self.app.handle(req)

    async def start(self, nursery: trio.Nursery, address: str = "127.0.0.1:0") -> str:
        self._stop, self._done = trio.Event(), trio.Event()

        async def serve(task_status=trio.TASK_STATUS_IGNORED):
            try:
                await backend_server.serve(self, [address], stop=self._stop, task_status=task_status)
            finally:
                self._done.set()

        self.url = (await nursery.start(serve))[0]
        return self.url

    async def stop(self) -> None:
        self._stop.set()
        await self._done.wait()

    async def demo(self) -> DemoAccount:
        return await seed_demo(self.url, self.admin, self.clock)


def agent_config(directory: Path, sts_url: str, account: DemoAccount, *, listen: str = "127.0.0.1:0",
                 extra: str = "", tokens: str = "required") -> Path:
    """Write an agent TOML (secret in a 0600 file, socket in ``directory``) and return its path."""
    secret = directory / "secret"
    secret.write_text(account.agent.secret_access_key)
    secret.chmod(0o600)
    path = directory / "agent.toml"
    path.write_text(f'[sts]\nendpoint_url = "{sts_url}"\nregion = "us-east-1"\n\n'
                    f'[source]\naccess_key_id = "{account.agent.access_key_id}"\n'
                    f'secret_access_key_file = "{secret}"\n\n'
                    f'[role]\narn = "{account.role_arn}"\nsession_name = "test-agent"\n\n'
                    f'[metadata]\nlisten = ["{listen}"]\ntokens = "{tokens}"\n\n'
                    f'[agent]\ncontrol_socket = "{directory / "agent.sock"}"\n{extra}')
    return path


async def imds_credentials(address: str) -> tuple[int, dict]:
    """IMDSv2: a token, the role list, then the role's credentials (status, JSON or {})."""
    status, _, token = await http_request(address, "PUT", "/latest/api/token",
                                          [("X-aws-ec2-metadata-token-ttl-seconds", "300")])
    assert status == 200
    auth = [("X-aws-ec2-metadata-token", token.decode())]
    status, _, body = await http_request(address, "GET", CREDS, auth)
    if status != 200:
        return status, json.loads(body or b"{}")
    status, _, body = await http_request(address, "GET", CREDS + body.decode(), auth)
    return status, json.loads(body)


async def control(path: str, op: str = "status") -> dict:
    """The control socket from trio (works in virtual time, unlike the blocking client)."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(json.dumps({"op": op}).encode() + b"\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return json.loads(data)


async def start_agent(nursery, config_path: Path, clock, **kwargs):
    config = load_config(str(config_path), environ={})
    kwargs.setdefault("handle_signals", False)
    kwargs.setdefault("inherited", [])
    return await nursery.start(partial(run_agent, config, wall_clock=clock, **kwargs))


@pytest.fixture
async def backend(nursery, tmp_path, wall_clock):
    sts = StsBackend(tmp_path / "backend", wall_clock)
    await sts.start(nursery)
    sts.account = await sts.demo()
    return sts


# ---- in-process, virtual time ----------------------------------------------------------------


async def test_serves_the_role_once_ready_and_reports_status(nursery, backend, short_dir, wall_clock,
                                                             autojump_clock, caplog):
    caplog.set_level("INFO")
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account), wall_clock)
    assert agent.metadata[0].startswith("127.0.0.1:") and not agent.metadata[0].endswith(":0")
    await agent.ready.wait()
    status, creds = await imds_credentials(agent.metadata[0])
    assert status == 200 and creds["AccessKeyId"].startswith("ASIA") and creds["Code"] == "Success"
    answer = await control(agent.control_socket)
    assert answer["ready"] is True and answer["role_arn"] == backend.account.role_arn
    assert answer["access_key_id"] == creds["AccessKeyId"] and answer["last_error"] is None
    assert all(answer[k].endswith("Z") for k in ("expiration", "last_refresh", "next_refresh"))
    messages = [r.getMessage() for r in caplog.records]
    assert f"listening on http://{agent.metadata[0]}" in messages
    assert any(m.startswith("ready ") for m in messages)
    for secret in (creds["SecretAccessKey"], creds["Token"], backend.account.agent.secret_access_key):
        assert secret not in caplog.text and secret not in json.dumps(answer)
    assert backend.calls["AssumeRole"] == 1


async def test_503_until_the_backend_answers_then_recovers(nursery, backend, short_dir, wall_clock, autojump_clock):
    url = backend.url
    await backend.stop()  # the demo account exists; now the backend is down at the agent's start
    agent = await start_agent(nursery, agent_config(short_dir, url, backend.account, tokens="optional"), wall_clock)
    status, body = await imds_credentials(agent.metadata[0])
    assert status == 503 and body["Code"]
    await trio.sleep(3)
    answer = await control(agent.control_socket)
    assert answer["ready"] is False and answer["access_key_id"] is None and answer["last_error"]
    await backend.start(nursery, url.removeprefix("http://"))  # back on the same port
    with trio.fail_after(120):
        await agent.ready.wait()
    assert (await imds_credentials(agent.metadata[0]))[0] == 200


async def test_1000_concurrent_requests_across_a_rotation(nursery, backend, short_dir, wall_clock, autojump_clock):
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account), wall_clock)
    await agent.ready.wait()
    first = agent.rotator.current().access_key_id
    backend.assume_role_delay = 2.0  # the rotation's STS call is in flight while requests land
    due = agent.rotator.status().next_refresh
    await trio.sleep((due - wall_clock.now()).total_seconds() - 1.0)
    results: list[tuple[int, dict]] = []

    async def one(i: int) -> None:
        await trio.sleep(i * 0.004)  # 4 s of requests around the refresh point
        results.append(await imds_credentials(agent.metadata[0]))

    async with trio.open_nursery() as clients:
        for i in range(1000):
            clients.start_soon(one, i)
    assert len(results) == 1000
    assert [s for s, _ in results].count(200) == 1000
    keys = Counter(body["AccessKeyId"] for _, body in results)
    assert set(keys) == {first, agent.rotator.current().access_key_id} and len(keys) == 2
    assert all(body["Expiration"] > wall_clock.now().strftime("%Y-%m-%dT%H:%M:%SZ") for _, body in results)
    assert backend.calls["AssumeRole"] == 2  # the first fetch, and one for the rotation


async def test_sd_notify_ready_then_stopping(nursery, backend, short_dir, wall_clock, autojump_clock):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(short_dir / "notify"))
    receiver.setblocking(False)
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(short_dir / "notify")}, pid=os.getpid())
    done = trio.Event()

    async def run(task_status):
        await run_agent(load_config(str(agent_config(short_dir, backend.url, backend.account)), environ={}),
                        wall_clock=wall_clock, inherited=[], notifier=notifier, handle_signals=False,
                        task_status=task_status)
        done.set()

    agent = await nursery.start(run)
    await agent.ready.wait()
    await trio.sleep(1)
    agent.stop()
    await done.wait()
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            break
    receiver.close()
    ready = [m for m in messages if m.startswith("READY=1")]
    assert len(ready) == 1 and f"serving {backend.account.role_arn}" in ready[0]
    assert messages[-1] == "STOPPING=1"
    assert messages.index(ready[0]) < messages.index("STOPPING=1")
    assert not (short_dir / "agent.sock").exists()


async def test_the_start_timeout_is_extended_while_the_sts_stays_away(nursery, backend, short_dir, wall_clock,
                                                                       autojump_clock):
    """A Type=notify start must not time out while the STS is down (systemd would kill and restart
    the agent, losing its backoff), and READY=1 still waits for credentials (design.md, invariant 1)."""
    from agent.daemon import EXTEND_BY, EXTEND_INTERVAL

    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(short_dir / "notify"))
    receiver.setblocking(False)
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(short_dir / "notify")}, pid=os.getpid())
    with socket.socket() as closed:   # a port nothing listens on: every fetch is refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    agent = await nursery.start(lambda task_status: run_agent(
        load_config(str(agent_config(short_dir, dead, backend.account)), environ={}), wall_clock=wall_clock,
        inherited=[], notifier=notifier, handle_signals=False, task_status=task_status))

    def messages() -> list[str]:
        found = []
        while True:
            try:
                found.append(receiver.recv(4096).decode())
            except BlockingIOError:
                return found

    await trio.sleep(5 * EXTEND_INTERVAL + 1)
    sent = messages()
    extended = [m for m in sent if m.startswith(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY * 1_000_000)}\n")]
    assert len(extended) == 5 and all("STATUS=no credentials yet" in m for m in extended)
    assert EXTEND_BY > EXTEND_INTERVAL   # each extension outlasts the wait for the next one
    assert not any(m.startswith("READY=1") for m in sent) and not agent.ready.is_set()
    agent.stop()
    receiver.close()


async def test_inherited_listeners_replace_the_configured_addresses(nursery, backend, short_dir, wall_clock,
                                                                    autojump_clock):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    path = agent_config(short_dir, backend.url, backend.account, listen="127.0.0.1:9")  # never bound
    agent = await start_agent(nursery, path, wall_clock, inherited=listeners)
    assert agent.metadata == [f"127.0.0.1:{port}"]
    await agent.ready.wait()
    assert (await imds_credentials(agent.metadata[0]))[0] == 200


async def test_container_endpoint_with_a_private_token_file(nursery, backend, short_dir, wall_clock, autojump_clock):
    token_file = short_dir / "token"
    extra = f'\n[container]\nlisten = ["127.0.0.1:0"]\ntoken_file = "{token_file}"\n'
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account, extra=extra),
                              wall_clock)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()
    assert token and not token.endswith("\n")
    await agent.ready.wait()
    status, _, body = await http_request(agent.container[0], "GET", "/v1/credentials", [("Authorization", token)])
    assert status == 200 and json.loads(body)["AccessKeyId"].startswith("ASIA")
    status, _, _ = await http_request(agent.container[0], "GET", "/v1/credentials", [("Authorization", "nope")])
    assert status == 403


async def test_control_refresh_forces_one_new_fetch(nursery, backend, short_dir, wall_clock, autojump_clock):
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account), wall_clock)
    await agent.ready.wait()
    await trio.sleep(60)
    before = (await control(agent.control_socket))["access_key_id"]
    after = await control(agent.control_socket, "refresh")
    assert after["ready"] and after["access_key_id"] != before
    assert backend.calls["AssumeRole"] == 2
    assert "unknown op" in (await control(agent.control_socket, "reboot"))["error"]


def test_status_document_has_exactly_the_design_fields_and_the_mfa_session():
    class FakeRotator:
        def status(self):
            from agent.rotator import RotatorStatus
            return RotatorStatus(False, "arn:aws:iam::123456789012:role/x", None, None, None, None, "boom")

    assert status_document(FakeRotator()) == {
        "version": version(), "ready": False, "role_arn": "arn:aws:iam::123456789012:role/x", "access_key_id": None,
        "expiration": None, "last_refresh": None, "next_refresh": None, "last_error": "boom",
        "mfa_serial": None, "mfa_expiration": None, "mfa_waiting": None}


# ---- real time: signals ---------------------------------------------------------------------


async def test_sighup_reloads_applies_the_role_and_keeps_running_on_a_bad_file(nursery, tmp_path, short_dir,
                                                                               caplog):
    caplog.set_level("INFO")
    sts = StsBackend(tmp_path / "backend", SystemClock())
    await sts.start(nursery)
    account = await sts.demo()
    path = agent_config(short_dir, sts.url, account)
    done = trio.Event()

    async def run(task_status):
        await run_agent(load_config(str(path), environ={}), inherited=[], task_status=task_status)
        done.set()

    agent = await nursery.start(run)
    await agent.ready.wait()
    path.write_text(path.read_text().replace('tokens = "required"', 'tokens = "sometimes"'))
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(5):
        while "reload failed" not in caplog.text:
            await trio.sleep(0.02)
    assert '[metadata] tokens' in caplog.text
    good = path.read_text()
    caplog.clear()
    path.write_text(good + "x = " + "[" * 5000)  # tomllib's recursion: one line, the agent stays
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(5):
        while "reload failed" not in caplog.text:
            await trio.sleep(0.02)
    assert "nested too deeply" in caplog.text and (await imds_credentials(agent.metadata[0]))[0] == 200
    path.write_text(good)
    path.write_text(path.read_text().replace('"sometimes"', '"optional"').replace(
        'session_name = "test-agent"', 'session_name = "renamed"'))
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(5):
        while "reloaded" not in caplog.text:
            await trio.sleep(0.02)
    assert "needs a restart to change: [metadata]" in caplog.text
    await agent.rotator.refresh_now()
    assert sts.calls["AssumeRole"] == 2 and (await imds_credentials(agent.metadata[0]))[0] == 200
    os.kill(os.getpid(), signal.SIGTERM)
    with trio.fail_after(5):
        await done.wait()
    assert "SIGTERM received" in caplog.text


async def test_reload_reads_off_the_loop_and_no_failure_ends_the_agent(tmp_path, short_dir, monkeypatch, caplog):
    """Whatever re-reading raises (not only AgentError), the old configuration stays; it never runs on the loop."""
    import threading

    from agent import daemon

    account = DemoAccount("123456789012", Keys("AKIAADMINADMINADMIN1", "a" * 40),
                          Keys("AKIAAGENTAGENTAGENT1", "s" * 40), Keys("AKIADEMODEMODEMODEM1", "d" * 40),
                          "arn:aws:iam::123456789012:role/x", "arn:aws:iam::123456789012:role/y",
                          "arn:aws:iam::123456789012:mfa/d", "JBSWY3DPEHPK3PXP")
    config = load_config(str(agent_config(short_dir, "http://127.0.0.1:9", account)), environ={})
    fetcher = daemon._Fetcher(config, SystemClock(), None)
    threads = []

    def reload_source():
        threads.append(threading.current_thread())
        raise RuntimeError("not an AgentError, and a message that must not be logged")

    monkeypatch.setattr(fetcher.source, "reload", reload_source)
    with caplog.at_level("ERROR", logger="rolecall.agent"):
        assert await daemon._reload(config, fetcher) is None
    assert threads and threads[0] is not threading.main_thread()
    assert "unexpected RuntimeError" in caplog.text and "must not be logged" not in caplog.text
    monkeypatch.undo()
    assert (await daemon._reload(config, fetcher)).role == config.role


# ---- `rolecall agent serve` as a subprocess (real time) ------------------------------------

REPO = Path(__file__).resolve().parent.parent


def rolecall_command() -> list[str]:
    """The installed console script, run with this interpreter."""
    return [os.environ.get("PYTHON", str(Path(os.sys.executable))), "-c",
            "import sys; from cli.main import main; sys.exit(main())"]


def child_env(**extra: str) -> dict[str, str]:
    """The test's (scrubbed) environment for a child, with the repository importable first."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
    return dict(env, PYTHONPATH=str(REPO), AWS_EC2_METADATA_DISABLED="true", **extra)


class Lines:
    """Reads a child's stream line by line (trio), keeping everything read."""

    def __init__(self, stream) -> None:
        self.stream, self.buffer, self.lines = stream, b"", []

    async def until(self, predicate, timeout: float = 15.0) -> str:
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise AssertionError("stream closed; read:\n" + "\n".join(self.lines))
                self.buffer += chunk
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [line.decode() for line in complete]

    async def rest(self) -> str:
        while chunk := await self.stream.receive_some(65536):
            self.buffer += chunk
        self.lines += [line.decode() for line in self.buffer.split(b"\n") if line]
        return "\n".join(self.lines)


async def _agent_process(config: Path, **env: str):
    return await trio.lowlevel.open_process([*rolecall_command(), "agent", "serve", "--config", str(config)],
                                            stderr=subprocess.PIPE, env=child_env(**env))




@pytest.fixture
async def live_backend(nursery, tmp_path):
    sts = StsBackend(tmp_path / "backend", SystemClock())
    await sts.start(nursery)
    sts.account = await sts.demo()
    return sts


async def test_agent_serve_process_logs_notifies_reloads_and_stops(nursery, live_backend, short_dir):
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(short_dir / "notify"))
    datagrams: list[bytes] = []

    async def collect() -> None:
        try:
            while True:
                datagrams.append(await notify.recv(4096))
        except trio.ClosedResourceError:
            pass  # the test is over

    nursery.start_soon(collect)
    path = agent_config(short_dir, live_backend.url, live_backend.account)
    process = await _agent_process(path, NOTIFY_SOCKET=str(short_dir / "notify"), WATCHDOG_USEC="400000")
    log = Lines(process.stderr)
    try:
        listening = await log.until(lambda line: "listening on http://127.0.0.1:" in line)
        port = int(listening.rsplit(":", 1)[1].split()[0])
        assert port != 0
        await log.until(lambda line: " ready " in line)
        assert log.lines.index(listening) < len(log.lines) - 1
        status = await trio.run_process([*rolecall_command(), "agent", "status", "--json", "--socket",
                                         str(short_dir / "agent.sock")], capture_stdout=True, env=child_env())
        answer = json.loads(status.stdout)
        assert answer["ready"] is True and answer["role_arn"] == live_backend.account.role_arn
        human = await trio.run_process([*rolecall_command(), "agent", "status", "--socket",
                                        str(short_dir / "agent.sock")], capture_stdout=True, env=child_env())
        assert f"role:         {live_backend.account.role_arn}" in human.stdout.decode()
        path.write_text("[sts\n")  # a reload with a broken file keeps the agent running
        process.send_signal(signal.SIGHUP)
        await log.until(lambda line: "reload failed" in line)
        assert (await imds_credentials(f"127.0.0.1:{port}"))[0] == 200
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
        await trio.sleep(0.1)
        ready = [d for d in datagrams if d.startswith(b"READY=1\nSTATUS=serving")]
        assert len(ready) == 1 and datagrams[-1] == b"STOPPING=1"
        assert b"WATCHDOG=1" in datagrams and datagrams.index(ready[0]) < len(datagrams) - 1
        text = await log.rest()
        assert live_backend.account.agent.secret_access_key not in text
    finally:
        if process.returncode is None:
            process.kill()
        notify.close()


async def test_agent_serve_with_a_bad_config_exits_1_with_one_line(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[sts]\nregion = "us-east-1"\nendpoint_url = "http://127.0.0.1:1"\n\n[role]\narn = "nope"\n')
    result = await trio.run_process([*rolecall_command(), "agent", "serve", "--config", str(path)],
                                    capture_stderr=True, check=False, env=child_env())
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"rolecall: {path}: [source]")


async def test_version(tmp_path):
    """``rolecall --version``: the installed distribution's version, one line."""
    from importlib.metadata import version as installed

    result = await trio.run_process([*rolecall_command(), "--version"], capture_stdout=True, env=child_env())
    assert result.stdout.decode() == f"rolecall {installed('rolecall')}\n"


async def test_agent_status_without_an_agent_exits_1_with_one_line(tmp_path):
    result = await trio.run_process([*rolecall_command(), "agent", "status", "--socket", str(tmp_path / "x.sock")],
                                    capture_stderr=True, check=False, env=child_env())
    assert result.returncode == 1 and len(result.stderr.decode().strip().splitlines()) == 1
    assert "no agent answers" in result.stderr.decode()


_ACTIVATE = ("import os, sys; fds = [int(f) for f in sys.argv[1].split(',')]; "
             "[os.dup2(fd, 3 + i) for i, fd in enumerate(fds)]; "
             "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=sys.argv[2]); "
             "os.execv(sys.executable, [sys.executable, '-c', 'import sys; from cli.main import main; "
             "sys.exit(main())', *sys.argv[3:]])")


async def _activated(fds_and_names: list[tuple[socket.socket, str]], *args: str):
    """``rolecall ARGS`` as systemd starts a socket-activated service: the sockets at fd 3..., LISTEN_FDNAMES."""
    fds = ",".join(str(sock.fileno()) for sock, _ in fds_and_names)
    names = ":".join(name for _, name in fds_and_names)
    process = await trio.lowlevel.open_process([os.sys.executable, "-c", _ACTIVATE, fds, names, *args],
                                               stderr=subprocess.PIPE, env=child_env(),
                                               pass_fds=[sock.fileno() for sock, _ in fds_and_names])
    for sock, _ in fds_and_names:
        sock.close()  # the child holds them now
    return process


async def _stopped_by_sigterm(process) -> None:
    process.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        assert await process.wait() == 0


async def test_agent_serve_takes_systemd_socket_activation(live_backend, short_dir):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    path = agent_config(short_dir, live_backend.url, live_backend.account, listen="127.0.0.1:9")
    process = await _activated([(sock, "rolecall-agent.socket")], "agent", "serve", "--config", str(path))
    log = Lines(process.stderr)
    try:
        line = await log.until(lambda line: "listening on" in line)
        assert f"listening on http://127.0.0.1:{port} (socket activation)" in line
        await log.until(lambda line: " ready " in line)
        assert (await imds_credentials(f"127.0.0.1:{port}"))[0] == 200
        await _stopped_by_sigterm(process)
    finally:
        if process.returncode is None:
            process.kill()


async def test_socket_activation_hands_the_container_socket_to_the_container_endpoint(live_backend, short_dir):
    """rolecall-container.socket names its fd "container": the container endpoint serves on it, IMDS on the rest."""
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        socks.append(sock)
    imds_port, container_port = (s.getsockname()[1] for s in socks)
    token_file = short_dir / "token"
    extra = f'\n[container]\nlisten = ["127.0.0.1:9"]\ntoken_file = "{token_file}"\n'
    path = agent_config(short_dir, live_backend.url, live_backend.account, listen="127.0.0.1:9", extra=extra)
    process = await _activated([(socks[0], "rolecall-agent.socket"), (socks[1], "container")],
                               "agent", "serve", "--config", str(path))
    log = Lines(process.stderr)
    try:
        line = await log.until(lambda line: "container endpoint on" in line)
        assert f"http://127.0.0.1:{container_port}/v1/credentials" in line and "(socket activation)" in line
        await log.until(lambda line: " ready " in line)
        assert (await imds_credentials(f"127.0.0.1:{imds_port}"))[0] == 200
        status, _, body = await http_request(f"127.0.0.1:{container_port}", "GET", "/v1/credentials",
                                             [("Authorization", token_file.read_text())])
        assert status == 200 and json.loads(body)["AccessKeyId"].startswith("ASIA")
        await _stopped_by_sigterm(process)
    finally:
        if process.returncode is None:
            process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _backend_process(data_dir: Path, port: int):
    process = await trio.lowlevel.open_process(
        [*rolecall_command(), "backend", "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE, env=child_env())
    await Lines(process.stderr).until(lambda line: "listening on" in line)
    return process


async def test_smoke_backend_process_stopped_and_restarted(nursery, tmp_path, short_dir):
    """Real time: the agent keeps serving through a backend outage and recovers after it."""
    data_dir, port = tmp_path / "backend", _free_port()
    init = await trio.run_process([*rolecall_command(), "backend", "init", "--data-dir", str(data_dir)],
                                  capture_stdout=True, env=child_env())
    admin = json.loads(init.stdout)
    backend = await _backend_process(data_dir, port)
    try:
        url = f"http://127.0.0.1:{port}"
        account = await seed_demo(url, Keys(admin["AccessKeyId"], admin["SecretAccessKey"]), SystemClock())
        agent = await start_agent(nursery, agent_config(short_dir, url, account), SystemClock())
        await agent.ready.wait()
        first = agent.rotator.current().access_key_id
        backend.send_signal(signal.SIGTERM)
        assert await backend.wait() == 0
        await agent.rotator.refresh_now()  # fails: nobody listens
        answer = await control(agent.control_socket)
        assert answer["ready"] and answer["access_key_id"] == first and answer["last_error"]
        status, creds = await imds_credentials(agent.metadata[0])
        assert status == 200 and creds["AccessKeyId"] == first  # still serving the held credentials
        backend = await _backend_process(data_dir, port)
        with trio.fail_after(30):
            while agent.rotator.current().access_key_id == first:
                await agent.rotator.refresh_now()
        answer = await control(agent.control_socket)
        assert answer["last_error"] is None and answer["access_key_id"] != first
        assert (await imds_credentials(agent.metadata[0]))[1]["AccessKeyId"] == answer["access_key_id"]
    finally:
        if backend.returncode is None:
            backend.kill()


async def test_ipv6_listener_is_logged_in_bracket_form(nursery, backend, short_dir, wall_clock, autojump_clock,
                                                       caplog):
    from tests.servers import ipv6_loopback_available

    if not ipv6_loopback_available():
        pytest.skip("no IPv6 on lo")
    caplog.set_level("INFO")
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account, listen="[::1]:0"),
                              wall_clock)
    assert agent.metadata[0].startswith("[::1]:")
    assert f"listening on http://{agent.metadata[0]}" in caplog.text
    await agent.ready.wait()
    assert (await imds_credentials(agent.metadata[0]))[0] == 200


async def test_stop_lets_a_request_in_progress_finish(nursery, backend, short_dir, wall_clock, autojump_clock):
    path = agent_config(short_dir, backend.url, backend.account, tokens="optional")
    done = trio.Event()

    async def run(task_status):
        await run_agent(load_config(str(path), environ={}), wall_clock=wall_clock, inherited=[],
                        handle_signals=False, task_status=task_status)
        done.set()

    agent = await nursery.start(run)
    await agent.ready.wait()
    host, port = agent.metadata[0].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(f"GET {CREDS}rolecall-demo HTTP/1.1\r\nHost: 169.254.169.254\r\n".encode())
    await trio.sleep(0.5)
    agent.stop()
    await trio.sleep(1)
    assert not done.is_set()  # waiting for our request
    await stream.send_all(b"\r\n")
    response = b""
    while chunk := await stream.receive_some(65536):
        response += chunk
    assert response.startswith(b"HTTP/1.1 200 ") and b'"AccessKeyId"' in response
    assert b"connection: close" in response.lower()
    with trio.fail_after(5):
        await done.wait()


# ---- the open-file limit ------------------------------------------------------------------------------


class FakeLimits:
    """Stands in for ``resource.getrlimit``/``setrlimit`` on RLIMIT_NOFILE."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits, self.refuse, self.set_calls = (soft, hard), refuse, []

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        self.set_calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


@pytest.mark.parametrize("soft, hard, refuse, after, warned", [
    (1024, 524288, False, 524288, False),   # the usual: soft raised to hard, quietly
    (65536, 65536, False, 65536, False),    # LimitNOFILE=65536 in the unit: nothing to do
    (1024, 4096, False, 4096, True),        # a low hard limit: raised as far as it goes, one warning
    (1024, 524288, True, 1024, True),       # refused: one warning
])
def test_the_agent_lifts_its_open_file_limit(monkeypatch, caplog, soft, hard, refuse, after, warned):
    import resource

    from agent.daemon import raise_open_file_limit
    from metadata_server.server import METADATA_LIMITS

    fake = FakeLimits(soft, hard, refuse)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    assert raise_open_file_limit() == after
    assert fake.set_calls == ([] if soft == hard else [(hard, hard)])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == int(warned)
    if warned:
        assert f"open-file limit is {after}" in warnings[0] and "LimitNOFILE" in warnings[0]
        assert str(METADATA_LIMITS.max_connections) in warnings[0]


def test_the_metadata_server_holds_more_than_ten_thousand_connections():
    """The benchmark's 10,000 idle connections fit under the shipped cap (bench/imds.py uses it as is)."""
    from metadata_server.server import METADATA_LIMITS

    assert METADATA_LIMITS.max_connections >= 16384


# ---- [sts] region = "aws-global" -----------------------------------------------------------------------


async def test_aws_global_region_calls_the_global_endpoint_signed_for_us_east_1(tmp_path, autojump_clock):
    import httpx

    from agent.config import parse_config
    from agent.daemon import _Fetcher
    from agent.errors import StsUnavailable
    from tests.clocks import FixedClock
    from tests.conftest import EPOCH

    config = parse_config('[sts]\nregion = "aws-global"\n\n[source]\naccess_key_id = "AKIAIOSFODNN7EXAMPLE"\n'
                          'secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n\n'
                          '[role]\narn = "arn:aws:iam::123456789012:role/app"\n', str(tmp_path / "agent.toml"),
                          environ={}, uid=1000, hostname="web-1")
    seen: list[httpx.Request] = []
    fetcher = _Fetcher(config, FixedClock(EPOCH), httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(503)))
    async with fetcher.client:
        with pytest.raises(StsUnavailable):
            await fetcher.fetch()
    assert fetcher.client.endpoint.url == "https://sts.amazonaws.com"
    assert {r.url.host for r in seen} == {"sts.amazonaws.com"}
    assert all("/us-east-1/sts/aws4_request" in r.headers["Authorization"] for r in seen)


# ---- SIGHUP with another role while a fetch is in flight ----------------------------------------------


async def test_sighup_to_another_role_during_a_slow_fetch_serves_it_right_after(nursery, backend, short_dir,
                                                                               wall_clock, autojump_clock):
    """The reload must not ride on the old role's attempt in flight (the new role would wait ~30 min)."""
    from agent.demo import _READ_ONLY, _policy, _role, _trust
    from agent.iam_client import IamClient

    account = backend.account
    async with IamClient(backend.url, backend.admin.credentials(), wall_clock) as iam:
        second = await _role(iam, "second", _trust([f"arn:aws:iam::{account.account_id}:user/rolecall-agent"]),
                             _policy(_READ_ONLY))
    path = agent_config(short_dir, backend.url, account)
    agent = await start_agent(nursery, path, wall_clock, handle_signals=True)
    await agent.ready.wait()
    backend.assume_role_delay = 5.0
    due = agent.rotator.status().next_refresh
    await trio.sleep((due - wall_clock.now()).total_seconds() + 1.0)  # the rotation's AssumeRole is in flight
    assert backend.calls["AssumeRole"] == 2
    path.write_text(path.read_text().replace(account.role_arn, second))
    sent = trio.current_time()
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(30):
        while (held := agent.rotator.current()) is None or held.role_name != "second":
            await trio.sleep(0.1)
    assert trio.current_time() - sent < 15  # the old fetch's last 4 s, then the new role's 5 s
    assert backend.calls["AssumeRole"] == 3
    assert (await control(agent.control_socket))["role_arn"] == second
    status, creds = await imds_credentials(agent.metadata[0])
    assert status == 200 and creds["AccessKeyId"] == held.access_key_id
