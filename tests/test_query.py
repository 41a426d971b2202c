"""wire.query: the form codec, Query lists, XML rendering and defensive parsing."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import query
from wire.query import (
    IAM_NAMESPACE, STS_NAMESPACE, QueryError, encode_form, escape_text, flatten, list_items,
    new_request_id, parse_error, parse_form, parse_query, parse_response, render_error,
    render_result, unflatten,
)

UTC = dt.timezone.utc

# Characters XML 1.0 can carry; everything else is replaced by U+FFFD.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
xml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).filter(
    lambda s: not _XML_ILLEGAL.search(s))
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


# --- form codec -----------------------------------------------------------------


def test_parse_form_basic_forms():
    body = b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=a+b%20c&Empty=&Bare&&"
    assert parse_form(body) == {
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleSessionName": "a b c",
        "Empty": "", "Bare": "",
    }


def test_parse_form_utf8_and_reserved_characters():
    assert parse_form(b"K%C3%BC=%E6%97%A5%26%3D%2B") == {"Kü": "日&=+"}
    assert parse_form("Name=%C3%BC&Raw=ü") == {"Name": "ü", "Raw": "ü"}


def test_parse_query_is_the_same_codec():
    assert parse_query("Action=GetCallerIdentity&Version=2011-06-15") == {
        "Action": "GetCallerIdentity", "Version": "2011-06-15"}
    assert parse_form(b"") == {} and parse_form("") == {}


@pytest.mark.parametrize("body", [b"a=%zz", b"a=%4", b"a=%", b"a=1%", b"%g1=x", b"a=%%41"])
def test_parse_form_rejects_bad_percent_encoding(body):
    with pytest.raises(QueryError, match="percent-encoding") as info:
        parse_form(body)
    assert info.value.code == "MalformedQueryString"


@pytest.mark.parametrize("body", [b"a=%ff", b"a=%C3", b"a=\xff", b"%ED%A0%80=x", b"a=%C0%AF"])
def test_parse_form_rejects_invalid_utf8(body):
    with pytest.raises(QueryError, match="UTF-8"):
        parse_form(body)


def test_parse_form_rejects_duplicates_naming_the_parameter():
    with pytest.raises(QueryError, match="RoleArn is given more than once") as info:
        parse_form(b"RoleArn=a&RoleArn=b")
    assert info.value.code == "InvalidQueryParameter"
    with pytest.raises(QueryError):  # the same name, spelt two ways
        parse_form(b"Role%41rn=a&RoleArn=b")


def test_parse_form_bounds_parameters_and_names():
    parse_form(b"&".join(b"k%d=v" % i for i in range(1000)))
    with pytest.raises(QueryError, match="too many"):
        parse_form(b"&".join(b"k%d=v" % i for i in range(1001)))
    with pytest.raises(QueryError, match="too many"):
        parse_form(b"a=1&" * 5, max_params=3)
    parse_form(b"k" * 256 + b"=v")
    with pytest.raises(QueryError, match="1 to 256"):
        parse_form(b"k" * 257 + b"=v")
    with pytest.raises(QueryError, match="1 to 256"):
        parse_form(b"=v")


def test_parse_form_never_echoes_values():
    with pytest.raises(QueryError) as info:
        parse_form(b"SecretAccessKey=hunter2%ff")
    assert "hunter2" not in str(info.value)


@settings(max_examples=200)
@given(st.dictionaries(names, st.text(st.characters(blacklist_categories=("Cs",))), max_size=12))
def test_form_round_trip(params):
    assert parse_form(encode_form(params)) == params


def test_encode_form_matches_botocore_percent_encoding():
    assert encode_form({"Policy": '{"a": "b/c"}', "K": "~-_."}) == (
        b"Policy=%7B%22a%22%3A%20%22b%2Fc%22%7D&K=~-_.")


# --- lists ------------------------------------------------------------------------


def test_unflatten_structures_and_scalars():
    params = parse_form(
        b"Tags.member.1.Key=team&Tags.member.1.Value=core&Tags.member.2.Key=env"
        b"&PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FRO"
        b"&TransitiveTagKeys.member.1=team&TransitiveTagKeys.member.2=env")
    assert unflatten(params, "Tags", ("Key", "Value")) == [
        {"Key": "team", "Value": "core"}, {"Key": "env"}]
    assert unflatten(params, "PolicyArns", ["arn"]) == [{"arn": "arn:aws:iam::aws:policy/RO"}]
    assert unflatten(params, "TransitiveTagKeys") == ["team", "env"]
    assert unflatten(params, "Missing") == []


def test_unflatten_orders_by_index_not_by_arrival():
    params = {f"L.member.{i}": str(i) for i in (3, 1, 10, 2, 4, 5, 6, 7, 8, 9)}
    assert unflatten(params, "L") == [str(i) for i in range(1, 11)]


def test_empty_list_marker():
    assert unflatten({"PolicyArns": ""}, "PolicyArns", ("arn",)) == []
    with pytest.raises(QueryError, match="must be a list"):
        unflatten({"PolicyArns": "arn:aws:iam::aws:policy/RO"}, "PolicyArns", ("arn",))


@pytest.mark.parametrize("params, message", [
    ({"L.member.1": "a", "L.member.3": "c"}, "without gaps"),
    ({"L.member.2": "b"}, "without gaps"),
    ({"L.member.0": "a"}, "invalid list index"),
    ({"L.member.01": "a"}, "invalid list index"),
    ({"L.member.x": "a"}, "invalid list index"),
    ({"L.member.\u0661": "a"}, "invalid list index"),
    ({"L.member.": "a"}, "invalid list index"),
    ({"L.member.1234567": "a"}, "invalid list index"),
    ({"L.1": "a"}, "not a member of list L"),
    ({"L.member": "a"}, "not a member of list L"),
])
def test_malformed_lists_are_rejected(params, message):
    with pytest.raises(QueryError, match=message):
        unflatten(params, "L")


def test_scalar_list_item_needs_a_value():
    with pytest.raises(QueryError, match="L.member.1 has no value"):
        unflatten({"L.member.1.x": "a"}, "L")


def test_list_names_do_not_collide_with_longer_names():
    params = {"Tags.member.1.Key": "a", "TagsExtra": "x", "TagsX.member.5": "y"}
    assert unflatten(params, "Tags", ("Key",)) == [{"Key": "a"}]


def test_list_items_groups_keys_and_supports_maps():
    params = {"M.entry.1.key": "k", "M.entry.1.value": "v", "M.entry.2.key": "k2"}
    assert list_items(params, "M", sep="entry") == [
        ("M.entry.1", ["M.entry.1.key", "M.entry.1.value"]), ("M.entry.2", ["M.entry.2.key"])]
    assert list_items(params, "M", keys=[], sep="entry") == []


def test_flatten_inverts_nested_values():
    when = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert flatten({"Tags": [{"Key": "k", "Value": "v"}], "Empty": [], "Skip": None,
                    "Dur": 900, "Flag": False, "When": when, "Outer": {"Inner": "x"}}) == {
        "Tags.member.1.Key": "k", "Tags.member.1.Value": "v", "Empty": "", "Dur": "900",
        "Flag": "false", "When": "2026-01-01T12:00:00Z", "Outer.Inner": "x"}


@given(st.lists(st.fixed_dictionaries({"Key": names}, optional={"Value": st.text()}), max_size=8))
def test_flatten_unflatten_round_trip(tags):
    assert unflatten(flatten({"Tags": tags}), "Tags", ("Key", "Value")) == tags


# --- rendering ------------------------------------------------------------------------


def test_render_result_exact_bytes():
    body = render_result("GetCallerIdentity", STS_NAMESPACE,
                         {"UserId": "AIDAEXAMPLE", "Account": "123456789012",
                          "Arn": "arn:aws:iam::123456789012:user/bob"}, "rid-1")
    assert body == (
        b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<GetCallerIdentityResult><UserId>AIDAEXAMPLE</UserId><Account>123456789012</Account>"
        b"<Arn>arn:aws:iam::123456789012:user/bob</Arn></GetCallerIdentityResult>"
        b"<ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata>"
        b"</GetCallerIdentityResponse>")


def test_render_result_without_result_element():
    assert render_result("DeleteUser", IAM_NAMESPACE, None, "r") == (
        b'<DeleteUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        b"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeleteUserResponse>")
    assert b"<XResult></XResult>" in render_result("X", IAM_NAMESPACE, {}, "r")


def test_render_values():
    body = render_result("A", STS_NAMESPACE, {
        "Expiration": dt.datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "Size": 6, "Flag": True, "Off": False, "Gone": None, "Seed": b"\x00\xff",
        "Users": [{"Name": "a"}, {"Name": "b"}], "Empty": [], "Words": ("x", "y"),
    }, "r")
    assert (b"<AResult><Expiration>2025-12-31T23:02:03Z</Expiration><Size>6</Size>"
            b"<Flag>true</Flag><Off>false</Off><Seed>AP8=</Seed>"
            b"<Users><member><Name>a</Name></member><member><Name>b</Name></member></Users>"
            b"<Empty></Empty><Words><member>x</member><member>y</member></Words></AResult>") in body


def test_render_refuses_ambiguous_values():
    with pytest.raises(ValueError, match="naive"):
        render_result("A", STS_NAMESPACE, {"T": dt.datetime(2026, 1, 1)}, "r")
    with pytest.raises(TypeError):
        render_result("A", STS_NAMESPACE, {"F": 1.5}, "r")
    with pytest.raises(TypeError):
        render_result("A", STS_NAMESPACE, {"L": ["a", None]}, "r")


def test_escape_text():
    assert escape_text("plain") == "plain"
    assert escape_text("a<b>&c\"'") == "a&lt;b&gt;&amp;c\"'"
    assert escape_text("x\r\ny\tz") == "x&#13;\ny\tz"
    assert escape_text("\x00\x1f\ufffe\ud800") == "\ufffd" * 4
    assert escape_text("]]>") == "]]&gt;"


def test_render_error_exact_bytes_and_escaping():
    body = render_error("ValidationError", "Value '<x>&\x01' at 'name'", "Sender",
                        STS_NAMESPACE, "rid")
    assert body == (
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        b"<Type>Sender</Type><Code>ValidationError</Code>"
        b"<Message>Value '&lt;x&gt;&amp;\xef\xbf\xbd' at 'name'</Message></Error>"
        b"<RequestId>rid</RequestId></ErrorResponse>")
    assert parse_error(body) == ("ValidationError", "Value '<x>&\ufffd' at 'name'", "rid")


def test_namespace_attribute_is_escaped():
    body = render_error("C", "m", "Sender", 'urn:"x"&<y>', "r")
    assert body.startswith(b'<ErrorResponse xmlns="urn:&quot;x&quot;&amp;&lt;y&gt;">')


def test_new_request_id_is_a_random_uuid4():
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


# --- parsing (client side) ----------------------------------------------------------------


@settings(max_examples=300)
@given(xml_text, xml_text, st.lists(xml_text, max_size=4))
def test_text_survives_render_then_parse(a, b, items):
    body = render_result("AssumeRole", STS_NAMESPACE,
                         {"A": a, "Nested": {"B": b}, "Items": items}, "rid")
    out = parse_response(body, "AssumeRole")
    assert out["A"] == a and out["Nested"] == {"B": b}
    assert out["Items"] == (items or "")  # an empty list reads back as ""
    assert out["ResponseMetadata"] == {"RequestId": "rid"}


@given(st.text(max_size=40))
def test_any_text_renders_to_well_formed_xml(text):
    out = parse_response(render_result("A", STS_NAMESPACE, {"V": text}, "r"), "A")
    assert out["V"] == _XML_ILLEGAL.sub("\ufffd", text)
    code, message, _ = parse_error(render_error("C", text, "Sender", STS_NAMESPACE, "r"))
    assert message == _XML_ILLEGAL.sub("\ufffd", text)


def test_round_trip_of_typed_values():
    when = dt.datetime(2026, 1, 1, tzinfo=UTC)
    body = render_result("AssumeRole", STS_NAMESPACE, {
        "Credentials": {"AccessKeyId": "ASIA", "Expiration": when},
        "PackedPolicySize": 6, "Flag": True}, "rid")
    assert parse_response(body, "AssumeRole") == {
        "Credentials": {"AccessKeyId": "ASIA", "Expiration": "2026-01-01T00:00:00Z"},
        "PackedPolicySize": "6", "Flag": "true", "ResponseMetadata": {"RequestId": "rid"}}


AWS_SAMPLE = b"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
"""


