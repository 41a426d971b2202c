"""The cost of identifying a loopback peer: ``wire.peer_identity.lookup`` calls per second.

    .venv/bin/python bench/peer_identity.py [--lookups 20000] [--rounds 5]

One IPv4 loopback connection made by this process; each round times ``--lookups``
lookups of its client socket (one sock_diag round trip, the cgroup path from the
warm cache) and, as a floor, as many ``getsockname()`` calls on the same socket
(a syscall that does nothing). Prints the median microseconds per lookup and
lookups/s. The goal is well under 100 us a lookup: it is paid once per accepted
connection, never per request.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wire.peer_identity import lookup  # noqa: E402

BENCHMARK = "peer identification (sock_diag lookup of a loopback client) per connection"


def _per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            server, peer = listener.accept()
            with server:
                local = server.getsockname()
                identity = lookup(local, peer)
                if identity is None:
                    print("lookup found no socket: sock_diag unavailable?", file=sys.stderr)
                    return 1
                print(f"identity: {identity}")
                lookups, floor = [], []
                for _ in range(args.rounds):
                    lookups.append(_per_call(lambda: lookup(local, peer), args.lookups))
                    floor.append(_per_call(server.getsockname, args.lookups))
    per_lookup, per_syscall = statistics.median(lookups), statistics.median(floor)
    print(f"lookup: {per_lookup * 1e6:.1f} us ({1 / per_lookup:,.0f} lookups/s); "
          f"getsockname floor: {per_syscall * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
