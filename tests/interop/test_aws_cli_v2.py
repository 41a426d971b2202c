"""Debian 12's AWS CLI v2 (2.9.19, ``/usr/bin/aws``) against ``rolecall up``, configured by its export lines.

That CLI's botocore joins ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and ``latest/api/token``
without adding a slash (newer botocore adds one), so an endpoint printed without a
trailing ``/`` gives ``http://127.0.0.1:8169latest/api/token`` ("Invalid endpoint").
The CLI runs with nothing but the printed ``export`` lines, ``PATH`` and a ``HOME``
(and ``AWS_CONFIG_FILE``) in an empty temp folder: no other ``AWS_*`` variable.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

from tests.test_up import start_up

pytestmark = pytest.mark.interop

AWS_V2 = Path("/usr/bin/aws")  # Debian's AWS CLI v2 (the venv's `aws` is the PyPI CLI v1)


async def test_debian_cli_v2_finds_the_role_through_the_printed_imds_endpoint(nursery, tmp_path):
    if not AWS_V2.exists():
        pytest.skip("Debian's AWS CLI v2 (/usr/bin/aws) not installed (make test installs awscli when root)")
    up = await start_up(tmp_path / "up", nursery)
    home = tmp_path / "cli-home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "AWS_CONFIG_FILE": str(home / "config"), **up.exports}
    # CLI 2.9.19 predates AWS_ENDPOINT_URL_<SERVICE> (it came with CLI 2.13 / botocore 1.31): it ignores
    # AWS_ENDPOINT_URL_STS and would send GetCallerIdentity to https://sts.us-east-1.amazonaws.com. So the
    # STS call alone is given the printed value with --endpoint-url; the credentials come from the IMDS
    # export line alone.
    done = await trio.run_process(
        [str(AWS_V2), "--endpoint-url", up.exports["AWS_ENDPOINT_URL_STS"], "--no-cli-pager", "--output", "json",
         "sts", "get-caller-identity"], env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert await up.stop(signal.SIGTERM) == 0
    assert done.returncode == 0, done.stderr.decode()
    role_arn = json.loads((tmp_path / "up" / "demo.json").read_text())["role_arn"]  # arn:aws:iam::N:role/...
    account = role_arn.split(":")[4]
    # only the agent's IMDS hands out this role session's credentials
    assert json.loads(done.stdout)["Arn"] == f"arn:aws:sts::{account}:assumed-role/rolecall-demo/rolecall-up"
