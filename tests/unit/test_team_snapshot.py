"""The compiled team (team/snapshot.py): the same Team as the YAML gives, used only while the
team file's bytes and the parsing code are what made it; anything else falls back to YAML."""
from __future__ import annotations

import marshal
import shutil
from pathlib import Path

import pytest

from coffee_team import layout
from coffee_team.errors import TeamError
from coffee_team.team import load_team, snapshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "data" / "team.yaml",
            *sorted((REPO / "coffee_team" / "examples").glob("*/team.yaml"))]
RICH = """team:
  heartbeat_interval: 20
  retry: {attempts: 4, backoff: 5}
  notify:
    - {level: WARNING, command: [notify-send, coffee]}
  http: {port: 9001, username: admin, password_env: COFFEE_RPC_PASSWORD}
  timezone: Europe/Paris
  budget: {usd_per_day: 5}
hosts:
  - {name: one, url: "unix:///tmp/one.sock"}
agents:
  lead:
    priority: 1
    handler: coffee_team.agent.demo:handle
    options: {work_seconds: 0.5, tags: [a, b], nested: {x: 1}}
    environment: {MODE: fast}
    schedule:
      - {cron: "0 9 * * 1-5", type: standup}
    memory_limit_mb: 512
    memory_trend: {window: 30m, restart_before: 10m}
  builder:
    command: [make, -s, build]
    handles: [build]
    retry: {attempts: 2}
  coder:
    llm: {command: [claude, -p], preset: claude}
    budget: {usd_per_day: 2}
"""