def test_parse_pretty_printed_aws_response():
    out = parse_response(AWS_SAMPLE, "AssumeRole")
    assert out["Credentials"]["Expiration"] == "2019-11-09T13:34:41Z"
    assert out["AssumedRoleUser"]["AssumedRoleId"] == "ARO123EXAMPLE123:TestAR"
    assert out["PackedPolicySize"] == "6"
    assert out["ResponseMetadata"]["RequestId"] == "c6104cbe-af31-11e0-8154-cbc7ccf896c7"


def test_parse_is_namespace_agnostic():
    for doc in (b"<AResponse><AResult><X>1</X></AResult></AResponse>",
                b'<p:AResponse xmlns:p="urn:other"><p:AResult><p:X>1</p:X></p:AResult></p:AResponse>'):
        assert parse_response(doc, "A") == {"X": "1"}


def test_parse_lists_and_maps():
    doc = (b"<GetAccountSummaryResponse><GetAccountSummaryResult><SummaryMap>"
           b"<entry><key>Users</key><value>2</value></entry>"
           b"<entry><key>Roles</key><value>5</value></entry></SummaryMap>"
           b"<Names><member>a</member></Names></GetAccountSummaryResult>"
           b"</GetAccountSummaryResponse>")
    assert parse_response(doc, "GetAccountSummary") == {
        "SummaryMap": {"Users": "2", "Roles": "5"}, "Names": ["a"]}


