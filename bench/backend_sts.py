"""AssumeRole calls/s: rolecall's backend vs moto_server, in the same run.

    .venv/bin/python bench/backend_sts.py [--runs 3] [--seconds 10] [--workers 2]

Starts `rolecall backend serve` on a fresh data dir (a user with a key and an
identity policy allowing sts:AssumeRole, a role trusting the account) and
`moto_server` (auth off, its default: moto checks no signature, key, clock or
policy), both on 127.0.0.1, creates the same role in each, then runs
../shared/bench/sts_load.py (botocore-signed, keep-alive, N worker processes)
against each in turn, alternating, and prints the medians and their ratio.
The goal is rolecall >= 2x moto while verifying everything.

Per-key throttling (``StsRequestsPerSecondPerKey``, 50/s by default) is turned
off on rolecall's data dir before it serves (``backend set-quota ... 0``): the
load is one key at full speed, which throttling exists to refuse, and moto
throttles nothing. The output says so.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

BENCHMARK = "included backend vs moto_server: AssumeRole calls/s with ../shared/bench/sts_load.py"

REPO = Path(__file__).resolve().parents[1]
LOAD = REPO.parent / "shared" / "bench" / "sts_load.py"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/bench"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
ASSUME = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE_ARN}]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port}")


def iam_client(url: str, key: tuple[str, str]):
    return boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1])


def start_rolecall(data_dir: Path, *, where: list[str] | None = None,
                   serve_extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str, tuple[str, str]]:
    """`backend init`, `set-quota` and `serve` on ``data_dir`` (or on ``where``: ``--database URL``)."""
    rolecall = [sys.executable, "-m", "cli.main", "backend"]
    where = where or ["--data-dir", str(data_dir)]
    out = subprocess.run([*rolecall, "init", *where, "--account-id", ACCOUNT],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    admin = json.loads(out)
    subprocess.run([*rolecall, "set-quota", *where, "StsRequestsPerSecondPerKey", "0"],
                   cwd=REPO, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*rolecall, "serve", *where, *serve_extra, "--listen", f"127.0.0.1:{port}"],
                            cwd=REPO, stderr=subprocess.DEVNULL)
    wait_port(port)
    url = f"http://127.0.0.1:{port}"
    iam = iam_client(url, (admin["AccessKeyId"], admin["SecretAccessKey"]))
    iam.create_user(UserName="bench")
    iam.put_user_policy(UserName="bench", PolicyName="assume", PolicyDocument=ASSUME)
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    iam.create_role(RoleName="bench", AssumeRolePolicyDocument=TRUST)
    return proc, url, (key["AccessKeyId"], key["SecretAccessKey"])


def start_moto() -> tuple[subprocess.Popen, str, tuple[str, str]]:
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(moto), "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    url = f"http://127.0.0.1:{port}"
    key = ("AKIAMOTOBENCHKEY0001", "moto-bench-secret-0123456789abcdefghijklm")
    iam_client(url, key).create_role(RoleName="bench", AssumeRolePolicyDocument=TRUST)
    return proc, url, key


def load(url: str, key: tuple[str, str], args: argparse.Namespace) -> float:
    done = subprocess.run([sys.executable, str(LOAD), "--endpoint", url, "--access-key", key[0], "--secret", key[1],
                           "--action", "AssumeRole", "--role-arn", ROLE_ARN, "--workers", str(args.workers),
                           "--seconds", str(args.seconds)], capture_output=True, text=True)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    found = re.match(r"(\d+) calls/s, (\d+) errors", last)
    if done.returncode != 0 or found is None or found.group(2) != "0":
        raise SystemExit(f"load run against {url} failed:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per server (alternating); the median counts")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not LOAD.is_file():
        raise SystemExit(f"load generator not found: {LOAD}")
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours = start_rolecall(Path(tmp) / "data")
            procs.append(ours[0])
            moto = start_moto()
            procs.append(moto[0])
            rates: dict[str, list[float]] = {"rolecall": [], "moto": []}
            for run in range(args.runs):
                for name, (_, url, key) in (("rolecall", ours), ("moto", moto)):
                    rates[name].append(load(url, key, args))
                    print(f"run {run + 1}: {name:8} {rates[name][-1]:8.0f} calls/s", flush=True)
            ours_rate, moto_rate = statistics.median(rates["rolecall"]), statistics.median(rates["moto"])
            print(f"rolecall backend: {ours_rate:.0f} calls/s (median of {args.runs}; SigV4, key, trust and "
                  "identity policy checked on every call)")
            print(f"moto_server:      {moto_rate:.0f} calls/s (median of {args.runs}; auth off, its default)")
            print("(rolecall's per-key STS throttling is off for this run: StsRequestsPerSecondPerKey = 0)")
            print(f"ratio: {ours_rate / moto_rate:.2f}x (goal >= 2x)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
