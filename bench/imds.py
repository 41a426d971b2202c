"""rolecall's metadata server against two trio + h11 floors, in one run.

What rolecall serves here is the agent's own composition: ``imds_server``
(metadata_server.server; ``agent.daemon`` builds its IMDS endpoint with it)
over a real ``agent.rotator.Rotator`` (running, as in the daemon, with a fetch
that returns prepared credentials), with the production ``METADATA_LIMITS``.
So every credential request pays what the daemon's does: ``Rotator.current()``
(the serveable check on the wall clock), the ``ImdsHandler`` and the serving
layer. No holder or handler of the bench's own.

Two floors, each pinned like rolecall:

- plain: ../shared/bench/h11_floor.py, h11 parses and writes every response;
- pre-encoded: bench/h11_floor_preencoded.py, h11 parses only, the same
  response bytes encoded once, a fresh ``h11.Connection`` per request cycle
  (as ``wire.serve`` does). The least a trio + h11 server can do per request.

Three measurements, servers pinned to one core (``taskset -c 1``) and wrk on
another (``-c 0``), the three servers run back to back in each round, in an
order that rotates every round so drift hits all of them:

1. credential GET: ``wrk -t1 -c16 --latency`` on
   ``/latest/meta-data/iam/security-credentials/<role>`` with a valid IMDSv2
   token header (required mode: every request pays the Host, peer and
   X-Forwarded-For checks, the token MAC and the expiry check), keep-alive.
   Goals: >= 0.9x the plain floor's requests/s, p99 <= 5 ms. The ratio to the
   pre-encoded floor is reported as the distance left, with no goal.
2. token PUT: the same wrk with a Lua script sending ``PUT /latest/api/token``
   and the TTL header; goal >= 0.8x the plain floor (the floors answer a PUT
   with their fixed document); the pre-encoded ratio reported too.
3. 10,000 idle keep-alive connections, opened (and one request answered on
   each) by a separate process, then held: server RSS goal <= 1.25x the plain
   floor's under the same 10,000 (the pre-encoded floor's shown too).

The served document has the floors' sizes (20-character key id, 40-character
secret, 600-character token), so bodies are comparable.

    python bench/imds.py [--rounds 5] [--duration 4] [--idle 10000]
    python bench/imds.py --serve PORT     # just the metadata server, bench setup

Exit status 0 when measured (whatever the figures) or skipped with a reason
(no wrk, no floor file); 1 on an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wrkrun import HOST, Running, cores, wrk

BENCHMARK = "metadata server vs the plain and pre-encoded trio+h11 floors (wrk GET/PUT, 10k idle connections RSS)"

REPO = Path(__file__).resolve().parents[1]
FLOOR = REPO.parent / "shared" / "bench" / "h11_floor.py"
PREENCODED = Path(__file__).resolve().parent / "h11_floor_preencoded.py"
ROLE = "rolecall-bench"
CREDS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"
NOFILE = 65536
PUT_LUA = 'wrk.method = "PUT"\nwrk.headers["X-aws-ec2-metadata-token-ttl-seconds"] = "21600"\n'


def _raise_nofile(wanted: int = NOFILE) -> None:
    """Lift RLIMIT_NOFILE as far as allowed (hard limit too when root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, hard)), hard))


def serve_metadata_server(port: int) -> None:
    """Serve IMDS on 127.0.0.1:``port`` as the agent does: ``imds_server`` over a running ``Rotator``."""
    sys.path.insert(0, str(REPO))
    import trio

    from agent.rotator import Rotator
    from metadata_server import MetadataConfig, RoleCredentials
    from metadata_server.server import imds_server
    from wire.clock import SystemClock
    from wire.listeners import open_tcp_listeners

    _raise_nofile()
    wall_clock = SystemClock()  # the daemon's default

    async def fetch() -> RoleCredentials:  # stands in for STS: floor-sized credentials, six hours
        now = wall_clock.now().replace(microsecond=0)
        return RoleCredentials(ROLE, "ASIA" + "X" * 16, "s" * 40, "t" * 600, now + dt.timedelta(hours=6), now,
                               "123456789012")  # fmt: skip

    async def main() -> None:
        # as agent.daemon._Agent: the rotator is the holder, the limits are METADATA_LIMITS
        # (imds_server's default; max_connections 16384 holds the 10,000 idle clients)
        rotator = Rotator(fetch, wall_clock, role_arn=f"arn:aws:iam::123456789012:role/{ROLE}")
        config = MetadataConfig(listen=(f"{HOST}:{port}",))
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)  # returns once the first credentials are held
            server = imds_server(config, rotator, wall_clock)
            await server.serve(await open_tcp_listeners(config.listen))

    trio.run(main)


# -- processes --------------------------------------------------------------------------


def _token(port: int) -> str:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"PUT /latest/api/token HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                     "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n".encode())  # fmt: skip
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 56:
            data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("token PUT refused: " + head.decode(errors="replace"))
    return body[:56].decode()


# -- wrk ----------------------------------------------------------------------------------


def _wrk_round(server: Running, kind: str, args, pinned, lua: str) -> tuple[float, float]:
    if kind == "get":
        extra = ["-H", f"X-aws-ec2-metadata-token: {_token(server.port)}"]
        path = CREDS_PATH
    else:
        extra, path = ["-s", lua], "/latest/api/token"
    wrk(server.port, path, pinned[1], 1, args.connections, extra)  # warm-up
    return wrk(server.port, path, pinned[1], args.duration, args.connections, extra)


