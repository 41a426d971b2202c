#!/usr/bin/env python3
"""Extract the input constraints of STS and IAM from botocore's service models.

Writes ``sts_backend/model/sts.json`` and ``sts_backend/model/iam.json``: for
every operation its input shape, and every shape reachable from an input with
only what validation needs -- type, min/max (length, value or size), pattern,
enum, sensitive, structure members (in model order) and required members, list
member, map key/value. Documentation, outputs and errors are dropped. Members
that carry secrets but are not marked ``sensitive`` in the model (MFA codes,
context assertions) are listed per structure in ``sensitiveMembers`` so error
messages never echo them.

The models come from the botocore that ``constraints.txt`` pins (``make venv``
installs it; ``make model`` runs this tool with the venv's python); the tool
refuses to run on any other. The version is recorded in the files, and
``tests/test_validation.py`` fails unless the installed botocore is the pinned
one and the committed files equal this tool's output.

Usage: python tools/gen_model_constraints.py [--check]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

SERVICES = {"sts": "2011-06-15", "iam": "2010-05-08"}
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "sts_backend" / "model"
CONSTRAINTS = ROOT / "constraints.txt"

# Secrets the models do not mark sensitive; never echoed in a ValidationError.
EXTRA_SENSITIVE_MEMBERS = frozenset(
    {"TokenCode", "AuthenticationCode1", "AuthenticationCode2", "ContextAssertion"}
)
_KEPT = ("min", "max", "pattern", "enum", "sensitive")
# Serialisation traits this codec does not implement: fail loudly, never guess.
_UNSUPPORTED = ("locationName", "flattened", "queryName", "xmlName", "xmlAttribute")


def pinned_botocore() -> str:
    """The botocore version ``constraints.txt`` pins (``botocore==X.Y.Z``)."""
    for line in CONSTRAINTS.read_text("utf-8").splitlines():
        found = re.fullmatch(r"\s*botocore\s*==\s*([\w.]+)\s*(?:#.*)?", line)
        if found:
            return found.group(1)
    raise SystemExit(f"{CONSTRAINTS}: no 'botocore==VERSION' line")


def installed_botocore() -> str:
    """The version of the importable ``botocore`` package.

    Once ``awscli`` is imported, the pinned release (which vendors botocore)
    makes ``import botocore`` load its own copy, of another version: refuse
    that rather than generate from it.
    """
    import botocore

    if "awscli" in Path(botocore.__file__).parts:
        raise SystemExit(f"botocore resolves to awscli's vendored copy ({botocore.__file__}); "
                         "run this tool in a fresh interpreter")
    return botocore.__version__


def version_mismatch() -> str | None:
    """Why the installed botocore is not the pinned one, or None when it is."""
    pinned, installed = pinned_botocore(), installed_botocore()
    if pinned == installed:
        return None
    return (f"botocore {installed} is installed but constraints.txt pins {pinned}: "
            "run `make venv` (pip install -c constraints.txt -e '.[test]')")


def load_model(service: str) -> tuple[dict, str]:
    """The botocore service model of ``service`` and botocore's version."""
    import botocore

    installed_botocore()
    base = Path(botocore.__file__).parent / "data" / service / SERVICES[service]
    plain, packed = base / "service-2.json", base / "service-2.json.gz"
    if plain.exists():
        text = plain.read_text("utf-8")
    else:
        with gzip.open(packed, "rt", encoding="utf-8") as f:
            text = f.read()
    return json.loads(text), botocore.__version__


def _check_supported(where: str, spec: dict) -> None:
    bad = [k for k in _UNSUPPORTED if k in spec]
    if bad:
        raise SystemExit(f"{where}: unsupported Query trait(s) {bad}; extend wire.query first")


def _slim(name: str, shape: dict) -> dict:
    kind = shape["type"]
    out: dict = {"type": kind}
    out.update({k: shape[k] for k in _KEPT if k in shape})
    _check_supported(name, shape)
    if kind == "structure":
        members = shape["members"]
        for member, spec in members.items():
            _check_supported(f"{name}.{member}", spec)
        out["members"] = {m: spec["shape"] for m, spec in members.items()}
        if shape.get("required"):
            out["required"] = list(shape["required"])
        extra = [m for m in members if m in EXTRA_SENSITIVE_MEMBERS]
        if extra:
            out["sensitiveMembers"] = extra
        if shape.get("union"):
            out["union"] = True
    elif kind == "list":
        _check_supported(f"{name}.member", shape["member"])
        out["member"] = shape["member"]["shape"]
    elif kind == "map":
        _check_supported(f"{name}.key", shape["key"])
        _check_supported(f"{name}.value", shape["value"])
        out["key"], out["value"] = shape["key"]["shape"], shape["value"]["shape"]
    return out


def _collect(name: str, shapes: dict, keep: dict) -> None:
    if name in keep:
        return
    slim = keep[name] = _slim(name, shapes[name])
    children = list(slim.get("members", {}).values())
    children += [slim[k] for k in ("member", "key", "value") if k in slim]
    for child in children:
        _collect(child, shapes, keep)


def build(service: str, model: dict, botocore_version: str) -> dict:
    """The compact constraint model of ``service``."""
    meta = model["metadata"]
    if meta.get("protocol") != "query":
        raise SystemExit(f"{service}: protocol {meta.get('protocol')!r}, expected 'query'")
    operations: dict = {}
    keep: dict = {}
    for op in sorted(model["operations"]):
        inp = model["operations"][op].get("input", {}).get("shape")
        operations[op] = inp
        if inp:
            _collect(inp, model["shapes"], keep)
    return {
        "service": service,
        "apiVersion": meta["apiVersion"],
        "xmlNamespace": meta["xmlNamespace"],
        "botocoreVersion": botocore_version,
        "operations": operations,
        "shapes": dict(sorted(keep.items())),
    }


def render(data: dict) -> str:
    """Stable JSON: one operation or shape per line, so diffs stay readable."""
    def line(value) -> str:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))

    head = {k: v for k, v in data.items() if k not in ("operations", "shapes")}
    out = ["{"] + [f"{line(k)}:{line(v)}," for k, v in head.items()]
    for section in ("operations", "shapes"):
        items = list(data[section].items())
        out.append(f"{line(section)}:{{")
        out += [f"{line(k)}:{line(v)}{',' if i < len(items) - 1 else ''}"
                for i, (k, v) in enumerate(items)]
        out.append("}," if section == "operations" else "}")
    out.append("}")
    return "\n".join(out) + "\n"


def generate(service: str) -> str:
    """The file content for ``service`` from the installed botocore."""
    model, version = load_model(service)
    return render(build(service, model, version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed files differ from the output")
    args = parser.parse_args(argv)
    mismatch = version_mismatch()
    if mismatch:
        print(mismatch, file=sys.stderr)
        return 2
    status = 0
    for service in SERVICES:
        path = OUT_DIR / f"{service}.json"
        text = generate(service)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                print(f"{path} is out of date", file=sys.stderr)
                status = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path} ({len(text)} bytes)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
