"""The warm path of `rolecall credential-process`: what it answers, and what it never imports.

Each case runs the real entry point (``cli.main.main``) in a child Python, with
a profile in ``~/.aws/config`` and a cache entry written under the key the
profile's plan gives, and reports which heavy modules got imported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdk_shim.credential_process import warm_credentials
from wire.session_cache import MIN_REMAINING
from wire.aws_config import AwsConfig
from wire.session_cache import CacheEntry, SessionCache

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("trio", "httpx", "keyring", "argparse", "cryptography", "botocore", "agent", "sts_backend")
PROBE = ("import sys\nfrom cli.main import main\nstatus = main(sys.argv[1:])\n"
         "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))\n"
         "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\nsys.exit(status)\n" % (HEAVY,))
ROLE = "arn:aws:iam::123456789012:role/dev"


def probe(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, text=True, timeout=60)


def heavy_of(done: subprocess.CompletedProcess) -> list[str]:
    line = [line for line in done.stderr.splitlines() if line.startswith("HEAVY=")][-1]
    return [name for name in line.removeprefix("HEAVY=").split(",") if name]


@pytest.fixture
def profile(aws_sandbox):
    (aws_sandbox / ".aws").mkdir()
    (aws_sandbox / ".aws" / "config").write_text(
        f"[profile base]\nregion = us-east-1\n\n[profile dev]\nrole_arn = {ROLE}\nsource_profile = base\n")
    (aws_sandbox / ".local" / "share" / "rolecall").mkdir(parents=True)
    (aws_sandbox / ".local" / "share" / "rolecall" / "keys.json").write_text(
        json.dumps({"profiles": {"base": {"AccessKeyId": "AKIAEXAMPLE", "Added": "2026-01-01T00:00:00Z"}}}))
    return AwsConfig.load().plan("dev", stored={"base"})


def cache(plan, minutes_left: float) -> CacheEntry:
    now = dt.datetime.now(dt.timezone.utc)
    entry = CacheEntry("profile", "dev", plan.chain, "ASIAWARMEXAMPLE", "secret-value", "token-value",
                       now + dt.timedelta(minutes=minutes_left), now, account_id="123456789012",
                       role_arn="arn:aws:sts::123456789012:assumed-role/dev/s")
    SessionCache().put(plan.cache_key(), entry)
    return entry


def test_answers_from_the_cache_importing_nothing_heavy(profile):
    cache(profile, 50)
    done = probe("credential-process", "--profile", "dev")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc == {"Version": 1, "AccessKeyId": "ASIAWARMEXAMPLE", "SecretAccessKey": "secret-value",
                   "SessionToken": "token-value", "Expiration": doc["Expiration"], "AccountId": "123456789012"}
    assert heavy_of(done) == []


def test_fifteen_minutes_left_is_the_line(profile):
    cache(profile, MIN_REMAINING / 60 + 0.5)
    assert warm_credentials("dev")["AccessKeyId"] == "ASIAWARMEXAMPLE"
    cache(profile, MIN_REMAINING / 60 - 0.5)
    assert warm_credentials("dev") is None  # the cold path makes new ones


def test_an_unknown_profile_fails_on_the_warm_path_in_one_line(profile):
    done = probe("credential-process", "--profile", "nope")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines()[0].startswith("rolecall: credential-process: profile 'nope' not found in ")
    assert "Traceback" not in done.stderr and heavy_of(done) == []


def test_anything_else_goes_to_the_full_cli(profile):
    cache(profile, 50)
    done = probe("credential-process", "--profile", "dev", "--token-code", "123456")
    assert done.returncode == 0 and json.loads(done.stdout)["AccessKeyId"] == "ASIAWARMEXAMPLE"
    assert "argparse" in heavy_of(done)


def test_a_cache_entry_of_another_plan_is_not_served(profile, aws_sandbox):
    cache(profile, 50)
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text().replace(ROLE, ROLE + "-other"))
    assert warm_credentials("dev") is None


def test_importing_the_shim_packages_is_light():
    code = ("import sys, sdk_shim, sdk_shim.credential_process\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_the_agent_is_asked_only_for_its_own_role(profile, monkeypatch, tmp_path):
    """The warm path sends the profile's role and session name; an answer for another role is not used."""
    import socket
    import threading

    path = tmp_path / "a.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    asked = []
    expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def serve():
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                request = json.loads(conn.makefile().readline())
                asked.append(request)
                ours = request.get("role_arn") == ROLE
                answer = ({"AccessKeyId": "ASIAAGENT", "SecretAccessKey": "s", "SessionToken": "t",
                           "Expiration": expiry} if ours else {"error": "the agent serves another role"})
                conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("ROLECALL_AGENT_SOCKET", str(path))
    assert warm_credentials("dev")["AccessKeyId"] == "ASIAAGENT"
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(config.read_text().replace(ROLE, ROLE + "-other"))
    assert warm_credentials("dev") is None
    thread.join(5)
    server.close()
    assert [a["role_arn"] for a in asked] == [ROLE, ROLE + "-other"] and all(a["op"] == "credentials" for a in asked)
