"""The host agent: memory across a day of rotations, start-to-READY, `rolecall up` to first credential.

1. RSS over 24 h of virtual time: a child process runs the daemon under trio's
   MockClock (autojump) with 15-minute sessions (so ~190 rotations a day),
   the included backend in the same process behind an ``httpx.MockTransport``,
   and an IMDSv2 client fetching credentials every virtual minute over
   loopback. VmRSS (/proc/self/status) is sampled every virtual hour. Goals:
   <= 45 MiB after 24 h, and no growth across rotations (hour 24 vs hour 2
   within 1 MiB). The figure includes the backend's in-process state, so it
   is an upper bound for the agent alone.
2. start-to-READY: ``rolecall agent serve`` as a subprocess against a loopback
   ``rolecall backend serve``; time from spawn to the sd_notify ``READY=1``
   datagram (interpreter start and imports included). Goal <= 1 s.
3. ``rolecall up`` to the first credential served: spawn, read the export
   lines, fetch credentials over IMDSv2. A first run (fresh data dir: init
   and demo seeding) and a second (reused). Goal <= 3 s.

    python bench/agent.py [--hours 24] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCHMARK = "host agent: RSS over 24 h of rotations, start-to-READY, rolecall up to first credential"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, so `agent` is the package, not this file
MiB = 1024 * 1024
CLI = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOTIFY_", "LISTEN_"))}
    return dict(env, HOME=str(home), XDG_RUNTIME_DIR=str(home / "run"), XDG_DATA_HOME=str(home / "data"),
                PYTHONPATH=str(REPO), AWS_EC2_METADATA_DISABLED="true", **extra)


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- 1. RSS in a child, in virtual time -----------------------------------------------------


def _warm_up(app, key, role_arn: str, clock) -> None:
    """One signed AssumeRole straight into the backend app (no HTTP client), as the agent will send."""
    import httpx

    from wire.query import encode_form
    from wire.sigv4 import Credentials, SigV4Auth

    body = encode_form({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn,
                        "RoleSessionName": "warm-up"})
    request = httpx.Request("POST", "http://backend.invalid/", content=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    auth = SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "us-east-1", "sts", clock)
    assert app.handle_httpx(next(auth.auth_flow(request))).status_code == 200


def _child_rss(hours: int) -> None:
    """Runs in the child: the daemon for ``hours`` of virtual time; prints JSON samples."""
    import httpx
    import trio
    import trio.testing

    from agent.config import load_config
    from agent.daemon import run_agent
    from tests.imds_support import http_request
    from tests.clocks import TrioWallClock

    agent_only = _rss()  # the backend's share is what importing and opening it adds from here

    async def fetch(address: str) -> None:
        _, _, token = await http_request(address, "PUT", "/latest/api/token",
                                         [("X-aws-ec2-metadata-token-ttl-seconds", "60")])
        path = "/latest/meta-data/iam/security-credentials/rolecall-demo"
        status, _, _ = await http_request(address, "GET", path, [("X-aws-ec2-metadata-token", token.decode())])
        assert status == 200, status

    async def main(work: Path) -> None:
        from sts_backend.app import Backend
        from sts_backend.store import Store

        clock = TrioWallClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        store = Store.create(work / "backend", clock=clock)
        user = store.create_user("rolecall-agent")  # straight into the store: no extra HTTP client here
        key = store.create_access_key("rolecall-agent")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": user.arn},
                                                         "Action": "sts:AssumeRole"}]}
        role = store.create_role("rolecall-demo", json.dumps(trust))
        app = Backend(store, clock)
        _warm_up(app, key, role.arn, clock)  # the backend's lazy state counts as the backend's
        transport = httpx.MockTransport(app.handle_httpx)
        backend_share = _rss() - agent_only
        (work / "secret").write_text(key.secret_access_key)
        (work / "agent.toml").write_text(
            f'[sts]\nendpoint_url = "http://backend.invalid"\nregion = "us-east-1"\n[source]\n'
            f'access_key_id = "{key.access_key_id}"\nsecret_access_key_file = "secret"\n'
            f'[role]\narn = "{role.arn}"\nsession_name = "bench"\nduration_seconds = 900\n'
            f'[metadata]\nlisten = ["127.0.0.1:0"]\n[agent]\ncontrol_socket = "{work}/a.sock"\n')
        config = load_config(str(work / "agent.toml"), environ={})
        samples = []
        async with trio.open_nursery() as nursery:
            agent = await nursery.start(lambda task_status: run_agent(
                config, wall_clock=clock, transport=transport, inherited=[], handle_signals=False,
                task_status=task_status))
            await agent.ready.wait()
            samples.append((0, _rss()))
            for minute in range(1, hours * 60 + 1):
                await trio.sleep(60)
                await fetch(agent.metadata[0])
                if minute % 60 == 0:
                    samples.append((minute // 60, _rss()))
            agent.stop()
        print(json.dumps({"samples": samples, "rotations": len(installed), "backend_share": backend_share}))

    import logging

    installed: list[str] = []  # one per "credentials ... installed" line: the rotations

    def count(record: logging.LogRecord) -> bool:
        if "installed" in record.msg:
            installed.append(record.args[0])
        return False  # counted, not printed

    rotation_log = logging.getLogger("rolecall.agent.rotation")
    rotation_log.setLevel(logging.INFO)
    rotation_log.addFilter(count)
    with tempfile.TemporaryDirectory(prefix="rcb") as work:
        trio.run(main, Path(work), clock=trio.testing.MockClock(autojump_threshold=0))


def bench_rss(hours: int) -> bool:
    out = subprocess.run([sys.executable, __file__, "--child-rss", str(hours)], capture_output=True, text=True,
                         cwd=REPO, env=_env(Path(tempfile.gettempdir())), timeout=1800, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    samples, share = dict(result["samples"]), result["backend_share"]
    end, early, peak = samples[hours], samples[min(2, hours)], max(samples.values())
    growth = end - early
    print(f"RSS after {hours} h virtual ({result['rotations']} credential installs): {end / MiB:.1f} MiB for "
          f"agent + in-process backend (ready {samples[0] / MiB:.1f}, hour 2 {early / MiB:.1f}, peak "
          f"{peak / MiB:.1f}); backend's share {share / MiB:.1f} MiB, so the agent ~{(end - share) / MiB:.1f} MiB; "
          f"growth hour 2 -> {hours}: {growth / MiB:+.2f} MiB")
    ok = end - share <= 45 * MiB and growth <= 1 * MiB
    print(f"  goal agent <= 45 MiB and no growth (<= 1 MiB): {'met' if ok else 'MISSED'}")
    return ok


# ---- 2. start-to-READY ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _loopback_backend(work: Path) -> tuple[subprocess.Popen, str, dict]:
    import trio

    from agent.demo import Keys, seed_demo
    from wire.clock import SystemClock

    admin = json.loads(subprocess.run([*CLI, "backend", "init", "--data-dir", str(work / "b")], check=True,
                                      capture_output=True, env=_env(work)).stdout)
    port = _free_port()
    process = subprocess.Popen([*CLI, "backend", "serve", "--data-dir", str(work / "b"), "--listen",
                                f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True, env=_env(work))
    while "listening on" not in process.stderr.readline():
        pass
    url = f"http://127.0.0.1:{port}"
    account = trio.run(seed_demo, url, Keys(admin["AccessKeyId"], admin["SecretAccessKey"]), SystemClock())
    return process, url, account


def bench_ready(rounds: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="rcb") as name:
        work = Path(name)
        backend, url, account = _loopback_backend(work)
        try:
            (work / "secret").write_text(account.agent.secret_access_key)
            (work / "agent.toml").write_text(
                f'[sts]\nendpoint_url = "{url}"\nregion = "us-east-1"\n[source]\n'
                f'access_key_id = "{account.agent.access_key_id}"\nsecret_access_key_file = "secret"\n'
                f'[role]\narn = "{account.role_arn}"\nsession_name = "bench"\n'
                f'[metadata]\nlisten = ["127.0.0.1:0"]\n[agent]\ncontrol_socket = "{work}/a.sock"\n')
            times = [_time_to_ready(work) for _ in range(rounds)]
            rss = _time_to_ready(work, _exercise)
        finally:
            backend.terminate()
            backend.wait()
    print(f"start-to-READY (rolecall agent serve, loopback backend, {rounds} runs): median "
          f"{statistics.median(times):.3f} s, max {max(times):.3f} s")
    ok = max(times) <= 1.0
    print(f"  goal <= 1 s: {'met' if ok else 'MISSED'}")
    print(f"rolecall agent serve process RSS: {rss[0] / MiB:.1f} MiB at READY, {rss[1] / MiB:.1f} MiB after "
          f"1000 IMDS requests and 5 rotations")
    print(f"  goal <= 45 MiB: {'met' if max(rss) <= 45 * MiB else 'MISSED'}")
    return ok and max(rss) <= 45 * MiB


def _process_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _imds_token(endpoint: str) -> str:
    return urllib.request.urlopen(urllib.request.Request(
        endpoint + "/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}), timeout=5).read().decode()


def _imds_get(endpoint: str, token: str) -> bytes:
    path = endpoint + "/latest/meta-data/iam/security-credentials/rolecall-demo"
    return urllib.request.urlopen(urllib.request.Request(path, headers={"X-aws-ec2-metadata-token": token}),
                                  timeout=5).read()


def _exercise(agent: subprocess.Popen, work: Path) -> tuple[int, int]:
    """RSS of a running agent at READY, then after requests and forced rotations."""
    from wire.control import request

    at_ready = _process_rss(agent.pid)
    endpoint = "http://" + (work / "imds").read_text().strip()
    token = _imds_token(endpoint)
    for rotation in range(5):
        for _ in range(200):
            _imds_get(endpoint, token)
        time.sleep(1.1)  # expirations have one-second granularity: a new one must be later
        request(str(work / "a.sock"), {"op": "refresh"}, timeout=30)
    return at_ready, _process_rss(agent.pid)


def _time_to_ready(work: Path, then=None):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        path = work / "notify"
        path.unlink(missing_ok=True)
        notify.bind(str(path))
        notify.settimeout(10)
        started = time.perf_counter()
        agent = subprocess.Popen([*CLI, "agent", "serve", "--config", str(work / "agent.toml")],
                                 stderr=subprocess.PIPE, text=True, env=_env(work, NOTIFY_SOCKET=str(path)))
        try:
            while not notify.recv(4096).startswith(b"READY=1"):
                pass
            elapsed = time.perf_counter() - started
            if then is None:
                return elapsed
            while "listening on" not in (line := agent.stderr.readline()):
                pass
            (work / "imds").write_text(line.split("http://", 1)[1].split()[0])
            return then(agent, work)
        finally:
            agent.terminate()
            agent.wait()


# ---- 3. rolecall up to first credential --------------------------------------------------------


def _first_credential(data_dir: Path, home: Path) -> float:
    started = time.perf_counter()
    up = subprocess.Popen([*CLI, "up", "--data-dir", str(data_dir), "--imds-listen", "127.0.0.1:0",
                           "--sts-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=_env(home))
    try:
        endpoint = up.stdout.readline().strip().split("=", 1)[1]  # AWS_EC2_METADATA_SERVICE_ENDPOINT
        assert json.loads(_imds_get(endpoint, _imds_token(endpoint)))["Code"] == "Success"
        return time.perf_counter() - started
    finally:
        up.terminate()
        up.wait()


def bench_up() -> bool:
    with tempfile.TemporaryDirectory(prefix="rcb") as name:
        home = Path(name)
        first = _first_credential(home / "up", home)
        again = _first_credential(home / "up", home)
    print(f"rolecall up to first credential served: first run {first:.3f} s (init + demo seeding), "
          f"reused data dir {again:.3f} s")
    ok = max(first, again) <= 3.0
    print(f"  goal <= 3 s: {'met' if ok else 'MISSED'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24, help="virtual hours of rotation (default 24)")
    parser.add_argument("--rounds", type=int, default=5, help="start-to-READY runs (default 5)")
    parser.add_argument("--child-rss", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss is not None:
        _child_rss(args.child_rss)
        return 0
    results = [bench_rss(args.hours), bench_ready(args.rounds), bench_up()]
    print(f"agent benchmark: {sum(results)}/{len(results)} goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
