"""AssumeRole calls/s: the backend on PostgreSQL against the backend on SQLite, in the same run.

    .venv/bin/python bench/backend_postgres.py [--runs 3] [--seconds 8] [--workers 2]

Starts `rolecall backend serve --data-dir D` (SQLite, the embedded default) and
`rolecall backend serve --database URL` on a throwaway PostgreSQL cluster
(``tests.pg_support``: initdb in a temp dir, loopback, fsync on, as durable as
SQLite's ``synchronous=FULL``), each with the same user, key, identity policy
and role (bench/backend_sts.py's setup, per-key throttling off), then runs
../shared/bench/sts_load.py against each in turn, alternating, and prints the
medians and their ratio. Goal: PostgreSQL >= 0.5x SQLite.

AssumeRole writes nothing (sealed tokens): on SQLite it runs on the event loop
against the page cache; on PostgreSQL each lookup is a round trip from a worker
thread, which is what this measures. Skips, saying why, where no cluster can start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backend_sts import LOAD, load, start_rolecall  # noqa: E402
from tests.pg_support import PgCluster, unavailable  # noqa: E402

BENCHMARK = "backend on PostgreSQL vs on SQLite: AssumeRole calls/s with ../shared/bench/sts_load.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per engine (alternating); the median counts")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"skipped: {reason}")
        return
    if not LOAD.is_file():
        raise SystemExit(f"load generator not found: {LOAD}")
    cluster = PgCluster(durable=True).start()
    os.environ.update(cluster.env())   # the backend's processes find the password in PGPASSFILE
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = start_rolecall(Path(tmp) / "data")
            procs.append(sqlite[0])
            url = cluster.new_database()
            postgres = start_rolecall(Path(tmp), where=["--database", url],
                                      serve_extra=("--audit-log", str(Path(tmp) / "pg-audit.log")))
            procs.append(postgres[0])
            rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
            for run in range(args.runs):
                for name, (_, endpoint, key) in (("sqlite", sqlite), ("postgresql", postgres)):
                    rates[name].append(load(endpoint, key, args))
                    print(f"run {run + 1}: {name:10} {rates[name][-1]:8.0f} calls/s", flush=True)
            lite, pg = statistics.median(rates["sqlite"]), statistics.median(rates["postgresql"])
            print(f"SQLite:     {lite:.0f} calls/s (median of {args.runs})")
            print(f"PostgreSQL: {pg:.0f} calls/s (median of {args.runs}; server {cluster.bindir.parent.name}, "
                  "loopback TCP, fsync on)")
            print(f"ratio: {pg / lite:.2f}x (goal >= 0.5x)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        cluster.stop()


if __name__ == "__main__":
    main()
