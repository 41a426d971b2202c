"""The laptop path end to end: real SDKs and CLIs run `rolecall credential-process`, real processes race.

The included backend runs in-process on loopback with the system clock and
counts calls per Action (``tests.test_daemon.StsBackend``); everything else is a
real child process with HOME in the test's temp folder: ``rolecall`` itself,
the AWS CLI v1 (PyPI) and v2 (Debian's ``/usr/bin/aws``), boto3 through the
shim, the JS SDK's ``fromProcess``, and a terminal in tmux. Long-term keys go
into rolecall's encrypted-file keyring through ``rolecall keys add``. MFA codes
come from an ``mfa_process`` script that counts its runs, or are typed.
Every child gets ``AWS_EC2_METADATA_DISABLED=true`` and loopback endpoints.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from agent.iam_client import IamClient, members
from tests.conftest import need_tool
from tests.interop import JS_DIR, require_node
from tests.laptop_support import code_at, make_user, write_profiles
from tests.test_daemon import StsBackend, start_agent
from wire.clock import SystemClock

pytestmark = pytest.mark.interop

BIN = Path(sys.executable).parent
AWS_V1 = BIN / "aws"
AWS_V2 = Path("/usr/bin/aws")  # Debian's AWS CLI v2
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
async def laptop(nursery, tmp_path, aws_sandbox, request):
    """A backend, a user (keys in rolecall's keyring), ``~/.aws/config`` with an ``mfa_process`` that counts."""
    backend = StsBackend(tmp_path / "backend", SystemClock())
    await backend.start(nursery)
    user = await make_user(backend.url, backend.admin, SystemClock(), "u" + str(abs(hash(request.node.name)))[:8])
    counter = tmp_path / "mfa-runs"
    script = tmp_path / "mfa.py"
    script.write_text(f"import pyotp\nopen({str(counter)!r}, 'a').write('run\\n')\n"
                      f"print(pyotp.TOTP({user.seed!r}).now())\n")
    write_profiles(aws_sandbox, user, mfa_process=f"{sys.executable} {script}")
    env = child_env(backend.url)
    done = await rolecall("keys", "add", "--profile", "base", env=dict(
        env, AWS_ACCESS_KEY_ID=user.keys.access_key_id, AWS_SECRET_ACCESS_KEY=user.keys.secret_access_key))
    assert done.returncode == 0, done.stderr
    backend.calls.clear()
    return backend, user, env, counter


def child_env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", AWS_ENDPOINT_URL_STS=url,
               AWS_ENDPOINT_URL_IAM=url, AWS_EC2_METADATA_DISABLED="true", ROLECALL_KEYRING_PASSPHRASE=PASSPHRASE)
    env.pop("DISPLAY", None)
    return {**env, **extra}


