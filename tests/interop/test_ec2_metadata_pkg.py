"""Two unrelated IMDS clients read rolecall: the ``ec2-metadata`` PyPI package and Debian's script.

Both hard-code the link-local address, so both are pointed at the loopback
server *before* they can send anything:

- ``ec2_metadata.EC2Metadata`` keeps it in four attributes (``service_url``,
  ``dynamic_url``, ``metadata_url``, ``userdata_url``), set in ``__init__``
  without any request; all four are replaced before any property is touched,
  and the package only runs in this process, under the net guard.
- amazon-ec2-utils' ``ec2-metadata`` is a bash script with
  ``METADATA_BASEURL="http://169.254.169.254"`` and no override. It runs only
  as a temporary copy with that line rewritten to the loopback server, after
  checking that no link-local address is left in the copy, and with proxies off.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from metadata_server import ImdsHandler, MetadataConfig
from tests.imds_support import Recorder, SimpleHolder, running, sample_credentials
from wire.clock import SystemClock

pytestmark = pytest.mark.interop

CONFIG = dict(region="eu-central-1", availability_zone="eu-central-1b", instance_id="i-0abcdef1234567890")


async def test_ec2_metadata_package_reads_region_and_instance_id():
    ec2_metadata = pytest.importorskip("ec2_metadata", reason="pip install ec2-metadata (test extra)")
    creds = sample_credentials(SystemClock().now())
    handler = Recorder(ImdsHandler(MetadataConfig(**CONFIG), SimpleHolder(creds), SystemClock()))
    async with running(handler) as (address,):
        client = ec2_metadata.EC2Metadata()
        base = f"http://{address}/latest/"
        client.service_url = base
        client.dynamic_url = base + "dynamic/"
        client.metadata_url = base + "meta-data/"
        client.userdata_url = base + "user-data/"
        assert not any("169.254" in getattr(client, name) for name in vars(client) if name.endswith("_url"))

        def read():
            return (
                client.region,
                client.instance_id,
                client.availability_zone,
                client.account_id,
                client.instance_profile_name,
                client.iam_security_credentials,
            )

        region, instance_id, zone, account, profile, secrets = await trio.to_thread.run_sync(read)
    assert (region, instance_id, zone) == ("eu-central-1", "i-0abcdef1234567890", "eu-central-1b")
    assert account == "123456789012"
    assert profile == creds.role_name
    assert secrets["SecretAccessKey"] == creds.secret_access_key
    assert handler.requests[0].method == "PUT"  # IMDSv2 from the start
    assert all(r.header("x-aws-ec2-metadata-token") for r in handler.requests[1:])


DEBIAN_SCRIPT = Path("/usr/bin/ec2-metadata")


def loopback_copy(tmp_path: Path, address: str) -> Path:
    """The Debian script with its base URL rewritten to ``address``; refuses if anything else points off-host."""
    text = DEBIAN_SCRIPT.read_text()
    line = 'METADATA_BASEURL="http://169.254.169.254"'
    if text.count(line) != 1:
        pytest.skip("this amazon-ec2-utils version cannot be pointed at loopback (base URL line not found)")
    text = text.replace(line, f'METADATA_BASEURL="http://{address}"')
    assert not re.search(r"169\.254\.|fd00:ec2", text), "the script still names a link-local address"
    copy = tmp_path / "ec2-metadata"
    copy.write_text(text)
    copy.chmod(0o700)
    return copy


async def test_debian_ec2_metadata_script(tmp_path):
    if not DEBIAN_SCRIPT.is_file() or "METADATA_BASEURL" not in DEBIAN_SCRIPT.read_text(errors="replace"):
        pytest.skip("Debian amazon-ec2-utils not installed (apt-get install amazon-ec2-utils)")
    creds = sample_credentials(SystemClock().now())
    handler = Recorder(ImdsHandler(MetadataConfig(**CONFIG), SimpleHolder(creds), SystemClock()))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(NO_PROXY="*", AWS_EC2_METADATA_DISABLED="true")
    async with running(handler) as (address,):
        script = loopback_copy(tmp_path, address)
        result = await trio.run_process(
            [str(script), "--instance-id", "--availability-zone"], capture_stdout=True, capture_stderr=True,
            env=env, check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "instance-id: i-0abcdef1234567890" in out
    assert "placement: eu-central-1b" in out
    assert handler.requests[0].method == "PUT"
    assert handler.requests[0].header("x-aws-ec2-metadata-token-ttl-seconds") == "900"
