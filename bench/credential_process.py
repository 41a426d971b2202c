"""Wall time of `rolecall credential-process` from a warm cache, against `python -c pass`.

botocore and the AWS CLI run ``credential_process`` in every new process and
never cache its output, so its warm path is paid on every CLI call. This runs
the product's own composition: ``rolecall up`` (the included backend, a demo
user with an MFA device) in a temporary HOME, the demo user's keys stored with
``rolecall keys add`` (the encrypted-file keyring), a role profile with
``mfa_serial`` and an ``mfa_process``, and one cold ``credential-process`` that
fills the session cache. Then it times, alternating, N runs each of

    python -c pass                                   (the floor: the same interpreter)
    rolecall credential-process --profile dev-role   (warm: answered from the cache)
    rolecall --help                                  (the full parser and every command group)

and prints the medians and the median of per-round ratios. Goals: warm
credential-process <= 2.5x the floor; --help <= 3x.

    .venv/bin/python bench/credential_process.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARK = "rolecall credential-process (warm cache) and --help against python -c pass"

BIN = Path(sys.executable).parent
ROLECALL = BIN / "rolecall"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_RUNTIME_DIR=str(home / "run"),
               AWS_CONFIG_FILE=str(home / ".aws" / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "none"),
               AWS_EC2_METADATA_DISABLED="true", ROLECALL_KEYRING_PASSPHRASE="bench passphrase",
               PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", NO_PROXY="*")
    return env


def _start_up(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    up = subprocess.Popen([str(ROLECALL), "up", "--imds-listen", "127.0.0.1:0", "--sts-listen", "127.0.0.1:0"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    exports = {}
    deadline = time.monotonic() + 60
    while len(exports) < 5 and time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break
        name, _, value = line.strip().removeprefix("export ").partition("=")
        exports[name] = value
    if len(exports) < 5:
        up.kill()
        raise SystemExit("rolecall up did not start")
    return up, exports


def _prepare(home: Path, env: dict[str, str]) -> None:
    demo = json.loads((home / "data" / "rolecall" / "up" / "demo.json").read_text())
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    (home / ".aws" / "config").write_text(
        "[profile demo]\nregion = us-east-1\n\n"
        f"[profile dev-role]\nrole_arn = {demo['admin_role_arn']}\nsource_profile = demo\n"
        f"mfa_serial = {demo['mfa_serial']}\n"
        f"mfa_process = {sys.executable} -c \"import pyotp; print(pyotp.TOTP('{demo['mfa_seed']}').now())\"\n")
    keys = dict(env, AWS_ACCESS_KEY_ID=demo["demo"]["access_key_id"],
                AWS_SECRET_ACCESS_KEY=demo["demo"]["secret_access_key"])
    subprocess.run([str(ROLECALL), "keys", "add", "--profile", "demo"], env=keys, check=True, capture_output=True)
    cold = subprocess.run([str(ROLECALL), "credential-process", "--profile", "dev-role"], env=env,
                          capture_output=True, text=True)
    if cold.returncode != 0:
        raise SystemExit(f"the cold credential-process failed: {cold.stderr.strip()}")


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode})")
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rolecall-bench-") as name:
        home = Path(name)
        (home / "run").mkdir(mode=0o700)
        env = _env(home)
        up, exports = _start_up(home, env)
        try:
            env.update(exports)
            _prepare(home, env)
            commands = {"floor": [sys.executable, "-c", "pass"],
                        "warm": [str(ROLECALL), "credential-process", "--profile", "dev-role"],
                        "help": [str(ROLECALL), "--help"]}
            for argv_ in commands.values():  # page everything in once
                _time(argv_, env)
            times = {name: [] for name in commands}
            for _ in range(args.runs):
                for label, argv_ in commands.items():
                    times[label].append(_time(argv_, env))
        finally:
            up.terminate()
            up.wait(timeout=30)
    print(f"{args.runs} alternating runs each, same interpreter ({sys.executable})")
    for label, goal in (("floor", None), ("warm", 2.5), ("help", 3.0)):
        median = statistics.median(times[label])
        line = f"{label:6} median {median * 1000:6.1f} ms"
        if goal:
            ratio = statistics.median(t / f for t, f in zip(times[label], times["floor"]))
            line += f"   ratio to floor {ratio:.2f}x (goal <= {goal}x)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
