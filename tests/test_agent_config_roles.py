"""agent.config: [roles.NAME] per-caller roles, [container] role, and rule_warnings.

Pure like tests/test_agent_config.py: ``parse_config`` on text, with the
environment, uid, hostname and user lookup passed in; ``rule_warnings`` reads
unit files and cgroup directories made under tmp_path.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

from agent.config import load_config, parse_config, rule_warnings
from agent.config_roles import lookup_uid, unit_known
from agent.config_types import AgentConfig, RoleConfig, RoleRule
from agent.errors import ConfigError
from metadata_server.callers import CallerMatch, CallerRule, select

PATH = "/etc/rolecall/agent.toml"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HEAD = f"""[sts]
endpoint_url = "http://127.0.0.1:8900"

[source]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "{SECRET}"
"""
DEFAULT_ROLE = '[role]\narn = "arn:aws:iam::123456789012:role/host"\n'
WEB = 'arn = "arn:aws:iam::123456789012:role/web"\n'
USERS = {"www-data": 33, "root": 0}
MISSING_ROLE = '[role]: missing section: the agent needs the role it serves (arn = "arn:aws:iam::...")'
SESSION = "must be 2-64 characters of letters, digits and +=,.@_- ({hostname} stands for the host's name)"
MATCH_KEYS = "unit, uid, user, cgroup, peer"


def parse(text: str, hostname: str = "web-1", head: str = HEAD) -> AgentConfig:
    return parse_config(head + text, PATH, environ={}, uid=1000, hostname=hostname, lookup_uid=USERS.get)


def rule(name: str, match: str, body: str = WEB) -> str:
    return f"\n[roles.{name}]\n{body}match = {match}\n"


def refusal(text: str, **kwargs) -> str:
    """The one-line ConfigError message, with the file's path cut off; never holding the secret."""
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message and message.startswith(f"{PATH}: ")
    return message.removeprefix(f"{PATH}: ")


# ---- what a good file gives -------------------------------------------------------------------


def test_rules_in_file_order_beside_the_default_role():
    config = parse(DEFAULT_ROLE + rule("web", '{ unit = "web.service" }')
                   + rule("www", '{ user = "www-data" }', 'arn = "arn:aws:iam::123456789012:role/path/www"\n')
                   + rule("containers", '{ peer = "172.17.0.0/16" }')
                   + rule("ops", '{ uid = 1001, cgroup = "/user.slice/", unit = "user@1001.service" }'))
    assert config.role.arn == "arn:aws:iam::123456789012:role/host" and config.role.session_name == "web-1"
    assert [r.name for r in config.roles] == ["web", "www", "containers", "ops"]
    assert config.roles[0] == RoleRule("web", RoleConfig("arn:aws:iam::123456789012:role/web", "web@web-1"),
                                       CallerMatch(unit="web.service"))
    assert config.roles[1].match == CallerMatch(uid=33, user="www-data")
    assert config.roles[1].role.role_name == "www"
    assert config.roles[2].match == CallerMatch(peer=ipaddress.ip_network("172.17.0.0/16"))
    assert config.roles[3].match == CallerMatch(unit="user@1001.service", uid=1001, cgroup="/user.slice")


def test_a_rule_takes_every_key_of_role():
    config = parse(DEFAULT_ROLE + """
[roles.web]
arn = "arn:aws:iam::123456789012:role/team/web"
session_name = "web-{hostname}"
duration_seconds = 7200
external_id = "ext-123"
policy = '{"Version": "2012-10-17", "Statement": []}'
policy_arns = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
tags = { team = "blue" }
source_identity = "web"
refresh_before_expiry_seconds = 1800

[roles.web.match]
cgroup = "/system.slice/web.service"
""")
    assert config.roles == (RoleRule("web", RoleConfig(
        arn="arn:aws:iam::123456789012:role/team/web", session_name="web-web-1", duration_seconds=7200,
        external_id="ext-123", policy='{"Version": "2012-10-17", "Statement": []}',
        policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",), tags=(("team", "blue"),), source_identity="web",
        refresh_before_expiry_seconds=1800), CallerMatch(cgroup="/system.slice/web.service")),)


