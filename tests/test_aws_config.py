"""The shared AWS config files and a profile's plan (wire.aws_config)."""

from __future__ import annotations

import itertools
import os
import re
import textwrap
from pathlib import Path

import pytest

from wire.aws_config import (CHAINED_ROLE_LIMIT, AwsConfig, ProfileError, ProfilePlan, RoleStep, Source,
                             config_paths)

# Fake values: distinctive enough that a leak into a message, repr or cache key is unmistakable.
KEY_ID = "AKIAEXAMPLEKEY000001"
OTHER_KEY_ID = "AKIAEXAMPLEKEY000002"
SECRET = "sEcReT/Example+Key=zz0001"
TOKEN = "ToKeN/session+value==0001"
EXTERNAL_ID = "ExTeRnAl-id-0001"
MFA1 = "arn:aws:iam::123456789012:mfa/alice"
MFA2 = "arn:aws:iam::123456789012:mfa/bob"
KEYS = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}


def arn(name: str) -> str:
    return f"arn:aws:iam::123456789012:role/{name}"


def ini(sections: dict[str, dict[str, object]]) -> str:
    """INI text; a dict value is written as an indented nested table."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, dict):
                lines.append(f"{key} =")
                lines.extend(f"  {k} = {v}" for k, v in value.items())
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def write(home: Path, config: str | None = None, credentials: str | None = None) -> None:
    aws = home / ".aws"
    aws.mkdir(exist_ok=True)
    if config is not None:
        (aws / "config").write_text(textwrap.dedent(config))
    if credentials is not None:
        (aws / "credentials").write_text(textwrap.dedent(credentials))


def load(home: Path, config: str | None = None, credentials: str | None = None,
         env: dict[str, str] | None = None) -> AwsConfig:
    write(home, config, credentials)
    environ = dict(os.environ)
    environ.update(env or {})
    return AwsConfig.load(environ)


def plan(home: Path, profiles: dict[str, dict[str, object]], name: str = "a", *,
         credentials: dict[str, dict[str, object]] | None = None, services: dict | None = None,
         env: dict[str, str] | None = None, stored=frozenset()) -> ProfilePlan:
    """Write ``profiles`` (``default`` or ``[profile X]``) and plan ``name``."""
    sections = {(p if p == "default" else f"profile {p}"): v for p, v in profiles.items()}
    sections.update({f"services {s}": v for s, v in (services or {}).items()})
    config = load(home, ini(sections), ini(credentials) if credentials is not None else None, env)
    return config.plan(name, stored=stored)


def plan_error(home: Path, profiles, name: str = "a", **kwargs) -> str:
    with pytest.raises(ProfileError) as info:
        plan(home, profiles, name, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def home(aws_sandbox) -> Path:
    return aws_sandbox


# ---- parsing -----------------------------------------------------------------------------

def test_default_and_profile_sections_are_profiles_other_sections_are_not(home):
    config = load(home, """
        [default]
        region = us-east-1

        [profile dev]
        region = eu-west-1

        [dev]
        region = not-a-profile-in-the-config-file

        [preview]
        cloudfront = true

        [profile too many words]
        region = ignored
    """)
    assert config.profiles == {"default": {"region": "us-east-1"}, "dev": {"region": "eu-west-1"}}
    assert "dev" in config and "preview" not in config and "profile dev" not in config
    assert config.services == {}


def test_every_credentials_section_is_a_profile_and_overrides_the_config_file(home):
    config = load(home, """
        [profile dev]
        region = eu-west-1
        aws_access_key_id = AKIAFROMCONFIGFILE01
        output = json
    """, f"""
        [dev]
        aws_access_key_id = {KEY_ID}
        aws_secret_access_key = {SECRET}

        [default]
        aws_access_key_id = {OTHER_KEY_ID}

        [profile odd]
        region = here
    """)
    assert config.profiles["dev"] == {"region": "eu-west-1", "aws_access_key_id": KEY_ID,
                                      "aws_secret_access_key": SECRET, "output": "json"}
    assert config.profiles["default"] == {"aws_access_key_id": OTHER_KEY_ID}
    # the credentials file has no "profile " prefix: the section name is the profile name
    assert config.profiles["profile odd"] == {"region": "here"}
    assert config.get("dev", "aws_access_key_id") == KEY_ID


def test_keys_are_case_insensitive(home):
    config = load(home, f"""
        [profile dev]
        Region = eu-west-1
        AWS_ACCESS_KEY_ID = {KEY_ID}
        Aws_Secret_Access_Key = {SECRET}
        ROLE_ARN = {arn("x")}
        Source_Profile = dev
    """)
    assert config.get("dev", "region") == "eu-west-1"
    assert config.get("dev", "role_arn") == arn("x")
    p = config.plan("dev")
    assert p.source.kind == "keys" and p.source.access_key_id == KEY_ID
    assert [r.role_arn for r in p.roles] == [arn("x")]
    assert p.region == "eu-west-1"


def test_nested_tables_and_services_tables(home):
    config = load(home, """
        [profile dev]
        region = eu-west-1
        s3 =
          addressing_style = path
          signature_version = s3v4
        services = local

        [services local]
        sts =
          endpoint_url = http://127.0.0.1:4566/sts
        iam =
          endpoint_url = http://127.0.0.1:4566/iam
    """)
    assert config.profiles["dev"]["s3"] == {"addressing_style": "path", "signature_version": "s3v4"}
    assert config.services == {"local": {"sts": {"endpoint_url": "http://127.0.0.1:4566/sts"},
                                         "iam": {"endpoint_url": "http://127.0.0.1:4566/iam"}}}
    assert config.get("dev", "s3") is None  # a table is not a string value
    assert config.get("dev", "services") == "local"


def test_blank_values_count_as_absent(home):
    config = load(home, "[profile dev]\nregion =\nrole_arn =   \n")
    assert config.get("dev", "region") is None and config.get("dev", "role_arn") is None
    assert config.get("nobody", "region") is None


def test_unknown_keys_are_ignored(home):
    base = {"b": KEYS, "a": {"role_arn": arn("x"), "source_profile": "b", "region": "eu-west-1"}}
    plain = plan(home, base)
    noisy = plan(home, {"b": {**KEYS, "cli_pager": "", "frobnicate": "yes"},
                        "a": {**base["a"], "output": "json", "granted_sso_thing": "x", "tcp_keepalive": "true"}})
    assert noisy == plain
    assert noisy.cache_key() == plain.cache_key()


def test_missing_files_are_empty(home):
    config = AwsConfig.load(dict(os.environ))
    assert not (home / ".aws").exists()
    assert config.profiles == {} and config.services == {}
    with pytest.raises(ProfileError):
        config.plan("default")


def test_only_one_file_present(home):
    assert load(home, credentials=f"[ci]\naws_access_key_id = {KEY_ID}\n").profiles == {
        "ci": {"aws_access_key_id": KEY_ID}}


GARBLED = {
    "no section header": f"aws_secret_access_key = {SECRET}\n",
    "duplicate section": "[profile a]\nregion = x\n[profile a]\nregion = y\n",
    "duplicate key": f"[profile a]\naws_secret_access_key = {SECRET}\naws_secret_access_key = {SECRET}\n",
    "line without a delimiter": "[profile a]\nregion = x\nsEcReTsEcReT0001 pasted alone\n",
}


@pytest.mark.parametrize("which", ["config", "credentials"])
@pytest.mark.parametrize("text", GARBLED.values(), ids=GARBLED.keys())
def test_garbled_file_is_one_line_error_naming_the_file(home, which, text):
    write(home, **{which: text})
    with pytest.raises(ProfileError) as info:
        AwsConfig.load(dict(os.environ))
    message = str(info.value)
    assert "\n" not in message
    assert str(home / ".aws" / which) in message
    assert SECRET not in message and "sEcReTsEcReT0001" not in message


def test_nested_line_without_delimiter_is_refused_like_botocore(home):
    write(home, "[profile a]\ns3 =\n  addressing_style\n")
    with pytest.raises(ProfileError):
        AwsConfig.load(dict(os.environ))


@pytest.mark.parametrize("which", ["config", "credentials"])
def test_non_utf8_file_is_one_line_error_naming_the_file(home, which):
    (home / ".aws").mkdir()
    (home / ".aws" / which).write_bytes(b"[profile a]\nregion = \xff\xfe\n")
    with pytest.raises(ProfileError) as info:
        AwsConfig.load(dict(os.environ))
    assert "\n" not in str(info.value) and str(home / ".aws" / which) in str(info.value)


@pytest.mark.parametrize("which", ["config", "credentials"])
def test_unreadable_file_is_one_line_error_naming_the_file(home, which):
    # Tests may run as root, which reads a mode-000 file; a directory cannot be read by anyone.
    (home / ".aws" / which).mkdir(parents=True)
    with pytest.raises(ProfileError) as info:
        AwsConfig.load(dict(os.environ))
    message = str(info.value)
    assert "\n" not in message and str(home / ".aws" / which) in message and "cannot read" in message


# ---- differential: the same files through botocore ----------------------------------------

BOTOCORE_CASES = {
    "profiles, credentials override, unknown sections": (f"""
        [default]
        region = us-east-1
        output = json

        [profile dev]
        Region = eu-west-1
        role_arn = {arn("dev")}
        source_profile = default
        mfa_serial = {MFA1}

        [profile ci]
        credential_process = /usr/bin/true --flag

        [preview]
        cloudfront = true
    """, f"""
        [default]
        aws_access_key_id = {KEY_ID}
        aws_secret_access_key = {SECRET}

        [ci]
        region = ap-south-1

        [only-here]
        AWS_ACCESS_KEY_ID = {OTHER_KEY_ID}
        aws_secret_access_key = {SECRET}
        aws_session_token = {TOKEN}
    """),
    "nested tables, services, DEFAULT section": ("""
        [DEFAULT]
        region = eu-north-1

        [profile dev]
        services = local
        s3 =
          addressing_style = path
          signature_version = s3v4
        endpoint_url = http://127.0.0.1:9000

        [services local]
        sts =
          endpoint_url = http://127.0.0.1:4566
    """, """
        [dev]
        aws_access_key_id = x
    """),
    "config file only": ("""
        [profile a]
        region = us-west-2
        [profile b]
        role_arn = arn:aws:iam::123456789012:role/b
        source_profile = a
    """, None),
    "credentials file only": (None, f"""
        [default]
        aws_access_key_id = {KEY_ID}
        aws_secret_access_key = {SECRET}
    """),
    "no files": (None, None),
    "empty values and comments": ("""
        # a comment
        [profile a]
        ; another
        region =
        output = text
    """, "[a]\nregion = overridden\n"),
}

BOTOCORE_DIVERGENCES = {
    "mixed-case nested key": pytest.param("""
        [profile a]
        s3 =
          Addressing_Style = path
    """, None),
    "quoted profile name": pytest.param("""
        [profile "dev"]
        region = eu-west-1
    """, None),
    "[default] and [profile default]": pytest.param("""
        [default]
        region = us-east-1
        output = json

        [profile default]
        region = eu-west-1
    """, None),
}


def _botocore_view(monkeypatch, home: Path) -> tuple[dict, dict]:
    import botocore.session

    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    full = botocore.session.Session().full_config
    return full["profiles"], full.get("services", {})


@pytest.mark.parametrize(("config_text", "credentials_text"),
                         [*BOTOCORE_CASES.values(), *BOTOCORE_DIVERGENCES.values()],
                         ids=[*BOTOCORE_CASES, *BOTOCORE_DIVERGENCES])
def test_profiles_match_botocore(home, monkeypatch, config_text, credentials_text):
    (home / ".aws").mkdir()
    write(home, config_text, credentials_text)
    profiles, services = _botocore_view(monkeypatch, home)
    ours = AwsConfig.load(os.environ)
    assert ours.profiles == profiles
    assert ours.services == services


# ---- plan: the walk ----------------------------------------------------------------------

def test_unknown_profile_names_both_files(home):
    message = plan_error(home, {"b": KEYS}, "nope")
    assert "'nope'" in message
    assert str(home / ".aws" / "config") in message and str(home / ".aws" / "credentials") in message


@pytest.mark.parametrize("name", ["", "a b", "[a]", "x" * 129, "tab\tname"])
def test_bad_profile_names_are_refused(home, name):
    plan_error(home, {"a": KEYS}, name)


def test_unknown_source_profile_is_named(home):
    message = plan_error(home, {"a": {"role_arn": arn("a"), "source_profile": "ghost"}})
    assert "'ghost'" in message and "'a'" in message


def test_role_chain_roles_in_execution_order(home):
    p = plan(home, {
        "a": {"role_arn": arn("a"), "source_profile": "b", "role_session_name": "sa", "external_id": EXTERNAL_ID},
        "b": {"role_arn": arn("b"), "source_profile": "c", "duration_seconds": "1800"},
        "c": KEYS,
    })
    assert p.profile == "a"
    assert p.chain == ("a", "b", "c")
    assert p.source == Source("keys", "c", KEY_ID, SECRET, None)
    assert p.roles == (RoleStep("b", arn("b"), None, None, None, 1800),
                       RoleStep("a", arn("a"), "sa", EXTERNAL_ID, None, None))


@pytest.mark.parametrize(("profiles", "loop"), [
    ({"a": {"role_arn": arn("a"), "source_profile": "b"}, "b": {"role_arn": arn("b"), "source_profile": "a"}},
     "a -> b -> a"),
    ({"a": {"role_arn": arn("a"), "source_profile": "b"}, "b": {"role_arn": arn("b"), "source_profile": "c"},
      "c": {"role_arn": arn("c"), "source_profile": "b"}},
     "a -> b -> c -> b"),
    # the asked-for profile's own keys do not save it when a later profile leads back to it
    ({"a": {**KEYS, "role_arn": arn("a"), "source_profile": "b"}, "b": {"role_arn": arn("b"), "source_profile": "a"}},
     "a -> b -> a"),
], ids=["two", "three-inner", "back-to-asked"])
def test_loops_are_spelled_out(home, profiles, loop):
    message = plan_error(home, profiles)
    assert message.endswith(": " + loop)  # the loop exactly, closed at its first repeat


def test_both_source_profile_and_credential_source_refused(home):
    message = plan_error(home, {"a": {"role_arn": arn("a"), "source_profile": "b", "credential_source": "Environment"},
                                "b": KEYS})
    assert "source_profile" in message and "credential_source" in message and "'a'" in message


@pytest.mark.parametrize(("value", "kind"), [
    ("Environment", "environment"), ("EcsContainer", "container"), ("Ec2InstanceMetadata", "imds"),
])
def test_credential_sources(home, value, kind):
    p = plan(home, {"a": {"role_arn": arn("a"), "credential_source": value, "mfa_serial": MFA1}})
    assert p.source == Source(kind, "a")
    assert p.roles == (RoleStep("a", arn("a"), None, None, MFA1, None),)
    assert p.chain == ("a",)
    assert p.session is False and p.session_mfa_serial is None


@pytest.mark.parametrize("value", ["environment", "Ec2", "ECSCONTAINER", "Process", "SharedCredentials"])
def test_other_credential_sources_refused(home, value):
    message = plan_error(home, {"a": {"role_arn": arn("a"), "credential_source": value}})
    assert repr(value) in message and "Environment" in message


def test_self_referential_source_profile_uses_own_keys(home):
    p = plan(home, {"a": {**KEYS, "role_arn": arn("a"), "source_profile": "a"}})
    assert p.chain == ("a",)
    assert p.source == Source("keys", "a", KEY_ID, SECRET, None)
    assert [r.role_arn for r in p.roles] == [arn("a")]


def test_self_referential_source_profile_without_keys_refused(home):
    message = plan_error(home, {"a": {"role_arn": arn("a"), "source_profile": "a"}})
    assert "'a'" in message and "rolecall keys add" in message


def test_self_referential_source_profile_with_stored_keys(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "a"}}, stored={"a"})
    assert p.source == Source("keys", "a") and len(p.roles) == 1


def test_role_without_source_uses_asked_profiles_own_keys(home):
    p = plan(home, {"a": {**KEYS, "role_arn": arn("a")}})
    assert p.source.kind == "keys" and p.source.profile == "a" and len(p.roles) == 1
    p = plan(home, {"a": {"role_arn": arn("a")}}, stored={"a"})
    assert p.source == Source("keys", "a") and len(p.roles) == 1


def test_role_without_any_source_refused(home):
    message = plan_error(home, {"a": {"role_arn": arn("a")}})
    assert "source_profile" in message and "credential_source" in message


def test_source_profiles_own_keys_win_over_its_role(home):
    profiles = {"a": {"role_arn": arn("a"), "source_profile": "b"},
                "b": {**KEYS, "role_arn": arn("b"), "source_profile": "c"},
                "c": {"aws_access_key_id": OTHER_KEY_ID, "aws_secret_access_key": SECRET}}
    p = plan(home, profiles)
    assert p.chain == ("a", "b")
    assert p.source == Source("keys", "b", KEY_ID, SECRET, None)
    assert [r.profile for r in p.roles] == ["a"]


def test_source_profile_stored_in_keyring_wins_over_its_role(home):
    profiles = {"a": {"role_arn": arn("a"), "source_profile": "b"},
                "b": {"role_arn": arn("b"), "source_profile": "c"}, "c": KEYS}
    assert plan(home, profiles).chain == ("a", "b", "c")
    p = plan(home, profiles, stored={"b"})
    assert p.chain == ("a", "b") and p.source == Source("keys", "b")
    assert [r.profile for r in p.roles] == ["a"]


def test_stored_source_profile_need_not_be_in_the_files(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "vault"}}, stored={"vault"})
    assert p.source == Source("keys", "vault") and p.chain == ("a", "vault")
    assert plan(home, {"x": {"region": "eu-west-1"}}, "vault", stored={"vault"}).source == Source("keys", "vault")


def test_asked_profiles_role_wins_over_its_own_keys(home):
    p = plan(home, {"a": {**KEYS, "role_arn": arn("a"), "source_profile": "b"},
                    "b": {"aws_access_key_id": OTHER_KEY_ID, "aws_secret_access_key": SECRET}})
    assert p.source.profile == "b" and p.source.access_key_id == OTHER_KEY_ID
    assert [r.profile for r in p.roles] == ["a"]
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b"}, "b": KEYS}, stored={"a"})
    assert p.source.profile == "b" and [r.profile for r in p.roles] == ["a"]


def test_credential_process_as_source(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b"},
                    "b": {"credential_process": "/usr/local/bin/get-creds --profile b"}})
    assert p.source == Source("process", "b", command="/usr/local/bin/get-creds --profile b")
    assert p.chain == ("a", "b") and [r.profile for r in p.roles] == ["a"]


def test_credential_process_alone(home):
    p = plan(home, {"a": {"credential_process": "get-creds", "mfa_serial": MFA1}})
    assert p.source == Source("process", "a", command="get-creds")
    assert p.roles == () and p.session is False


def test_profile_without_credentials_refused(home):
    message = plan_error(home, {"a": {"region": "eu-west-1"}})
    assert "'a'" in message and "no credentials" in message


def test_web_identity(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "web_identity_token_file": "~/token", "role_session_name": "ci",
                          "duration_seconds": "900", "source_profile": "b"}, "b": KEYS})
    assert p.source.kind == "web_identity" and p.source.profile == "a"
    assert p.source.token_file == os.path.join(str(home), "token")
    assert p.source.role == RoleStep("a", arn("a"), "ci", None, None, 900)
    assert p.roles == () and p.chain == ("a",)
    assert p.session is False and p.session_mfa_serial is None


def test_web_identity_as_source_profile(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b"},
                    "b": {"role_arn": arn("b"), "web_identity_token_file": "/var/run/token"}})
    assert p.source.kind == "web_identity" and p.source.role.role_arn == arn("b")
    assert p.source.token_file == "/var/run/token"
    assert [r.profile for r in p.roles] == ["a"] and p.session is False


@pytest.mark.parametrize("key", ["sso_start_url", "sso_session", "sso_account_id", "sso_role_name", "sso_region"])
def test_sso_profiles_refused(home, key):
    message = plan_error(home, {"a": {key: "x"}})
    assert "aws sso login" in message and "'a'" in message


def test_sso_source_profile_refused(home):
    message = plan_error(home, {"a": {"role_arn": arn("a"), "source_profile": "b"},
                                "b": {"sso_session": "corp", "sso_account_id": "123456789012"}})
    assert "aws sso login" in message and "'b'" in message


@pytest.mark.parametrize(("text", "value"), [("900", 900), ("3600", 3600), ("43200", 43200), (" 1800 ", 1800),
                                             ("", None)])
def test_duration_seconds_accepted(home, text, value):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b", "duration_seconds": text}, "b": KEYS})
    assert p.roles[0].duration_seconds == value
    assert plan(home, {"a": {**KEYS, "duration_seconds": text}}).session_duration == value


@pytest.mark.parametrize("text", ["899", "43201", "0", "-900", "1.5", "1e3", "abc", "3600s"])
def test_duration_seconds_out_of_range_or_malformed(home, text):
    for profiles in ({"a": {"role_arn": arn("a"), "source_profile": "b", "duration_seconds": text}, "b": KEYS},
                     {"a": {**KEYS, "duration_seconds": text}}):
        message = plan_error(home, profiles)
        assert "duration_seconds" in message and "'a'" in message


def test_duration_seconds_unicode_digit_is_a_profile_error(home):
    plan_error(home, {"a": {**KEYS, "duration_seconds": "²"}})


@pytest.mark.parametrize(("present", "missing"), [("aws_access_key_id", "aws_secret_access_key"),
                                                  ("aws_secret_access_key", "aws_access_key_id")])
@pytest.mark.parametrize("asked", [True, False])
def test_half_static_keys_refused(home, present, missing, asked):
    half = {present: KEYS[present]}
    profiles = {"a": half} if asked else {"a": {"role_arn": arn("a"), "source_profile": "b"}, "b": half}
    message = plan_error(home, profiles)
    assert missing in message and ("'a'" if asked else "'b'") in message
    assert SECRET not in message


# ---- plan: MFA sessions ------------------------------------------------------------------

@pytest.mark.parametrize("serial", [MFA1, None])
def test_long_term_keys_without_role_get_a_session(home, serial):
    p = plan(home, {"a": {**KEYS, **({"mfa_serial": serial} if serial else {})}})
    assert p.source == Source("keys", "a", KEY_ID, SECRET, None) and p.source.long_term
    assert p.roles == ()
    assert p.session is True and p.session_mfa_serial == serial
    assert p.mfa_serials == ((serial,) if serial else ())
    assert p.session_duration is None


def test_session_duration_only_without_roles(home):
    assert plan(home, {"a": {**KEYS, "duration_seconds": "7200"}}).session_duration == 7200
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b", "duration_seconds": "7200"}, "b": KEYS})
    assert p.session_duration is None


def test_stored_keys_without_role_get_a_session(home):
    p = plan(home, {"a": {"mfa_serial": MFA1}}, stored={"a"})
    assert p.source == Source("keys", "a") and p.session is True and p.session_mfa_serial == MFA1


def test_temporary_static_keys_get_no_session(home):
    p = plan(home, {"a": {**KEYS, "aws_session_token": TOKEN}})
    assert p.source.session_token == TOKEN and not p.source.long_term
    assert p.session is False


def _mfa_chain(first: dict, second: dict | None = None, source=KEYS) -> dict:
    profiles = {"a": {"role_arn": arn("a"), "source_profile": "b", **first}, "b": source}
    if second is not None:
        profiles = {"top": {"role_arn": arn("top"), "source_profile": "a", **second}, **profiles}
    return profiles


@pytest.mark.parametrize(("first", "second", "session_serial", "role_serials"), [
    ({"mfa_serial": MFA1}, None, MFA1, [None]),
    ({"mfa_serial": MFA1, "duration_seconds": "3600"}, None, MFA1, [None]),
    ({"mfa_serial": MFA1, "duration_seconds": "900"}, None, MFA1, [None]),
    ({"mfa_serial": MFA1, "duration_seconds": str(CHAINED_ROLE_LIMIT + 1)}, None, None, [MFA1]),
    ({"mfa_serial": MFA1, "duration_seconds": "43200"}, {"mfa_serial": MFA1}, None, [MFA1, MFA1]),
    ({"mfa_serial": MFA1}, {"mfa_serial": MFA1}, MFA1, [None, None]),
    ({"mfa_serial": MFA1}, {"mfa_serial": MFA2}, MFA1, [None, MFA2]),
    ({}, {"mfa_serial": MFA1}, None, [None, MFA1]),
    ({}, None, None, [None]),
], ids=["serial", "one-hour", "short", "long-role", "long-role-then-same", "same-later", "other-later",
        "later-only", "none"])
def test_mfa_session_from_long_term_keys(home, first, second, session_serial, role_serials):
    p = plan(home, _mfa_chain(first, second), "top" if second is not None else "a")
    assert p.session is (session_serial is not None)
    assert p.session_mfa_serial == session_serial
    assert [r.mfa_serial for r in p.roles] == role_serials
    assert p.mfa_serials == tuple(s for s in [session_serial, *role_serials] if s)


@pytest.mark.parametrize("source", [
    {"credential_process": "get-creds"},
    {**KEYS, "aws_session_token": TOKEN},
], ids=["process", "temporary-keys"])
def test_no_mfa_session_from_other_sources(home, source):
    p = plan(home, _mfa_chain({"mfa_serial": MFA1}, source=source))
    assert p.session is False and p.session_mfa_serial is None
    assert [r.mfa_serial for r in p.roles] == [MFA1] and p.mfa_serials == (MFA1,)


def test_no_mfa_session_from_stored_keys_of_long_role(home):
    p = plan(home, _mfa_chain({"mfa_serial": MFA1, "duration_seconds": "7200"}, source={}), stored={"b"})
    assert p.source == Source("keys", "b") and p.session is False and p.roles[0].mfa_serial == MFA1


def test_mfa_session_from_stored_keys(home):
    p = plan(home, _mfa_chain({"mfa_serial": MFA1}, source={}), stored={"b"})
    assert p.session is True and p.session_mfa_serial == MFA1 and p.roles[0].mfa_serial is None


def test_source_profiles_mfa_serial_is_not_the_roles(home):
    p = plan(home, _mfa_chain({}, source={**KEYS, "mfa_serial": MFA2}))
    assert p.session is False and p.mfa_serials == ()


@pytest.mark.parametrize(("a_process", "b_process", "expected"), [
    ("ykman oath code a", "ykman oath code b", "ykman oath code a"),
    (None, "ykman oath code b", "ykman oath code b"),
    (None, None, None),
])
def test_mfa_process_from_the_chain(home, a_process, b_process, expected):
    a = {"mfa_process": a_process} if a_process else {}
    b = {**KEYS, **({"mfa_process": b_process} if b_process else {})}
    assert plan(home, _mfa_chain({"mfa_serial": MFA1, **a}, source=b)).mfa_process == expected


# ---- plan: region, endpoints, CA bundle --------------------------------------------------

@pytest.mark.parametrize(("env", "asked", "source", "expected"), [
    ({"AWS_REGION": "r-env", "AWS_DEFAULT_REGION": "r-default"}, "r-asked", "r-source", "r-env"),
    ({"AWS_DEFAULT_REGION": "r-default"}, "r-asked", "r-source", "r-default"),
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "r-default"}, "r-asked", "r-source", "r-default"),
    ({}, "r-asked", "r-source", "r-asked"),
    ({}, None, "r-source", "r-source"),
    ({}, None, None, None),
])
def test_region_precedence(home, env, asked, source, expected):
    a = {"role_arn": arn("a"), "source_profile": "b", **({"region": asked} if asked else {})}
    b = {**KEYS, **({"region": source} if source else {})}
    assert plan(home, {"a": a, "b": b}, env=env).region == expected


ENDPOINT_LAYERS = ("env-service", "services-table", "env-global", "profile")


@pytest.mark.parametrize("service", ["sts", "iam"])
@pytest.mark.parametrize("layers", list(itertools.product([True, False], repeat=4)),
                         ids=lambda layers: "+".join(n for n, on in zip(ENDPOINT_LAYERS, layers) if on) or "none")
def test_endpoint_precedence(home, service, layers):
    env_service, table, env_global, profile = layers
    urls = {name: f"http://127.0.0.1:{port}/{service}" for port, name in enumerate(ENDPOINT_LAYERS, 9001)}
    other = "iam" if service == "sts" else "sts"
    env = {f"AWS_ENDPOINT_URL_{other.upper()}": "http://127.0.0.1:9999/other"}  # never the wrong service's
    if env_service:
        env[f"AWS_ENDPOINT_URL_{service.upper()}"] = urls["env-service"]
    if env_global:
        env["AWS_ENDPOINT_URL"] = urls["env-global"]
    a = {**KEYS, "services": "svc"}
    if profile:
        a["endpoint_url"] = urls["profile"]
    services = {"svc": {other: {"endpoint_url": "http://127.0.0.1:9998/other"}}}
    if table:
        services["svc"][service] = {"endpoint_url": urls["services-table"]}
    p = plan(home, {"a": a}, env=env, services=services)
    expected = next((urls[n] for n, on in zip(ENDPOINT_LAYERS, layers) if on), None)
    got = p.sts_endpoint if service == "sts" else p.iam_endpoint
    assert got == expected


def test_services_table_needs_the_profiles_services_key(home):
    services = {"svc": {"sts": {"endpoint_url": "http://127.0.0.1:9001/"}},
                "other": {"sts": {"endpoint_url": "http://127.0.0.1:9002/"}}}
    assert plan(home, {"a": KEYS}, services=services).sts_endpoint is None
    assert plan(home, {"a": {**KEYS, "services": "other"}}, services=services).sts_endpoint == "http://127.0.0.1:9002/"
    assert plan(home, {"a": {**KEYS, "services": "missing"}}, services=services).sts_endpoint is None


def test_endpoint_is_the_asked_profiles(home):
    p = plan(home, {"a": {"role_arn": arn("a"), "source_profile": "b"},
                    "b": {**KEYS, "endpoint_url": "http://127.0.0.1:9001/"}})
    assert p.sts_endpoint is None


@pytest.mark.parametrize(("env_value", "profile_value", "ignored"), [
    ("true", None, True), ("TRUE", None, True), (" true ", None, True), (None, "true", True), (None, "True", True),
    ("false", "true", False), (None, "false", False), ("yes", None, False), ("1", None, False), (None, None, False),
])
def test_ignore_configured_endpoint_urls(home, env_value, profile_value, ignored):
    env = {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9001/", "AWS_ENDPOINT_URL_IAM": "http://127.0.0.1:9002/",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9003/"}
    if env_value is not None:
        env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = env_value
    a = {**KEYS, "endpoint_url": "http://127.0.0.1:9004/", "services": "svc"}
    if profile_value is not None:
        a["ignore_configured_endpoint_urls"] = profile_value
    p = plan(home, {"a": a}, env=env, services={"svc": {"sts": {"endpoint_url": "http://127.0.0.1:9005/"}}})
    if ignored:
        assert p.sts_endpoint is None and p.iam_endpoint is None
    else:
        assert p.sts_endpoint == "http://127.0.0.1:9001/" and p.iam_endpoint == "http://127.0.0.1:9002/"


def test_ignore_flag_also_disables_profile_and_table_endpoints(home):
    p = plan(home, {"a": {**KEYS, "endpoint_url": "http://127.0.0.1:9004/", "services": "svc",
                          "ignore_configured_endpoint_urls": "true"}},
             services={"svc": {"sts": {"endpoint_url": "http://127.0.0.1:9005/"}}})
    assert p.sts_endpoint is None and p.iam_endpoint is None


@pytest.mark.parametrize(("env", "profile", "expected"), [
    ("/env/ca.pem", "/profile/ca.pem", "/env/ca.pem"),
    (None, "/profile/ca.pem", "/profile/ca.pem"),
    (None, None, None),
])
def test_ca_bundle(home, env, profile, expected):
    a = {**KEYS, **({"ca_bundle": profile} if profile else {})}
    assert plan(home, {"a": a}, env={"AWS_CA_BUNDLE": env} if env else None).ca_bundle == expected


def test_account_id(home):
    assert plan(home, {"a": {**KEYS, "aws_account_id": "123456789012"}}).account_id == "123456789012"
    assert plan(home, {"a": KEYS}).account_id is None


# ---- cache_key ---------------------------------------------------------------------------

_BASE = {"name": "a", "arn": arn("a"), "session_name": "s1", "external_id": EXTERNAL_ID, "mfa": MFA1,
         "duration": "3600", "key_id": KEY_ID, "token": None, "region": "eu-west-1", "endpoint": None,
         "source": "b", "env": {}}


def _keyed_plan(home: Path, **changes) -> ProfilePlan:
    p = {**_BASE, **changes}
    a = {"role_arn": p["arn"], "source_profile": p["source"], "region": p["region"]}
    for key, field in (("role_session_name", "session_name"), ("external_id", "external_id"),
                       ("mfa_serial", "mfa"), ("duration_seconds", "duration"), ("endpoint_url", "endpoint")):
        if p[field] is not None:
            a[key] = p[field]
    source = {"aws_access_key_id": p["key_id"], "aws_secret_access_key": SECRET}
    if p["token"]:
        source["aws_session_token"] = p["token"]
    profiles = {p["name"]: a, p["source"]: source}
    if p["source"] == "mid":
        profiles["mid"] = {"role_arn": arn("mid"), "source_profile": "b"}
        profiles["b"] = {"aws_access_key_id": p["key_id"], "aws_secret_access_key": SECRET}
    return plan(home, profiles, p["name"], env=p["env"])


CACHE_KEY_VARIANTS = {
    "role arn": {"arn": arn("other")},
    "session name": {"session_name": "s2"},
    "no session name": {"session_name": None},
    "external id": {"external_id": "ExTeRnAl-id-0002"},
    "no external id": {"external_id": None},
    "source key id": {"key_id": OTHER_KEY_ID},
    "source session token": {"token": TOKEN},
    "mfa serial": {"mfa": MFA2},
    "no mfa serial": {"mfa": None},
    "duration": {"duration": "1800"},
    "long duration (no session)": {"duration": "7200"},
    "endpoint in the profile": {"endpoint": "http://127.0.0.1:9001/"},
    "endpoint in the environment": {"env": {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9002/"}},
    "region": {"region": "us-west-2"},
    "region from the environment": {"env": {"AWS_REGION": "ap-south-1"}},
    "source profile": {"source": "c"},
    "longer chain": {"source": "mid"},
    "asked profile": {"name": "z"},
}


def test_cache_key_is_deterministic_and_file_safe(home):
    first, again = _keyed_plan(home), _keyed_plan(home)
    assert first == again and first.cache_key() == again.cache_key()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,100}", first.cache_key())


def test_cache_key_differs_with_everything_that_shapes_the_credentials(home):
    keys = {"base": _keyed_plan(home).cache_key()}
    for name, changes in CACHE_KEY_VARIANTS.items():
        keys[name] = _keyed_plan(home, **changes).cache_key()
    by_key: dict[str, list[str]] = {}
    for name, key in keys.items():
        by_key.setdefault(key, []).append(name)
    assert [names for names in by_key.values() if len(names) > 1] == []


def test_cache_key_differs_across_source_kinds_and_commands(home):
    role = {"role_arn": arn("a"), "source_profile": "b"}
    plans = [
        plan(home, {"a": role, "b": KEYS}),
        plan(home, {"a": role, "b": {}}, stored={"b"}),
        plan(home, {"a": role, "b": {"credential_process": "get-creds one"}}),
        plan(home, {"a": role, "b": {"credential_process": "get-creds two"}}),
        plan(home, {"a": {"role_arn": arn("a"), "credential_source": "Environment"}}),
        plan(home, {"a": {"role_arn": arn("a"), "credential_source": "EcsContainer"}}),
        plan(home, {"a": {"role_arn": arn("a"), "web_identity_token_file": "/t/one"}}),
        plan(home, {"a": {"role_arn": arn("a"), "web_identity_token_file": "/t/two"}}),
        plan(home, {"a": {"role_arn": arn("a"), "web_identity_token_file": "/t/one", "role_session_name": "x"}}),
        plan(home, {"a": KEYS}),
        plan(home, {"a": {**KEYS, "mfa_serial": MFA1}}),
        plan(home, {"a": {**KEYS, "duration_seconds": "7200"}}),
    ]
    keys = [p.cache_key() for p in plans]
    assert len(set(keys)) == len(keys)


def test_cache_key_differs_with_the_environment_source_identity(home):
    profiles = {"a": {"role_arn": arn("a"), "credential_source": "Environment"}}
    one = plan(home, profiles, env={"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET})
    two = plan(home, profiles, env={"AWS_ACCESS_KEY_ID": OTHER_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET})
    assert one.cache_key() != two.cache_key()


def test_cache_key_and_repr_never_show_secrets(home):
    plans = [
        _keyed_plan(home, token=TOKEN),
        plan(home, {"a": {**KEYS, "aws_session_token": TOKEN}}),
        plan(home, {"a": {"role_arn": arn("a"), "web_identity_token_file": "/t", "external_id": EXTERNAL_ID}}),
    ]
    assert plans[0].source.secret_access_key == SECRET and plans[0].source.session_token == TOKEN
    assert plans[0].roles[0].external_id == EXTERNAL_ID
    assert plans[2].source.role.external_id == EXTERNAL_ID
    for p in plans:
        shown = [p.cache_key(), repr(p), str(p), repr(p.source), repr(p.roles), repr(p.source.role)]
        shown += [repr(r) for r in p.roles]
        for text in shown:
            for secret in (SECRET, TOKEN, EXTERNAL_ID):
                assert secret not in text
    # what repr does show, so the test would notice a repr that shows nothing at all
    assert KEY_ID in repr(plans[0]) and arn("a") in repr(plans[0].roles[0])


def test_repr_of_bare_types_hides_secrets():
    step = RoleStep("a", arn("a"), "s", EXTERNAL_ID, MFA1, 900)
    source = Source("keys", "a", KEY_ID, SECRET, TOKEN, role=step)
    whole = ProfilePlan("a", ("a",), source, (step,), MFA1, True)
    for text in (repr(step), repr(source), repr(whole), str(whole)):
        assert SECRET not in text and TOKEN not in text and EXTERNAL_ID not in text
    assert MFA1 in repr(step) and KEY_ID in repr(source)


# ---- config_paths ------------------------------------------------------------------------

def test_config_paths_defaults(home):
    assert config_paths({"HOME": "/home/u"}) == ("/home/u/.aws/config", "/home/u/.aws/credentials")
    assert config_paths({"HOME": "/home/u", "AWS_CONFIG_FILE": "", "AWS_SHARED_CREDENTIALS_FILE": ""}) == (
        "/home/u/.aws/config", "/home/u/.aws/credentials")


def test_config_paths_from_the_environment_with_tilde(home):
    environ = {"HOME": "/home/u", "AWS_CONFIG_FILE": "~/cfg/config", "AWS_SHARED_CREDENTIALS_FILE": "/etc/aws/creds"}
    assert config_paths(environ) == ("/home/u/cfg/config", "/etc/aws/creds")
    environ = {"HOME": "/home/u", "AWS_SHARED_CREDENTIALS_FILE": "~/c"}
    assert config_paths(environ) == ("/home/u/.aws/config", "/home/u/c")


def test_load_reads_tilde_paths(home):
    (home / "cfg").mkdir()
    (home / "cfg" / "config").write_text("[profile t]\nregion = eu-west-3\n")
    (home / "cfg" / "creds").write_text("[t]\noutput = json\n")
    config = AwsConfig.load({"HOME": str(home), "AWS_CONFIG_FILE": "~/cfg/config",
                             "AWS_SHARED_CREDENTIALS_FILE": "~/cfg/creds"})
    assert config.profiles == {"t": {"region": "eu-west-3", "output": "json"}}
    assert config.paths == (str(home / "cfg" / "config"), str(home / "cfg" / "creds"))


def test_load_defaults_to_home_aws(home):
    write(home, "[default]\nregion = eu-west-1\n", "[default]\noutput = text\n")
    config = AwsConfig.load({"HOME": str(home)})
    assert config.profiles == {"default": {"region": "eu-west-1", "output": "text"}}
    assert config.paths == (str(home / ".aws" / "config"), str(home / ".aws" / "credentials"))