def project(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("source", EXAMPLES + ["rich"], ids=lambda p: str(p)[-30:])
def test_the_snapshot_is_the_team_the_yaml_gives(tmp_path, source):
    text = RICH if source == "rich" else \
        Path(source).read_text(encoding="utf-8").replace("${python}", "python3")  # as init does
    path = project(tmp_path, text)
    written = snapshot.write_snapshot(path)
    assert written == tmp_path / "data" / "run" / "team.yaml.snapshot"
    assert written.stat().st_mode & 0o777 == 0o600
    fast = snapshot.read_snapshot(path)
    assert fast is not None
    assert fast == load_team(path)
    assert fast.path == path and fast.root == tmp_path
    assert [a.name for a in fast.agents] == [a.name for a in load_team(path).agents]


def test_a_changed_team_file_is_read_from_the_yaml(tmp_path):
    path = project(tmp_path, RICH)
    snapshot.write_snapshot(path)
    path.write_text(RICH.replace("heartbeat_interval: 20", "heartbeat_interval: 25"))
    assert snapshot.read_snapshot(path) is None
    assert snapshot.load_team(path).settings.heartbeat_interval == 25
    path.write_text(RICH + "\n")  # a byte is a change: no hash to collide, the bytes compared
    assert snapshot.read_snapshot(path) is None


def test_a_missing_or_broken_snapshot_falls_back_to_the_yaml(tmp_path):
    path = project(tmp_path, RICH)
    assert snapshot.read_snapshot(path) is None
    assert snapshot.load_team(path) == load_team(path)
    target = snapshot.write_snapshot(path)
    for junk in (b"", b"\x00garbage", target.read_bytes()[:-7],
                 marshal.dumps((snapshot.FORMAT + 1, (), b"", {}))):
        target.write_bytes(junk)
        assert snapshot.read_snapshot(path) is None
        assert snapshot.load_team(path) == load_team(path)


def test_other_code_makes_it_stale(tmp_path, monkeypatch):
    path = project(tmp_path, RICH)
    snapshot.write_snapshot(path)
    stamp = snapshot.code_stamp()
    monkeypatch.setattr(snapshot, "code_stamp", lambda: (stamp[0] + 1, *stamp[1:]))
    assert snapshot.read_snapshot(path) is None


def test_the_code_stamp_follows_the_parsing_modules(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    shutil.copytree(REPO / "coffee_team" / "team", package / "team")
    (package / "taskstate.py").write_text("")
    monkeypatch.setattr(snapshot, "_PACKAGE", str(package))
    before = snapshot.code_stamp()
    (package / "team" / "fields.py").write_text("# changed\n")
    assert snapshot.code_stamp() != before


def test_a_dataclass_keeps_only_what_differs_from_its_defaults(tmp_path):
    """Every agent decodes its whole team: fields at their default are not in the file (the
    constructor sets them), so a big team of plain agents is little to read."""
    path = project(tmp_path, RICH)
    target = snapshot.write_snapshot(path)
    _, _, _, body = marshal.loads(target.read_bytes())
    builder = next(node for node in body["agents"][1] if dict(node[3])["name"] == "builder")
    assert [name for name, _ in builder[3]] == ["name", "command", "handles", "retry"]
    policy = dict(builder[3])["retry"]  # attempts: 2, the rest as RetryPolicy's defaults
    assert [name for name, _ in policy[3]] == ["attempts"]
    assert snapshot.read_snapshot(path) == load_team(path)


def test_only_coffee_team_dataclasses_are_rebuilt(tmp_path):
    path = project(tmp_path, RICH)
    target = snapshot.write_snapshot(path)
    fmt, stamp, source, body = marshal.loads(target.read_bytes())
    body["settings"] = ("c", "os", "system", (("command", "true"),))
    target.write_bytes(marshal.dumps((fmt, stamp, source, body)))
    assert snapshot.read_snapshot(path) is None
    body["settings"] = ("c", "coffee_team.errors", "TeamError", ())
    target.write_bytes(marshal.dumps((fmt, stamp, source, body)))
    assert snapshot.read_snapshot(path) is None


def test_what_the_format_cannot_carry_gets_no_snapshot(tmp_path):
    path = project(tmp_path, RICH)
    target = snapshot.write_snapshot(path)
    path.write_text(RICH.replace("{work_seconds: 0.5,", "{since: 2024-01-01, work_seconds: 0.5,"))
    assert snapshot.write_snapshot(path) is None  # a date: the stale snapshot is removed too
    assert not target.exists()
    assert "since" in dict(snapshot.load_team(path).agent("lead").options)


def test_a_bad_team_file_gets_no_snapshot_and_keeps_its_error(tmp_path):
    path = project(tmp_path, RICH)
    target = snapshot.write_snapshot(path)
    path.write_text("agents: {Bad Name: {}}\n")
    assert snapshot.write_snapshot(path) is None and not target.exists()
    with pytest.raises(TeamError, match="bad agent name"):
        snapshot.load_team(path)


def test_an_unwritable_run_directory_is_no_error(tmp_path):
    path = project(tmp_path, RICH)
    (tmp_path / "data" / "run").write_text("a file where the directory should be")
    assert snapshot.write_snapshot(path) is None
    assert snapshot.load_team(path) == load_team(path)


def test_gen_config_writes_it_and_the_config_check_does_not_need_it(tmp_path):
    path = project(tmp_path, RICH.replace("  http: {port: 9001, username: admin, "
                                          "password_env: COFFEE_RPC_PASSWORD}\n", ""))
    team = load_team(path)
    layout.ensure_data_dirs(team)
    layout.write_config(team)
    assert snapshot.read_snapshot(path) == team
    snapshot.snapshot_path(path).unlink()
    assert layout.diff_config(team).clean  # a cache, not part of the generated config


def test_no_snapshot_is_written_or_read_while_the_environment_overrides_the_team(
        tmp_path, monkeypatch):
    """COFFEE_DATABASE_URL (Kubernetes) replaces team.database_path when the file is loaded:
    a snapshot must neither keep a URL from someone's environment nor hide it from a pod."""
    path = project(tmp_path, RICH)
    target = snapshot.write_snapshot(path)
    monkeypatch.setenv("COFFEE_DATABASE_URL", "postgresql://u:secret@db/coffee")
    assert snapshot.read_snapshot(path) is None
    assert snapshot.write_snapshot(path) is None and not target.exists()
    monkeypatch.delenv("COFFEE_DATABASE_URL")
    assert snapshot.write_snapshot(path) == target


def test_the_override_the_parser_applies_is_one_the_snapshot_stands_aside_for():
    from coffee_team.team import parse
    assert parse.DATABASE_ENV in snapshot.ENVIRONMENT
