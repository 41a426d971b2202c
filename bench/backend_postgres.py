"""AssumeRole calls/s: the backend on PostgreSQL against the backend on SQLite, in the same run.

    .venv/bin/python bench/backend_postgres.py [--runs 3] [--seconds 8] [--workers 2] [--keys 2000]

Starts `rolecall backend serve --data-dir D` (SQLite, the embedded default) and
`rolecall backend serve --database URL` on a throwaway PostgreSQL cluster
(``tests.pg_support``: initdb in a temp dir, loopback, fsync on, as durable as
SQLite's ``synchronous=FULL``), each with the same user, key, identity policy
and role (bench/backend_sts.py's setup, per-key throttling off), then runs
../shared/bench/sts_load.py against each in turn, alternating, and prints the
medians and their ratio. Goal: PostgreSQL >= 0.5x SQLite.

Two loads, because a replica's read lane remembers lookups for a second
(``store_postgres.READ_CACHE_SECONDS``, IAM's eventual consistency):

- ``one key``: every call signed by the same key for the same role (what one
  busy agent, or sts_load.py, does): after the first call of each second, the
  lookups are answered from memory;
- ``N keys``: every call signed by the next of ``--keys`` users' keys
  (bench/backend_scale.py's loop), so each key, user and policy set comes back
  only every few seconds: the lookups go to the database (a fleet of agents).

AssumeRole writes nothing (sealed tokens): on SQLite it runs on the event loop
against the page cache; on PostgreSQL each lookup is a round trip from a worker
thread. Skips, saying why, where no cluster can start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import backend_scale  # noqa: E402 - the other backend benchmarks' servers and loads
from backend_sts import ASSUME, LOAD, load, start_rolecall  # noqa: E402
from sts_backend.policy_document import policy_size  # noqa: E402
from sts_backend.store import Store  # noqa: E402
from tests.pg_support import PgCluster, unavailable  # noqa: E402

BENCHMARK = "backend on PostgreSQL vs on SQLite: AssumeRole calls/s with ../shared/bench/sts_load.py"


def seed(store: Store, count: int) -> list[tuple[str, str]]:
    """``count`` users allowed to assume the bench role, one key each, in one transaction."""
    with store:
        with store.transaction():
            keys = []
            for i in range(count):
                name = f"fleet{i:05d}"
                store.create_user(name)
                store.put_inline_policy("user", name, "assume", ASSUME, policy_size(ASSUME))
                key = store.create_access_key(name)
                keys.append((key.access_key_id, key.secret_access_key))
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per engine (alternating); the median counts")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keys", type=int, default=2000, help="users (one key each) for the N-keys load")
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
            keys = {"sqlite": seed(Store.open(Path(tmp) / "data"), args.keys),
                    "postgresql": seed(Store.open_database(url), args.keys)}
            served = {"sqlite": sqlite, "postgresql": postgres}
            rates: dict[tuple[str, str], list[float]] = {}
            for run in range(args.runs):
                for name, (proc, endpoint, key) in served.items():
                    one = load(endpoint, key, args)
                    many, cpu = backend_scale.load(endpoint, proc.pid, keys[name], args)
                    rates.setdefault((name, "one"), []).append(one)
                    rates.setdefault((name, "many"), []).append(many)
                    print(f"run {run + 1}: {name:10} one key {one:6.0f} calls/s; {args.keys} keys {many:6.0f} "
                          f"calls/s ({cpu:.0f} us server CPU per call)", flush=True)
            median = {k: statistics.median(v) for k, v in rates.items()}
            for load_name, label in (("one", "one key"), ("many", f"{args.keys} keys")):
                lite, pg = median[("sqlite", load_name)], median[("postgresql", load_name)]
                print(f"{label:10}: SQLite {lite:.0f} calls/s, PostgreSQL {pg:.0f} calls/s (medians of {args.runs}): "
                      f"ratio {pg / lite:.2f}x (goal >= 0.5x)")
            print(f"(PostgreSQL {cluster.bindir.parent.name} on loopback TCP, fsync on; per-key throttling off)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        cluster.stop()


if __name__ == "__main__":
    main()
