"""`rolecall up` as a subprocess: export lines only on stdout, clients through it, a reused data dir."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
import pyotp
import pytest
import trio

from cli.up import default_data_dir, export_lines
from tests.test_daemon import Lines, child_env, rolecall_command

EXPORT_NAMES = ["AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM", "AWS_REGION",
                "AWS_DEFAULT_REGION"]


class Up:
    """A running ``rolecall up``: its export values, stderr lines and the process."""

    def __init__(self, process, exports: dict[str, str], stdout: Lines, stderr: Lines, drained: trio.Event) -> None:
        self.process, self.exports, self.stdout, self.stderr = process, exports, stdout, stderr
        self.drained = drained

    async def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        with trio.fail_after(15):
            code = await self.process.wait()
        self.rest_of_stdout = await self.stdout.rest()
        with trio.fail_after(5):
            await self.drained.wait()
        self.log = "\n".join(self.stderr.lines)
        return code


async def start_up(data_dir: Path, nursery: trio.Nursery, env: dict[str, str] | None = None) -> Up:
    process = await trio.lowlevel.open_process(
        [*rolecall_command(), "up", "--data-dir", str(data_dir), "--imds-listen", "127.0.0.1:0",
         "--sts-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or child_env())
    stdout, stderr = Lines(process.stdout), Lines(process.stderr)
    drained = trio.Event()

    async def drain() -> None:  # keep the pipe from filling up
        await stderr.rest()
        drained.set()

    nursery.start_soon(drain)
    try:
        await stdout.until(lambda line: line.startswith("export AWS_DEFAULT_REGION="), timeout=20)
    except BaseException:
        process.kill()
        raise
    exports = dict(line.removeprefix("export ").split("=", 1) for line in stdout.lines)
    return Up(process, exports, stdout, stderr, drained)


def _client_env(monkeypatch, exports: dict[str, str]) -> None:
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")  # deliberately pointed at rolecall up


def _identity() -> dict:
    return boto3.Session().client("sts").get_caller_identity()


def _mfa_only_role(demo: dict) -> tuple[str, str]:
    """The demo user assumes the MFA-only role: refused without a code, allowed with one."""
    sts = boto3.Session(aws_access_key_id=demo["demo"]["access_key_id"],
                        aws_secret_access_key=demo["demo"]["secret_access_key"]).client("sts")
    try:
        sts.assume_role(RoleArn=demo["admin_role_arn"], RoleSessionName="no-mfa")
        refused = "allowed"
    except botocore.exceptions.ClientError as exc:
        refused = exc.response["Error"]["Code"]
    code = pyotp.TOTP(demo["mfa_seed"]).now()
    assumed = sts.assume_role(RoleArn=demo["admin_role_arn"], RoleSessionName="with-mfa",
                              SerialNumber=demo["mfa_serial"], TokenCode=code)
    return refused, assumed["AssumedRoleUser"]["Arn"]


async def test_up_prints_exports_serves_clients_and_reuses_its_data_dir(nursery, tmp_path, monkeypatch):
    data_dir = tmp_path / "up"
    up = await start_up(data_dir, nursery)
    assert up.stdout.lines == [line for line in up.stdout.lines if line.startswith("export ")]
    assert list(up.exports) == EXPORT_NAMES
    imds = up.exports["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
    assert imds.startswith("http://127.0.0.1:") and not imds.endswith(":0/")
    assert up.exports["AWS_ENDPOINT_URL_STS"] == up.exports["AWS_ENDPOINT_URL_IAM"]
    assert all(up.exports[name].endswith("/") for name in EXPORT_NAMES[:3])  # the CLI v1 below takes them so
    _client_env(monkeypatch, up.exports)
    identity = await trio.to_thread.run_sync(_identity)
    assert identity["Arn"].endswith(":assumed-role/rolecall-demo/rolecall-up")
    cli_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **up.exports,
               "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    cli = await trio.run_process([str(Path(os.sys.executable).with_name("aws")), "sts", "get-caller-identity"],
                                 env=cli_env, capture_stdout=True, capture_stderr=True, check=False)
    assert cli.returncode == 0 and json.loads(cli.stdout)["Arn"] == identity["Arn"], cli.stderr
    demo = json.loads((data_dir / "demo.json").read_text())
    refused, arn = await trio.to_thread.run_sync(_mfa_only_role, demo)
    assert refused == "AccessDenied" and arn.endswith(":assumed-role/rolecall-demo-admin/with-mfa")
    assert await up.stop(signal.SIGINT) == 0
    assert up.rest_of_stdout == "\n".join(up.stdout.lines[:5])  # nothing after the exports
    assert "initialised" in up.log
    for secret in (demo["agent"]["secret_access_key"], demo["admin"]["secret_access_key"], demo["mfa_seed"]):
        assert secret not in up.log
    for name in ("demo.json", "admin.json", "agent-secret", "agent.toml"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name

    again = await start_up(data_dir, nursery)
    _client_env(monkeypatch, again.exports)
    assert (await trio.to_thread.run_sync(_identity))["Account"] == identity["Account"]
    assert await again.stop(signal.SIGTERM) == 0
    assert "initialised" not in again.log and json.loads((data_dir / "demo.json").read_text()) == demo


async def test_up_ignores_proxy_variables_and_finishes_an_interrupted_first_run(nursery, tmp_path, monkeypatch):
    """HTTP_PROXY & co. must not carry loopback STS/IAM calls (secrets; a dead proxy broke start-up),
    and a data dir whose demo.json never got written (seeding interrupted) is finished, not refused."""
    env = {k: v for k, v in child_env().items() if k.lower() != "no_proxy"}
    env.update({name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")})
    data_dir = tmp_path / "up"
    first = await start_up(data_dir, nursery, env)
    assert await first.stop(signal.SIGTERM) == 0
    old = json.loads((data_dir / "demo.json").read_text())
    (data_dir / "demo.json").unlink()  # as if the first run had stopped before writing it
    again = await start_up(data_dir, nursery, env)
    assert list(again.exports) == EXPORT_NAMES
    _client_env(monkeypatch, again.exports)
    assert (await trio.to_thread.run_sync(_identity))["Arn"].endswith(":assumed-role/rolecall-demo/rolecall-up")
    assert await again.stop(signal.SIGTERM) == 0
    new = json.loads((data_dir / "demo.json").read_text())
    assert new["role_arn"] == old["role_arn"] and new["agent"] != old["agent"]


async def test_up_refuses_a_non_loopback_address(tmp_path):
    result = await trio.run_process([*rolecall_command(), "up", "--data-dir", str(tmp_path / "d"),
                                     "--sts-listen", "0.0.0.0:8900"], capture_stderr=True, check=False,
                                    env=child_env())
    assert result.returncode == 1 and len(result.stderr.decode().strip().splitlines()) == 1
    assert "loopback only" in result.stderr.decode()


def test_default_data_dir_follows_xdg():
    assert default_data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/rolecall/up")
    assert default_data_dir({}) == Path(os.path.expanduser("~")) / ".local/share/rolecall/up"


def test_export_lines_are_the_design_md_set():
    lines = export_lines("[::1]:8169", "http://127.0.0.1:8900")
    assert [line.split("=")[0].removeprefix("export ") for line in lines] == EXPORT_NAMES
    assert lines == ["export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://[::1]:8169/",
                     "export AWS_ENDPOINT_URL_STS=http://127.0.0.1:8900/",
                     "export AWS_ENDPOINT_URL_IAM=http://127.0.0.1:8900/",
                     "export AWS_REGION=us-east-1", "export AWS_DEFAULT_REGION=us-east-1"]


def test_every_exported_endpoint_ends_with_one_slash():
    """Older botocore (Debian 12's AWS CLI v2) joins base + ``latest/api/token`` without adding one (design.md)."""
    for sts_url in ["http://127.0.0.1:8900", "http://127.0.0.1:8900/", "http://[::1]:8900"]:
        values = dict(line.removeprefix("export ").split("=", 1) for line in export_lines("127.0.0.1:8169", sts_url))
        for name in EXPORT_NAMES[:3]:
            assert values[name].endswith("/") and not values[name].endswith("//"), (name, values[name])


@pytest.mark.parametrize("arg", ["--imds-listen", "--sts-listen"])
def test_up_help_lists_the_contract_flags(arg, capsys):
    from cli.main import main

    with pytest.raises(SystemExit):
        main(["up", "--help"])
    assert arg in capsys.readouterr().out


async def test_demo_account_round_trip_and_a_second_seed_makes_new_keys(tmp_path, wall_clock, autojump_clock):
    import httpx

    from agent.demo import DemoAccount, DemoError, Keys, seed_demo
    from sts_backend.app import Backend
    from sts_backend.iam import bootstrap_admin
    from sts_backend.store import Store

    store = Store.create(tmp_path / "b", clock=wall_clock)
    _, key = bootstrap_admin(store)
    transport = httpx.MockTransport(Backend(store, wall_clock).handle_httpx)
    admin = Keys(key.access_key_id, key.secret_access_key)
    account = await seed_demo("http://backend.test", admin, wall_clock, transport=transport)
    assert account.role_arn.endswith(":role/rolecall-demo") and account.mfa_serial.endswith(":mfa/demo")
    for secret in (account.agent.secret_access_key, account.demo.secret_access_key, account.mfa_seed):
        assert secret not in repr(account)
    account.save(tmp_path / "demo.json")
    assert stat.S_IMODE((tmp_path / "demo.json").stat().st_mode) == 0o600
    assert DemoAccount.load(tmp_path / "demo.json") == account
    again = await seed_demo("http://backend.test", admin, wall_clock, transport=transport)  # demo.json lost
    assert (again.account_id, again.role_arn, again.admin_role_arn, again.mfa_serial) == (
        account.account_id, account.role_arn, account.admin_role_arn, account.mfa_serial)
    assert again.agent != account.agent and again.demo != account.demo and again.mfa_seed != account.mfa_seed
    await _check_demo_account(store, wall_clock, again)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DemoError, match="not a readable demo account"):
        DemoAccount.load(tmp_path / "bad.json")


