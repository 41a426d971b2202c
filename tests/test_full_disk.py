"""The backend on a disk that fills up: reads answer, changes fail cleanly with 503, all recovers.

``rolecall backend serve`` runs in a mount namespace of its own (``unshare -m``)
on a 4 MiB tmpfs that holds its data dir and audit log; the test fills that
disk through ``/proc/PID/root`` and frees it again. Nothing is mounted in the
test's own namespace, so nothing can be left behind. Skipped, with the reason,
where mount namespaces are not allowed (not root, a locked-down container).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parent.parent
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=15)


def _namespaces_allowed() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1) for a private tmpfs"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"mount namespaces not allowed here: {probe.stderr.strip()}"


@pytest.fixture
def backend_on_a_small_disk():
    reason = _namespaces_allowed()
    if reason:
        pytest.skip(reason)
    mount = tempfile.mkdtemp(prefix="rolecall-full-")
    script = (f"mount -t tmpfs -o size=4m,mode=0700 tmpfs {mount} && "
              f"{sys.executable} -m cli.main backend init --data-dir {mount}/data && "
              f"exec {sys.executable} -m cli.main backend serve --data-dir {mount}/data --listen 127.0.0.1:0")
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    admin = json.loads(proc.stdout.readline())
    deadline, url = time.monotonic() + 30, None
    while url is None and time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", proc.stderr.readline())
        url = found.group(1) if found else None
    assert url, "the backend did not start"
    root = Path(f"/proc/{proc.pid}/root{mount}")  # the tmpfs, seen from outside its namespace
    try:
        yield url, admin, root
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.rmdir(mount)


def _client(url, admin, service):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=NO_RETRY,
                        aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])


def _fill(root: Path) -> Path:
    filler = root / "filler"
    # Unbuffered: a buffered file would keep the bytes the full disk refused and fail again
    # on close, depending on whether the free space happened to be a multiple of the chunk.
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_changes_fail_with_503_reads_answer_and_it_all_recovers(backend_on_a_small_disk):
    url, admin, root = backend_on_a_small_disk
    iam, sts = _client(url, admin, "iam"), _client(url, admin, "sts")
    iam.create_user(UserName="before")
    filler = _fill(root)
    for name in ("during-1", "during-2"):
        with pytest.raises(ClientError) as info:
            iam.create_user(UserName=name)
        error = info.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503, error
        assert error["Error"]["Code"] == "ServiceUnavailable" and "disk is full" in error["Error"]["Message"]
    names = {u["UserName"] for u in iam.list_users()["Users"]}  # reads still answer ...
    assert "before" in names and not names & {"during-1", "during-2"}  # ... and nothing half-made
    assert sts.get_caller_identity()["Arn"].endswith(":user/admin")
    filler.unlink()  # space returns: no restart needed
    key = iam.create_access_key(UserName=iam.create_user(UserName="after")["User"]["UserName"])["AccessKey"]
    assert key["AccessKeyId"] and {"before", "after"} <= {u["UserName"] for u in iam.list_users()["Users"]}
    lines = [json.loads(line) for line in (root / "data" / "audit.log").read_text().splitlines()]
    created = [r["params"].get("UserName") for r in lines if r.get("action") == "CreateUser" and r["outcome"] == "ok"]
    assert created == ["before", "after"]  # every change kept has its line; none without one