async def rolecall(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return await trio.run_process([str(BIN / "rolecall"), *args], env=env, capture_stdout=True,
                                  capture_stderr=True, check=False)


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def text(done: subprocess.CompletedProcess) -> tuple[str, str]:
    return done.stdout.decode(), done.stderr.decode()


# ---- the AWS CLI, boto3, the JS SDK ------------------------------------------------------------------


async def test_aws_cli_v1_and_v2_one_prompt_then_no_sts_call(laptop):
    backend, user, env, counter = laptop
    done = await trio.run_process([str(AWS_V1), "sts", "get-caller-identity", "--profile", "dev", "--output", "json"],
                                  env=env, capture_stdout=True, capture_stderr=True, check=False)
    out, err = text(done)
    assert done.returncode == 0, err
    assert json.loads(out)["Arn"] == f"arn:aws:sts::{user.account}:assumed-role/{user.name}-mfa/laptop"
    assert runs(counter) == 1
    assert (backend.calls["GetSessionToken"], backend.calls["AssumeRole"]) == (1, 1)
    # a second call within the hour: from the cache, no STS call of rolecall's and no prompt
    again = await trio.run_process([str(AWS_V1), "sts", "get-caller-identity", "--profile", "dev"], env=env,
                                   capture_stdout=True, capture_stderr=True, check=False)
    assert again.returncode == 0 and json.loads(again.stdout)["Arn"] == json.loads(out)["Arn"]
    assert runs(counter) == 1 and (backend.calls["GetSessionToken"], backend.calls["AssumeRole"]) == (1, 1)
    if not AWS_V2.exists():
        pytest.skip("Debian's AWS CLI v2 (/usr/bin/aws) not installed (make test installs awscli when root)")
    # the CLI v2 of Debian 12 predates AWS_ENDPOINT_URL_*: its own call needs --endpoint-url
    v2 = await trio.run_process([str(AWS_V2), "--endpoint-url", backend.url, "sts", "get-caller-identity",
                                 "--profile", "dev", "--output", "json"], env=env, capture_stdout=True,
                                capture_stderr=True, check=False)
    assert v2.returncode == 0, v2.stderr.decode()
    assert json.loads(v2.stdout)["Arn"] == json.loads(out)["Arn"]
    assert runs(counter) == 1 and (backend.calls["GetSessionToken"], backend.calls["AssumeRole"]) == (1, 1)


async def test_boto3_through_the_shim(laptop, monkeypatch):
    import boto3
    import botocore.session
    from botocore.exceptions import CredentialRetrievalError

    from sdk_shim.botocore import install

    backend, user, env, counter = laptop
    for name in ("PATH", "AWS_ENDPOINT_URL_STS", "ROLECALL_KEYRING_PASSPHRASE"):
        monkeypatch.setenv(name, env[name])

    def identity(profile):
        session = botocore.session.get_session()
        install(session, profile=profile)
        client = boto3.Session(botocore_session=session).client("sts", region_name="us-east-1")
        return client.get_caller_identity()["Arn"], session.get_credentials()

    arn, creds = await trio.to_thread.run_sync(identity, "dev-role")  # cold: the shim runs rolecall
    assert arn.endswith(f":assumed-role/{user.name}-mfa/laptop") and runs(counter) == 1
    assert creds.method == "custom-rolecall" and creds._expiry_time is not None  # refreshable
    calls = dict(backend.calls)
    arn2, creds2 = await trio.to_thread.run_sync(identity, "dev-role")  # warm: the cache, in-process
    assert arn2 == arn and creds2.access_key == creds.access_key
    assert runs(counter) == 1 and backend.calls["AssumeRole"] == calls["AssumeRole"]
    with pytest.raises(CredentialRetrievalError, match="no rolecall agent of this user"):
        await trio.to_thread.run_sync(identity, None)
    with pytest.raises(CredentialRetrievalError, match="profile 'nope' not found"):
        await trio.to_thread.run_sync(identity, "nope")


async def test_js_sdk_credential_provider_process(laptop):
    node = require_node("@aws-sdk/credential-provider-process", "@aws-sdk/client-sts")
    backend, user, env, counter = laptop
    done = await trio.run_process([node, str(JS_DIR / "process_client.mjs"), "dev", backend.url], cwd=JS_DIR,
                                  env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["arn"] == f"arn:aws:sts::{user.account}:assumed-role/{user.name}-mfa/laptop"
    assert out["accessKeyId"].startswith("ASIA") and out["expiration"].endswith("Z")
    assert runs(counter) == 1


# ---- concurrency, errors ----------------------------------------------------------------------------


async def test_five_concurrent_cold_calls_run_mfa_process_once(laptop):
    backend, user, env, counter = laptop
    results = []

    async def one():
        results.append(await rolecall("credential-process", "--profile", "dev-role", env=env))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert all(done.returncode == 0 for done in results), [done.stderr for done in results]
    docs = [json.loads(done.stdout) for done in results]
    assert len({doc["AccessKeyId"] for doc in docs}) == 1
    assert all(doc["Version"] == 1 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["Expiration"])
               for doc in docs)
    assert runs(counter) == 1
    assert (backend.calls["GetSessionToken"], backend.calls["AssumeRole"]) == (1, 1)


async def test_unknown_profile_is_one_line_and_exit_1(laptop):
    backend, user, env, counter = laptop
    for args in (("credential-process", "--profile", "nope"), ("export", "--profile", "nope"),
                 ("exec", "--profile", "nope", "--", "true"), ("mfa", "login", "--profile", "nope")):
        done = await rolecall(*args, env=env)
        out, err = text(done)
        assert done.returncode == 1 and out == "", (args, out, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "profile 'nope' not found" in err, (args, err)


async def test_a_refused_assume_role_is_aws_s_error_in_one_line(laptop, aws_sandbox):
    backend, user, env, counter = laptop
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile no-mfa]\nrole_arn = {user.mfa_role}\nsource_profile = base\n")
    done = await rolecall("credential-process", "--profile", "no-mfa", env=env)
    out, err = text(done)
    assert done.returncode == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("rolecall: credential-process: AssumeRole: AccessDenied (HTTP 403): ")


# ---- the terminal prompt, with stdout and stderr captured ------------------------------------------------


class Tmux:
    """A private tmux server running one command in a pane; its screen read with capture-pane.

    tmux's server does not pass our environment on, so the command runs from a
    script that exports ``env`` first, then records the command's exit status.
    """

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.tmux = need_tool("tmux")
        self.directory, self.socket, self.env = directory, str(directory / "tmux"), env
        self.status = directory / "status"

    async def run(self, *args: str) -> str:
        done = await trio.run_process([self.tmux, "-S", self.socket, *args], env=self.env, capture_stdout=True,
                                      capture_stderr=True, check=False)
        return done.stdout.decode()

    async def start(self, command: str) -> None:
        exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in self.env.items()
                          if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name))
        script = self.directory / "run.sh"
        script.write_text(f"{exports}{command}\necho $? >{self.status}\nsleep 30\n")
        await self.run("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", f"sh {script}")

    async def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        with trio.fail_after(timeout):
            while True:
                screen = await self.run("capture-pane", "-p", "-t", "t")
                if re.search(pattern, screen):
                    return screen
                await trio.sleep(0.1)

    async def type(self, line: str) -> None:
        await self.run("send-keys", "-t", "t", line, "Enter")

    async def exit_status(self, timeout: float = 30.0) -> str:
        """The command's exit status, once it has one."""
        with trio.fail_after(timeout):
            while not self.status.exists() or not self.status.read_text().strip():
                await trio.sleep(0.1)
        return self.status.read_text().strip()

    async def kill(self) -> None:
        await self.run("kill-server")


