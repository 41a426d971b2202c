"""Per-caller roles: what identifying callers costs the metadata server, in one run.

What rolecall serves here is the agent's own composition with per-caller roles on:
``imds_server`` (metadata_server.server) with ``roles`` from
``metadata_server.callers.holder_selector`` over running ``agent.rotator.Rotator``s
(one per rule, as ``agent.daemon`` builds them), so every connection is identified
by ``wire.peer_identity.lookup`` at accept and every credential request goes through
the rule match. The rule that matches the benchmark's own uid is the last of three.

Two measurements, servers pinned to one core (``taskset -c 1``), wrk on another:

1. credential GET over keep-alive (``wrk -t1 -c16``, a valid IMDSv2 token, which is
   bound to the caller): per-caller rolecall against ../shared/bench/h11_floor.py in
   the same rounds. Goal: >= 0.9x the floor's requests/s.
2. new connections per second (the same wrk with ``Connection: close``, so every
   request is a new connection and one lookup): per-caller rolecall against the same
   server without identification (``imds_server`` with one role, as without rules).
   Goal: >= 0.7x.

    python bench/per_caller.py [--rounds 5] [--duration 4]

Exit status 0 when measured (whatever the figures) or skipped with a reason; 1 on an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from imds import CREDS_PATH, FLOOR, ROLE, _raise_nofile, _token
from wrkrun import HOST, Running, cores, wrk

BENCHMARK = "per-caller roles: keep-alive credential GET vs the floor, new connections with vs without caller lookup"

REPO = Path(__file__).resolve().parents[1]


def serve(port: int, per_caller: bool) -> None:
    """Serve IMDS on 127.0.0.1:``port`` as the agent does, with per-caller roles on or off."""
    sys.path.insert(0, str(REPO))
    import trio

    from agent.rotator import Rotator
    from metadata_server import MetadataConfig, RoleCredentials
    from metadata_server.callers import CallerMatch, CallerRule, holder_selector
    from metadata_server.server import imds_server
    from wire.clock import SystemClock
    from wire.listeners import open_tcp_listeners

    _raise_nofile()
    wall_clock = SystemClock()

    def fetch_for(name: str):
        async def fetch() -> RoleCredentials:  # stands in for STS: floor-sized credentials, six hours
            now = wall_clock.now().replace(microsecond=0)
            return RoleCredentials(name, "ASIA" + "X" * 16, "s" * 40, "t" * 600, now + dt.timedelta(hours=6), now,
                                   "123456789012")  # fmt: skip
        return fetch

    async def main() -> None:
        config = MetadataConfig(listen=(f"{HOST}:{port}",))
        names = ("other", "batch", ROLE)   # the benchmark's own uid matches the last rule
        rotators = {name: Rotator(fetch_for(name), wall_clock, role_arn=f"arn:aws:iam::123456789012:role/{name}")
                    for name in names}
        rules = [CallerRule("other", CallerMatch(uid=65534)), CallerRule("batch", CallerMatch(uid=65533)),
                 CallerRule(ROLE, CallerMatch(uid=os.getuid()))]
        async with trio.open_nursery() as nursery:
            for rotator in rotators.values():
                await nursery.start(rotator.run)
            if per_caller:
                server = imds_server(config, rotators[ROLE], wall_clock, roles=holder_selector(rules, rotators))
            else:
                server = imds_server(config, rotators[ROLE], wall_clock)
            await server.serve(await open_tcp_listeners(config.listen))

    trio.run(main)


def _get(server: Running, pinned, args, close: bool) -> float:
    extra = ["-H", f"X-aws-ec2-metadata-token: {_token(server.port)}"]
    if close:
        extra += ["-H", "Connection: close"]
    wrk(server.port, CREDS_PATH, pinned[1], 1, args.connections, extra)  # warm-up
    return wrk(server.port, CREDS_PATH, pinned[1], args.duration, args.connections, extra)[0]


def _floor_get(server: Running, pinned, args) -> float:
    wrk(server.port, CREDS_PATH, pinned[1], 1, args.connections)
    return wrk(server.port, CREDS_PATH, pinned[1], args.duration, args.connections)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=BENCHMARK)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, per_caller=not args.plain)
        return 0
    for missing, why in ((shutil.which("wrk") is None, "wrk not installed (apt-get install wrk)"),
                         (not FLOOR.is_file(), f"floor not found at {FLOOR}"),
                         (not sys.platform.startswith("linux"), "caller lookup needs Linux sock_diag")):
        if missing:
            print(f"per_caller: skipped: {why}")
            return 0
    pinned = cores()
    ours = [sys.executable, __file__, "--serve"]
    keep_alive: dict[str, list[float]] = {"floor": [], "per-caller": []}
    fresh: dict[str, list[float]] = {"no lookup": [], "per-caller": []}
    try:
        for round_no in range(1, args.rounds + 1):
            runs = [("keep-alive", "floor", [sys.executable, str(FLOOR)], None),
                    ("keep-alive", "per-caller", ours, False),
                    ("new connections", "no lookup", [sys.executable, __file__, "--plain", "--serve"], True),
                    ("new connections", "per-caller", ours, True)]
            if round_no % 2 == 0:
                runs = runs[1::-1] + runs[:1:-1]   # alternate who goes first in each pair
            for kind, name, command, close in runs:
                server = Running(command, pinned[0], preexec_fn=_raise_nofile)
                try:
                    rps = _floor_get(server, pinned, args) if close is None else _get(server, pinned, args, close)
                finally:
                    server.stop()
                (keep_alive if kind == "keep-alive" else fresh)[name].append(rps)
                print(f"round {round_no} {kind:15} {name:10}: {rps:8.0f} req/s", flush=True)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"per_caller: error: {exc}", file=sys.stderr)
        return 1

    def ratio(runs: dict[str, list[float]], ours: str, theirs: str) -> float:
        return statistics.median(o / t for o, t in zip(runs[ours], runs[theirs], strict=True))

    print(f"--- medians of {args.rounds} rounds, {args.connections} connections, {args.duration} s each;"
          " ratio = median of the per-round ratios")
    for name, values in (*keep_alive.items(), *fresh.items()):
        print(f"  {name:11} {statistics.median(values):8.0f} req/s")
    print(f"credential GET, keep-alive: per-caller / plain floor {ratio(keep_alive, 'per-caller', 'floor'):.2f}x"
          " (goal >= 0.90x)")
    print(f"new connections: with lookup / without {ratio(fresh, 'per-caller', 'no lookup'):.2f}x (goal >= 0.70x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