def test_the_rules_feed_select():
    config = parse(DEFAULT_ROLE + rule("web", '{ unit = "web.service" }') + rule("www", '{ user = "www-data" }'))
    rules = [CallerRule(r.name, r.match) for r in config.roles]

    class Peer:
        uid, cgroup, unit = 33, "/system.slice/cron.service", "cron.service"

    assert select(rules, Peer(), "127.0.0.1").name == "www"


@pytest.mark.parametrize("session_name, hostname, expected", [
    (None, "web-1", "web@web-1"),  # a rule's default: NAME@{hostname}
    (None, "web 1.example.com", "web@web-1.example.com"),
    (None, "x", "web@rolecall-agent"),
    (None, "h" * 100, "web@" + "h" * 60),  # cut to 64, the rule's name kept
    ('"{hostname}"', "db-7", "db-7"),
    ('"svc-{hostname}-{hostname}"', "a1", "svc-a1-a1"),
    ('"fixed"', "web-1", "fixed"),
    ('"' + "s" * 60 + '-{hostname}"', "web-1", "s" * 60 + "-web"),
])
def test_rule_session_names(session_name, hostname, expected):
    body = WEB + (f"session_name = {session_name}\n" if session_name else "")
    assert parse(rule("web", '{ uid = 1 }', body), hostname=hostname).roles[0].role.session_name == expected


def test_hostname_field_in_the_default_role_too():
    assert parse('[role]\narn = "arn:aws:iam::123456789012:role/host"\nsession_name = "agent@{hostname}"\n',
                 hostname="db 2").role.session_name == "agent@db-2"


def test_without_role_unmatched_callers_are_refused():
    config = parse(rule("web", '{ unit = "web.service" }'))
    assert config.role is None and [r.name for r in config.roles] == ["web"]


def test_without_role_and_without_rules_the_error_is_unchanged():
    assert refusal("") == MISSING_ROLE
    assert refusal("[roles]\n") == MISSING_ROLE


def test_one_role_name_in_several_rules_is_allowed():
    """Each caller sees only its own role, so two rules may serve roles of one name (even different ARNs)."""
    config = parse(rule("a", '{ uid = 1 }') + rule("b", '{ uid = 2 }')
                   + rule("c", '{ uid = 3 }', 'arn = "arn:aws:iam::210987654321:role/web"\n'))
    assert {r.role.role_name for r in config.roles} == {"web"}
    assert [r.role.session_name for r in config.roles] == ["a@web-1", "b@web-1", "c@web-1"]


def test_an_unknown_user_is_kept_and_never_matches():
    config = parse(rule("web", '{ user = "nosuchuser" }'))
    assert config.roles[0].match == CallerMatch(user="nosuchuser")


def test_container_role_names_a_rule():
    config = parse(DEFAULT_ROLE + rule("web", '{ uid = 1 }') + '\n[container]\nrole = "web"\n')
    assert config.container.role == "web"
    assert parse(DEFAULT_ROLE + '\n[container]\nlisten = "127.0.0.1:0"\n').container.role is None
    assert parse(rule("web", "{ uid = 1 }") + '\n[container]\nrole = "web"\n').container.role == "web"


def test_the_real_user_lookup():
    assert lookup_uid("root") == 0
    assert lookup_uid("rolecall-no-such-user") is None
    config = parse_config(HEAD + rule("r", '{ user = "root" }'), PATH, environ={}, uid=1000, hostname="h1")
    assert config.roles[0].match.uid == 0


