"""The team file: the demo team loads as the seed defines it, and every kind of bad input is one
line naming the file, the key path and what is allowed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from coffee_team.errors import TeamError
from coffee_team.team import AgentSpec, HttpSettings, Team, TeamSettings, load_team, parse_team

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "team.yaml"
SOURCE = "data/team.yaml"

SEED = {  # name: (priority, check_interval)
    "architect": (1, 3600), "code_developer": (2, 300), "project_manager": (3, 900),
    "assistant": (3, 1800), "code_searcher": (4, 86400), "ux_design_expert": (4, 3600),
}


def doc(agents: dict | None = None, **team) -> dict:
    d = {"agents": agents if agents is not None else {"architect": {"priority": 1}}}
    if team:
        d["team"] = team
    return d


def agent_doc(**fields) -> dict:
    return doc({"architect": fields})


def team_error(document, source: str = SOURCE) -> str:
    with pytest.raises(TeamError) as info:
        parse_team(document, source)
    return assert_one_line(str(info.value), source)


def assert_one_line(message: str, source: str) -> str:
    assert message.splitlines() == [message], f"not one line: {message!r}"
    assert message.startswith(f"{source}: "), message
    return message


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def file_error(path: Path) -> str:
    with pytest.raises(TeamError) as info:
        load_team(path)
    return assert_one_line(str(info.value), str(path))


# --- the demo team ------------------------------------------------------------------------

def test_demo_team_has_the_seeds_agents_priorities_and_intervals():
    team = load_team(DEMO)
    assert team.names == tuple(SEED)
    for spec in team.agents:
        assert isinstance(spec, AgentSpec)
        assert (spec.priority, spec.check_interval) == SEED[spec.name]
        assert isinstance(spec.check_interval, float)
        assert spec.handler == "coffee_team.agent.demo:handle" and spec.command is None
        assert spec.handles, spec.name
    dev = team.agent("code_developer")
    assert dev.auto_approve is True and dev.memory_limit_mb == 512 and dev.timeout_seconds == 600
    assert team.agent("architect").auto_approve is False
    assert team.agent("architect").handles == ("design_request",)


def test_demo_team_settings_match_the_defaults():
    team = load_team(DEMO)
    # the checkout names its own venv, so the committed config is the same whatever runs
    # gen-config; left unset, the interpreter is the one coffee-team runs from
    assert team.settings == TeamSettings(python=".venv/bin/python")
    defaults = TeamSettings()
    assert defaults.database_path == "data/orchestrator.db"
    assert (defaults.health_check_interval, defaults.max_restart_attempts) == (30.0, 3)
    assert (defaults.restart_backoff, defaults.restart_reset_after) == (60.0, 600.0)
    assert (defaults.max_queue_size, defaults.cleanup_interval_hours) == (1000, 24.0)
    assert (defaults.heartbeat_interval, defaults.heartbeat_stale_after) == (30.0, 300.0)
    assert (defaults.start_seconds, defaults.start_retries, defaults.stop_wait_seconds) == (1, 3, 10)
    assert defaults.python is None
    assert defaults.require_branch is None and defaults.http is None


def test_team_paths_are_relative_to_the_project_root(tmp_path):
    path = write(tmp_path, DEMO.read_text())
    team = load_team(path)
    root = tmp_path.resolve()
    assert team.root == root
    assert team.conf_file == root / "supervisord.conf.d" / "supervisord.conf"
    assert team.database_url == str(root / "data" / "orchestrator.db")
    assert team.run_dir == root / "data" / "run" and team.log_dir == root / "data" / "logs"


def test_dataclasses_are_frozen():
    team = load_team(DEMO)
    with pytest.raises(AttributeError):
        team.agents[0].priority = 9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        team.settings.python = "x"  # type: ignore[misc]


def test_agent_lookup_of_unknown_name_is_a_team_error():
    team = parse_team(doc(), SOURCE)
    assert team.agent("architect").priority == 1
    message = assert_one_line(str(_raises(lambda: team.agent("nobody"))), SOURCE)
    assert "unknown agent(s) nobody" in message and "architect" in message


def _raises(fn) -> TeamError:
    with pytest.raises(TeamError) as info:
        fn()
    return info.value


def test_a_servers_head_timeout_is_read_in_seconds():
    team = parse_team({"team": {"web": {"port": 9002, "username": "ops", "password_env": "P",
                                        "head_timeout": 2}}, "agents": {"a": None}}, SOURCE)
    assert team.settings.web.head_timeout == 2.0


def test_a_full_valid_document_is_parsed_into_every_field():
    team = parse_team({
        "team": {"http": {"port": 9001, "username": "admin", "password_env": "CT_PASS"},
                 "require_branch": "roadmap", "python": "/usr/bin/python3",
                 "heartbeat_interval": 5, "heartbeat_stale_after": 5.5},
        "agents": {"a-1": {"command": ["python3", "w.py", "--x=1"], "environment": {"K": 7, "L": "v"},
                           "options": {"b": 1, "a": [2]}, "handles": ["x.y", "z-1"],
                           "memory_limit_mb": None, "restart_on_hang": False},
                   "b_2": None},
    }, SOURCE)
    assert team.settings.http == HttpSettings(port=9001, username="admin", password_env="CT_PASS")
    assert team.settings.http.head_timeout is None  # the web program's default (10 s)
    assert team.settings.require_branch == "roadmap"
    assert team.settings.heartbeat_stale_after == 5.5
    a, b = team.agents
    assert a.command == ("python3", "w.py", "--x=1") and a.handler is None
    assert a.environment == (("K", "7"), ("L", "v"))
    assert a.options == (("a", [2]), ("b", 1))
    assert a.handles == ("x.y", "z-1") and a.restart_on_hang is False
    assert b == AgentSpec(name="b_2")


@pytest.mark.parametrize("name", ["a", "0agent", "x" * 64, "a_b-c", "9"])
def test_good_agent_names(name):
    assert parse_team(doc({name: {}}), SOURCE).names == (name,)


# --- unknown keys ------------------------------------------------------------------------

@pytest.mark.parametrize("document, path", [
    ({"agents": {"a": {}}, "team": {}, "extra": 1}, "extra"),
    ({"agents": {"a": {}}, "Agents": {}}, "Agents"),
    (doc(pririty=1), "team.pririty"),
    (agent_doc(pririty=1), "agents.architect.pririty"),
    (agent_doc(name="x"), "agents.architect.name"),
    (doc(http={"port": 1, "username": "u", "password_env": "P", "pasword": "x"}),
     "team.http.pasword"),
])
def test_unknown_keys_name_the_path_and_the_allowed_keys(document, path):
    message = team_error(document)
    assert f": {path}: unknown key" in message
    assert "allowed:" in message


def test_unknown_agent_key_lists_every_agent_field():
    message = team_error(agent_doc(colour="red"))
    for key in ("priority", "check_interval", "handler", "command", "environment", "handles"):
        assert key in message


def test_retry_defaults_to_the_team_and_an_agent_replaces_it():
    from coffee_team.taskstate import RetryPolicy
    team = parse_team(doc({"a": {}, "b": {"retry": {"attempts": 5, "on": [75, "rate"]}}},
                          retry={"attempts": 3, "backoff": 2}, escalate_after=600))
    assert team.agent("a").retry == RetryPolicy(attempts=3, backoff=2.0)
    assert team.agent("b").retry == RetryPolicy(attempts=5, on=(75, "rate"))
    assert team.settings.escalate_after == 600.0
    assert parse_team(doc()).agent("architect").retry is None
    assert "agents.architect.retry.colour: unknown key" in team_error(agent_doc(
        retry={"colour": 1}))


def test_a_bare_yaml_on_key_in_retry_means_on():
    """YAML 1.1 reads ``on:`` as the boolean true; the documented ``retry: {on: [...]}`` works."""
    from coffee_team.taskstate import RetryPolicy
    document = yaml.load("team: {retry: {attempts: 2, on: [75, rate limit]}}\n"
                         "agents: {a: {handler: 'm:f'}}\n", Loader=yaml.SafeLoader)
    assert True in document["team"]["retry"]  # what YAML hands the parser
    assert parse_team(document).agent("a").retry == RetryPolicy(attempts=2, on=(75, "rate limit"))


def test_queue_options_are_the_one_team_to_queue_mapping(tmp_path):
    from coffee_team.taskstate import RetryPolicy
    team = parse_team(doc({"a": {"handles": ["review"], "approve_before": ["deploy"]},
                           "b": {"retry": {"attempts": 5}}},
                          max_queue_size=9, lease_seconds=45, escalate_after=600),
                      SOURCE, tmp_path / "data" / "team.yaml")
    clock = object()
    assert team.queue_options(clock=clock) == {
        "agents": ("a", "b"), "handles": {"a": ("review",), "b": ()}, "max_queue_size": 9,
        "retry": {"b": RetryPolicy(attempts=5)}, "escalate_after": 600.0,
        "lease_seconds": 45.0, "wake_dir": str(tmp_path / "data" / "run" / "wake"), "host": "",
        "approve_before": {"a": ("deploy",)}, "clock": clock}


def test_unknown_team_key_lists_http_as_allowed():
    assert "http" in team_error(doc(colour="red")).split("allowed:")[1]


# --- wrong types -------------------------------------------------------------------------

@pytest.mark.parametrize("document, path, allowed", [
    (agent_doc(priority=True), "agents.architect.priority", "an integer from 0 to 999"),
    (agent_doc(priority="1"), "agents.architect.priority", "an integer from 0 to 999"),
    (agent_doc(priority=1.0), "agents.architect.priority", "an integer"),
    (agent_doc(priority=1000), "agents.architect.priority", "an integer from 0 to 999"),
    (agent_doc(priority=-1), "agents.architect.priority", "an integer from 0 to 999"),
    (agent_doc(memory_limit_mb=False), "agents.architect.memory_limit_mb", "an integer"),
    (agent_doc(check_interval="300"), "agents.architect.check_interval", "a positive number"),
    (agent_doc(check_interval=True), "agents.architect.check_interval", "a positive number"),
    (agent_doc(check_interval=float("nan")), "agents.architect.check_interval", "a positive number"),
    (agent_doc(check_interval=float("inf")), "agents.architect.check_interval", "a positive number"),
    (agent_doc(timeout_seconds=[1]), "agents.architect.timeout_seconds", "a positive number"),
    (agent_doc(auto_approve="yes"), "agents.architect.auto_approve", "true or false"),
    (agent_doc(auto_approve=1), "agents.architect.auto_approve", "true or false"),
    (agent_doc(environment=["A=1"]), "agents.architect.environment", "a mapping"),
    (agent_doc(environment={"A": [1]}), "agents.architect.environment", "a string value for A"),
    (agent_doc(environment={"A": True}), "agents.architect.environment", "a string value for A"),
    (agent_doc(environment={"A": None}), "agents.architect.environment", "a string value for A"),
    (agent_doc(command="python3 w.py"), "agents.architect.command", "a non-empty list"),
    (agent_doc(command=["python3", 5]), "agents.architect.command", "each argument"),
    (agent_doc(handles="x"), "agents.architect.handles", "a list of task types"),
    (agent_doc(handles=["a b"]), "agents.architect.handles", "task types made of"),
    (agent_doc(options=["a"]), "agents.architect.options", "a mapping"),
    (agent_doc(options={1: "a"}), "agents.architect.options", "a mapping"),
    (doc(max_restart_attempts=True), "team.max_restart_attempts", "an integer from 0 to 1000"),
    (doc(max_queue_size=0), "team.max_queue_size", "an integer from 1 to"),
    (doc(health_check_interval="30s"), "team.health_check_interval", "a positive number"),
    (doc(stop_wait_seconds=0), "team.stop_wait_seconds", "an integer from 1 to 3600"),
    (doc(python=["x"]), "team.python", "a path"),
    (doc(python=""), "team.python", "a path"),
    (doc(database_path=3), "team.database_path", "a path"),
    (doc(require_branch=5), "team.require_branch", "a git branch name"),
    (doc(http=["port"]), "team.http", "a mapping"),
    (doc(http={"port": "9001", "username": "u", "password_env": "P"}), "team.http.port",
     "an integer from 1 to 65535"),
    (doc(http={"port": 0, "username": "u", "password_env": "P"}), "team.http.port", "an integer"),
    (doc(http={"port": 1, "username": 5, "password_env": "P"}), "team.http.username", "a user name"),
    (doc(http={"port": 1, "username": "u", "password_env": "NOT A NAME"}), "team.http.password_env",
     "the name of an environment variable"),
    (doc(web={"port": 1, "username": "u", "password_env": "P", "head_timeout": 0}),
     "team.web.head_timeout", "a positive number"),
    (agent_doc(retry=3), "agents.architect.retry", "a mapping"),
    (agent_doc(retry={"attempts": 0}), "agents.architect.retry.attempts", "an integer from 1"),
    (agent_doc(retry={"backoff": -1}), "agents.architect.retry.backoff", "a positive number"),
    (agent_doc(retry={"on": "75"}), "agents.architect.retry.on", "a list of exit codes"),
    (agent_doc(retry={"on": [True]}), "agents.architect.retry.on", "exit codes"),
    (agent_doc(retry={"on": ["("]}), "agents.architect.retry.on", "a valid regular expression"),
    (doc(retry={"max_backoff": "1h"}), "team.retry.max_backoff", "a positive number"),
    (doc(escalate_after=0), "team.escalate_after", "a positive number"),
    ({"agents": {"architect": []}}, "agents.architect", "a mapping"),
    ({"agents": {"architect": "fast"}}, "agents.architect", "a mapping"),
    ({"agents": {"architect": {}}, "team": "fast"}, "team", "a mapping"),
    ({"agents": {"architect": {}}, "team": ["a"]}, "team", "a mapping"),
])
def test_wrong_types_name_the_path_and_what_is_allowed(document, path, allowed):
    message = team_error(document)
    assert f": {path}: expected" in message
    assert allowed in message


@pytest.mark.parametrize("agents", [None, [], {}, "architect", ["architect"]])
def test_agents_must_be_a_nonempty_mapping(agents):
    message = team_error({"team": {}, "agents": agents})
    assert ": agents: expected a mapping of agent names" in message and "at least one" in message


def test_http_needs_port_username_and_password_env():
    message = team_error(doc(http={"port": 9001}))
    assert ": team.http: missing password_env, username" in message


@pytest.mark.parametrize("value", [[], False, 0, ""])
def test_falsy_non_mapping_team_section_is_refused(value):
    assert ": team: expected a mapping" in team_error({"team": value, "agents": {"a": {}}})


@pytest.mark.parametrize("document", [agent_doc(check_interval=10**400),
                                      doc(heartbeat_interval=-(10**400))])
def test_huge_integers_for_numbers_are_a_team_error(document):
    assert "a positive number" in team_error(document)


def test_huge_integers_for_integers_are_a_team_error():
    assert "an integer from 0 to 999" in team_error(agent_doc(priority=10**400))
    assert "an integer from 0 to 999" in team_error(agent_doc(priority=-(10**400)))


# --- agent names -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["code developer", "code:dev", "code/dev", "CodeDev", "", "x" * 65,
                                  "café", "_lead", "-lead", "a.b", "a%b", 5, None, True])
def test_bad_agent_names(name):
    message = team_error(doc({name: {}}))
    shown = repr(name) if name == "" else name
    assert f": agents.{shown}: bad agent name" in message
    assert "allowed: lowercase letters, digits, '_' and '-', at most 64" in message


@pytest.mark.parametrize("document", [
    doc({"architect\n": {}}),
    agent_doc(environment={"FOO\n": "x"}),
    agent_doc(handler="coffee_team.agent.demo:handle\n"),
    agent_doc(handles=["design\n"]),
    doc(http={"port": 9001, "username": "admin\n", "password_env": "P"}),
    doc(http={"port": 9001, "username": "admin", "password_env": "P\n"}),
])
def test_trailing_newline_in_names_is_refused(document):
    team_error(document)


def test_duplicate_agent_names_are_refused(tmp_path):
    path = write(tmp_path, "agents:\n  architect:\n    priority: 1\n"
                           "  coder: {}\n  architect:\n    priority: 2\n")
    message = file_error(path)
    assert "duplicate key 'architect'" in message and "line 5" in message


def test_duplicate_team_keys_are_refused(tmp_path):
    path = write(tmp_path, "team:\n  python: a\n  python: b\nagents: {a: {}}\n")
    assert "duplicate key 'python'" in file_error(path)


def test_yaml_merge_keys_still_work(tmp_path):
    path = write(tmp_path, "agents:\n  a: &b {priority: 7, check_interval: 5}\n  c:\n    <<: *b\n    priority: 8\n")
    team = load_team(path)
    assert [(a.name, a.priority, a.check_interval) for a in team.agents] == [
        ("a", 7, 5.0), ("c", 8, 5.0)]


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\nagents: {x: {}}\n", "agents: {x: {? {k: v} : 1}}\n"])
def test_unhashable_yaml_keys_are_a_team_error(tmp_path, text):
    file_error(write(tmp_path, text))


@pytest.mark.parametrize("document", [doc(**{"a\nb": 1}), agent_doc(**{"x\ny": 1}),
                                      doc({"bad\nname": {}})])
def test_keys_with_newlines_still_give_one_line(document):
    team_error(document)


# --- values -------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["check_interval", "timeout_seconds", "cpu_warn_percent",
                                   "rss_warn_mb"])
@pytest.mark.parametrize("value", [0, -1, 0.0, -0.5])
def test_non_positive_intervals_are_refused(field, value):
    message = team_error(agent_doc(**{field: value}))
    assert f": agents.architect.{field}: expected a positive number" in message


@pytest.mark.parametrize("field", ["health_check_interval", "restart_backoff", "heartbeat_interval",
                                   "cleanup_interval_hours", "restart_reset_after"])
def test_non_positive_team_intervals_are_refused(field):
    assert f": team.{field}: expected a positive number" in team_error(doc(**{field: 0}))


def test_handler_and_command_together_are_refused():
    message = team_error(agent_doc(handler="coffee_team.agent.demo:handle", command=["python3", "w.py"]))
    assert ": agents.architect: set either 'handler' or 'command', not both" in message


@pytest.mark.parametrize("ref", ["coffee_team.agent.demo", "coffee_team.agent.demo:", ":handle", "a b:c",
                                 "a:b:c", "1mod:f", "mod:f.g", "", 5])
def test_bad_handler_refs(ref):
    message = team_error(agent_doc(handler=ref))
    assert ": agents.architect.handler: expected 'package.module:function'" in message


@pytest.mark.parametrize("command", [[], [""], ["python3", ""], ["a\nb"], ["a\x00"], None])
def test_empty_or_multiline_command(command):
    assert ": agents.architect.command: expected" in team_error(agent_doc(command=command))


@pytest.mark.parametrize("value", ['say "hi"', "a\nb", "a\rb", "a\x00", "x ;y", "x\t;y", "x #y",
                                   "'quoted'", "'lead", "trail'", " ;", "a  #"])
def test_environment_values_supervisor_cannot_carry(value):
    message = team_error(agent_doc(environment={"GREETING": value}))
    assert ": agents.architect.environment: expected a value for GREETING without" in message


@pytest.mark.parametrize("value", ["a;b", "a#b", "50%", "a,b=c", "it's", "ünï €", " lead", "x;", "",
                                   "a 'b' c"])
def test_environment_values_that_are_fine(value):
    assert parse_team(agent_doc(environment={"V": value}), SOURCE).agents[0].environment == (
        ("V", value),)


@pytest.mark.parametrize("key", ["1X", "MY-VAR", "MY VAR", "", "X" * 129, "É", "A=B", 5])
def test_bad_environment_keys(key):
    message = team_error(agent_doc(environment={key: "v"}))
    assert ": agents.architect.environment: expected variable names like MY_VAR" in message


@pytest.mark.parametrize("python", ["/opt/my ;py", ".venv/bin/python #3", "a\nb"])
def test_paths_supervisor_would_cut_are_refused(python):
    assert ": team.python: expected a path" in team_error(doc(python=python))


@pytest.mark.parametrize("interval, stale", [(30, 30), (30, 29.9), (300, 30)])
def test_heartbeat_stale_after_must_exceed_the_interval(interval, stale):
    message = team_error(doc(heartbeat_interval=interval, heartbeat_stale_after=stale))
    assert ": team.heartbeat_stale_after: expected more than heartbeat_interval" in message


def test_heartbeat_interval_alone_can_exceed_the_default_stale_after():
    message = team_error(doc(heartbeat_interval=301))
    assert "team.heartbeat_stale_after" in message and "(301)" in message and "got 300" in message


def test_long_values_are_shortened_in_messages():
    message = team_error(agent_doc(priority="x" * 500))
    assert len(message) < 200 and "..." in message


# --- the file itself ----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("agents: {a: {}\n", "invalid YAML"),
    ("agents:\n  a: {}\n b: 1\n", "invalid YAML"),
    ("agents: [\n", "invalid YAML"),
    ("\tagents: {}\n", "invalid YAML"),
    ("agents: *nowhere\n", "invalid YAML"),
])
def test_invalid_yaml(tmp_path, text, expected):
    message = file_error(write(tmp_path, text))
    assert expected in message and "line " in message


def test_invalid_utf8_is_a_team_error(tmp_path):
    assert "cannot read team file" in file_error(write(tmp_path, b"agents: {a: {}}\n# \xff\xfe\n"))


def test_missing_file(tmp_path):
    message = file_error(tmp_path / "data" / "team.yaml")
    assert "team file not found" in message and "--team" in message


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "data" / "team.yaml").mkdir(parents=True)
    assert "cannot read team file" in file_error(tmp_path / "data" / "team.yaml")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path, text):
    assert "expected a mapping with 'team:' and 'agents:'" in file_error(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- architect\n- coder\n", "just a string\n", "42\n"])
def test_top_level_not_a_mapping(tmp_path, text):
    assert "expected a mapping with 'team:' and 'agents:'" in file_error(write(tmp_path, text))


def test_file_errors_name_the_file_and_key_path(tmp_path):
    path = write(tmp_path, "agents:\n  architect:\n    priority: high\n")
    message = file_error(path)
    assert message == (f"{path}: agents.architect.priority: expected an integer from 0 to 999, "
                       f"got 'high'")


def test_load_team_accepts_the_demo_copy(tmp_path):
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir()
    shutil.copy(DEMO, path)
    team = load_team(str(path))
    assert isinstance(team, Team) and team.path == path and team.names == tuple(SEED)


def test_parse_team_is_pure_and_repeatable():
    document = yaml.safe_load(DEMO.read_text())
    assert parse_team(document, "x") == parse_team(document, "x")


# --- long work: stall_after, on_stall, lease_seconds ----------------------------------------

def test_long_work_settings_parse_with_their_defaults():
    team = parse_team({"team": {"lease_seconds": 3},
                       "agents": {"a": {"stall_after": 90, "on_stall": "cancel"}, "b": {}}},
                      SOURCE)
    a, b = team.agents
    assert (a.stall_after, a.on_stall) == (90.0, "cancel")
    assert (b.stall_after, b.on_stall) == (None, "warn")  # no stall detection unless asked
    assert team.settings.lease_seconds == 3.0 and TeamSettings().lease_seconds == 300.0
    assert parse_team(agent_doc(stall_after=None), SOURCE).agents[0].stall_after is None


@pytest.mark.parametrize("document, path, allowed", [
    (agent_doc(stall_after=0), "agents.architect.stall_after", "a positive number"),
    (agent_doc(stall_after="5m"), "agents.architect.stall_after", "a positive number"),
    (agent_doc(stall_after=True), "agents.architect.stall_after", "a positive number"),
    (agent_doc(on_stall="kill"), "agents.architect.on_stall", "one of warn, cancel, got 'kill'"),
    (agent_doc(on_stall=True), "agents.architect.on_stall", "one of warn, cancel"),
    (agent_doc(on_stall=["warn"]), "agents.architect.on_stall", "one of warn, cancel"),
    (doc(lease_seconds=-1), "team.lease_seconds", "a positive number"),
    (doc(lease_seconds="300"), "team.lease_seconds", "a positive number"),
])
def test_malformed_long_work_settings_name_the_key_path(document, path, allowed):
    message = team_error(document)
    assert f": {path}: expected" in message and allowed in message


def test_cancel_on_stall_needs_stall_after():
    message = team_error(agent_doc(on_stall="cancel"))
    assert ": agents.architect.on_stall: 'cancel' needs stall_after" in message


@pytest.mark.parametrize("lease", [0.5, 2.99])
def test_lease_too_short_to_renew_is_refused(lease):
    message = team_error(doc(lease_seconds=lease))
    assert ": team.lease_seconds: expected at least 3" in message


def test_unknown_long_work_keys_list_the_new_ones():
    message = team_error(agent_doc(stall_afer=5))
    assert ": agents.architect.stall_afer: unknown key" in message
    assert "stall_after" in message and "on_stall" in message
