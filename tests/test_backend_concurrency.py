"""The served backend keeps its event loop free while SQLite waits (real loopback sockets).

``sts_backend.server.serve`` runs the async ``Backend``: each call in a worker
thread, one at a time per lane (write lane: anything that may write; read lane:
calls that never write, on a read-only second connection). Here another SQLite
connection holds the database's write lock, as ``rolecall backend set-quota`` or a
second server would, while a CreateUser waits for it: identity checks, listings,
other connections and timers must carry on meanwhile. The hold is real time, kept
short (about a second).
"""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest
import trio

from sts_backend import server as backend_server
from sts_backend.app import Backend
from sts_backend.iam import bootstrap_admin
from sts_backend.store import DB_NAME, Store
from wire.clock import SystemClock
from wire.query import encode_form, parse_response
from wire.sigv4 import Credentials, SigV4Auth

ACCOUNT = "123456789012"
HOLD = 1.0  # seconds the write lock is held by another connection
VERSIONS = {"sts": "2011-06-15", "iam": "2010-05-08"}


class Served:
    """A store, a backend served on 127.0.0.1:0, and signed calls with the admin's key."""

    def __init__(self, data_dir) -> None:
        self.clock = SystemClock()
        self.data_dir = data_dir
        self.store = Store.create(data_dir, ACCOUNT, self.clock)
        _, key = bootstrap_admin(self.store)
        self.creds = Credentials(key.access_key_id, key.secret_access_key)
        self.backend = Backend(self.store, self.clock)
        self.url = ""
        self.stop = trio.Event()

    async def call(self, client: httpx.AsyncClient, service: str, action: str, **params) -> httpx.Response:
        form = {"Action": action, "Version": VERSIONS[service], **params}
        return await self.send(client, service, encode_form(form))

    async def send(self, client: httpx.AsyncClient, service: str, body: bytes) -> httpx.Response:
        """A signed POST of exactly ``body`` (to spell parameter names any way)."""
        auth = SigV4Auth(self.creds, "us-east-1", service, self.clock)
        return await client.post(self.url, content=body, auth=auth,
                                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


async def start_served(nursery, tmp_path) -> tuple[Served, trio.Event]:
    """The backend served as `rolecall backend serve` does; the event is set once serving ended."""
    running = Served(str(tmp_path / "data"))
    done = trio.Event()

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        try:
            await backend_server.serve(running.backend, ["127.0.0.1:0"], stop=running.stop, task_status=task_status)
        finally:
            done.set()

    running.url = (await nursery.start(serve))[0]
    return running, done


@pytest.fixture
async def served(nursery, tmp_path):
    running, done = await start_served(nursery, tmp_path)
    yield running
    running.stop.set()
    await done.wait()
    running.store.close()


def hold_write_lock(path) -> sqlite3.Connection:
    """Another connection holding the database's write lock (``BEGIN IMMEDIATE``) until ROLLBACK."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    return other


async def timed(coro) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = await coro
    return time.monotonic() - started, response


async def test_a_write_waiting_for_the_lock_stalls_neither_reads_nor_the_event_loop(served):
    lag = {"max": 0.0}
    writes: dict[str, tuple[float, httpx.Response]] = {}

    async def ticker(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        while True:
            before = time.monotonic()
            await trio.sleep(0.01)
            lag["max"] = max(lag["max"], time.monotonic() - before - 0.01)

    async with httpx.AsyncClient(timeout=10) as writer, httpx.AsyncClient(timeout=10) as reader:
        await served.call(reader, "sts", "GetCallerIdentity")  # connections and both lanes warm
        await served.call(writer, "iam", "ListUsers")
        lock = hold_write_lock(f"{served.data_dir}/{DB_NAME}")
        held_at = time.monotonic()
        async with trio.open_nursery() as nursery:
            await nursery.start(ticker)

            async def create_user():
                writes["create"] = await timed(served.call(writer, "iam", "CreateUser", UserName="waiting"))

            nursery.start_soon(create_user)
            await trio.sleep(0.1)  # CreateUser is now waiting for the lock in the write lane
            identity_time, identity = await timed(served.call(reader, "sts", "GetCallerIdentity"))
            listing_time, listing = await timed(served.call(reader, "iam", "ListUsers"))
            probed_at, write_pending = time.monotonic(), "create" not in writes
            await trio.sleep(max(0.0, HOLD - (time.monotonic() - held_at)))
            lock.execute("ROLLBACK")
            lock.close()
            while "create" not in writes:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert lag["max"] < HOLD / 4, f"the event loop stalled for {lag['max']:.2f} s"
        assert probed_at - held_at < HOLD / 2, f"the probes ended {probed_at - held_at:.2f} s into the hold"
        assert identity.status_code == 200 and listing.status_code == 200
        assert identity_time < HOLD / 4 and listing_time < HOLD / 4, (identity_time, listing_time)
        assert write_pending, "the write did not wait for the lock: the test proves nothing"
        create_time, created = writes["create"]
        assert created.status_code == 200, created.text
        assert create_time > HOLD * 0.8   # it really waited for the lock all along
        got = await served.call(reader, "iam", "GetUser", UserName="waiting")   # read lane sees the commit
        assert parse_response(got.content, "GetUser")["User"]["UserName"] == "waiting"


def record_lanes(monkeypatch) -> dict:
    """Instrument ``Backend.handle``: per backend, the peak of calls in progress, the threads
    and the actions it ran (a 2 ms pause widens the window a second caller would need)."""
    seen = {"active": {}, "peak": {}, "threads": {}, "actions": {}}
    guard = threading.Lock()
    handle = Backend.handle

    def counted(self, req, params=None):
        key = id(self)
        with guard:
            seen["active"][key] = seen["active"].get(key, 0) + 1
            seen["peak"][key] = max(seen["peak"].get(key, 0), seen["active"][key])
            seen["threads"].setdefault(key, set()).add(threading.current_thread())
            seen["actions"].setdefault(key, []).append(req.body.split(b"&")[0].decode())
        try:
            time.sleep(0.002)
            return handle(self, req, params)
        finally:
            with guard:
                seen["active"][key] -= 1

    monkeypatch.setattr(Backend, "handle", counted)
    return seen


async def test_each_lane_runs_one_call_at_a_time(served, monkeypatch):
    """A Store's connection is never used by two threads at once, under a burst of mixed calls."""
    seen = record_lanes(monkeypatch)
    results = []
    async with httpx.AsyncClient(timeout=10) as client:
        async def one(i: int):
            if i % 3 == 0:
                results.append(await served.call(client, "iam", "CreateUser", UserName=f"u{i}"))
            elif i % 3 == 1:
                results.append(await served.call(client, "iam", "ListUsers"))
            else:
                results.append(await served.call(client, "sts", "GetCallerIdentity"))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
    assert [r.status_code for r in results] == [200] * 30
    writer, reader = id(served.backend), id(served.backend._reader)
    assert set(seen["peak"]) == {writer, reader} and seen["peak"][writer] == seen["peak"][reader] == 1
    assert threading.main_thread() not in seen["threads"][writer]   # writes never run on the event loop
    assert seen["threads"][reader] == {threading.main_thread()}     # reads run inline: no lock waits there
    assert set(seen["actions"][writer]) == {"Action=CreateUser"}
    assert set(seen["actions"][reader]) == {"Action=ListUsers", "Action=GetCallerIdentity"}


async def test_lane_routing(served, monkeypatch):
    """Reads (AssumeRole included) take the read lane; writes and MFA codes the write lane."""
    from sts_backend.app import READ_ONLY_ACTIONS

    seen = record_lanes(monkeypatch)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await served.call(client, "iam", "CreateUser", UserName="w")).status_code == 200
        assert served.backend._reader is None                 # no read yet: no second connection
        assert (await served.call(client, "sts", "GetCallerIdentity")).status_code == 200
        reader = served.backend._reader
        assert reader is not None and reader.store is not served.store
        with pytest.raises(sqlite3.OperationalError):         # the read lane cannot write, by construction
            reader.store.create_user("nope")
        trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"%s"},'
                 '"Action":"sts:AssumeRole"}]}' % ACCOUNT)
        role = await served.call(client, "iam", "CreateRole", RoleName="r", AssumeRolePolicyDocument=trust)
        arn = parse_response(role.content, "CreateRole")["Role"]["Arn"]
        plain = await served.call(client, "sts", "AssumeRole", RoleArn=arn, RoleSessionName="s1")
        with_code = await served.call(client, "sts", "AssumeRole", RoleArn=arn, RoleSessionName="s1",
                                      SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/none", TokenCode="123456")
        assert plain.status_code == 200 and with_code.status_code == 403, (plain.text, with_code.text)
        last = await served.call(client, "iam", "GetAccessKeyLastUsed", AccessKeyId=served.creds.access_key_id)
        assert last.status_code == 200
    assert seen["actions"][id(served.backend)] == ["Action=CreateUser", "Action=CreateRole", "Action=AssumeRole",
                                                   "Action=GetAccessKeyLastUsed"]
    assert seen["actions"][id(reader)] == ["Action=GetCallerIdentity", "Action=AssumeRole"]
    assert READ_ONLY_ACTIONS["sts"] == {"GetCallerIdentity", "GetAccessKeyInfo", "AssumeRole", "GetSessionToken",
                                        "GetFederationToken"}
    assert "ListUsers" in READ_ONLY_ACTIONS["iam"] and "GetAccessKeyLastUsed" not in READ_ONLY_ACTIONS["iam"]
    writes = ("Create", "Put", "Delete", "Update", "Attach", "Detach", "Tag", "Untag", "Enable", "Resync",
              "Deactivate", "Add", "Remove", "Set")
    assert not any(a.startswith(writes) for a in READ_ONLY_ACTIONS["iam"])


async def test_an_mfa_code_takes_the_write_lane_however_its_name_is_spelt(served, monkeypatch):
    """Percent-encoding a letter of TokenCode once put the call on the read-only lane: a wrong code got
    403, the right one 503 without being consumed (an oracle that never uses the code up)."""
    import base64

    import pyotp

    async with httpx.AsyncClient(timeout=10) as client:
        device = parse_response((await served.call(client, "iam", "CreateVirtualMFADevice",
                                                   VirtualMFADeviceName="admin-mfa")).content,
                                "CreateVirtualMFADevice")["VirtualMFADevice"]
        seed = base64.b64decode(device["Base32StringSeed"]).decode()
        totp, now = pyotp.TOTP(seed), served.clock.now()
        user = parse_response((await served.call(client, "iam", "GetUser")).content, "GetUser")["User"]["UserName"]
        enabled = await served.call(client, "iam", "EnableMFADevice", UserName=user, SerialNumber=device["SerialNumber"],
                                    AuthenticationCode1=totp.at(now.timestamp() - 60),
                                    AuthenticationCode2=totp.at(now.timestamp() - 30))
        assert enabled.status_code == 200, enabled.text
        seen = record_lanes(monkeypatch)
        serial = device["SerialNumber"].replace(":", "%3A").replace("/", "%2F")
        body = (f"Action=GetSessionToken&Version=2011-06-15&Serial%4Eumber={serial}&Token%43ode="
                f"{totp.at(now.timestamp())}").encode()
        first = await served.send(client, "sts", body)
        again = await served.send(client, "sts", body)
    assert first.status_code == 200, first.text
    assert again.status_code == 403 and b"invalid MFA one time pass code" in again.content  # consumed: used once
    assert seen["actions"][id(served.backend)] == ["Action=GetSessionToken"] * 2   # both on the write lane


async def test_read_lane_key_use_reaches_get_access_key_last_used(served):
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await served.call(client, "sts", "GetCallerIdentity")).status_code == 200   # read lane
        out = await served.call(client, "iam", "GetAccessKeyLastUsed", AccessKeyId=served.creds.access_key_id)
    last = parse_response(out.content, "GetAccessKeyLastUsed")["AccessKeyLastUsed"]
    assert last["ServiceName"] in ("sts", "iam") and "LastUsedDate" in last


