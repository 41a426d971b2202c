"""`rolecall doctor` against real parts: `rolecall up`, the backend and the agent on loopback, the CLI as a child.

Each scenario also shows the rows it breaks passing first (or elsewhere), so no row
can pass by always saying the same thing. The pure verdicts get table tests below.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import stat
import sys

import pytest
import trio

from cli import doctor_checks as checks
from cli import doctor_sdk as sdk
from cli import doctor_systemd as systemd
from cli.doctor import Options, config_candidates, render_table, run_doctor
from tests.test_daemon import StsBackend, agent_config, child_env, rolecall_command
from tests.test_up import start_up
from wire.clock import UTC, SystemClock

NAMES = ["config", "permissions", "sts-endpoint", "clock-skew", "sts-identity", "agent", "imds", "sdk-chain",
         "link-local", "socket-units", "agent-unit"]
SYSTEMD_ROWS = NAMES[-3:]


class AheadClock:
    """The real wall clock moved ``offset`` forward: a host (or an STS endpoint) hours off."""

    def __init__(self, offset: dt.timedelta) -> None:
        self.offset = offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + self.offset


async def doctor_cli(config, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    result = await trio.run_process([*rolecall_command(), "doctor", "--config", str(config), *extra], env=env,
                                    capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def rows(stdout: str) -> dict[str, dict]:
    document = json.loads(stdout)
    assert list(document) == ["ok", "checks"]
    for check in document["checks"]:
        assert list(check) == ["name", "status", "detail", "fix"] and check["status"] in ("ok", "fail", "skip", "warn")
        assert isinstance(check["detail"], str) and "\n" not in check["detail"]
        if check["status"] in ("fail", "warn"):   # every failure (and caveat) has its fix
            assert isinstance(check["fix"], str) and check["fix"], check
        elif check["status"] == "ok":
            assert check["fix"] is None, check
    assert [check["name"] for check in document["checks"]] == NAMES
    assert document["ok"] == all(check["status"] != "fail" for check in document["checks"])
    return {check["name"]: check for check in document["checks"]}


def assert_systemd_rows_skipped(by_name: dict[str, dict]) -> None:
    for name in SYSTEMD_ROWS:   # this host (and CI) has no rolecall units under a systemd PID 1
        assert by_name[name]["status"] == "skip" and "not a systemd host" in by_name[name]["detail"]


# ---- the scenarios ---------------------------------------------------------------------------------


async def test_a_healthy_up_passes_every_applicable_check(nursery, tmp_path):
    data_dir = tmp_path / "up"
    up = await start_up(data_dir, nursery)
    env = {**child_env(**up.exports), "AWS_EC2_METADATA_DISABLED": "false"}   # a shell that pasted up's exports
    code, out, err = await doctor_cli(data_dir / "agent.toml", env, "--json")
    assert code == 0, out + err
    by_name = rows(out)
    assert all(by_name[name]["status"] == "ok" for name in NAMES[:-3]), out
    assert_systemd_rows_skipped(by_name)
    demo = json.loads((data_dir / "demo.json").read_text())
    assert by_name["sts-identity"]["detail"].endswith(":user/rolecall-agent")
    assert "role rolecall-demo, credentials ASIA..." in by_name["imds"]["detail"]
    assert by_name["sdk-chain"]["detail"].startswith("botocore uses iam-role: ASIA... until ")
    assert by_name["agent"]["detail"].startswith(f"ready: {demo['role_arn']}")
    code, table, err = await doctor_cli(data_dir / "agent.toml", env)
    assert code == 0 and table.splitlines()[-1] == "all checks hold"
    assert [line.split()[1] for line in table.splitlines()[:-1]] == NAMES
    for secret in (demo["agent"]["secret_access_key"], demo["admin"]["secret_access_key"], demo["mfa_seed"],
                   demo["agent"]["access_key_id"]):
        assert secret not in out + table + err   # key ids too: four characters at most
    assert await up.stop(signal.SIGTERM) == 0


async def test_a_stopped_agent_fails_the_agent_and_imds_rows_with_a_fix(nursery, tmp_path, short_dir):
    from agent.config import load_config
    from agent.daemon import run_agent

    sts = StsBackend(tmp_path / "backend", SystemClock())
    await sts.start(nursery)
    path = agent_config(short_dir, sts.url, await sts.demo())
    agent = await nursery.start(lambda task_status: run_agent(load_config(str(path), environ={}), inherited=[],
                                                              handle_signals=False, task_status=task_status))
    await agent.ready.wait()
    env = {**child_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://{agent.metadata[0]}/"),
           "AWS_EC2_METADATA_DISABLED": "false"}
    code, out, _ = await doctor_cli(path, env, "--json")
    assert code == 0 and rows(out)["agent"]["status"] == "ok" and rows(out)["imds"]["status"] == "ok", out
    agent.stop()
    with trio.fail_after(5):
        while os.path.exists(agent.control_socket):
            await trio.sleep(0.02)
    code, out, _ = await doctor_cli(path, env, "--json")
    by_name = rows(out)
    assert code == 1 and not json.loads(out)["ok"]
    assert by_name["agent"] == {"name": "agent", "status": "fail", "detail": f"no agent answers ({agent.control_socket}"
                                ": no such socket)", "fix": f"start it: `rolecall agent serve --config {path}`"}
    assert by_name["imds"]["status"] == "fail" and "ConnectError" in by_name["imds"]["detail"]
    assert by_name["imds"]["fix"] == f"nothing answers at http://{agent.metadata[0]}/: start the agent, or correct the endpoint"
    assert by_name["sdk-chain"]["status"] == "fail"
    for name in ("config", "permissions", "sts-endpoint", "clock-skew", "sts-identity"):   # the backend still answers
        assert by_name[name]["status"] == "ok", by_name[name]


async def test_time_travel_the_sts_endpoint_hours_ahead_fails_the_clock_row(nursery, tmp_path, short_dir):
    ahead = AheadClock(dt.timedelta(hours=3))
    sts = StsBackend(tmp_path / "backend", ahead)   # the endpoint's clock (and Date) three hours on
    await sts.start(nursery)
    path = agent_config(short_dir, sts.url, await sts.demo())
    code, out, _ = await doctor_cli(path, child_env(), "--json")
    by_name = rows(out)
    assert code == 1
    skew = by_name["clock-skew"]
    assert skew["status"] == "fail" and re.match(r"this host's clock is (2 h 59|3 h 0) min behind the endpoint's",
                                                 skew["detail"]), skew
    assert skew["fix"] == checks.SYNC_CLOCK
    identity = by_name["sts-identity"]   # the signature dated by this host's clock is refused as expired
    assert identity["status"] == "fail" and "SignatureDoesNotMatch" in identity["detail"]
    assert identity["fix"] == checks.SYNC_CLOCK and by_name["sts-endpoint"]["status"] == "ok"
    # The same endpoint, with doctor's own clock injected three hours on as well: the row holds.
    report = await run_doctor(Options(str(path)), clock=ahead, environ=dict(os.environ))
    held = {check.name: check for check in report.checks}
    assert held["clock-skew"].status == "ok" and held["sts-identity"].status == "ok", held


async def test_a_bad_config_fails_one_row_with_the_agents_own_line(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[sts]\nendpoint_url = "http://127.0.0.1:9"\n\n[source]\naccess_key_id = "AKIAEXAMPLE"\n'
                    'secret_access_key = "s3cret-value"\n\n[role]\narn = "arn:aws:iam::123456789012:role/app"\n'
                    'duration_seconds = 5\n')
    path.chmod(0o600)
    serve = await trio.run_process([*rolecall_command(), "agent", "serve", "--config", str(path)], env=child_env(),
                                   capture_stdout=True, capture_stderr=True, check=False)
    agent_line = serve.stderr.decode().strip()
    assert serve.returncode == 1 and len(agent_line.splitlines()) == 1
    code, out, err = await doctor_cli(path, child_env(), "--json")
    by_name = rows(out)
    assert code == 1 and "s3cret-value" not in out + err
    assert f"rolecall: {by_name['config']['detail']}" == agent_line
    assert by_name["config"]["detail"].startswith(f"{path}: [role] duration_seconds: ")
    assert by_name["config"]["fix"].startswith(f"correct [role] duration_seconds in {path}")
    assert [name for name, row in by_name.items() if "duration_seconds" in row["detail"]] == ["config"]
    for name in ("sts-endpoint", "clock-skew", "sts-identity"):
        assert by_name[name]["status"] == "skip"


async def test_a_world_writable_data_dir_fails_the_permissions_row(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "secret").write_text("s3cret-value")
    (data_dir / "secret").chmod(0o600)
    path = data_dir / "agent.toml"
    path.write_text('[sts]\nendpoint_url = "http://127.0.0.1:9"\n\n[source]\naccess_key_id = "AKIAEXAMPLE"\n'
                    'secret_access_key_file = "secret"\n\n[role]\narn = "arn:aws:iam::123456789012:role/app"\n')

    async def permissions() -> checks.Check:
        report = await run_doctor(Options(str(path)), clock=SystemClock(), environ=dict(os.environ))
        return {check.name: check for check in report.checks}["permissions"]

    assert (await permissions()).status == "ok"
    data_dir.chmod(0o777)
    row = await permissions()
    assert row == checks.Check("permissions", "fail", f"{data_dir} is writable by others (mode 777)",
                               f"chmod go-w {data_dir}")
    data_dir.chmod(0o700)
    (data_dir / "secret").chmod(0o644)
    row = await permissions()
    assert row.status == "fail" and row.fix == f"chmod 600 {data_dir / 'secret'}" and "mode 644" in row.detail


async def test_nothing_configured_sends_nothing_off_loopback(tmp_path, monkeypatch, netguard):
    """No endpoint here and IMDS not disabled: botocore would ask 169.254.169.254; doctor must not."""
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    before = len(netguard.violations)
    report = await run_doctor(Options(str(tmp_path / "missing.toml")), clock=SystemClock(), environ=dict(os.environ))
    by_name = {check.name: check for check in report.checks}
    assert netguard.violations[before:] == []   # (the guard would fail the test anyway)
    assert by_name["config"].status == "fail" and "cannot read" in by_name["config"].detail
    assert by_name["imds"].status == "skip"
    assert by_name["sdk-chain"].status == "fail" and "IMDS not tried" in by_name["sdk-chain"].detail
    assert "fix:" in render_table(report) and render_table(report).endswith("checks failed")


def test_the_default_config_is_the_units_then_rolecall_ups():
    env = {"HOME": "/home/u", "XDG_CONFIG_HOME": "/x", "XDG_DATA_HOME": "/d"}
    assert config_candidates(env, 0) == ["/etc/rolecall/agent.toml", "/x/rolecall/agent.toml",
                                         "/d/rolecall/up/agent.toml"]
    assert config_candidates({"HOME": "/home/u"}, 1000)[:2] == ["/home/u/.config/rolecall/agent.toml",
                                                               "/etc/rolecall/agent.toml"]


# ---- the pure verdicts ---------------------------------------------------------------------------------


def _local(*addresses: str):
    return lambda ip: ip in ("127.0.0.1", "::1", *addresses)


@pytest.mark.parametrize("sdk_endpoint, mode, listen, local, expected", [
    ("http://10.1.2.3:80", "ipv4", [], (), ("http://10.1.2.3:80/", "AWS_EC2_METADATA_SERVICE_ENDPOINT")),
    (None, "ipv4", [("127.0.0.1", 8169)], ("169.254.169.254",), ("http://169.254.169.254/", "169.254.169.254, an "
                                                                  "address of this host")),
    (None, "IPv6", [], ("fd00:ec2::254",), ("http://[fd00:ec2::254]/", "fd00:ec2::254, an address of this host")),
    (None, "ipv4", [("0.0.0.0", 8169)], (), ("http://127.0.0.1:8169/", "[metadata] listen")),
    (None, "ipv4", [("::", 8169)], (), ("http://[::1]:8169/", "[metadata] listen")),
    (None, "ipv4", [("127.0.0.1", 0)], (), None),            # a port chosen at start: unknown here
    (None, "ipv4", [("192.0.2.7", 8169)], (), None),         # not this host's: never tried
    (None, "ipv6", [], ("169.254.169.254",), None),          # the IPv6 default is not here
])
def test_the_imds_endpoint_rule_never_guesses_an_address_off_this_host(sdk_endpoint, mode, listen, local, expected):
    target = sdk.imds_target(sdk_endpoint, mode, listen, _local(*local))
    assert (target.url, target.origin) == expected if expected else target is None


def test_botocores_chain_leaves_out_what_would_leave_the_host():
    assert sdk.chain_plan({}, None, "ipv4", _local())[0] == ("iam-role",)
    assert sdk.chain_plan({}, "http://127.0.0.1:1/", "ipv4", _local())[0] == ()
    assert sdk.chain_plan({}, None, "ipv4", _local("169.254.169.254"))[0] == ()
    removed, notes = sdk.chain_plan({"AWS_EC2_METADATA_DISABLED": "TRUE",
                                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/x"}, None, "ipv4", _local())
    assert removed == ("container-role",) and "AWS_EC2_METADATA_DISABLED" in notes[0]


@pytest.mark.parametrize("offset, status", [(0, "ok"), (59, "ok"), (-90, "warn"), (299, "warn"), (301, "fail"),
                                            (-4 * 3600, "fail")])
def test_clock_skew_thresholds(offset, status):
    date = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    sent = date + dt.timedelta(seconds=offset)
    probe = checks.HttpProbe("http://127.0.0.1:1", 403, date, None, sent, sent + dt.timedelta(seconds=1))
    assert checks.clock_check(probe).status == status


def test_served_credentials_close_to_expiry_warn_and_expired_ones_fail():
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    target = sdk.ImdsTarget("http://127.0.0.1:1/", "[metadata] listen")

    def row(minutes: int) -> checks.Check:
        probe = sdk.ImdsProbe(target, role="r", key_id="ASIAXYZ", code="Success",
                                 expiration=now + dt.timedelta(minutes=minutes))
        return sdk.imds_check(target, probe, now)

    assert [row(m).status for m in (60, 14, -1)] == ["ok", "warn", "fail"]
    assert "ASIA..." in row(60).detail and "ASIAX" not in row(60).detail


@pytest.mark.parametrize("kind, mode, uid, gid, problem", [
    ("dir", stat.S_IFDIR | 0o755, 0, 0, None),
    ("dir", stat.S_IFDIR | 0o1777, 0, 0, "chmod go-w /p"),
    ("dir", stat.S_IFLNK | 0o777, 0, 0, "remove /p, or choose another"),
    ("dir", stat.S_IFDIR | 0o700, 4242, 0, "chown root /p (or the agent's user), or choose another"),
    ("config", stat.S_IFREG | 0o644, 0, 0, None),            # no secret in it: others may read it
    ("secret", stat.S_IFREG | 0o640, 0, 0, "chmod 600 /p"),
    ("socket", stat.S_IFSOCK | 0o660, 0, 77, None),          # the system service's: group rolecall
    ("socket", stat.S_IFSOCK | 0o660, 0, 5, "restart the agent"),
    ("socket", stat.S_IFSOCK | 0o606, 0, 77, "restart the agent"),
])
def test_the_private_files_rules(kind, mode, uid, gid, problem):
    row = checks.permissions_check([checks.PathFacts("/p", kind, mode, uid, gid)], frozenset({0, 1000}), 77)
    assert (row.status, row.fix and row.fix.split(" (it makes")[0].split(":")[0]) == (
        ("ok", None) if problem is None else ("fail", problem))


SHOW = """Id=rolecall-agent.service
LoadState=loaded
ActiveState={agent}
SubState=running
UnitFileState=enabled

