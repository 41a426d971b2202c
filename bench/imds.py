"""rolecall's metadata server against the bare trio + h11 floor, in one run.

Three measurements, each against ../shared/bench/h11_floor.py in the same run,
servers pinned to one core (``taskset -c 1``) and wrk on another (``-c 0``),
runs alternating floor / rolecall so drift hits both:

1. credential GET: ``wrk -t1 -c16 --latency`` on
   ``/latest/meta-data/iam/security-credentials/<role>`` with a valid IMDSv2
   token header (required mode: every request pays the Host, peer and
   X-Forwarded-For checks, the token MAC and the expiry check), keep-alive.
   Goals: >= 0.9x the floor's requests/s, p99 <= 5 ms.
2. token PUT: the same wrk with a Lua script sending ``PUT /latest/api/token``
   and the TTL header; goal >= 0.8x the floor (which answers a PUT with its
   fixed document).
3. 10,000 idle keep-alive connections, opened (and one request answered on
   each) by a separate process, then held: server RSS goal <= 1.25x the
   floor's under the same 10,000.

The served document has the floor's sizes (20-character key id, 40-character
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

BENCHMARK = "metadata server vs the bare trio+h11 floor (wrk GET/PUT, 10k idle connections RSS)"

REPO = Path(__file__).resolve().parents[1]
FLOOR = REPO.parent / "shared" / "bench" / "h11_floor.py"
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
    """Run the metadata server on 127.0.0.1:``port`` with floor-sized credentials."""
    sys.path.insert(0, str(REPO))
    import trio

    from metadata_server import MetadataConfig, RoleCredentials, SimpleHolder, serve_metadata
    from metadata_server.server import METADATA_LIMITS
    from wire.clock import SystemClock

    _raise_nofile()
    now = SystemClock().now().replace(microsecond=0)
    creds = RoleCredentials(ROLE, "ASIA" + "X" * 16, "s" * 40, "t" * 600, now + dt.timedelta(hours=6), now,
                            "123456789012")  # fmt: skip
    # the production limits as shipped: max_connections (16384) holds the 10,000 idle clients
    config = MetadataConfig(listen=(f"{HOST}:{port}",))
    trio.run(lambda: serve_metadata(config, SimpleHolder(creds), SystemClock(), limits=METADATA_LIMITS))


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


def _summary(name: str, floor: list[tuple[float, float]], ours: list[tuple[float, float]], goal: float) -> float:
    """Print medians and the median of the per-round ratios (each pair ran back to back); return that ratio."""
    f_rps, o_rps = statistics.median(r for r, _ in floor), statistics.median(r for r, _ in ours)
    f_p99, o_p99 = statistics.median(p for _, p in floor), statistics.median(p for _, p in ours)
    ratio = statistics.median(o[0] / f[0] for f, o in zip(floor, ours, strict=True))
    print(f"{name}: floor {f_rps:8.0f} req/s p99 {f_p99:5.2f} ms | rolecall {o_rps:8.0f} req/s p99 {o_p99:5.2f} ms"
          f" | ratio {ratio:.2f}x (goal >= {goal:.2f}x)")  # fmt: skip
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=BENCHMARK)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each server per scenario (alternating)")
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
    servers = {"floor": [sys.executable, str(FLOOR)], "rolecall": [sys.executable, __file__, "--serve"]}
    results = {(kind, name): [] for kind in ("get", "put") for name in servers}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(PUT_LUA)
    try:
        for round_no in range(1, args.rounds + 1):
            for kind in ("get", "put"):
                order = list(servers.items())
                for name, command in order if round_no % 2 else order[::-1]:  # alternate who goes first
                    server = Running(command, pinned[0], preexec_fn=_raise_nofile)
                    try:
                        rps, p99 = _wrk_round(server, kind, args, pinned, lua.name)
                    finally:
                        server.stop()
                    results[(kind, name)].append((rps, p99))
                    print(f"round {round_no} {kind.upper()} {name:8}: {rps:8.0f} req/s  p99 {p99:6.2f} ms", flush=True)
        print(f"--- medians of {args.rounds} rounds, {args.connections} connections, {args.duration} s each;"
              " ratio = median of the per-round ratios")
        _summary("credential GET", results[("get", "floor")], results[("get", "rolecall")], 0.9)
        _summary("token PUT     ", results[("put", "floor")], results[("put", "rolecall")], 0.8)
        if args.idle:
            rss = {name: _idle_rss(command, args, pinned[0]) for name, command in servers.items()}
            for name, (base, held, fds) in rss.items():
                print(f"idle {args.idle}: {name:8} RSS {held / 1024:6.1f} MiB (idle server {base / 1024:5.1f} MiB,"
                      f" {fds} fds open)")  # fmt: skip
            print(f"idle RSS ratio rolecall/floor: {rss['rolecall'][1] / rss['floor'][1]:.2f}x (goal <= 1.25x)")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"imds: error: {exc}", file=sys.stderr)
        return 1
    finally:
        os.unlink(lua.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
