"""AssumeRole calls/s with 10 identities against 100,000 identities, 10 policies each.

    .venv/bin/python bench/backend_scale.py [--runs 5] [--seconds 5] [--workers 2] [--sample 1000]
        [--identities 100000]

Seeds two data dirs (``seed``: bulk inserts through ``Store.transaction()``, one transaction
per 2,000 users; about 25 s for 100,000 on a quiet machine): a small one with 10 IAM users
and a large one with ``--identities`` (100,000). Every user has one access key and 10
policies: 4 inline ones whose text is the same for every user (they name the user with
``${aws:username}``, as a fleet's templates do; one allows ``sts:AssumeRole`` on the bench
role), 4 attached customer managed policies from a shared pool of 50, and, as a member of
one group per 1,000 users, its group's inline and attached policy. The large dir holds
400,000 inline-policy rows, 400,000 attachments, 100,000 memberships in 100 groups. The
role ``bench`` trusts the account, so the identity policy decides.

Each data dir is served by its own ``rolecall backend serve`` on 127.0.0.1. The load is
closed-loop like ../shared/bench/sts_load.py (botocore's ``SigV4Auth`` signs every request,
keep-alive ``http.client``, ``--workers`` processes) except that each request is signed with
the next key of a sample of identities: all 10 of the small dir, ``--sample`` (1,000) chosen
at random from the large one, so each call looks up a different key, user and policy set,
as a fleet's calls do. Runs alternate small, large, small, large, ... Each run reports
calls/s and the server's CPU time per call (``/proc/PID/stat``; much steadier than the rate
on a shared machine). The output is the medians and the median per-round ratios large /
small (goal >= 0.90, within 10%).

Per-key throttling (``StsRequestsPerSecondPerKey``) is off on both dirs: the small dir's 10
keys would otherwise be throttled at the rates measured, and the large one's would not.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCHMARK = "AssumeRole calls/s at 10 and at 100,000 identities with 10 policies each"

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from backend_sts import free_port, wait_port  # noqa: E402 - the other backend benchmark's server helpers

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/bench"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
MANAGED_POOL = 50     # customer managed policies users attach (4 each, in turn)
PER_USER = 4          # inline policies, and attached managed policies, of each user
GROUP_SIZE = 1000     # users per group; each group has 1 inline and 1 attached policy
BATCH = 2000          # users per transaction when seeding


def _statement(sid: str, actions: list[str], resource: str, **condition) -> dict:
    st = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


def inline_documents(user: str | None = None) -> list[str]:
    """The 4 inline policies every user has: the same text for all (``${aws:username}``), or
    with ``user``'s name written in, a text of its own."""
    home = "arn:aws:s3:::fleet-home/${aws:username}/*"
    docs = [
        [_statement("Assume", ["sts:AssumeRole"], ROLE_ARN)],
        [_statement("Home", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], home)],
        [_statement("OwnKeys", ["iam:GetAccessKeyLastUsed", "iam:ListAccessKeys"],
                    f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}")],
        [_statement("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                    f"arn:aws:logs:*:{ACCOUNT}:log-group:/fleet/${{aws:username}}:*")],
    ]
    texts = [json.dumps({"Version": "2012-10-17", "Statement": doc}) for doc in docs]
    return texts if user is None else [text.replace("${aws:username}", user) for text in texts]


def group_document() -> str:
    """The inline policy of every group."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        _statement("Params", ["ssm:GetParameter", "ssm:GetParameters"],
                   f"arn:aws:ssm:*:{ACCOUNT}:parameter/fleet/${{aws:username}}/*",
                   Bool={"aws:SecureTransport": "true"})]})


def managed_document(n: int) -> str:
    """Managed policy ``n`` of the pool: read access to its own bucket, with a tag condition."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        _statement("Read", ["s3:GetObject", "s3:ListBucket"], f"arn:aws:s3:::fleet-data-{n:02d}/*",
                   StringEquals={"aws:PrincipalTag/team": f"team-{n:02d}"}),
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}]})


def _user_id() -> str:
    """``AIDA`` + 17 of ``[A-Z2-7]`` (``ids.new_unique_id("user")``'s format, one ``token_bytes`` call)."""
    return "AIDA" + base64.b32encode(secrets.token_bytes(11)).decode()[:17]


def seed(data_dir: Path, identities: int, *, batch: int = BATCH,
         group_size: int = GROUP_SIZE, distinct: bool = False) -> list[tuple[str, str]]:
    """Create a store in ``data_dir`` with ``identities`` users of 10 policies each and the role.

    The account, quotas, role, managed policies and groups (one per ``group_size`` users,
    each with an inline and an attached policy) are made by ``Store`` methods. The users,
    their keys, group memberships and 8 policy rows each are inserted with ``executemany``
    inside ``Store.transaction()``, one transaction per ``batch`` users, in the rows
    ``create_user``, ``create_access_key``, ``add_user_to_group``, ``put_inline_policy`` and
    ``attach_policy`` write: calling those per user took 73 s for 100,000 users (a quota count per call,
    and ``ids.new_unique_id`` drawing 17 ``secrets.choice`` per id).
    ``tests/test_backend_scale.py`` checks a seeded store through the ``Store`` API.

    ``distinct``: each user's inline policies name it instead of ``${aws:username}``, so no
    two users share a text (the parsed-policy cache holds 1,024 texts).

    Returns every user's (access key id, secret), in user order.
    """
    from sts_backend import ids
    from sts_backend.policy_document import policy_size
    from sts_backend.store import Store

    store = Store.create(data_dir, ACCOUNT)
    keys: list[tuple[str, str]] = []
    try:
        store.set_quota("UsersPerAccount", max(identities, 5000))
        store.set_quota("StsRequestsPerSecondPerKey", 0)
        store.create_role("bench", TRUST)
        pool = [store.create_policy(f"fleet-{n:02d}", managed_document(n)) for n in range(MANAGED_POOL)]
        groups = [store.create_group(f"fleet-{g:03d}", "/fleet/").group_id
                  for g in range(max(1, -(-identities // group_size)))]
        for g, _ in enumerate(groups):
            doc = group_document()
            store.put_inline_policy("group", f"fleet-{g:03d}", "fleet-params", doc, policy_size(doc))
            store.attach_policy("group", f"fleet-{g:03d}", pool[g % MANAGED_POOL].arn)
        inline = [(f"fleet-inline-{i}", doc, policy_size(doc)) for i, doc in enumerate(inline_documents())]
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        for start in range(0, identities, batch):
            users, access_keys, members, inline_rows, attachments = [], [], [], [], []
            for n in range(start, min(start + batch, identities)):
                user_id, name = _user_id(), f"agent-{n:06d}"
                users.append((user_id, name, "/fleet/", ids.user_arn(ACCOUNT, name, "/fleet/"), created))
                key = (ids.new_access_key_id(), ids.new_secret_access_key())
                keys.append(key)
                access_keys.append((*key, user_id, "Active", created))
                members.append((groups[n // group_size], user_id))
                if distinct:
                    inline = [(f"fleet-inline-{i}", doc, policy_size(doc))
                              for i, doc in enumerate(inline_documents(name))]
                inline_rows += [("user", user_id, policy, doc, size) for policy, doc, size in inline]
                attachments += [("user", user_id, pool[(n * PER_USER + j) % MANAGED_POOL].policy_id, created)
                                for j in range(PER_USER)]
            with store.transaction() as conn:
                conn.executemany("INSERT INTO users (user_id, name, path, arn, created) VALUES (?, ?, ?, ?, ?)", users)
                conn.executemany("INSERT INTO access_keys (access_key_id, secret, user_id, status, created) "
                                 "VALUES (?, ?, ?, ?, ?)", access_keys)
                conn.executemany("INSERT INTO group_members (group_id, user_id) VALUES (?, ?)", members)
                conn.executemany("INSERT INTO inline_policies (kind, owner_id, name, document, size) "
                                 "VALUES (?, ?, ?, ?, ?)", inline_rows)
                conn.executemany("INSERT INTO policy_attachments (kind, owner_id, policy_id, attached) "
                                 "VALUES (?, ?, ?, ?)", attachments)
    finally:
        store.close()
    return keys


# ---- serving and load (free_port, wait_port: bench/backend_sts.py) -------------------------

def serve(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "backend", "serve", "--data-dir", str(data_dir),
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO, stderr=subprocess.DEVNULL)
    wait_port(port, timeout=60.0)   # a 250 MB data dir opens slower
    return proc, f"http://127.0.0.1:{port}"


def _worker(url: str, keys: list[tuple[str, str]], seconds: float, queue) -> None:
    """Closed loop over keep-alive HTTP: AssumeRole signed with the next key each call."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signers = [SigV4Auth(Credentials(akid, secret), "sts", "us-east-1") for akid, secret in keys]
    where = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    calls = errors = 0
    first_error = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE_ARN,
                                       "RoleSessionName": f"load-{calls}"})
        request = AWSRequest(method="POST", url=url + "/", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        signers[calls % len(signers)].add_auth(request)
        prepared = request.prepare()
        conn.request("POST", "/", body=prepared.body, headers=dict(prepared.headers))
        response = conn.getresponse()
        payload = response.read()
        calls += 1
        if response.status != 200 or b"<Credentials>" not in payload:
            errors += 1
            first_error = first_error or f"{response.status} {payload[:300]!r}"
    queue.put((calls, errors, first_error))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, pid: int, keys: list[tuple[str, str]], args: argparse.Namespace) -> tuple[float, float]:
    """(calls/s, server CPU us per call) of ``args.workers`` closed-loop processes, the keys dealt
    out among them. The CPU figure is the server's own time, so other load on the machine
    moves it much less than the rate."""
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_worker, args=(url, keys[w::args.workers], args.seconds, queue))
             for w in range(args.workers)]
    cpu = cpu_seconds(pid)
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    cpu = cpu_seconds(pid) - cpu
    for proc in procs:
        proc.join()
    errors = [error for _, count, error in results if count]
    if errors:
        raise SystemExit(f"load run against {url} failed: {errors[0]}")
    calls = sum(calls for calls, _, _ in results)
    return calls / args.seconds, cpu / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per data dir (alternating); the median counts")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--identities", type=int, default=100_000, help="users in the large data dir")
    parser.add_argument("--sample", type=int, default=1000, help="keys of the large dir the load uses")
    parser.add_argument("--distinct-policies", action="store_true",
                        help="inline policies that name their user: a text per user in both dirs")
    args = parser.parse_args()
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {}
            for name, count in (("small", 10), ("large", args.identities)):
                started = time.monotonic()
                keys = seed(Path(tmp) / name, count, distinct=args.distinct_policies)
                print(f"seeded {name}: {count:,} users x 10 policies in {time.monotonic() - started:.1f} s",
                      flush=True)
                dirs[name] = random.Random(12).sample(keys, min(args.sample, len(keys)))
            servers = {}
            for name in dirs:
                proc, url = serve(Path(tmp) / name)
                procs.append(proc)
                servers[name] = (url, proc.pid)
            rates: dict[str, list[float]] = {name: [] for name in dirs}
            costs: dict[str, list[float]] = {name: [] for name in dirs}
            for run in range(args.runs):
                for name in dirs:
                    rate, cost = load(*servers[name], dirs[name], args)
                    rates[name].append(rate)
                    costs[name].append(cost)
                    print(f"run {run + 1}: {name:5} ({len(dirs[name]):5} keys) {rate:7.0f} calls/s, "
                          f"server CPU {cost:6.0f} us/call", flush=True)
            print("(per-key STS throttling is off on both: StsRequestsPerSecondPerKey = 0)")
            for label, name in (("10 identities", "small"), (f"{args.identities:,} identities", "large")):
                print(f"{label:20} {statistics.median(rates[name]):7.0f} calls/s, server CPU "
                      f"{statistics.median(costs[name]):6.0f} us/call (medians of {args.runs})")
            rate = statistics.median(b / a for a, b in zip(rates["small"], rates["large"]))
            cost = statistics.median(a / b for a, b in zip(costs["small"], costs["large"]))
            print(f"ratio large / small (median of the per-round ratios): calls/s {rate:.2f}, "
                  f"calls per server CPU second {cost:.2f} (goal >= 0.90)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