def test_reader_store_shares_the_key_use_buffer_and_never_flushes(tmp_path):
    import datetime as dt

    with Store.create(str(tmp_path / "data"), ACCOUNT) as store:
        _, key = bootstrap_admin(store)
        reader = store.reader()
        try:
            when = dt.datetime.now(dt.timezone.utc)
            reader.record_key_use(key.access_key_id, "sts", "eu-west-1", when)
            reader.flush_key_use()           # a reader never writes ...
            used = store.key_last_used(key.access_key_id)   # ... its writer does
            assert (used.service, used.region) == ("sts", "eu-west-1")
        finally:
            reader.close()


async def test_key_uses_are_written_in_the_background_never_by_a_request(tmp_path, autojump_clock):
    """``Backend.maintain`` (virtual time): a request only buffers its key's use; a minute later the
    background task writes it, where another connection (another process, a replica) reads it."""
    import datetime as dt

    from sts_backend.store_keys import KEY_USE_FLUSH_SECONDS

    with Store.create(str(tmp_path / "data"), ACCOUNT) as store:
        _, key = bootstrap_admin(store)
        backend = Backend(store, SystemClock())
        store.record_key_use(key.access_key_id, "sts", "eu-west-1", dt.datetime.now(dt.timezone.utc))
        with Store.open(str(tmp_path / "data")) as other:
            def written() -> bool:
                row = other.db.conn.execute("SELECT last_used FROM access_keys WHERE access_key_id = ?",
                                            (key.access_key_id,)).fetchone()
                return row[0] is not None

            async with trio.open_nursery() as nursery:
                await nursery.start(backend.maintain)
                await trio.sleep(KEY_USE_FLUSH_SECONDS - 1)
                assert not written()                      # buffered: nothing on the request's path
                for _ in range(400):                      # the batch runs in a worker thread: give it
                    await trio.to_thread.run_sync(time.sleep, 0.005)   # real time (up to 2 s)
                    if written():
                        break
                assert written()                          # the background batch
                nursery.cancel_scope.cancel()


async def test_closing_the_server_closes_the_read_lane(nursery, tmp_path):
    running, done = await start_served(nursery, tmp_path)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await running.call(client, "sts", "GetCallerIdentity")).status_code == 200
    reader = running.backend._reader
    assert reader is not None
    running.stop.set()
    await done.wait()
    assert running.backend._reader is None
    with pytest.raises(sqlite3.ProgrammingError):
        reader.store.db.conn.execute("SELECT 1")
    running.store.close()