@pytest.mark.parametrize("doc, message", [
    (b"<AResponse><AResult>", "malformed XML"),
    (b"not xml at all", "malformed XML"),
    (b"<html><body>502 Bad Gateway</body></html>", "expected <AResponse>"),
    (b"<BResponse/>", "expected <AResponse>"),
    (b"<AResponse><AResult><X>1</X><X>2</X></AResult></AResponse>", "repeated"),
    (b"<AResponse><AResult>text</AResult></AResponse>", "not a structure"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><AResponse>&e;</AResponse>', "malformed XML"),
    (b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><AResponse/>', "malformed XML"),
    (b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><AResponse>&x;</AResponse>', "malformed XML"),
])
def test_parse_response_rejects_bad_documents(doc, message):
    with pytest.raises(QueryError, match=message):
        parse_response(doc, "A")


def test_parse_response_rejects_error_documents():
    body = render_error("AccessDenied", "no", "Sender", STS_NAMESPACE, "r")
    with pytest.raises(QueryError, match="got <ErrorResponse>"):
        parse_response(body, "AssumeRole")


def test_billion_laughs_is_refused():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                       for i in range(1, 10))
            + b"]><AResponse><AResult><X>&lol9;</X></AResult></AResponse>")
    with pytest.raises(QueryError):
        parse_response(bomb, "A")
    with pytest.raises(QueryError):
        parse_error(bomb)


def test_size_and_depth_bounds():
    big = b"<AResponse><AResult><X>" + b"x" * 2000 + b"</X></AResult></AResponse>"
    assert parse_response(big, "A")["X"] == "x" * 2000
    with pytest.raises(QueryError, match="larger than 1000 bytes"):
        parse_response(big, "A", max_bytes=1000)
    with pytest.raises(QueryError, match="larger than"):
        parse_error(b" " * (query.MAX_RESPONSE_BYTES + 1))
    deep = b"<AResponse><AResult>" + b"<a>" * 40 + b"x" + b"</a>" * 40 + b"</AResult></AResponse>"
    with pytest.raises(QueryError, match="nested deeper"):
        parse_response(deep, "A")
    very_deep = b"<AResponse><AResult>" + b"<a>" * 100000 + b"</a>" * 100000 + b"</AResult></AResponse>"
    with pytest.raises(QueryError):
        parse_response(very_deep, "A")


def test_parse_error_forms():
    sts = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n  <Error>\n'
           b"    <Type>Sender</Type>\n    <Code>ExpiredToken</Code>\n"
           b"    <Message>The security token included in the request is expired</Message>\n"
           b"  </Error>\n  <RequestId>8a0b4a2e-1111-2222-3333-444455556666</RequestId>\n"
           b"</ErrorResponse>\n")
    assert parse_error(sts) == ("ExpiredToken",
                                "The security token included in the request is expired",
                                "8a0b4a2e-1111-2222-3333-444455556666")
    ec2 = (b"<Response><Errors><Error><Code>InvalidAction</Code><Message>m</Message></Error>"
           b"</Errors><RequestID>abc</RequestID></Response>")
    assert parse_error(ec2) == ("InvalidAction", "m", "abc")
    assert parse_error(b"<ErrorResponse><Error><Code>X</Code></Error></ErrorResponse>") == ("X", "", "")


@pytest.mark.parametrize("doc", [
    b"<html><body>Service Unavailable</body></html>",
    b"<ErrorResponse><Error><Message>no code</Message></Error></ErrorResponse>",
    b"<ErrorResponse><Error><Code>  </Code></Error></ErrorResponse>",
    b"",
    b"{\"__type\": \"json\"}",
])
def test_parse_error_rejects_non_error_documents(doc):
    with pytest.raises(QueryError):
        parse_error(doc)


def test_public_names():
    for name in query.__all__:
        assert hasattr(query, name), name
