"""`rolecall backend init|serve|rotate-token-key` as subprocesses, driven by the AWS CLI and boto3.

Covers the command-line contract (design.md): init's JSON and its refusal, the
`listening on` line, graceful exit 0 on SIGTERM, plain HTTP refused off loopback,
HTTPS with --tls-cert/--tls-key; the AWS CLI's `sts get-caller-identity` and
`sts get-session-token --serial-number --token-code`; token-key rotation under a
running server; and durability: a restart keeps everything, and a backend killed
with SIGKILL during a burst of CreateUser calls loses none that were acknowledged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from sts_backend import mfa
from tests.servers import ipv6_loopback_available

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
AWS = Path(sys.executable).with_name("aws")
ACCOUNT = "210987654321"
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10)
_LISTENING = re.compile(r"listening on (https?://\S+)")


def rolecall(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, **kwargs)


class BackendProcess:
    """`rolecall backend serve` in a child process; ``url`` once it logged its address."""

    def __init__(self, data_dir: Path | None, *extra: str, listen: str = "127.0.0.1:0") -> None:
        where = ["--data-dir", str(data_dir)] if data_dir is not None else []   # None: --database in extra
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "backend", "serve", *where,
                                      "--listen", listen, *extra],
                                     cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.url = self._wait_listening()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found:
                return found.group(1)
        self.proc.kill()
        raise AssertionError("backend did not start: " + "".join(self.lines))

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def client(self, service: str, key, **kwargs):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", config=NO_RETRY,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1],
                            aws_session_token=key[2] if len(key) > 2 else None, **kwargs)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def init(data_dir: Path, account: str = ACCOUNT) -> dict:
    done = rolecall("backend", "init", "--data-dir", str(data_dir), "--account-id", account)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    admin = init(data_dir)
    backend = BackendProcess(data_dir)
    yield backend, admin, data_dir
    assert backend.stop() == 0, "".join(backend.lines)


def aws_cli(url: str, key: tuple[str, str], *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "AWS_ACCESS_KEY_ID": key[0],
           "AWS_SECRET_ACCESS_KEY": key[1], "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")}
    return subprocess.run([str(AWS), "--endpoint-url", url, "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60)


# ---- init / serve contract ---------------------------------------------------------------------

def test_init_output_and_refusal(served):
    _, admin, data_dir = served
    assert set(admin) == {"AccountId", "UserName", "Arn", "AccessKeyId", "SecretAccessKey"}
    assert admin["AccountId"] == ACCOUNT and admin["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{admin['UserName']}"
    again = rolecall("backend", "init", "--data-dir", str(data_dir))
    assert again.returncode == 1 and again.stdout == ""
    assert len(again.stderr.strip().splitlines()) == 1 and "already initialised" in again.stderr
    for name in os.listdir(data_dir):
        assert os.stat(data_dir / name).st_mode & 0o077 == 0, name


def test_listening_line_and_audit_log(served):
    backend, admin, data_dir = served
    assert [line for line in backend.lines if "listening on" in line] == [
        next(line for line in backend.lines if "listening on" in line)]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", backend.url) and not backend.url.endswith(":0")
    backend.client("sts", (admin["AccessKeyId"], admin["SecretAccessKey"])).get_caller_identity()
    deadline = time.monotonic() + 10  # read calls are audited by a writer thread, off the event loop
    while '"action":"GetCallerIdentity"' not in (data_dir / "audit.log").read_text():
        assert time.monotonic() < deadline, "no audit line for GetCallerIdentity"
        time.sleep(0.02)


def _raw_exchange(url: str, data: bytes) -> bytes:
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("raw,status,code", [
    (b"\x16\x03\x01garbage\r\n\r\n", 400, "InvalidRequest"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 600000\r\n\r\nAction=", 413, "RequestEntityTooLarge"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "RequestHeaderSectionTooLarge"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414, "RequestURITooLong"),
])
def test_serving_layer_refusals_are_aws_error_responses(served, raw, status, code):
    from wire.query import parse_error

    backend, _, _ = served
    out = _raw_exchange(backend.url, raw)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert headers["content-type"] == "text/xml" and headers["connection"] == "close" and "date" in headers
    assert parse_error(body)[0] == code
    assert f"<RequestId>{headers['x-amzn-requestid']}</RequestId>".encode() in body


def test_plain_http_off_loopback_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    init(data_dir)
    done = rolecall("backend", "serve", "--data-dir", str(data_dir), "--listen", "0.0.0.0:0")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "--insecure-http" in done.stderr
    missing = rolecall("backend", "serve", "--data-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "not initialised" in missing.stderr


def test_audit_log_elsewhere_only_in_a_directory_of_our_own(tmp_path):
    """--audit-log is rotated by rename in its directory: one others may write to is refused, in one line."""
    data_dir = tmp_path / "data"
    admin = init(data_dir)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = rolecall("backend", "serve", "--data-dir", str(data_dir), "--audit-log", str(shared / "audit.log"))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert f"--audit-log {shared / 'audit.log'}: {shared} is writable by others" in done.stderr
    assert not (shared / "audit.log").exists()
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    backend = BackendProcess(data_dir, "--audit-log", str(logs / "audit.log"))
    try:
        backend.client("sts", (admin["AccessKeyId"], admin["SecretAccessKey"])).get_caller_identity()
    finally:
        assert backend.stop() == 0
    assert '"action": "GetCallerIdentity"' in (logs / "audit.log").read_text().replace('":"', '": "')
    assert not (data_dir / "audit.log").exists()


def test_ipv6_loopback_listen(tmp_path):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 on loopback here")
    data_dir = tmp_path / "data"
    admin = init(data_dir)
    backend = BackendProcess(data_dir, listen="[::1]:0")
    try:
        assert re.fullmatch(r"http://\[::1\]:\d+", backend.url) and not backend.url.endswith(":0")
        sts = backend.client("sts", (admin["AccessKeyId"], admin["SecretAccessKey"]))
        assert sts.get_caller_identity()["Account"] == ACCOUNT
    finally:
        assert backend.stop() == 0


def test_usage_errors_exit_2():
    assert rolecall("backend").returncode == 2
    assert rolecall("backend", "init").returncode == 2


# ---- quotas ---------------------------------------------------------------------------------------

def test_quotas_and_set_quota(tmp_path, capsys):
    from cli.main import main
    from sts_backend.store_core import DEFAULT_QUOTAS

    data_dir = str(tmp_path / "data")
    assert main(["backend", "init", "--data-dir", data_dir, "--account-id", ACCOUNT]) == 0
    capsys.readouterr()
    assert main(["backend", "quotas", "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_QUOTAS
    assert main(["backend", "set-quota", "--data-dir", data_dir, "RolesPerAccount", "500"]) == 0
    assert json.loads(capsys.readouterr().out) == {"RolesPerAccount": 500}
    assert main(["backend", "quotas", "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out) == {**DEFAULT_QUOTAS, "RolesPerAccount": 500}
    for name, value, why in (("RolesPerAcount", "5", "unknown quota 'RolesPerAcount'"),
                             ("RolesPerAccount", "0", "must be an integer from 1"),
                             ("RolesPerAccount", "-3", "must be an integer from 1"),
                             ("RolesPerAccount", "2.5", "must be an integer from 1"),
                             ("RolesPerAccount", "lots", "must be an integer from 1"),
                             ("RolesPerAccount", str(2**31), "must be an integer from 1")):
        assert main(["backend", "set-quota", "--data-dir", data_dir, name, value]) == 1, (name, value)
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and why in captured.err
    assert main(["backend", "quotas", "--data-dir", str(tmp_path / "nothing")]) == 1
    assert "not initialised" in capsys.readouterr().err
    assert main(["backend", "quotas", "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out)["RolesPerAccount"] == 500   # the refusals changed nothing


def test_set_quota_applies_to_a_running_server(served):
    backend, admin, data_dir = served
    iam = backend.client("iam", (admin["AccessKeyId"], admin["SecretAccessKey"]))
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})
    roles = len(iam.list_roles()["Roles"])
    done = rolecall("backend", "set-quota", "--data-dir", str(data_dir), "RolesPerAccount", str(roles + 1))
    assert done.returncode == 0, done.stderr
    try:
        iam.create_role(RoleName="quota-1", AssumeRolePolicyDocument=trust)
        with pytest.raises(iam.exceptions.LimitExceededException) as info:
            iam.create_role(RoleName="quota-2", AssumeRolePolicyDocument=trust)
        assert f"RolesPerAccount: {roles + 1}" in str(info.value)
    finally:
        done = rolecall("backend", "set-quota", "--data-dir", str(data_dir), "RolesPerAccount", "250")
        assert done.returncode == 0, done.stderr
    listed = json.loads(rolecall("backend", "quotas", "--data-dir", str(data_dir)).stdout)
    assert listed["RolesPerAccount"] == 250
    iam.delete_role(RoleName="quota-1")


# ---- the AWS CLI --------------------------------------------------------------------------------

def test_aws_cli_get_caller_identity_and_mfa_session(served, tmp_path):
    backend, admin, _ = served
    key = (admin["AccessKeyId"], admin["SecretAccessKey"])
    done = aws_cli(backend.url, key, "sts", "get-caller-identity", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Arn"] == admin["Arn"]
    iam = backend.client("iam", key)
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="cli-device")["VirtualMFADevice"]
    seed, serial = device["Base32StringSeed"].decode(), device["SerialNumber"]
    step = mfa.timecode(dt.datetime.now(dt.timezone.utc))
    iam.enable_mfa_device(UserName=admin["UserName"], SerialNumber=serial,
                          AuthenticationCode1=mfa.code_at(seed, step - 1), AuthenticationCode2=mfa.code_at(seed, step))
    token_code = mfa.code_at(seed, step + 1)
    done = aws_cli(backend.url, key, "sts", "get-session-token", "--serial-number", serial,
                   "--token-code", token_code, "--duration-seconds", "900", home=tmp_path)
    assert done.returncode == 0, done.stderr
    creds = json.loads(done.stdout)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    replay = aws_cli(backend.url, key, "sts", "get-session-token", "--serial-number", serial,
                     "--token-code", token_code, home=tmp_path)
    assert replay.returncode != 0 and "AccessDenied" in replay.stderr
    session_iam = backend.client("iam", (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
    assert session_iam.list_users()["Users"]   # an MFA session may call IAM


def test_rotate_token_key_under_a_running_server(served):
    backend, admin, data_dir = served
    sts = backend.client("sts", (admin["AccessKeyId"], admin["SecretAccessKey"]))
    old = sts.get_session_token(DurationSeconds=900)["Credentials"]
    done = rolecall("backend", "rotate-token-key", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    new = sts.get_session_token(DurationSeconds=900)["Credentials"]
    for creds in (old, new):
        session = backend.client("sts", (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
        assert session.get_caller_identity()["Account"] == ACCOUNT


# ---- TLS ----------------------------------------------------------------------------------------

def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_with_tls_cert_and_key(tmp_path):
    data_dir = tmp_path / "data"
    admin = init(data_dir)
    cert_file, key_file = _self_signed(tmp_path)
    backend = BackendProcess(data_dir, "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        assert backend.url.startswith("https://127.0.0.1:")
        sts = backend.client("sts", (admin["AccessKeyId"], admin["SecretAccessKey"]), verify=str(cert_file))
        assert sts.get_caller_identity()["Arn"] == admin["Arn"]
    finally:
        assert backend.stop() == 0
    audit = [json.loads(line) for line in (data_dir / "audit.log").read_text().splitlines()]
    assert audit[-1]["source"] == "127.0.0.1"


# ---- durability ------------------------------------------------------------------------------------

def test_restart_and_sigkill_lose_nothing_acknowledged(tmp_path):
    data_dir = tmp_path / "data"
    admin = init(data_dir)
    key = (admin["AccessKeyId"], admin["SecretAccessKey"])
    backend = BackendProcess(data_dir)
    iam = backend.client("iam", key)
    iam.create_role(RoleName="kept", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}))
    session = backend.client("sts", key).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/kept",
                                                     RoleSessionName="before")["Credentials"]
    acknowledged: list[str] = []
    lock, enough = threading.Lock(), threading.Event()

    def burst(worker: int) -> None:
        client = backend.client("iam", key)
        for i in range(400):
            name = f"burst-{worker}-{i}"
            try:
                client.create_user(UserName=name)
            except Exception:
                return   # the server died under us: this one was never acknowledged
            with lock:
                acknowledged.append(name)
                if len(acknowledged) >= 40:
                    enough.set()

    workers = [threading.Thread(target=burst, args=(w,)) for w in range(3)]
    for thread in workers:
        thread.start()
    assert enough.wait(timeout=60)
    backend.kill()   # SIGKILL, mid-burst
    for thread in workers:
        thread.join(timeout=30)
    restarted = BackendProcess(data_dir)
    try:
        iam = restarted.client("iam", key)
        names = {u["UserName"] for u in iam.list_users(MaxItems=1000)["Users"]}
        assert set(acknowledged) <= names, set(acknowledged) - names
        assert iam.get_role(RoleName="kept")["Role"]["RoleName"] == "kept"
        old = restarted.client("sts", (session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"]))
        assert old.get_caller_identity()["Arn"].endswith("assumed-role/kept/before")
    finally:
        assert restarted.stop() == 0
