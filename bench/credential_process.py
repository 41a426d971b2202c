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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox import ROLECALL, isolated_env, start_up

BENCHMARK = "rolecall credential-process (warm cache) and --help against python -c pass"

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
        env = isolated_env(home, ROLECALL_KEYRING_PASSPHRASE="bench passphrase")
        up, exports = start_up(env)
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