async def test_the_terminal_prompt_works_while_stdout_and_stderr_are_captured(laptop, short_dir, aws_sandbox):
    backend, user, env, counter = laptop
    write_profiles(aws_sandbox, user)  # no mfa_process: the terminal driver
    out, err = short_dir / "out", short_dir / "err"
    tmux = Tmux(short_dir, env)
    try:
        await tmux.start(f"rolecall credential-process --profile dev-role >{out} 2>{err}")
        screen = await tmux.wait_for(r"Enter MFA code for arn:aws:iam::\d{12}:mfa/")
        assert user.mfa_serial in screen
        code = code_at(user.seed, SystemClock().now())
        await tmux.type(code)
        exit_status = await tmux.exit_status()
    finally:
        await tmux.kill()
    assert exit_status == "0", err.read_text()
    doc = json.loads(out.read_text())
    assert doc["Version"] == 1 and doc["AccessKeyId"].startswith("ASIA")
    assert "MFA" not in out.read_text() and code not in err.read_text() and "Enter" not in err.read_text()


async def test_mfa_enroll_shows_a_qr_code_and_enables_the_device(nursery, tmp_path, aws_sandbox, short_dir):
    zbarimg = need_tool("zbarimg")
    backend = StsBackend(tmp_path / "backend", SystemClock())
    await backend.start(nursery)
    async with IamClient(backend.url, backend.admin.credentials(), SystemClock()) as iam:
        await iam.call("CreateUser", UserName="carol")
        key = (await iam.call("CreateAccessKey", UserName="carol"))["AccessKey"]
        await iam.call("PutUserPolicy", UserName="carol", PolicyName="self", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "iam:GetUser", "iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:DeleteVirtualMFADevice"]}]}))
    (aws_sandbox / ".aws").mkdir(exist_ok=True)
    (aws_sandbox / ".aws" / "credentials").write_text(
        f"[carol]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {key['SecretAccessKey']}\n")
    env = child_env(backend.url)
    png, out = short_dir / "qr.png", short_dir / "out"
    tmux = Tmux(short_dir, env)
    try:
        await tmux.start(f"rolecall mfa enroll --profile carol --qr-png {png} >{out} 2>&1")
        await tmux.wait_for("First code:")  # capture-pane drops trailing spaces
        assert oct(png.stat().st_mode & 0o777) == "0o600"
        decoded = (await trio.run_process([zbarimg, "--raw", "-q", str(png)], capture_stdout=True)).stdout.decode()
        uri = decoded.strip()
        assert uri.startswith("otpauth://totp/carol@") and "secret=" in uri
        seed = re.search(r"secret=([A-Z2-7]+)", uri).group(1)
        now = SystemClock().now()
        await tmux.type(code_at(seed, now - dt.timedelta(seconds=30)))
        await tmux.wait_for("Next code")
        await tmux.type(code_at(seed, now))
        exit_status = await tmux.exit_status()
    finally:
        await tmux.kill()
    printed = out.read_text()
    assert exit_status == "0", printed
    serial = re.search(r"^mfa_serial = (arn:aws:iam::\d{12}:mfa/carol)$", printed, re.M).group(1)
    assert "█" in printed or "▀" in printed or "▄" in printed  # the QR code, drawn in the terminal
    async with IamClient(backend.url, backend.admin.credentials(), SystemClock()) as iam:
        devices = members(await iam.call("ListMFADevices", UserName="carol"), "MFADevices")
    assert [d["SerialNumber"] for d in devices] == [serial]