# ---- seeding interrupted part-way: the next run finishes it -------------------------------------------


async def _check_demo_account(store, clock, account) -> None:
    """Every key in ``account`` works, the users hold only those keys, the MFA-only role takes the seed's code."""
    import httpx

    from agent.demo import AGENT_USER, DEMO_USER
    from agent.sts_client import StsClient
    from sts_backend.app import Backend

    transport = httpx.MockTransport(Backend(store, clock).handle_httpx)
    async with StsClient("http://backend.test", "us-east-1", clock=clock, transport=transport,
                         max_attempts=1) as sts:
        served = await sts.assume_role(account.agent.credentials(), account.role_arn, "check")
        assert served.assumed_role_arn.endswith(":assumed-role/rolecall-demo/check")
        code = pyotp.TOTP(account.mfa_seed).at(clock.now())
        admin = await sts.assume_role(account.demo.credentials(), account.admin_role_arn, "mfa",
                                      serial_number=account.mfa_serial, token_code=code)
        assert admin.assumed_role_arn.endswith(":assumed-role/rolecall-demo-admin/mfa")
    for user, keys in ((AGENT_USER, account.agent), (DEMO_USER, account.demo)):
        assert [k.access_key_id for k in store.access_keys_of(user)] == [keys.access_key_id], user


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("lost", ["request", "response"])
@pytest.mark.parametrize("at_call", range(1, 11))
async def test_seeding_interrupted_at_any_call_is_finished_by_the_next_run(tmp_path, wall_clock, autojump_clock,
                                                                           at_call, lost):
    """`rolecall up` stopped during seeding (demo.json never written): the next seed must not trip over
    what exists (EntityAlreadyExists) and must leave usable keys and a usable MFA device."""
    import httpx

    from agent.demo import DemoError, Keys, seed_demo
    from sts_backend.app import Backend
    from sts_backend.iam import bootstrap_admin
    from sts_backend.store import Store

    store = Store.create(tmp_path / "b", clock=wall_clock)
    _, key = bootstrap_admin(store)
    admin = Keys(key.access_key_id, key.secret_access_key)
    backend = Backend(store, wall_clock)
    calls = 0

    def failing(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == at_call and lost == "request":
            raise httpx.ConnectError("interrupted")
        response = backend.handle_httpx(request)
        if calls == at_call:  # done by the backend, but the answer never arrived
            raise httpx.ReadError("interrupted")
        return response

    with pytest.raises(DemoError, match="interrupted|Error talking to"):
        await seed_demo("http://backend.test", admin, wall_clock, transport=httpx.MockTransport(failing))
    await trio.sleep(30)  # a later run: the next TOTP step
    account = await seed_demo("http://backend.test", admin, wall_clock,
                              transport=httpx.MockTransport(backend.handle_httpx))
    await _check_demo_account(store, wall_clock, account)


async def test_a_failed_seeding_says_what_to_do_in_one_line(tmp_path):
    from agent.demo import Keys
    from cli.errors import CliError
    from cli.up import _demo_account

    with pytest.raises(CliError) as info:
        await _demo_account(tmp_path, "http://127.0.0.1:9", Keys("AKIAIOSFODNN7EXAMPLE", "secret"))
    message = str(info.value)
    assert "\n" not in message and not (tmp_path / "demo.json").exists()
    assert message.startswith(f"up: demo account in {tmp_path} is incomplete (IAM CreateUser: ConnectError")
    assert message.endswith(f"run again, or remove {tmp_path} to start afresh")
    (tmp_path / "demo.json").write_text("{}")
    with pytest.raises(CliError, match="remove it and run again to re-create the demo account"):
        await _demo_account(tmp_path, "http://127.0.0.1:9", Keys("AKIAIOSFODNN7EXAMPLE", "secret"))
