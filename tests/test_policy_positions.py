"""Statement positions as IAM's simulator reports them, and the context keys of documents."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sts_backend.policy_keys import context_key_names, statement_context_keys
from sts_backend.policy_positions import Position, Span, statement_spans

ADMIN_AS_AWS_STORES_IT = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": "*",
      "Resource": "*"
    }
  ]
}"""
CLI_EXAMPLE = ('{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*",'
               '"Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}')


def span(line1, col1, line2, col2) -> Span:
    return Span(Position(line1, col1), Position(line2, col2))


# ---- observed AWS answers -------------------------------------------------------------------

def test_statement_object_as_in_the_aws_cli_example():
    """aws-cli examples/iam/simulate-custom-policy.rst: StartPosition 1:38, EndPosition 1:167."""
    assert statement_spans(CLI_EXAMPLE) == (span(1, 38, 1, 167),)


def test_administrator_access_as_aws_reports_it():
    """AdministratorAccess (two-space indent): Line 3 Column 17 to Line 8 Column 6."""
    assert statement_spans(ADMIN_AS_AWS_STORES_IT) == (span(3, 17, 8, 6),)


def test_compact_list_starts_at_the_brace_after_the_bracket():
    """json.dumps output: responses show Column 41 (the "{" right after "[")."""
    text = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                               "Resource": "*"}]})
    assert text[40] == "{"
    assert statement_spans(text) == (span(1, 41, 1, len(text) - 1),)


def test_later_statements_start_at_the_comma():
    text = '{"Statement":[{"Effect":"Allow"},{"Effect":"Deny"}, {"Effect":"Allow"}]}'
    first_end = text.index("}") + 1
    second_end = text.index("}", first_end) + 1
    assert statement_spans(text) == (
        span(1, 15, 1, first_end + 1),
        span(1, first_end + 1, 1, second_end + 1),    # the column of the comma
        span(1, second_end + 1, 1, len(text) - 1),
    )


# ---- the scanner ----------------------------------------------------------------------------

def test_braces_brackets_quotes_and_escapes_inside_strings():
    text = ('{"Id": "x}{]", "Statement": [{"Sid": "a", "Effect": "Allow", "Action": "s:a",\n'
            '"Resource": "arn:aws:s3:::b/}{[\\"\\\\"}, {"Effect": "Deny", "Condition": '
            '{"StringLike": {"k:k": ["}", "\\u007d"]}}}], "Version": "2012-10-17"}')
    spans = statement_spans(text)
    assert len(spans) == 2
    assert spans[0].end == Position(2, text.split("\n")[1].index("}, {") + 2)
    assert spans[1].start == spans[0].end
    assert spans[1].end.column == len(text.split("\n")[1]) - len('], "Version": "2012-10-17"}') + 1


def test_line_breaks_crlf_and_lone_cr_count_once():
    for newline in ("\n", "\r\n", "\r"):
        text = newline.join(['{', ' "Statement": [', '  {"Effect": "Allow"}', ' ]', '}'])
        assert statement_spans(text) == (span(2, 16, 3, 22),), repr(newline)


def test_last_duplicate_statement_member_wins_as_in_json_loads():
    text = '{"Statement": {"Effect": "Deny"}, "Statement": [{"Effect": "Allow"}]}'
    after_bracket, after_brace = text.index("[") + 2, text.index("}]") + 2   # 1-based columns
    assert statement_spans(text) == (span(1, after_bracket, 1, after_brace),)


def test_escaped_member_name_and_no_statement():
    assert statement_spans('{"\\u0053tatement": {"Effect": "Allow"}}') == (span(1, 21, 1, 39),)
    assert statement_spans('{"Version": "2012-10-17"}') == ()
    with pytest.raises(ValueError):
        statement_spans('{"Statement": [{"Effect": "Allow"')


statements = st.lists(st.fixed_dictionaries({
    "Sid": st.text(alphabet='ab{}[]"\\, \n', max_size=6),
    "Effect": st.sampled_from(["Allow", "Deny"]),
    "Action": st.lists(st.text(alphabet="s3:*{}", min_size=1, max_size=5), max_size=3),
}), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(statements, st.sampled_from([None, 0, 1, 2, 4, "\t"]), st.booleans())
def test_each_span_holds_exactly_its_statement(items, indent, as_object):
    """Whatever the layout: from the start, past whitespace and one comma, the text decodes to the
    statement and ends where the end says (positions are converted back to offsets)."""
    body = items[0] if as_object else items
    text = json.dumps({"Version": "2012-10-17", "Statement": body}, indent=indent)
    lines = text.split("\n")
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    decoder = json.JSONDecoder()
    spans = statement_spans(text)
    assert len(spans) == len(items if not as_object else [body])
    for expected, found in zip([body] if as_object else items, spans):
        start = starts[found.start.line - 1] + found.start.column - 1
        end = starts[found.end.line - 1] + found.end.column - 1
        if as_object:
            assert text[start - 1] == "{"
            assert decoder.raw_decode(text, start - 1) == (expected, end)
            continue
        i = start
        while text[i] in " \t\n,":
            i += 1
        assert text[start:i].count(",") <= 1
        assert decoder.raw_decode(text, i) == (expected, end)


# ---- context keys ---------------------------------------------------------------------------

def test_context_keys_of_the_aws_cli_example():
    """aws-cli examples/iam/get-context-keys-for-custom-policy.rst: variables count, case as written."""
    text = ('{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":'
            '"arn:aws:dynamodb:us-west-2:123456789012:table/${aws:username}","Condition":{"DateGreaterThan":'
            '{"aws:CurrentTime":"2015-08-16T12:00:00Z"}}}}')
    assert context_key_names([text]) == ["aws:username", "aws:CurrentTime"]


def test_context_keys_order_dedup_and_variables():
    first = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": ["arn:aws:s3:::b/${aws:PrincipalTag/team, 'x'}/${*}"],
         "Condition": {"StringLike": {"s3:prefix": ["${aws:username}/*"]}, "Bool": {"aws:SecureTransport": True}}},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
         "Condition": {"IpAddress": {"AWS:SOURCEIP": "10.0.0.0/8"}}}]})
    old = json.dumps({"Version": "2008-10-17", "Statement": {
        "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::${aws:userid}",
        "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}, "Null": {"aws:TokenIssueTime": "true"}}}})
    assert statement_context_keys(first) == (
        ("aws:PrincipalTag/team", "s3:prefix", "aws:username", "aws:SecureTransport"), ("AWS:SOURCEIP",))
    assert statement_context_keys(old) == (("aws:SourceIp", "aws:TokenIssueTime"),)   # 2008: no variables
    assert context_key_names([first, old]) == [
        "aws:PrincipalTag/team", "s3:prefix", "aws:username", "aws:SecureTransport", "AWS:SOURCEIP",
        "aws:TokenIssueTime"]