# ---- keys, exec, the user's agent ----------------------------------------------------------------------


async def test_keys_list_remove_and_rotate(laptop):
    backend, user, env, counter = laptop
    listed = await rolecall("keys", "list", "--json", env=env)
    assert json.loads(listed.stdout)["base"]["AccessKeyId"] == user.keys.access_key_id
    only = await rolecall("keys", "list", "--profile", "other", "--json", env=env)
    assert json.loads(only.stdout) == {}
    assert user.keys.secret_access_key not in listed.stdout.decode()
    first = await rolecall("credential-process", "--profile", "base", env=env)
    assert first.returncode == 0, first.stderr
    rotated = await rolecall("keys", "rotate", "--profile", "base", env=env)
    out, err = text(rotated)
    assert rotated.returncode == 0, err
    assert f"{user.keys.access_key_id} -> AKIA" in out
    async with IamClient(backend.url, backend.admin.credentials(), SystemClock()) as iam:
        keys = members(await iam.call("ListAccessKeys", UserName=user.name), "AccessKeyMetadata")
    new_id = json.loads((await rolecall("keys", "list", "--json", env=env)).stdout)["base"]["AccessKeyId"]
    assert [k["AccessKeyId"] for k in keys] == [new_id] and new_id != user.keys.access_key_id
    # the sessions of the old key are gone: the next call makes one with the new key
    calls = backend.calls["GetSessionToken"]
    after = await rolecall("credential-process", "--profile", "base", env=env)
    assert after.returncode == 0 and backend.calls["GetSessionToken"] == calls + 1
    removed = await rolecall("keys", "remove", "--profile", "base", env=env)
    assert removed.returncode == 0
    gone = await rolecall("credential-process", "--profile", "base", env=env)
    assert gone.returncode == 1 and "rolecall keys add --profile base" in gone.stderr.decode()