def test_load_config_reads_rules(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(HEAD + rule("web", '{ unit = "web.service" }'))
    os.chmod(path, 0o600)
    assert load_config(str(path), environ={}, hostname="h1").roles[0].role.session_name == "web@h1"


# ---- refusals: one exact line each --------------------------------------------------------------

UID_RANGE = "must be an integer from 0 to 4294967294"
CGROUP = "must be an absolute cgroup path such as /system.slice/web.service"
PEER = "must be an IP network such as 172.17.0.0/16 (or one address)"
UNIT = "must be a systemd unit name such as web.service (.service, .scope or .slice)"
MFA_CHAIN = ("must be at most 3600 with [source] mfa_serial: the role is assumed from the MFA session, "
             "and STS caps such role chaining at one hour")

CASES = [
    # the tables themselves
    ("[roles]\nweb = 1\n", "[roles] web: must be a table: [roles.NAME] with the keys of [role] and match"),
    ('[roles."bad name"]\n' + WEB, "[roles]: table name 'bad name' must be 1-64 letters, digits, _ or -"),
    ("[roles." + "n" * 65 + "]\n" + WEB, f"[roles]: table name '{'n' * 65}' must be 1-64 letters, digits, _ or -"),
    (rule("web", "{ uid = 1 }", WEB + "mfa_serial = 'x'\n"), "[roles.web] mfa_serial: unknown key"),
    (rule("web", "{ uid = 1 }", ""), "[roles.web] arn: required"),
    (rule("web", "{ uid = 1 }", 'arn = "arn:aws:iam::123456789012:user/web"\n'),
     "[roles.web] arn: must be a role ARN such as arn:aws:iam::123456789012:role/NAME"),
    (rule("web", "{ uid = 1 }", WEB + "duration_seconds = 60\n"),
     "[roles.web] duration_seconds: must be an integer from 900 to 43200"),
    (rule("web", "{ uid = 1 }", WEB + 'session_name = "bad name"\n'), f"[roles.web] session_name: {SESSION}"),
    (rule("web", "{ uid = 1 }", WEB + 'session_name = "{host}"\n'), f"[roles.web] session_name: {SESSION}"),
    (rule("web", "{ uid = 1 }", WEB + 'session_name = "' + "s" * 65 + '{hostname}"\n'),
     f"[roles.web] session_name: {SESSION}"),
    (DEFAULT_ROLE.replace("host\"", "host\"\nsession_name = \"a\""), f"[role] session_name: {SESSION}"),
    # match
    ("\n[roles.web]\n" + WEB, '[roles.web] match: required: which callers get this role, '
                              'e.g. match = { unit = "web.service" }'),
    (rule("web", '"web.service"'), '[roles.web] match: must be a table such as { unit = "web.service" }'),
    (rule("web", "{}"), f"[roles.web] match: give at least one of {MATCH_KEYS}"),
    (rule("web", '{ unit = "web.service", pid = 1 }'), f"[roles.web] match: unknown key 'pid' (known: {MATCH_KEYS})"),
    (rule("web", '{ uid = 33, user = "www-data" }'), "[roles.web] match: give uid or user, not both"),
    (rule("web", "{ uid = -1 }"), f"[roles.web] match.uid: {UID_RANGE}"),
    (rule("web", "{ uid = 4294967295 }"), f"[roles.web] match.uid: {UID_RANGE}"),
    (rule("web", '{ uid = "33" }'), f"[roles.web] match.uid: {UID_RANGE}"),
    (rule("web", "{ uid = true }"), f"[roles.web] match.uid: {UID_RANGE}"),
    (rule("web", "{ uid = 1.0 }"), f"[roles.web] match.uid: {UID_RANGE}"),
    (rule("web", "{ user = 33 }"), "[roles.web] match.user: must be a string"),
    (rule("web", '{ user = "www data" }'), "[roles.web] match.user: must be a user name such as www-data"),
    (rule("web", '{ user = "" }'), "[roles.web] match.user: must be a user name such as www-data"),
    (rule("web", '{ unit = "web" }'), f"[roles.web] match.unit: {UNIT}"),
    (rule("web", '{ unit = "web.socket" }'), f"[roles.web] match.unit: {UNIT}"),
    (rule("web", '{ unit = "a/b.service" }'), f"[roles.web] match.unit: {UNIT}"),
    (rule("web", '{ unit = ["web.service"] }'), "[roles.web] match.unit: must be a string"),
    (rule("web", '{ cgroup = "system.slice" }'), f"[roles.web] match.cgroup: {CGROUP}"),
    (rule("web", '{ cgroup = "/a/../b" }'), f"[roles.web] match.cgroup: {CGROUP}"),
    (rule("web", '{ cgroup = "/a//b" }'), f"[roles.web] match.cgroup: {CGROUP}"),
    (rule("web", '{ cgroup = "" }'), f"[roles.web] match.cgroup: {CGROUP}"),
    (rule("web", "{ cgroup = 1 }"), "[roles.web] match.cgroup: must be a string"),
    (rule("web", '{ peer = "172.17.0.0/33" }'), f"[roles.web] match.peer: {PEER}"),
    (rule("web", '{ peer = "docker0" }'), f"[roles.web] match.peer: {PEER}"),
    (rule("web", '{ peer = ["172.17.0.0/16"] }'), "[roles.web] match.peer: must be a string"),
    (rule("a", "{ uid = 1 }") + rule("b", "{ uid = 2 }") + rule("c", "{ uid = 1 }"),
     "[roles.c] match: the same as [roles.a] match, which comes first: this rule could never be chosen"),
    (rule("a", '{ peer = "172.17.0.1/16" }') + rule("b", '{ peer = "172.17.0.0/16" }'),
     "[roles.b] match: the same as [roles.a] match, which comes first: this rule could never be chosen"),
    # [container] role
    (DEFAULT_ROLE + rule("web", "{ uid = 1 }") + '\n[container]\nrole = "db"\n',
     "[container] role: names no [roles.NAME] table (known: web); leave it out to serve [role]"),
    (DEFAULT_ROLE + '\n[container]\nrole = "web"\n',
     "[container] role: names no [roles.NAME] table (known: none); leave it out to serve [role]"),
    (DEFAULT_ROLE + "\n[container]\nrole = 1\n", "[container] role: must be a string"),
    (rule("web", "{ uid = 1 }") + '\n[container]\nlisten = "127.0.0.1:0"\n',
     '[container]: needs role = "NAME" of a [roles.NAME] table when there is no [role] (the endpoint serves '
     "one role to every token holder)"),
]


@pytest.mark.parametrize("text, message", CASES)
def test_refusals(text, message):
    assert refusal(text) == message


def test_mfa_chaining_cap_applies_to_each_rule():
    head = HEAD + 'mfa_serial = "arn:aws:iam::123456789012:mfa/agent"\n'
    body = WEB + "duration_seconds = 7200\n"
    with pytest.raises(ConfigError) as info:
        parse(DEFAULT_ROLE + rule("web", "{ uid = 1 }", body), head=head)
    assert str(info.value) == f"{PATH}: [roles.web] duration_seconds: {MFA_CHAIN}"
    assert parse(DEFAULT_ROLE + rule("web", "{ uid = 1 }"), head=head).roles[0].role.duration_seconds == 3600


def test_web_identity_refuses_the_keys_it_takes_from_the_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJ.header.sig")
    head = f'[sts]\nendpoint_url = "http://127.0.0.1:8900"\n\n[source]\nweb_identity_token_file = "{token}"\n'
    with pytest.raises(ConfigError) as info:
        parse(rule("web", "{ uid = 1 }", WEB + 'source_identity = "me"\n'), head=head)
    assert str(info.value) == (f"{PATH}: [roles.web] source_identity: not used with web_identity_token_file "
                               "(AssumeRoleWithWebIdentity takes it from the token)")


# ---- rule_warnings ------------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path):
    """A unit directory with web.service and getty@.service, and a cgroup tree with running units."""
    units = tmp_path / "units"
    units.mkdir()
    (units / "web.service").write_text("[Service]\n")
    (units / "getty@.service").write_text("[Service]\n")
    cgroups = tmp_path / "cgroup"
    user = cgroups / "user.slice" / "user-1000.slice"
    (user / "user@1000.service" / "app.slice" / "x.scope").mkdir(parents=True)
    (user / "session-3.scope").mkdir(parents=True)
    (cgroups / "system.slice" / "cron.service" / "worker.service").mkdir(parents=True)
    return {"unit_dirs": (str(tmp_path / "absent"), str(units)), "cgroup_root": str(cgroups)}


@pytest.mark.parametrize("unit, known", [
    ("web.service", True),  # a unit file
    ("getty@tty1.service", True),  # an instance of a template
    ("getty@.service", True),
    ("cron.service", True),  # running: its cgroup directory
    ("session-3.scope", True),  # transient: only ever in the cgroup tree
    ("user@1000.service", True),
    ("user-1000.slice", True),
    ("x.scope", False),  # a unit of uid 1000's own manager: select never matches it
    ("worker.service", False),  # a group cron.service made below itself
    ("db.service", False),
    ("web@a.service", False),
    ("getty@tty1.scope", False),
])
def test_unit_known(host, unit, known):
    assert unit_known(unit, **host) is known


def test_unit_known_on_a_hybrid_host(tmp_path):
    (tmp_path / "unified" / "system.slice" / "cron.service").mkdir(parents=True)
    assert unit_known("cron.service", (), str(tmp_path))


def test_warnings_name_each_rule_and_what_is_missing(host):
    config = parse(DEFAULT_ROLE + rule("web", '{ unit = "web.service", user = "www-data" }')
                   + rule("db", '{ unit = "db.service" }')
                   + rule("batch", '{ user = "batch" }')
                   + rule("both", '{ user = "nobody2", unit = "gone.service" }')
                   + rule("docker", '{ peer = "172.17.0.0/16" }')
                   + rule("local", '{ peer = "127.0.0.0/8" }')
                   + rule("bridge", '{ peer = "10.1.2.0/24" }')
                   + '\n[metadata]\nallowed_peers = ["10.1.0.0/16"]\n')
    where = f"{PATH}: [roles."
    assert rule_warnings(config, **host) == [
        f"{where}db] match.unit: no unit file or running unit 'db.service' on this host: "
        "the rule matches no caller until the unit runs",
        f"{where}batch] match.user: no user 'batch' on this host: the rule matches no caller until the user exists "
        "and the agent reloads",
        f"{where}both] match.user: no user 'nobody2' on this host: the rule matches no caller until the user exists "
        "and the agent reloads",
        f"{where}both] match.unit: no unit file or running unit 'gone.service' on this host: "
        "the rule matches no caller until the unit runs",
        f"{where}docker] match.peer: 172.17.0.0/16 is not within [metadata] allowed_peers: callers from it "
        "(but this host's own addresses) are refused before any rule",
    ]


def test_no_rules_no_warnings(host):
    assert rule_warnings(parse(DEFAULT_ROLE), **host) == []


def test_the_cgroup_walk_is_bounded(tmp_path, monkeypatch):
    """A unit deeper than the walk goes is not found, rather than the walk running without end."""
    from agent import config_roles

    deep = tmp_path.joinpath(*[f"d{i}.slice" for i in range(config_roles._CGROUP_DEPTH)], "deep.service")
    deep.mkdir(parents=True)
    assert not unit_known("deep.service", (), str(tmp_path))
    monkeypatch.setattr(config_roles, "_CGROUP_DEPTH", config_roles._CGROUP_DEPTH + 1)
    assert unit_known("deep.service", (), str(tmp_path))


# ---- the daemon's checks before it serves rules ------------------------------------------------


def test_uid_rules_are_refused_where_a_user_namespace_hides_uids(tmp_path):
    from agent.daemon import check_caller_identification

    full, partial = tmp_path / "full", tmp_path / "partial"
    full.write_text("         0          0 4294967295\n")
    partial.write_text("         0          0          1\n       990        990          1\n")  # PrivateUsers=yes
    by_uid = parse_config(HEAD + DEFAULT_ROLE + rule("web", "{ uid = 1001 }"), PATH, environ={})
    by_unit = parse_config(HEAD + DEFAULT_ROLE + rule("web", '{ unit = "web.service" }'), PATH, environ={})
    with pytest.raises(ConfigError) as info:
        check_caller_identification(by_uid, str(partial))
    assert str(info.value) == (f"{PATH}: [roles]: uid and user rules need the real uids, but this agent runs in a "
                               "user namespace that hides them (systemd PrivateUsers=yes): set PrivateUsers=no "
                               "(systemctl edit rolecall-agent), or match on unit or cgroup")
    assert check_caller_identification(by_unit, str(partial)) is None     # cgroups are not namespaced by uid
    assert check_caller_identification(by_uid, str(full)) is None         # and sock_diag works here
