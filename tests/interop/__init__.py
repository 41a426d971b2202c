"""Interop tests: real third-party clients (botocore, the AWS SDK for JavaScript) against our code."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_MAJOR_MIN = 20  # @aws-sdk/* v3 declares engines node >= 20


@functools.cache
def _node_major(node: str) -> int | None:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.match(r"v(\d+)\.", out.strip())
    return int(found.group(1)) if found else None


def require_node(*modules: str) -> str:
    """The ``node`` executable for the JS SDK tests, or skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed: the JS SDK interop tests need it")
    major = _node_major(node)
    if major is None or major < NODE_MAJOR_MIN:
        pytest.skip(f"node {major or '?'} is too old: the AWS SDK for JavaScript v3 needs node >= {NODE_MAJOR_MIN}")
    missing = [m for m in modules if not (JS_DIR / "node_modules" / m).is_dir()]
    if missing:
        pytest.skip(f"JS SDK packages missing in {JS_DIR} ({', '.join(missing)}): run `make node`")
    return node