async def test_exec_runs_the_command_with_the_container_endpoint(laptop, tmp_path):
    backend, user, env, counter = laptop
    child = ("import json, os, sys, boto3; "
             "print(json.dumps({'arn': boto3.client('sts', region_name='us-east-1').get_caller_identity()['Arn'], "
             "'env': sorted(k for k in os.environ if k.startswith(('AWS_', 'ROLECALL_EXEC')))})); sys.exit(7)")
    done = await rolecall("exec", "--profile", "open-role", "--", sys.executable, "-c", child,
                          env=dict(env, AWS_PROFILE="base", AWS_ACCESS_KEY_ID="AKIAFROMTHESHELL"))
    out, err = text(done)
    assert done.returncode == 7, err
    doc = json.loads(out)
    assert doc["arn"].split("/")[1] == f"{user.name}-open"
    assert {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_REGION",
            "AWS_DEFAULT_REGION", "ROLECALL_EXEC"} <= set(doc["env"])
    assert "AWS_PROFILE" not in doc["env"] and "AWS_ACCESS_KEY_ID" not in doc["env"]
    nested = await rolecall("exec", "--profile", "open-role", "--", "true", env=dict(env, ROLECALL_EXEC="x"))
    assert nested.returncode == 1 and "already inside `rolecall exec`" in nested.stderr.decode()
    exported = await rolecall("export", "--profile", "open-role", env=env)
    lines = exported.stdout.decode().splitlines()
    assert [line.split("=")[0] for line in lines] == ["export AWS_ACCESS_KEY_ID", "export AWS_SECRET_ACCESS_KEY",
                                                      "export AWS_SESSION_TOKEN", "export AWS_CREDENTIAL_EXPIRATION"]


async def test_a_users_agent_waits_for_mfa_login_and_serves_credential_process(laptop, nursery, short_dir,
                                                                                 monkeypatch, aws_sandbox):
    backend, user, env, counter = laptop
    socket_path = short_dir / "agent.sock"
    for name in ("ROLECALL_KEYRING_PASSPHRASE", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("DISPLAY", raising=False)
    config = short_dir / "agent.toml"
    config.write_text(f'[sts]\nendpoint_url = "{backend.url}"\nregion = "us-east-1"\n\n'
                      f'[source]\nkeyring = "base"\nmfa_serial = "{user.mfa_serial}"\n\n'
                      f'[role]\narn = "{user.mfa_role}"\nsession_name = "agent"\n\n'
                      f'[metadata]\nlisten = ["127.0.0.1:0"]\n\n[agent]\ncontrol_socket = "{socket_path}"\n')
    write_profiles(aws_sandbox, user)  # no mfa_process: the code comes from --token-code
    agent = await start_agent(nursery, config, SystemClock())
    agent_env = dict(env, ROLECALL_AGENT_SOCKET=str(socket_path))
    with trio.fail_after(20):
        while not (status := json.loads((await rolecall("agent", "status", "--json", env=agent_env)).stdout))[
                "mfa_waiting"]:
            await trio.sleep(0.1)
    assert not status["ready"] and "rolecall mfa login" in status["last_error"]
    assert status["mfa_serial"] == user.mfa_serial and status["mfa_expiration"] is None
    login = await rolecall("mfa", "login", "--profile", "dev-role", "--token-code",
                           code_at(user.seed, SystemClock().now()), env=agent_env)
    assert login.returncode == 0, login.stderr
    assert "gave the code to the agent" in login.stdout.decode()
    with trio.fail_after(20):
        await agent.ready.wait()
    status = json.loads((await rolecall("agent", "status", "--json", env=agent_env)).stdout)
    assert status["ready"] and status["mfa_expiration"].endswith("Z") and status["mfa_waiting"] is False
    # credential_process for a profile of the agent's role and session name: the agent answers, no STS call
    config_file = aws_sandbox / ".aws" / "config"
    config_file.write_text(config_file.read_text() + f"[profile agent-role]\nrole_arn = {user.mfa_role}\n"
                                                     "source_profile = base\nrole_session_name = agent\n")
    calls = dict(backend.calls)
    served = await rolecall("credential-process", "--profile", "agent-role", env=agent_env)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["AccessKeyId"] == agent.rotator.current().access_key_id
    assert dict(backend.calls) == calls
    agent.stop()