# -- idle connections -------------------------------------------------------------------------


def hold_idle(port: int, count: int, token: str) -> None:
    """(Child process) open ``count`` connections, get one answer on each, report, then hold them."""
    _raise_nofile(count + 1024)
    request = (f"GET {CREDS_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               f"X-aws-ec2-metadata-token: {token}\r\n\r\n").encode()  # fmt: skip
    socks = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.sendall(request)
        socks.append(sock)
    ok = 0
    for sock in socks:
        data = sock.recv(65536)
        ok += data.startswith(b"HTTP/1.1 200")
    print(f"ready {ok}", flush=True)
    sys.stdin.read()  # hold until the parent closes our stdin


def _idle_rss(command: list[str], args, core: int | None) -> tuple[int, int, int]:
    """(baseline RSS KiB, RSS KiB with the idle connections, server fds) for one server."""
    server = Running(command, core, preexec_fn=_raise_nofile)
    try:
        token = _token(server.port) if "--serve" in command else "-"
        time.sleep(0.5)
        baseline = server.rss_kib()
        holder = subprocess.Popen([sys.executable, __file__, "--hold", str(server.port), str(args.idle), token],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            line = holder.stdout.readline().split()
            if line[:1] != ["ready"] or int(line[1]) != args.idle:
                raise RuntimeError(f"idle client: {line}")
            time.sleep(1.0)
            return baseline, server.rss_kib(), server.open_fds()
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    finally:
        server.stop()


# -- main ------------------------------------------------------------------------------------------


SERVERS = ("floor", "pre-encoded", "rolecall")


def _summary(name: str, runs: dict[str, list[tuple[float, float]]], goal: float, p99_goal: float | None = None) -> None:
    """Print each server's medians and rolecall's median per-round ratio to each floor (same round, back to back)."""
    rps = {server: statistics.median(r for r, _ in runs[server]) for server in SERVERS}
    p99 = {server: statistics.median(p for _, p in runs[server]) for server in SERVERS}

    def ratio(ours: str, floor: str) -> float:
        return statistics.median(o[0] / f[0] for f, o in zip(runs[floor], runs[ours], strict=True))

    print(f"{name}:")
    for server in SERVERS:
        print(f"  {server:11} {rps[server]:8.0f} req/s  p99 {p99[server]:5.2f} ms"
              + (f" (goal p99 <= {p99_goal:g} ms)" if server == "rolecall" and p99_goal else ""))
    print(f"  rolecall / plain floor       {ratio('rolecall', 'floor'):.2f}x (goal >= {goal:.2f}x)")
    print(f"  rolecall / pre-encoded floor {ratio('rolecall', 'pre-encoded'):.2f}x (the distance left; no goal)")
    print(f"  pre-encoded / plain floor    {ratio('pre-encoded', 'floor'):.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=BENCHMARK)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each server per scenario (order rotating)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", type=int, default=10_000, help="idle keep-alive connections (0: skip)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--hold", nargs=3, metavar=("PORT", "COUNT", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_metadata_server(args.serve)
        return 0
    if args.hold:
        hold_idle(int(args.hold[0]), int(args.hold[1]), args.hold[2])
        return 0
    for missing, why in ((shutil.which("wrk") is None, "wrk not installed (apt-get install wrk)"),
                         (not FLOOR.is_file(), f"floor not found at {FLOOR}")):  # fmt: skip
        if missing:
            print(f"imds: skipped: {why}")
            return 0
    pinned = cores()
    servers = {"floor": [sys.executable, str(FLOOR)], "pre-encoded": [sys.executable, str(PREENCODED)],
               "rolecall": [sys.executable, __file__, "--serve"]}  # fmt: skip
    results = {kind: {name: [] for name in servers} for kind in ("get", "put")}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(PUT_LUA)
    try:
        for round_no in range(1, args.rounds + 1):
            for kind in ("get", "put"):
                order = list(servers.items())
                shift = (round_no - 1) % len(order)  # rotate who goes first, so drift is shared
                for name, command in order[shift:] + order[:shift]:
                    server = Running(command, pinned[0], preexec_fn=_raise_nofile)
                    try:
                        rps, p99 = _wrk_round(server, kind, args, pinned, lua.name)
                    finally:
                        server.stop()
                    results[kind][name].append((rps, p99))
                    print(f"round {round_no} {kind.upper()} {name:11}: {rps:8.0f} req/s  p99 {p99:6.2f} ms",
                          flush=True)  # fmt: skip
        print(f"--- medians of {args.rounds} rounds, {args.connections} connections, {args.duration} s each;"
              " ratio = median of the per-round ratios")
        _summary("credential GET", results["get"], 0.9, p99_goal=5.0)
        _summary("token PUT", results["put"], 0.8)
        if args.idle:
            rss = {name: _idle_rss(command, args, pinned[0]) for name, command in servers.items()}
            for name, (base, held, fds) in rss.items():
                print(f"idle {args.idle}: {name:11} RSS {held / 1024:6.1f} MiB (idle server {base / 1024:5.1f} MiB,"
                      f" {fds} fds open)")  # fmt: skip
            print(f"idle RSS ratio rolecall/plain floor: {rss['rolecall'][1] / rss['floor'][1]:.2f}x (goal <= 1.25x);"
                  f" rolecall/pre-encoded: {rss['rolecall'][1] / rss['pre-encoded'][1]:.2f}x")  # fmt: skip
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"imds: error: {exc}", file=sys.stderr)
        return 1
    finally:
        os.unlink(lua.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
