"""The audit log: bounded lines for what anyone can send, rotation, reopening, a writer off the event loop."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading

import pytest
import trio

from sts_backend.audit import MAX_PARAMS_CHARS, AuditLog, AuditRecord
from tests.test_sts_ops import Kit, expect

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_an_unsigned_half_megabyte_post_leaves_a_few_hundred_bytes(kit):
    import httpx

    path = os.path.join(kit.data_dir, "audit.log")
    before = os.path.getsize(path)
    junk = b"Action=" + b"A" * 1000 + b"&Version=2011-06-15&Junk=" + b"x" * (512 * 1024)
    with httpx.Client(transport=httpx.MockTransport(kit.backend.handle_httpx)) as http:
        response = http.post("http://127.0.0.1:8900/", content=junk, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIACLAIMEDBYANYONE/20260101/us-east-1/sts/aws4_request, "
                             "SignedHeaders=host, Signature=" + "0" * 64})
    assert 400 <= response.status_code < 500
    grown = os.path.getsize(path) - before
    line = _lines(path)[-1]
    assert grown < 600, grown
    assert "params" not in line and line["param_count"] == 3 and line["request_bytes"] == len(junk)
    assert line["claimed_access_key_id"] == "AKIACLAIMEDBYANYONE" and "access_key_id" not in line
    assert len(line["action"]) == 128 and line["outcome"] == "error"


def test_an_authenticated_call_keeps_its_parameters_within_a_budget(kit):
    expect("ValidationError", kit.admin.iam, "CreateUser", UserName="u" * 65)
    line = _lines(os.path.join(kit.data_dir, "audit.log"))[-1]
    assert line["params"]["UserName"] == "u" * 65 and line["access_key_id"] == kit.admin.creds.access_key_id
    record = AuditRecord(time=T, request_id="r", authenticated=True,
                         params={f"Tags.member.{i}.Value": "v" * 4000 for i in range(20)})
    doc = json.loads(record.to_json())
    assert len(json.dumps(doc["params"])) < MAX_PARAMS_CHARS + 200
    assert doc["params"]["..."].endswith("more parameters left out")


def test_rotation_by_size_keeps_a_bounded_number_of_files(tmp_path):
    log = AuditLog(tmp_path / "audit.log", max_bytes=1000, keep=2)
    for i in range(60):
        log.write(AuditRecord(time=T, request_id=f"req-{i:03d}"))
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(os.path.getsize(tmp_path / n) <= 1000 for n in names)
    assert _lines(tmp_path / "audit.log")[-1]["request_id"] == "req-059"
    assert all(os.stat(tmp_path / n).st_mode & 0o777 == 0o600 for n in names)


def test_reopen_after_an_outside_rotation(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    log.write(AuditRecord(time=T, request_id="before"))
    os.rename(tmp_path / "audit.log", tmp_path / "audit.log.old")  # logrotate, no copytruncate
    log.write(AuditRecord(time=T, request_id="moved"))
    log.reopen()
    log.write(AuditRecord(time=T, request_id="after"))
    log.close()
    assert [r["request_id"] for r in _lines(tmp_path / "audit.log.old")] == ["before", "moved"]
    assert [r["request_id"] for r in _lines(tmp_path / "audit.log")] == ["after"]


def test_a_symlinked_audit_log_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / "audit.log")
    with pytest.raises(OSError):
        AuditLog(tmp_path / "audit.log")


async def test_writes_from_the_event_loop_go_to_the_writer_thread(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    gate = threading.Lock()
    real = log._write_line

    def slow(line):  # the disk stalls: the event loop must not notice
        with gate:
            real(line)

    log._write_line = slow
    with gate:
        started = trio.current_time()
        for i in range(100):
            log.write(AuditRecord(time=T, request_id=f"r{i}"))
        assert trio.current_time() - started < 0.5  # queued, not written
    await trio.to_thread.run_sync(log.flush)
    log.close()
    assert [r["request_id"] for r in _lines(tmp_path / "audit.log")] == [f"r{i}" for i in range(100)]
    assert log._writer is not None and not log._writer.is_alive()


def test_lines_that_cannot_be_written_are_counted_then_reported(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    real, failing = log._write_line, [True]

    def full(line):
        if failing[0]:
            raise OSError(28, "No space left on device")
        real(line)

    log._write_line = full
    for i in range(3):
        log.write(AuditRecord(time=T, request_id=f"lost-{i}"))  # never raises
    with pytest.raises(OSError), log.change(AuditRecord(time=T, request_id="a change")) as write_line:
        write_line()  # the caller must know: its change is not committed
    failing[0] = False
    log.write(AuditRecord(time=T, request_id="back"))
    log.close()
    lines = _lines(tmp_path / "audit.log")
    assert lines[0]["event"] == "audit_dropped" and lines[0]["count"] == 3
    assert lines[1]["request_id"] == "back"


def test_a_change_whose_commit_fails_has_its_line_taken_back(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    log.write(AuditRecord(time=T, request_id="kept"))
    with pytest.raises(RuntimeError), log.change(AuditRecord(time=T, request_id="lost")) as write_line:
        write_line()
        assert _lines(tmp_path / "audit.log")[-1]["request_id"] == "lost"  # synced before the commit
        raise RuntimeError("the commit failed")
    with log.change(AuditRecord(time=T, request_id="committed")) as write_line:
        write_line()
    log.close()
    assert [r["request_id"] for r in _lines(tmp_path / "audit.log")] == ["kept", "committed"]
