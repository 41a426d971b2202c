"""`make soak`: a million generated requests against `rolecall up`, over real sockets.

Starts the product as a user would: ``rolecall up`` (backend, agent, metadata
server) in a temporary HOME, and a second ``rolecall agent serve`` on the same
backend with a ``[container]`` endpoint (``up`` has none). Then worker
processes send generated requests, valid and malformed, to all four inputs:

- the metadata server (IMDSv1/v2: token PUTs, every served path, bad tokens,
  forbidden headers, foreign Hosts);
- the container endpoint (good, wrong and missing bearer tokens);
- the control socket (every op, non-JSON, deep nesting, oversized, half-sent);
- the backend's STS and IAM (SigV4-signed with the admin's, the demo user's and
  assumed-role keys, unsigned, wrongly signed, claimed-only keys, wrong MFA codes;
  IAM writes only on ``soak-`` names, so the agents' own account stays intact).

A third of the HTTP requests are mutated after generation (a flipped or
inserted byte, a truncation, a conflicting length, an oversized or folded
header, a smuggling attempt...); those are sent on a fresh connection that is
half-closed after the request, so a server waiting for more reads EOF.

It reports, and exits non-zero unless the first three are 0:

- crashes: either server process exiting during the run;
- 5xx answers other than the documented ones: 503 ("try again": no credentials
  yet, the body budget, a busy or full store) and 505 (a request line naming a
  version other than HTTP/1.x, such as HTTP/2's preface);
- secret bytes in a refused answer (status >= 300, or a control ``error``):
  the admin's, demo user's and agents' long-term secrets, the MFA seed, and
  every session secret and token seen served during the run;

and, as figures: requests per input and status, stalls (no answer within 10 s),
and each server's resident memory (VmRSS) after warm-up, at the end and at peak.

    .venv/bin/python tools/soak.py [--requests 1000000] [--workers N] [--seed S] [--inputs imds,sts]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from sandbox import ROLECALL, isolated_env, start_up  # noqa: E402
from wire.clock import SystemClock  # noqa: E402
from wire.sigv4 import Credentials, SigV4Auth  # noqa: E402

REGION = "us-east-1"
TIMEOUT = 10.0
WEIGHTS = {"imds": 40, "container": 15, "control": 10, "sts": 35}
MUTATE = 0.33
# 503: "try again" (no credentials yet, the body budget, a busy or full store);
# 505: a request line naming a version other than HTTP/1.x, e.g. HTTP/2's preface (RFC 9110 15.6.6).
DOCUMENTED_5XX = (503, 505)


# --- the product under test --------------------------------------------------


def _start_container_agent(home: Path, env: dict[str, str], log) -> tuple[subprocess.Popen, str, str]:
    """A second agent on up's backend, with the container endpoint; (process, imds address, container URL)."""
    up_dir = home / "data" / "rolecall" / "up"
    text = (up_dir / "agent.toml").read_text()
    text = re.sub(r"\[metadata\]\nlisten = .*\n", '[metadata]\nlisten = ["127.0.0.1:0"]\n', text)
    text = re.sub(r"control_socket = .*\n", f"control_socket = {json.dumps(str(home / 'run' / 'second.sock'))}\n", text)
    text = text.replace('secret_access_key_file = "agent-secret"',
                        f"secret_access_key_file = {json.dumps(str(up_dir / 'agent-secret'))}")
    text += f'\n[container]\nlisten = ["127.0.0.1:0"]\ntoken_file = {json.dumps(str(home / "run" / "container-token"))}\n'
    config = home / "second-agent.toml"
    config.write_text(text)
    config.chmod(0o600)
    agent = subprocess.Popen([str(ROLECALL), "agent", "serve", "--config", str(config)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    imds = container = None
    deadline = time.monotonic() + 60
    while (imds is None or container is None) and time.monotonic() < deadline:
        line = agent.stderr.readline()
        if not line:
            break
        log.write(line)
        if m := re.search(r"listening on http://(\S+)", line):
            imds = m.group(1)
        if m := re.search(r"container endpoint on (http://\S+)", line):
            container = m.group(1)
    if imds is None or container is None:
        agent.kill()
        raise SystemExit("soak: the container agent did not start")
    return agent, imds, container


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --- a raw HTTP/1.1 client ---------------------------------------------------


class Answer:
    __slots__ = ("status", "raw", "closed")

    def __init__(self, status: int | None, raw: bytes, closed: bool) -> None:
        self.status, self.raw, self.closed = status, raw, closed


class Stalled(Exception):
    """No answer (or no EOF) within TIMEOUT."""


def _read_answer(sock: socket.socket, buf: bytearray, head_request: bool) -> Answer:
    """One response from a keep-alive connection (``buf`` holds bytes read ahead)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return Answer(_status(bytes(buf)), bytes(buf), True)
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if head_request:
        length = 0
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    raw = bytes(buf[:end + length])
    del buf[:end + length]
    closed = "\r\nconnection: close" in head.lower()
    return Answer(_status(raw), raw, closed)


def _exchange_once(sock: socket.socket, raw: bytes) -> bytes:
    """Send ``raw``, half-close, and read what comes back until EOF (at most 1 MiB)."""
    try:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
    except (ConnectionResetError, BrokenPipeError):
        pass
    data = bytearray()
    while len(data) <= 1 << 20:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _split(raw: bytes) -> list[bytes]:
    """The responses in what one connection answered (a pipelined request gets several)."""
    answers = []
    while raw:
        end = raw.find(b"\r\n\r\n")
        if end < 0 or _status(raw) is None:
            answers.append(raw)
            break
        m = re.search(rb"(?im)^content-length:\s*(\d+)", raw[:end])
        stop = end + 4 + (int(m.group(1)) if m else 0)
        answers.append(raw[:stop])
        raw = raw[stop:]
    return answers


def _status(raw: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


class HttpPeer:
    """One keep-alive connection to ``host:port``, re-opened when the server closes it."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, bytearray()

    def send(self, raw: bytes, *, head: bool = False) -> Answer:
        """A well-formed request on the kept-alive connection."""
        for attempt in (1, 2):  # the server may have closed an idle connection meanwhile
            if self.sock is None:
                self.sock = self._connect()
            try:
                self.sock.sendall(raw)
                answer = _read_answer(self.sock, self.buf, head)
            except TimeoutError:
                self.close()
                raise Stalled from None
            except (ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    return Answer(None, b"", True)
                continue
            if answer.status is None and not answer.raw and attempt == 1:
                self.close()
                continue
            if answer.closed:
                self.close()
            return answer
        return Answer(None, b"", True)

    def send_once(self, raw: bytes) -> Answer:
        """A malformed request on its own connection, half-closed after sending; read to EOF."""
        try:
            with self._connect() as sock:
                data = _exchange_once(sock, raw)
        except TimeoutError:
            raise Stalled from None
        return Answer(_status(data), data, True)


def _request(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers)]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- mutations -----------------------------------------------------------------

_JUNK_HEADERS = [
    ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked, identity"), ("Content-Length", "-1"),
    ("Content-Length", "99999999999999999999"), ("Content-Length", "5, 6"), ("Host", "evil.example"),
    ("X-Forwarded-For", "10.0.0.1"), ("X-aws-ec2-metadata-token-ttl-seconds", "0"),
    ("X-aws-ec2-metadata-token", "A" * 4096), ("Expect", "100-continue"), ("Connection", "upgrade"),
    ("Upgrade", "h2c"), ("Authorization", "AWS4-HMAC-SHA256 Credential=\x7f"), ("X", "a\r\n b"),
    ("Cookie", "x" * 20000), ("\x00", "nul"), (" Host", "x"), ("Host", ""),
]


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """One to three random corruptions of a request."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(12)
        if kind == 0 and data:  # flip a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # insert junk
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == 2 and data:  # truncate
            del data[rng.randrange(len(data)):]
        elif kind == 3:  # an extra, hostile header
            name, value = rng.choice(_JUNK_HEADERS)
            at = data.find(b"\r\n") + 2
            data[at:at] = f"{name}: {value}\r\n".encode("latin-1")
        elif kind == 4:  # a hostile request line
            line = rng.choice([b"GET", b"PUT", b"POST", b"DELETE", b"PRI", b"G\x00T", b"get", b"CONNECT", b"X" * 300])
            target = rng.choice([b"/", b"//latest/meta-data/", b"/../../etc/passwd", b"/latest/%00", b"*",
                                 b"http://169.254.169.254/latest/api/token", b"/" + b"a" * 70000,
                                 b"/latest/meta-data/iam/security-credentials/%2e%2e/", "/\u00e9".encode()])
            end = data.find(b"\r\n")
            data[:end] = line + b" " + target + rng.choice([b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b""])
        elif kind == 5:  # duplicate the whole request (pipelining)
            data += raw
        elif kind == 6:  # a folded header line
            at = data.find(b"\r\n") + 2
            data[at:at] = b"X-Folded: a\r\n\tb\r\n"
        elif kind == 7:  # bare LF line endings
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
        elif kind == 8:  # a chunked body that lies
            at = bytes(data).find(b"\r\n\r\n")
            if at >= 0:
                data[at:] = b"\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\nabc\r\n0\r\n\r\n"
        elif kind == 9:  # the HTTP/2 preface
            data[:0] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        elif kind == 10:  # many headers
            at = data.find(b"\r\n") + 2
            data[at:at] = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(rng.choice([50, 120, 400])))
        else:  # random bytes only
            data = bytearray(rng.randbytes(rng.randint(1, 2048)))
    return bytes(data)


# --- the generators, one per input -----------------------------------------------


class Secrets:
    """The secrets a refused answer must not contain: the long-term ones, and the sessions served lately.

    Session secrets are learned from the answers that serve them; the newest
    ``RECENT`` are kept (the ones a refused answer could echo: the worker signs
    with them, the agents serve them), so the check stays cheap over a million answers.
    """

    RECENT = 256
    _SECRET = re.compile(rb'"?(?:SecretAccessKey|secret_access_key|Token|SessionToken)"?\s*[:>]\s*"?([A-Za-z0-9+/=]{20,})')

    def __init__(self, static: list[str]) -> None:
        self.static = [s.encode() for s in static if s]
        self.recent: dict[bytes, None] = {}  # insertion-ordered: the oldest first

    def learn(self, raw: bytes) -> None:
        for m in self._SECRET.finditer(raw):
            self.recent.pop(m.group(1), None)
            self.recent[m.group(1)] = None
            if len(self.recent) > self.RECENT:
                del self.recent[next(iter(self.recent))]

    def leaked(self, raw: bytes) -> bytes | None:
        for secret in (*self.static, *self.recent):
            if secret in raw:
                return secret
        return None


class Worker:
    def __init__(self, index: int, seed: int, targets: dict, account: dict, admin: dict, inputs: list[str]) -> None:
        self.inputs = inputs
        self.rng = random.Random(seed * 1000 + index)
        self.targets = targets
        self.account = account
        self.imds = HttpPeer(targets["imds"])
        self.imds2 = HttpPeer(targets["imds2"])
        self.container = HttpPeer(targets["container"].removeprefix("http://").split("/", 1)[0])
        self.container_path = "/" + targets["container"].removeprefix("http://").split("/", 1)[1]
        self.sts = HttpPeer(targets["sts"])
        self.sts_host = targets["sts"]
        self.imds_token = "none"
        self.role_name = "rolecall-demo"
        self.stats: dict[str, collections.Counter] = {s: collections.Counter() for s in WEIGHTS}
        self.problems: list[str] = []
        self.stalls = 0
        self.leaks = 0
        self.bad_5xx = 0
        self.secrets = Secrets([admin["secret_access_key"], account["demo"]["secret_access_key"],
                                account["agent"]["secret_access_key"], account["mfa_seed"]])
        self.creds = {
            "admin": Credentials(admin["access_key_id"], admin["secret_access_key"]),
            "demo": Credentials(account["demo"]["access_key_id"], account["demo"]["secret_access_key"]),
        }
        self.session: Credentials | None = None

    # each generator returns (peer, raw request, head?) for HTTP, or handles the control socket itself

    def gen_imds(self):
        rng = self.rng
        peer = self.imds if rng.random() < 0.7 else self.imds2
        host = rng.choice([peer.address[0] + f":{peer.address[1]}", "169.254.169.254", "[fd00:ec2::254]",
                           "169.254.169.254:80", "localhost", "evil.example"])
        headers = [("Host", host), ("User-Agent", "Botocore/1.44 soak")]
        kind = rng.randrange(10)
        if kind == 0:
            ttl = rng.choice(["21600", "1", "60", "0", "21601", "-5", "abc", ""])
            return peer, _request("PUT", "/latest/api/token", headers + [("X-aws-ec2-metadata-token-ttl-seconds", ttl)]), False
        token = rng.choice([self.imds_token] * 6 + ["", "AAAA", "x" * 200, self.imds_token[:-1] + "A"])
        if token:
            headers.append(("X-aws-ec2-metadata-token", token))
        path = rng.choice(["/latest/meta-data/iam/security-credentials/",
                           f"/latest/meta-data/iam/security-credentials/{self.role_name}",
                           f"/latest/meta-data/iam/security-credentials-extended/{self.role_name}",
                           "/latest/meta-data/iam/info", "/latest/meta-data/instance-id", "/latest/meta-data/",
                           "/latest/dynamic/instance-identity/document", "/latest/meta-data/placement/region",
                           "/latest/meta-data/iam/security-credentials/other-role", "/latest/user-data", "/",
                           "//latest/meta-data/iam/security-credentials/", "/latest/meta-data/iam/security-credentials"])
        method = rng.choice(["GET"] * 8 + ["HEAD", "POST", "OPTIONS"])
        return peer, _request(method, path, headers), method == "HEAD"

    def gen_container(self):
        rng = self.rng
        token = self.targets["container_token"]
        auth = rng.choice([token] * 5 + ["", "Bearer " + token, token + "x", token.upper(), "x" * 5000])
        headers = [("Host", rng.choice([f"{self.container.address[0]}:{self.container.address[1]}", "localhost"]))]
        if auth:
            headers.append(("Authorization", auth))
        path = rng.choice([self.container_path] * 6 + ["/", "/v2/credentials/x", self.container_path + "/"])
        method = rng.choice(["GET"] * 9 + ["HEAD", "PUT"])
        return self.container, _request(method, path, headers), method == "HEAD"

    def _sign(self, service: str, body: str, creds: Credentials) -> bytes:
        request = httpx.Request("POST", f"http://{self.sts_host}/", content=body.encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        next(SigV4Auth(creds, REGION, service, SystemClock()).auth_flow(request))
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
        return _request("POST", "/", headers, request.content)

    def gen_sts(self):
        rng = self.rng
        account = self.account
        name = f"soak-{rng.randrange(1000)}"
        sts_actions = [
            "Action=GetCallerIdentity&Version=2011-06-15",
            f"Action=AssumeRole&Version=2011-06-15&RoleArn={account['role_arn']}&RoleSessionName=soak",
            f"Action=AssumeRole&Version=2011-06-15&RoleArn={account['admin_role_arn']}&RoleSessionName=soak"
            f"&SerialNumber={account['mfa_serial']}&TokenCode={rng.randrange(1000000):06d}",
            f"Action=GetSessionToken&Version=2011-06-15&SerialNumber={account['mfa_serial']}"
            f"&TokenCode={rng.randrange(1000000):06d}",
            f"Action=GetSessionToken&Version=2011-06-15&DurationSeconds={rng.choice([0, 900, 129601, -1])}",
            f"Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::{account['account_id']}:role/none"
            "&RoleSessionName=soak&DurationSeconds=43201",
            "Action=GetAccessKeyInfo&Version=2011-06-15&AccessKeyId=AKIAIOSFODNN7EXAMPLE",
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=x&RoleSessionName=s&WebIdentityToken=a.b.c",
            "Action=Nonexistent&Version=2011-06-15", "Action=GetCallerIdentity&Version=1999-01-01",
            "Action=GetCallerIdentity&Version=2011-06-15&" + "&".join(f"P{i}={i}" for i in range(300)),
        ]
        iam_actions = [
            "Action=ListUsers&Version=2010-05-08", "Action=ListRoles&Version=2010-05-08",
            "Action=GetUser&Version=2010-05-08", f"Action=GetUser&Version=2010-05-08&UserName={name}",
            f"Action=CreateUser&Version=2010-05-08&UserName={name}",
            f"Action=DeleteUser&Version=2010-05-08&UserName={name}",
            f"Action=ListAccessKeys&Version=2010-05-08&UserName={name}",
            f"Action=PutUserPolicy&Version=2010-05-08&UserName={name}&PolicyName=p&PolicyDocument="
            + rng.choice(["%7B%7D", "not-json", "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D"]),
            f"Action=DeleteUserPolicy&Version=2010-05-08&UserName={name}&PolicyName=p",
            f"Action=GetRole&Version=2010-05-08&RoleName={name}",
            f"Action=CreateGroup&Version=2010-05-08&GroupName={name}",
            f"Action=DeleteGroup&Version=2010-05-08&GroupName={name}",
            "Action=ListMFADevices&Version=2010-05-08", "Action=GetAccountSummary&Version=2010-05-08",
        ]
        host = [("Host", self.sts_host)]
        form = [("Content-Type", "application/x-www-form-urlencoded")]
        kind = rng.randrange(10)
        if kind <= 5:  # signed
            service = "iam" if kind <= 2 else "sts"
            body = rng.choice(iam_actions if service == "iam" else sts_actions)
            who = rng.choice(["admin", "admin", "demo", "session"] if service == "iam" else ["demo", "demo", "session", "admin"])
            creds = self.session if who == "session" and self.session else self.creds["admin" if who == "session" else who]
            return self.sts, self._sign(service, body, creds), False
        if kind == 6:  # claims a real key, signs with a wrong secret
            creds = Credentials(rng.choice(list(self.creds.values())).access_key_id, "wrong" * 8)
            return self.sts, self._sign(rng.choice(["sts", "iam"]), rng.choice(sts_actions), creds), False
        if kind == 7:  # an unknown key, or a forged session token
            creds = Credentials("AKIA" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)), "x" * 40,
                                rng.choice([None, "FQoGZXIvYXdzE" + "A" * 300]))
            return self.sts, self._sign("sts", rng.choice(sts_actions), creds), False
        if kind == 8:  # unsigned
            body = rng.choice(sts_actions + iam_actions).encode()
            return self.sts, _request("POST", "/", host + form, body), False
        target = rng.choice(["/?Action=GetCallerIdentity&Version=2011-06-15",
                             "/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                             "&X-Amz-Credential=AKIAX%2F20260101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20260101T000000Z"
                             "&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires=60", "/health", "/%zz"])
        return self.sts, _request(rng.choice(["GET", "GET", "DELETE"]), target, host), False

    def gen_control(self) -> tuple[str, bytes]:
        rng = self.rng
        path = rng.choice([self.targets["control"], self.targets["control2"]])
        kind = rng.randrange(12)
        if kind < 4:
            return path, b'{"op": "status"}\n'
        if kind == 4:
            return path, b'{"op": "credentials"}\n'
        if kind == 5:
            return path, json.dumps({"op": "mfa-code", "code": f"{rng.randrange(10**6):06d}"}).encode() + b"\n"
        if kind == 6:
            return path, b"[" * rng.choice([100, 4000, 5000]) + b"\n"
        if kind == 7:
            return path, rng.randbytes(rng.randint(1, 5000))
        if kind == 8:
            return path, json.dumps({"op": rng.choice([1, None, [], "x" * 100, "status\x00"])}).encode() + b"\n"
        if kind == 9:
            return path, b'{"op": "status"' + b" " * rng.randint(0, 5000)  # no end, no newline
        if kind == 10 and rng.random() < 0.02:
            return path, b'{"op": "refresh"}\n'  # rare: each one is an AssumeRole of the agent's key
        return path, json.dumps({"op": "status", "extra": "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")
                                 }).encode() + b"\n"

    def control_exchange(self, path: str, raw: bytes) -> Answer:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(path)
                data = _exchange_once(sock, raw)
        except TimeoutError:
            raise Stalled from None
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = "unparsable"
        if answer is None:
            return Answer(None, data, True)
        if isinstance(answer, dict) and "error" not in answer:
            return Answer(200, data, True)
        return Answer(400 if isinstance(answer, dict) else 999, data, True)

    # --- the loop -----------------------------------------------------------------

    def refresh_state(self) -> None:
        """An IMDSv2 token, the served role's name, and a session from AssumeRole."""
        try:
            ans = self.imds.send(_request("PUT", "/latest/api/token", [
                ("Host", "169.254.169.254"), ("X-aws-ec2-metadata-token-ttl-seconds", "21600")]))
            if ans.status == 200:
                self.imds_token = ans.raw.split(b"\r\n\r\n", 1)[1].decode()
            ans = self.imds.send(_request("GET", "/latest/meta-data/iam/security-credentials/", [
                ("Host", "169.254.169.254"), ("X-aws-ec2-metadata-token", self.imds_token)]))
            if ans.status == 200:
                self.role_name = ans.raw.split(b"\r\n\r\n", 1)[1].decode().strip()
            body = f"Action=AssumeRole&Version=2011-06-15&RoleArn={self.account['role_arn']}&RoleSessionName=soak"
            ans = self.sts.send(self._sign("sts", body, self.creds["demo"]))
            if ans.status == 200:
                self.secrets.learn(ans.raw)
                xml = ans.raw.decode()
                get = lambda tag: re.search(f"<{tag}>([^<]+)</{tag}>", xml).group(1)  # noqa: E731
                self.session = Credentials(get("AccessKeyId"), get("SecretAccessKey"), get("SessionToken"))
        except Stalled:
            self.stalls += 1

    def record(self, surface: str, request: bytes, answer: Answer) -> None:
        status = answer.status
        self.stats[surface][status if status is not None else "no answer"] += 1
        if status is not None and 200 <= status < 300:
            self.secrets.learn(answer.raw)
            return
        if status is not None and status >= 500 and status not in DOCUMENTED_5XX:
            self.bad_5xx += 1
            self._problem("5xx", f"{surface} {status}: {request[:200]!r} -> {answer.raw[:300]!r}")
        if (secret := self.secrets.leaked(answer.raw)) is not None:
            self.leaks += 1
            at = answer.raw.find(secret)
            self._problem("leak", f"{surface} {status}: a secret ({len(secret)} bytes) at {at} of the answer "
                                  f"{answer.raw[:max(0, at)][-300:]!r}... to {request[:300]!r}")

    def _problem(self, kind: str, text: str) -> None:
        if sum(p.startswith(kind) for p in self.problems) < 10:
            self.problems.append(f"{kind}: {text}")

    def run(self, count: int, progress) -> dict:
        self.refresh_state()
        surfaces, weights = self.inputs, [WEIGHTS[s] for s in self.inputs]
        for i in range(count):
            if i % 1000 == 999:
                with progress.get_lock():
                    progress.value += 1000
            if i % 20000 == 19999:
                self.refresh_state()
            surface = self.rng.choices(surfaces, weights)[0]
            try:
                if surface == "control":
                    path, raw = self.gen_control()
                    self.record(surface, raw, self.control_exchange(path, raw))
                    continue
                peer, raw, head = getattr(self, f"gen_{surface}")()
                if self.rng.random() < MUTATE:
                    raw = mutate(raw, self.rng)
                    for part in _split(peer.send_once(raw).raw) or [b""]:
                        self.record(surface, raw, Answer(_status(part), part, True))
                    continue
                self.record(surface, raw, peer.send(raw, head=head))
            except Stalled:
                self.stalls += 1
                self.stats[surface]["stalled"] += 1
            except OSError as exc:  # refused connections mean a server is gone: the main process says so
                self.stats[surface][f"connect: {exc.__class__.__name__}"] += 1
                time.sleep(0.01)
        return {"sent": count, "stats": {k: dict(v) for k, v in self.stats.items()}, "problems": self.problems,
                "stalls": self.stalls, "leaks": self.leaks, "bad_5xx": self.bad_5xx}


def _work(index: int, seed: int, targets: dict, account: dict, admin: dict, count: int, out, progress,
          inputs: list[str]) -> None:
    out.put(Worker(index, seed, targets, account, admin, inputs).run(count, progress))


def _check_the_checker(account: dict, admin: dict) -> None:
    """The leak check must be able to fail: it flags a planted secret, and learns a served one."""
    secrets = Secrets([admin["secret_access_key"], account["demo"]["secret_access_key"]])
    planted = b'HTTP/1.1 403 Forbidden\r\n\r\n{"Message": "bad ' + account["demo"]["secret_access_key"].encode() + b'"}'
    served = b'{"AccessKeyId": "ASIAX", "SecretAccessKey": "' + b"S" * 40 + b'", "Token": "' + b"T" * 300 + b'"}'
    secrets.learn(served)
    if secrets.leaked(planted) is None or secrets.leaked(b"<Message>" + b"T" * 300 + b"</Message>") is None:
        raise SystemExit("soak: the leak check does not detect a planted secret")


# --- main --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--inputs", type=lambda text: text.split(","), default=list(WEIGHTS),
                        help=f"a comma-separated subset of {','.join(WEIGHTS)} (default: all)")
    args = parser.parse_args(argv)
    if unknown := set(args.inputs) - set(WEIGHTS):
        parser.error(f"--inputs: unknown {', '.join(sorted(unknown))} (known: {', '.join(WEIGHTS)})")
    print(f"soak: {args.requests:,} requests, {args.workers} workers, seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rolecall-soak-") as name:
        home = Path(name)
        (home / "run").mkdir(mode=0o700)
        env = isolated_env(home)
        log = open(home / "servers.log", "w")
        up, exports = start_up(env, "--audit-max-bytes", str(64 << 20), "--audit-keep", "2", stderr=log)
        processes = {"rolecall up": up}
        try:
            agent, imds2, container = _start_container_agent(home, env, log)
            processes["rolecall agent serve (container)"] = agent
            up_dir = home / "data" / "rolecall" / "up"
            account = json.loads((up_dir / "demo.json").read_text())
            admin = json.loads((up_dir / "admin.json").read_text())
            targets = {"imds": exports["AWS_EC2_METADATA_SERVICE_ENDPOINT"].removeprefix("http://").rstrip("/"),
                       "imds2": imds2, "container": container,
                       "container_token": (home / "run" / "container-token").read_text().strip(),
                       "sts": exports["AWS_ENDPOINT_URL_STS"].removeprefix("http://").rstrip("/"),
                       "control": str(home / "run" / "rolecall" / "agent.sock"),
                       "control2": str(home / "run" / "second.sock")}
            result = _soak(args, processes, targets, account, admin)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()
            audit = home / "data" / "rolecall" / "up" / "backend"
            sizes = sorted((p.name, p.stat().st_size) for p in audit.glob("audit.log*"))
            print("audit files at the end: " + ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in sizes))
            tail = (home / "servers.log").read_text().splitlines()
            errors = [line for line in tail if " ERROR " in line or "Traceback" in line]
            print(f"server log: {len(tail)} lines, {len(errors)} at ERROR or tracebacks")
            for line in errors[:10]:
                print("   ", line[:300])
    return result


