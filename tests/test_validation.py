"""sts_backend.validation: AWS's ValidationError forms over the botocore models."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sts_backend import validation
from sts_backend.errors import SenderError, ValidationError
from sts_backend.validation import compile_pattern, java_regex, validate
from wire.query import flatten

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::123456789012:role/app"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_model_constraints", ROOT / "tools" / "gen_model_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assume_role(**extra):
    return {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE,
            "RoleSessionName": "web-1", **extra}


def message_of(service, action, params) -> str:
    with pytest.raises(ValidationError) as info:
        validate(service, action, params)
    assert info.value.code == "ValidationError" and info.value.http_status == 400
    return info.value.message


# --- the committed model ------------------------------------------------------------


@pytest.mark.parametrize("service", ["sts", "iam"])
def test_committed_model_matches_generator(service):
    # Never skipped: the venv is built with constraints.txt, so the botocore the model
    # is generated from is installed, and any other one fails here saying so (a skip
    # on a mismatch is how the model once drifted unnoticed).
    gen = _load_generator()
    mismatch = gen.version_mismatch()
    assert mismatch is None, mismatch
    committed = (ROOT / "sts_backend" / "model" / f"{service}.json").read_text("utf-8")
    pinned = gen.pinned_botocore()
    assert json.loads(committed)["botocoreVersion"] == pinned, (
        f"sts_backend/model/{service}.json is not generated from the pinned botocore "
        f"{pinned}: run `make model`")
    model, installed = gen.load_model(service)
    assert committed == gen.render(gen.build(service, model, installed)), (
        f"sts_backend/model/{service}.json differs from botocore {installed}'s model: "
        "run `make model`")


def test_models_are_small_and_complete():
    for service, version, sample in (("sts", "2011-06-15", "AssumeRole"),
                                     ("iam", "2010-05-08", "CreateUser")):
        data = json.loads((ROOT / "sts_backend" / "model" / f"{service}.json").read_text())
        assert data["apiVersion"] == version and sample in data["operations"]
        assert validation.api_version(service) == version
        assert sample in validation.operations(service)
    total = sum((ROOT / "sts_backend" / "model" / f).stat().st_size for f in ("sts.json", "iam.json"))
    assert total < 300_000


def test_every_model_pattern_compiles():
    for service in ("sts", "iam"):
        data = json.loads((ROOT / "sts_backend" / "model" / f"{service}.json").read_text())
        for name, shape in data["shapes"].items():
            if "pattern" in shape:
                compile_pattern(shape["pattern"])


# --- documented message forms -------------------------------------------------------------


def test_duration_seconds_below_minimum():
    assert message_of("sts", "AssumeRole", assume_role(DurationSeconds="600")) == (
        "1 validation error detected: Value '600' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 900")


def test_duration_seconds_above_maximum():
    assert message_of("sts", "AssumeRole", assume_role(DurationSeconds="43201")).endswith(
        "Value '43201' at 'durationSeconds' failed to satisfy constraint: "
        "Member must have value less than or equal to 43200")


def test_role_session_name_pattern():
    assert message_of("sts", "AssumeRole", assume_role(RoleSessionName="PowerUser/hjacobs")) == (
        "1 validation error detected: Value 'PowerUser/hjacobs' at 'roleSessionName' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")


def test_role_session_name_too_long():
    assert message_of("sts", "AssumeRole", assume_role(RoleSessionName="s" * 65)) == (
        f"1 validation error detected: Value '{'s' * 65}' at 'roleSessionName' failed to "
        "satisfy constraint: Member must have length less than or equal to 64")


def test_federation_name_length():
    assert message_of("sts", "GetFederationToken", {"Name": "x" * 33}) == (
        f"1 validation error detected: Value '{'x' * 33}' at 'name' failed to satisfy "
        "constraint: Member must have length less than or equal to 32")


def test_several_errors_are_counted_and_joined_in_model_order():
    assert message_of("sts", "AssumeRole", {"RoleArn": "", "RoleSessionName": "bad name"}) == (
        "3 validation errors detected: "
        "Value '' at 'roleArn' failed to satisfy constraint: Member must satisfy regular "
        "expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u007E\\u0085\\u00A0-\\uD7FF"
        "\\uE000-\\uFFFD\\u10000-\\u10FFFF]+; "
        "Value '' at 'roleArn' failed to satisfy constraint: Member must have length greater "
        "than or equal to 20; "
        "Value 'bad name' at 'roleSessionName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: [\\w+=,.@-]*")


def test_missing_required_members():
    assert message_of("sts", "AssumeRole", {"Action": "AssumeRole"}) == (
        "2 validation errors detected: "
        "Value null at 'roleArn' failed to satisfy constraint: Member must not be null; "
        "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")


def test_enum():
    assert message_of("iam", "UpdateAccessKey",
                      {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "Status": "active"}) == (
        "1 validation error detected: Value 'active' at 'status' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Active, Inactive, Expired]")
    assert validate("iam", "UpdateAccessKey",
                    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "Status": "Inactive"}) == {
        "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "Status": "Inactive"}


def test_iam_name_and_key_id():
    msg = message_of("iam", "CreateUser", {"UserName": "a" * 65})
    assert msg.endswith("at 'userName' failed to satisfy constraint: "
                        "Member must have length less than or equal to 64")
    msg = message_of("iam", "DeleteAccessKey", {"AccessKeyId": "AKIA-short"})
    assert "Value 'AKIA-short' at 'accessKeyId'" in msg and "2 validation errors" in msg


# --- lists, maps, nested structures --------------------------------------------------------


def test_valid_request_returns_typed_values():
    params = assume_role(DurationSeconds="3600", ExternalId="ext-1",
                         **flatten({"Tags": [{"Key": "team", "Value": "core"}],
                                    "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnly"}],
                                    "TransitiveTagKeys": ["team"]}),
                         Unknown="ignored", **{"Other.member.1": "ignored"})
    assert validate("sts", "AssumeRole", params) == {
        "RoleArn": ROLE, "RoleSessionName": "web-1",
        "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnly"}],
        "DurationSeconds": 3600, "Tags": [{"Key": "team", "Value": "core"}],
        "TransitiveTagKeys": ["team"], "ExternalId": "ext-1"}


def test_tag_members_use_the_indexed_member_path():
    params = assume_role(**flatten({"Tags": [{"Key": "ok", "Value": "fine"},
                                             {"Key": "bad!", "Value": "x" * 257},
                                             {"Value": "v"}]}))
    assert message_of("sts", "AssumeRole", params) == (
        "3 validation errors detected: "
        "Value 'bad!' at 'tags.2.member.key' failed to satisfy constraint: Member must satisfy "
        "regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+; "
        f"Value '{'x' * 257}' at 'tags.2.member.value' failed to satisfy constraint: Member must "
        "have length less than or equal to 256; "
        "Value null at 'tags.3.member.key' failed to satisfy constraint: Member must not be null")


def test_policy_arn_path():
    params = assume_role(**flatten({"PolicyArns": [{"arn": "short"}]}))
    assert message_of("sts", "AssumeRole", params) == (
        "1 validation error detected: Value 'short' at 'policyArns.1.member.arn' failed to "
        "satisfy constraint: Member must have length greater than or equal to 20")


def test_too_many_tags():
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    msg = message_of("iam", "TagUser", {"UserName": "bob", **flatten({"Tags": tags})})
    assert msg.startswith("1 validation error detected: Value '[{Key=k0, Value=v}, {Key=k1, ")
    assert msg.endswith("}]' at 'tags' failed to satisfy constraint: "
                        "Member must have length less than or equal to 50")


def test_scalar_list_reported_at_the_list():
    params = assume_role(**flatten({"TransitiveTagKeys": ["ok", "bad!"]}))
    assert message_of("sts", "AssumeRole", params) == (
        "1 validation error detected: Value '[ok, bad!]' at 'transitiveTagKeys' failed to "
        "satisfy constraint: Member must satisfy constraint: [Member must have length less "
        "than or equal to 128, Member must have length greater than or equal to 1, Member "
        "must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+]")


def test_empty_list_and_list_minimum():
    assert validate("sts", "AssumeRole", assume_role(PolicyArns=""))["PolicyArns"] == []
    params = {"Arn": "arn:aws:iam::123456789012:user/bob", "ServiceNamespaces": ""}
    assert message_of("iam", "ListPoliciesGrantingServiceAccess", params) == (
        "1 validation error detected: Value '[]' at 'serviceNamespaces' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1")
    # a list whose items hold secrets (ContextAssertion) is never shown, even empty
    assert message_of("sts", "AssumeRole", assume_role(ProvidedContexts="")) == (
        "1 validation error detected: Value at 'providedContexts' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1")


def test_malformed_list_is_a_sender_error():
    with pytest.raises(SenderError) as info:
        validate("sts", "AssumeRole", assume_role(**{"Tags.member.2.Key": "k",
                                                     "Tags.member.2.Value": "v"}))
    assert info.value.code == "MalformedQueryString" and info.value.http_status == 400
    assert not isinstance(info.value, ValidationError)


def test_nested_structure_paths():
    params = {"Url": "https://idp.example.com",
              "ContextProvider.KeyDefinitionList.member.1.SourceKey": "sub",
              "ContextProvider.KeyDefinitionList.member.2.TargetKey": "x" * 129}
    assert message_of("iam", "CreateOpenIDConnectProvider", params) == (
        "3 validation errors detected: "
        "Value null at 'contextProvider.keyDefinitionList.2.member.sourceKey' failed to satisfy "
        "constraint: Member must not be null; "
        f"Value '{'x' * 129}' at 'contextProvider.keyDefinitionList.2.member.targetKey' failed "
        "to satisfy constraint: Member must have length less than or equal to 128; "
        "Value null at 'contextProvider.subjectSourceKey' failed to satisfy constraint: "
        "Member must not be null")
    params["ContextProvider.KeyDefinitionList.member.2.SourceKey"] = "email"
    params["ContextProvider.KeyDefinitionList.member.2.TargetKey"] = "mail"
    params["ContextProvider.SubjectSourceKey"] = "sub"
    assert validate("iam", "CreateOpenIDConnectProvider", params)["ContextProvider"] == {
        "KeyDefinitionList": [{"SourceKey": "sub"}, {"SourceKey": "email", "TargetKey": "mail"}],
        "SubjectSourceKey": "sub"}


def test_maps():
    ok = {"Properties.entry.1.key": "Color", "Properties.entry.1.value": "blue"}
    assert validate("iam", "PutAccountProperties", ok) == {"Properties": {"Color": "blue"}}
    msg = message_of("iam", "PutAccountProperties",
                     {"Properties.entry.1.key": "1bad", "Properties.entry.1.value": ""})
    assert msg == (
        "2 validation errors detected: Value '{1bad=}' at 'properties' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must have length less than or "
        "equal to 50, Member must have length greater than or equal to 1, Member must satisfy "
        "regular expression pattern: ^[A-Za-z][A-Za-z0-9/_-]*$]; Value '{1bad=}' at "
        "'properties' failed to satisfy constraint: Map value must satisfy constraint: [Member "
        "must have length less than or equal to 1024, Member must have length greater than or "
        "equal to 1]")


# --- types -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["abc", "1.5", " 900", "900 ", "９００", "1_000", "0x10", "",
                                 "2147483648", "9" * 30])
def test_unparseable_integers(raw):
    with pytest.raises(SenderError) as info:
        validate("sts", "AssumeRole", assume_role(DurationSeconds=raw))
    assert info.value.code == "InvalidParameterValue" and info.value.http_status == 400
    assert info.value.message == (f"Value ({raw[:64]}) for parameter DurationSeconds is invalid. "
                                  "Expecting an integer.")


@pytest.mark.parametrize("raw, value", [("900", 900), ("+900", 900), ("0900", 900), ("43200", 43200)])
def test_integers(raw, value):
    assert validate("sts", "AssumeRole", assume_role(DurationSeconds=raw))["DurationSeconds"] == value


def test_booleans():
    base = {"RoleName": "r"}
    assert validate("iam", "UpdateRole", {**base, "ResetMaxSigninSessionDuration": "TRUE"})[
        "ResetMaxSigninSessionDuration"] is True
    assert validate("iam", "UpdateRole", {**base, "ResetMaxSigninSessionDuration": "false"})[
        "ResetMaxSigninSessionDuration"] is False
    with pytest.raises(SenderError, match="Expecting true or false"):
        validate("iam", "UpdateRole", {**base, "ResetMaxSigninSessionDuration": "yes"})


def test_timestamps_and_blobs_convert():
    ts = validation._Scalar({"type": "timestamp"})
    utc = dt.timezone.utc
    assert ts.convert("2026-01-01T00:00:00Z", "T", False) == dt.datetime(2026, 1, 1, tzinfo=utc)
    assert ts.convert("2026-01-01T02:00:00.5+02:00", "T", False) == dt.datetime(
        2026, 1, 1, 0, 0, 0, 500000, tzinfo=utc)
    assert ts.convert("0", "T", False) == dt.datetime(1970, 1, 1, tzinfo=utc)
    blob = validation._Scalar({"type": "blob", "max": 2})
    assert blob.convert("AP8=", "B", False) == b"\x00\xff"
    with pytest.raises(SenderError) as info:
        blob.convert("not base64!", "B", False)
    assert "not base64" not in info.value.message  # blobs are never echoed


# --- unknown actions --------------------------------------------------------------------------


def test_unknown_action():
    with pytest.raises(SenderError) as info:
        validate("sts", "AssumeRol", {})
    assert (info.value.code, info.value.http_status, info.value.message) == (
        "InvalidAction", 400, "Could not find operation AssumeRol for version 2011-06-15")
    with pytest.raises(SenderError, match="Could not find operation CreateUser for version 2011-06-15"):
        validate("sts", "CreateUser", {})


def test_wrong_version_is_an_unknown_operation():
    with pytest.raises(SenderError, match="Could not find operation AssumeRole for version 2010-05-08"):
        validate("sts", "AssumeRole", assume_role(Version="2010-05-08"))


def test_operations_without_input_members():
    assert validate("sts", "GetCallerIdentity", {"Action": "GetCallerIdentity"}) == {}
    assert validate("iam", "GetAccountSummary", {"Version": "2010-05-08"}) == {}


def test_unknown_service_is_a_programming_error():
    with pytest.raises(ValueError):
        validate("s3", "ListBuckets", {})


# --- sensitive members never echoed ------------------------------------------------------------


SECRET = "Sup3r$ecret\u00e9"


@pytest.mark.parametrize("service, action, params, path", [
    ("sts", "GetSessionToken", {"TokenCode": "12345x"}, "tokenCode"),
    ("sts", "AssumeRole", assume_role(TokenCode="1234567"), "tokenCode"),
    ("iam", "CreateLoginProfile", {"UserName": "bob", "Password": "\x01" + SECRET}, "password"),
    ("iam", "ChangePassword", {"OldPassword": "x" * 129, "NewPassword": SECRET}, "oldPassword"),
    ("sts", "AssumeRoleWithSAML", {"RoleArn": ROLE, "PrincipalArn": ROLE, "SAMLAssertion": "abc"},
     "sAMLAssertion"),
    ("sts", "AssumeRoleWithWebIdentity",
     {"RoleArn": ROLE, "RoleSessionName": "s1", "WebIdentityToken": "eyJ"}, "webIdentityToken"),
    ("iam", "EnableMFADevice", {"UserName": "bob", "SerialNumber": "arn:aws:iam::1:mfa/bob",
                                "AuthenticationCode1": "12a456", "AuthenticationCode2": "654321"},
     "authenticationCode1"),
    ("sts", "AssumeRole", assume_role(**{"ProvidedContexts.member.1.ProviderArn": ROLE,
                                         "ProvidedContexts.member.1.ContextAssertion": "ab"}),
     "providedContexts.1.member.contextAssertion"),
])
def test_sensitive_values_are_never_echoed(service, action, params, path):
    msg = message_of(service, action, params)
    assert f"Value at '{path}' failed to satisfy constraint" in msg
    secret_values = [v for k, v in params.items()
                     if k.split(".")[-1] in ("TokenCode", "Password", "OldPassword", "NewPassword",
                                             "SAMLAssertion", "WebIdentityToken",
                                             "AuthenticationCode1", "ContextAssertion")]
    for value in secret_values:
        assert f"'{value}'" not in msg and value not in msg.replace(path, "")


def test_lists_holding_secrets_are_not_echoed_whole():
    contexts = [{"ProviderArn": ROLE, "ContextAssertion": f"assertion-{i}"} for i in range(6)]
    msg = message_of("sts", "AssumeRole", assume_role(**flatten({"ProvidedContexts": contexts})))
    assert msg == ("1 validation error detected: Value at 'providedContexts' failed to satisfy "
                   "constraint: Member must have length less than or equal to 5")


@given(st.text(min_size=1, max_size=20))
def test_token_code_never_echoed(code):
    try:
        validate("sts", "GetSessionToken", {"TokenCode": code})
    except ValidationError as exc:
        assert "Value at 'tokenCode'" in exc.message
        assert "'" + code + "'" not in exc.message


# --- lengths and patterns -------------------------------------------------------------------


def test_length_counts_utf16_code_units():
    deseret = "\U00010400"  # a letter outside the BMP: two UTF-16 code units
    ok = assume_role(**flatten({"Tags": [{"Key": deseret * 64, "Value": "v"}]}))
    assert validate("sts", "AssumeRole", ok)["Tags"][0]["Key"] == deseret * 64
    too_long = assume_role(**flatten({"Tags": [{"Key": deseret * 65, "Value": "v"}]}))
    assert message_of("sts", "AssumeRole", too_long).endswith(
        "at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must have length less than or equal to 128")


def test_unicode_letters_numbers_and_spaces_in_tags():
    tags = [{"Key": "Ümlaut 日本 \u0661\u0662", "Value": "caf\u00e9\u00a0x \u2028"}]
    assert validate("sts", "AssumeRole", assume_role(**flatten({"Tags": tags})))["Tags"] == tags
    for bad in ("emoji\U0001F600", "tab\t", "comma,", "brace{"):
        with pytest.raises(ValidationError):
            validate("sts", "AssumeRole", assume_role(**flatten({"Tags": [{"Key": bad, "Value": ""}]})))


def test_word_class_is_ascii_like_java():
    with pytest.raises(ValidationError):
        validate("sts", "AssumeRole", assume_role(RoleSessionName="caf\u00e9"))
    with pytest.raises(ValidationError):
        validate("sts", "GetSessionToken", {"TokenCode": "\u0661\u0662\u0663\u0664\u0665\u0666"})


def test_patterns_match_whole_values():
    with pytest.raises(ValidationError):
        validate("iam", "CreateUser", {"UserName": "bob\n"})
    with pytest.raises(ValidationError):
        validate("iam", "PutAccountProperties",
                 {"Properties.entry.1.key": "Color\n", "Properties.entry.1.value": "v"})


def test_policy_character_range_including_supplementary_planes():
    pattern = compile_pattern(
        "[\\u0009\\u000A\\u000D\\u0020-\\u007E\\u0085\\u00A0-\\uD7FF\\uE000-\\uFFFD"
        "\\u10000-\\u10FFFF]+")
    assert pattern.fullmatch("arn:aws:iam::1:role/\U0001F600\t\u00e9")
    assert not pattern.fullmatch("a\x00") and not pattern.fullmatch("a\x7f")


def test_java_regex_translation():
    assert java_regex("[\\w+=,.@-]*") == "[\\w+=,.@-]*"
    assert java_regex("a.b[.]") == "a[^\\n\\r\\u0085\\u2028\\u2029]b[.]"
    assert java_regex("\\u0041\\u10000") == "\\u0041\\U00010000"
    assert compile_pattern("\\p{Lu}+").fullmatch("ÀB") and not compile_pattern("\\p{Lu}").fullmatch("a")
    for bad in ("\\P{L}", "[a-z&&[^b]]", "\\Qx\\E"):
        with pytest.raises(ValueError):
            java_regex(bad)


@given(st.characters(blacklist_categories=("Cs",)))
def test_category_classes_agree_with_unicodedata(ch):
    expected = unicodedata.category(ch)[0] in "LZN" or ch in "_.:/=+-@"
    assert bool(compile_pattern("[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]").fullmatch(ch)) == expected


def test_secret_sibling_does_not_hide_other_members():
    params = assume_role(**{"ProvidedContexts.member.1.ProviderArn": "short",
                            "ProvidedContexts.member.1.ContextAssertion": "assertion"})
    assert message_of("sts", "AssumeRole", params) == (
        "1 validation error detected: Value 'short' at 'providedContexts.1.member.providerArn' "
        "failed to satisfy constraint: Member must have length greater than or equal to 20")


def test_repeated_map_keys_are_malformed():
    params = {"Properties.entry.1.key": "Color", "Properties.entry.1.value": "blue",
              "Properties.entry.2.key": "Color", "Properties.entry.2.value": "red"}
    with pytest.raises(SenderError, match="repeats"):
        validate("iam", "PutAccountProperties", params)


_KEYS = st.sampled_from([
    "RoleArn", "RoleSessionName", "DurationSeconds", "Tags", "Tags.member.1.Key",
    "Tags.member.1.Value", "Tags.member.2.Key", "Tags.member.0.Key", "Tags.member.x",
    "Tags.member", "TransitiveTagKeys.member.1", "TransitiveTagKeys", "PolicyArns.member.1.arn",
    "ProvidedContexts.member.1.ContextAssertion", "Properties.entry.1.key",
    "Properties.entry.1.value", "Properties.entry.2.value", "ContextProvider.SubjectSourceKey",
    "ContextProvider.KeyDefinitionList.member.1.SourceKey", "Url", "UserName", "Version",
])


@given(st.sampled_from(["AssumeRole", "CreateUser", "PutAccountProperties",
                        "CreateOpenIDConnectProvider", "GetFederationToken"]),
       st.dictionaries(_KEYS, st.text(max_size=12), max_size=8))
def test_fuzz_only_backend_errors(action, params):
    from sts_backend.errors import BackendError

    service = "iam" if action in ("CreateUser", "PutAccountProperties",
                                  "CreateOpenIDConnectProvider") else "sts"
    try:
        out = validate(service, action, params)
    except BackendError as exc:
        assert exc.http_status == 400 and exc.message
    else:
        assert isinstance(out, dict)