Id=rolecall-agent.socket
LoadState=loaded
ActiveState={socket}
SubState=listening
UnitFileState=enabled

Id=rolecall-link-local.service
LoadState=loaded
ActiveState=active
SubState=exited
UnitFileState=enabled

Id=rolecall-container.socket
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
"""


def test_systemd_rows():
    units = systemd.parse_systemctl_show(SHOW.format(agent="active", socket="active"))
    assert [u.name for u in units if u.installed] == ["rolecall-agent.service", "rolecall-agent.socket",
                                                      "rolecall-link-local.service"]
    assert [c.status for c in systemd.systemd_checks("systemd", units, True, "systemctl")] == ["ok", "ok", "ok"]
    broken = systemd.parse_systemctl_show(SHOW.format(agent="failed", socket="inactive"))
    rows_ = systemd.systemd_checks("systemd", broken, False, "systemctl")
    assert [c.status for c in rows_] == ["fail", "fail", "fail"]
    assert rows_[0].fix == "systemctl enable --now rolecall-link-local.service"
    assert rows_[1].fix == "systemctl enable --now rolecall-agent.socket"
    assert rows_[2].fix.startswith("journalctl -u rolecall-agent")
    assert {c.status for c in systemd.systemd_checks("init", units, True, "systemctl")} == {"skip"}
    assert {c.status for c in systemd.systemd_checks("systemd", [], None, "systemctl")} == {"skip"}
    assert systemd.addresses_on('[{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}, '
                               '{"local": "169.254.169.254"}]}]') == {"127.0.0.1", "169.254.169.254"}


def test_a_report_fails_only_on_fail_rows():
    rows_ = (checks.Check("a", "ok", "x"), checks.Check("b", "skip", "y"), checks.Check("c", "warn", "z", "do"))
    assert checks.Report(rows_).ok and checks.Report(rows_).to_json()["checks"][1] == {
        "name": "b", "status": "skip", "detail": "y", "fix": None}
    assert not checks.Report((*rows_, checks.Check("d", "fail", "w", "fix it"))).ok
    table = render_table(checks.Report((*rows_, checks.Check("d", "fail", "w", "fix it"))))
    assert table.splitlines() == ["ok    a  x", "skip  b  y", "warn  c  z", "         fix: do", "FAIL  d  w",
                                  "         fix: fix it", "1 check failed"]


def test_a_config_only_the_agents_user_may_read_is_skipped_not_failed():
    from agent.errors import ConfigError

    error = ConfigError("/etc/rolecall/agent.toml", "[source] secret_access_key_file",
                        "cannot read /etc/rolecall/source-secret: Permission denied")
    row = checks.config_check("/etc/rolecall/agent.toml", error, "", unreadable_here=True)
    assert row.status == "skip" and row.fix == "run doctor as root or as the agent's user: `sudo rolecall doctor`"
    assert checks.config_check("/etc/rolecall/agent.toml", error, "").status == "fail"


async def test_without_botocore_the_chain_row_is_skipped_and_the_variable_still_names_the_endpoint(
        tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore", None)   # botocore is optional: `import botocore` fails
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    report = await run_doctor(Options(str(tmp_path / "missing.toml")), clock=SystemClock(), environ=dict(os.environ))
    by_name = {check.name: check for check in report.checks}
    assert by_name["sdk-chain"].status == "skip" and "pip install botocore" in by_name["sdk-chain"].detail
    assert by_name["imds"].detail.startswith("http://127.0.0.1:9/ (AWS_EC2_METADATA_SERVICE_ENDPOINT)")


@pytest.mark.parametrize("listing, token_status, step, status", [
    (b"a\nb", 200, "role", None),      # botocore would ask for .../ab
    (b"app", 403, "token PUT", 403),   # a peer or Host the agent refuses
    (b"app", 200, None, None),
])
async def test_the_imds_probe_reports_the_step_that_failed(nursery, listing, token_status, step, status):
    from cli.doctor_probes import probe_imds
    from tests.servers import start_server
    from wire.http import HttpResponse

    def handler(req):
        if req.method == "PUT":
            return HttpResponse(token_status, body=b"token")
        if req.target.endswith("/security-credentials/"):
            return HttpResponse(200, body=listing)
        return HttpResponse(200, body=json.dumps({"Code": "Success", "AccessKeyId": "ASIAEXAMPLE",
                                                  "SecretAccessKey": "s3cret", "Token": "t",
                                                  "Expiration": "2099-01-01T00:00:00Z"}).encode())

    running = await start_server(nursery, handler)
    target = sdk.ImdsTarget(running.url + "/", "test")
    probe = await probe_imds(target)
    assert (probe.failed_step, probe.http_status) == (step, status)
    row = sdk.imds_check(target, probe, dt.datetime(2098, 1, 1, tzinfo=UTC))
    assert row.status == ("ok" if step is None else "fail") and "s3cret" not in repr(probe) + row.detail