def _soak(args, processes: dict, targets: dict, account: dict, admin: dict) -> int:
    _check_the_checker(account, admin)
    ctx = get_context("fork")
    out, progress = ctx.Queue(), ctx.Value("q", 0)
    share = [args.requests // args.workers + (i < args.requests % args.workers) for i in range(args.workers)]
    workers = [ctx.Process(target=_work, args=(i, args.seed, targets, account, admin, n, out, progress, args.inputs))
               for i, n in enumerate(share)]
    started = time.monotonic()
    for w in workers:
        w.start()
    rss: dict[str, list[int]] = {name: [] for name in processes}
    results, crashed, shown = [], {}, started
    while len(results) < len(workers):
        if time.monotonic() - shown >= 60:
            shown = time.monotonic()
            print(f"  {progress.value:,} requests after {shown - started:.0f} s; RSS "
                  + ", ".join(f"{n} {s[-1] / 1024:.1f} MiB" for n, s in rss.items() if s), flush=True)
        try:
            results.append(out.get(timeout=2))
        except Exception:  # queue.Empty: sample memory and liveness
            pass
        for name, process in processes.items():
            if process.poll() is not None:
                crashed.setdefault(name, process.returncode)
            elif (kib := _rss_kib(process.pid)) is not None:
                rss[name].append(kib)
        if crashed and not any(w.is_alive() for w in workers) and out.empty():
            break
    elapsed = time.monotonic() - started
    for w in workers:
        w.join(timeout=5)
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems, stalls, leaks, bad = [], 0, 0, 0
    for r in results:
        for surface, counts in r["stats"].items():
            totals[surface].update(counts)
        problems += r["problems"]
        stalls, leaks, bad = stalls + r["stalls"], leaks + r["leaks"], bad + r["bad_5xx"]
    sent = sum(r["sent"] for r in results)
    answers = sum(sum(c.values()) for c in totals.values())
    print(f"\n{sent:,} requests in {elapsed:.0f} s ({sent / elapsed:,.0f}/s); {answers:,} answers "
          "(a pipelined request gets several; 'no answer': closed without one)")
    for surface, counts in totals.items():
        shown = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"  {surface:9} {sum(counts.values()):>9,}  {shown}")
    for name, samples in rss.items():
        if samples:
            warm = samples[min(len(samples) - 1, max(1, len(samples) // 20))]
            print(f"  RSS {name}: {samples[0] / 1024:.1f} MiB at start, {warm / 1024:.1f} after warm-up, "
                  f"{samples[-1] / 1024:.1f} at the end (growth {(samples[-1] - warm) / 1024:+.1f} MiB), "
                  f"peak {max(samples) / 1024:.1f}")
    for name, process in processes.items():  # still alive now, just before we stop them?
        if process.poll() is not None:
            crashed.setdefault(name, process.returncode)
    print(f"\ncrashes: {len(crashed)}" + "".join(f"\n    {n} exited {c}" for n, c in crashed.items()))
    print(f"5xx other than 503 and 505: {bad}")
    print(f"secrets in refused answers: {leaks}")
    print(f"stalls (no answer within {TIMEOUT:.0f} s): {stalls}")
    for text in problems[:30]:
        print("   ", text)
    return 1 if crashed or bad or leaks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
