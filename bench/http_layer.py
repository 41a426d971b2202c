"""rolecall's HTTP serving layer against the bare trio + h11 floor, in one run.

Both servers answer every request with the same fixed credential document
(taken from ../shared/bench/h11_floor.py itself), keep-alive, on 127.0.0.1
only. Each runs pinned to one core (``taskset -c 1``) while ``wrk`` runs on
another (``taskset -c 0``); runs alternate floor, layer, floor, layer, ... so
drift hits both, and the median of each side is reported with the ratio
layer / floor (the goal is >= 1.0x) and the p99 latency.

    python bench/http_layer.py [--rounds 5] [--duration 5] [--connections 16]
    python bench/http_layer.py --serve PORT     # just serve through the layer

Exit status: 0 when both servers were measured (whatever the ratio) or when
wrk or the floor file is missing (skipped, with the reason); 1 on an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from wrkrun import HOST, Running, cores, wrk

BENCHMARK = "HTTP serving layer vs the bare trio+h11 floor (wrk, requests/s)"

REPO = Path(__file__).resolve().parents[1]
FLOOR = REPO.parent / "shared" / "bench" / "h11_floor.py"
PATH = "/latest/meta-data/iam/security-credentials/rolecall-demo"


def _floor_body() -> bytes:
    spec = importlib.util.spec_from_file_location("h11_floor", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BODY


def serve_layer(port: int) -> None:
    """Serve the floor's document through wire.serve on 127.0.0.1:``port``."""
    sys.path.insert(0, str(REPO))
    import trio

    from wire.http import HttpResponse
    from wire.listeners import open_tcp_listeners
    from wire.serve import Server

    response = HttpResponse(200, (("Content-Type", "text/plain"),), _floor_body())

    def handler(request):
        return response

    async def main() -> None:
        await Server(handler).serve(await open_tcp_listeners([f"{HOST}:{port}"]))

    trio.run(main)


def _measure(server_cmd: list[str], args: argparse.Namespace, pinned: tuple) -> tuple[float, float]:
    with Running(server_cmd, pinned[0]) as server:
        wrk(server.port, PATH, pinned[1], 1, args.connections)  # warm-up
        return wrk(server.port, PATH, pinned[1], args.duration, args.connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=BENCHMARK)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each server (alternating)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_layer(args.serve)
        return 0
    for missing, why in ((shutil.which("wrk") is None, "wrk not installed (apt-get install wrk)"),
                         (not FLOOR.is_file(), f"floor not found at {FLOOR}")):  # fmt: skip
        if missing:
            print(f"http_layer: skipped: {why}")
            return 0
    pinned = cores()
    servers = {"floor": [sys.executable, str(FLOOR)], "layer": [sys.executable, __file__, "--serve"]}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    try:
        for round_no in range(1, args.rounds + 1):
            for name, command in servers.items():
                rps, p99 = _measure(command, args, pinned)
                results[name].append((rps, p99))
                print(f"round {round_no} {name:5}: {rps:9.0f} req/s  p99 {p99:6.2f} ms", flush=True)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"http_layer: error: {exc}", file=sys.stderr)
        return 1
    floor = statistics.median(r for r, _ in results["floor"])
    layer = statistics.median(r for r, _ in results["layer"])
    p99 = {name: statistics.median(p for _, p in runs) for name, runs in results.items()}
    print(f"floor (h11_floor.py): {floor:9.0f} req/s  p99 {p99['floor']:.2f} ms  (median of {args.rounds})")
    print(f"layer (wire.serve)  : {layer:9.0f} req/s  p99 {p99['layer']:.2f} ms  (median of {args.rounds})")
    print(f"ratio layer/floor   : {layer / floor:.2f}x (goal >= 1.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
