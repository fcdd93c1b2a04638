"""gen-k8s's output: the manifests pass Kubernetes' own schemas (kubernetes-validate, strict,
Kubernetes KUBERNETES), match the golden files of the demo team and examples/llm-team, read
back as the documents rendered; the Containerfile; the command itself through CliRunner.
Fast: no cluster, no processes.

Regenerate the golden files with ``UPDATE_GOLDEN=1 pytest tests/unit/test_k8s_output.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from coffee_team import k8s
from coffee_team.cli import main
from coffee_team.k8s import emit
from coffee_team.k8s import names as n
from coffee_team.team import parse_team, parse_team_text

KUBERNETES = "1.30.0"
REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "k8s"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PG = "postgresql://coffee@postgres:5432/coffee"
SQLITE_LINE = "database_path: data/orchestrator.db"
GOLDEN_OPTIONS = k8s.Options(image="registry.example.com/coffee-team:0.1.0",
                             namespace="coffee-team")


def example(name: str):
    """(team, text, files): the team file ``name`` as if it were the checkout's data/team.yaml,
    on PostgreSQL; its role files read from the checkout."""
    source = REPO / ("data/team.yaml" if name == "demo" else f"examples/{name}/team.yaml")
    text = source.read_text(encoding="utf-8")
    assert SQLITE_LINE in text
    text = text.replace(SQLITE_LINE, f"database_path: {PG}")
    team = parse_team_text(text, REPO / "data" / "team.yaml")
    files = {p: (REPO / p).read_text(encoding="utf-8") for p in k8s.read_paths(team)}
    return team, text, files


def rendered(name: str) -> dict[str, str]:
    team, text, files = example(name)
    out = k8s.files(k8s.render(team, text, GOLDEN_OPTIONS, files))
    out[emit.CONTAINERFILE] = k8s.containerfile(team)
    return out


def everything_team():
    """Every setting the renderer reads, at once."""
    doc = {"team": {"database_path": "postgresql://u:pw@db/coffee", "stop_wait_seconds": 45,
                    "heartbeat_interval": 5, "heartbeat_stale_after": 20,
                    "web": {"port": 9000, "username": "me", "password_env": "WEB_PASSWORD",
                            "host": "0.0.0.0", "allow_remote": True},
                    "notify": [{"url": "json://hooks.example.com/x"},
                               {"command": ["/usr/local/bin/page-me", "--quiet"]}]},
           "agents": {"lead_dev": {"priority": 1, "handler": "m:f", "cpu": "1500m",
                                   "memory_limit_mb": 2048, "secrets": ["GH_TOKEN"],
                                   "environment": {"MODE": "ci", "N": 3}},
                      "writer": {"priority": 2, "command": ["node", "w.js"], "cpu": 0.25},
                      "x" * 64: {"priority": 9, "handler": "m:f"}}}
    return parse_team(doc, "/p/data/team.yaml"), "team: {}\n"


def all_docs():
    for name in ("demo", "llm-team"):
        team, text, files = example(name)
        yield name, k8s.render(team, text, GOLDEN_OPTIONS, files)
    team, text = everything_team()
    yield "everything", k8s.render(team, text, k8s.Options(image="img"), {"r/a.md": "hi\n"})


@pytest.mark.parametrize("name, docs", list(all_docs()), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_every_manifest_passes_kubernetes_schemas(name, docs):
    for doc in docs:
        # the YAML as written, read back: what kubectl would send
        again = yaml.safe_load(emit.to_yaml(doc))
        assert again == doc
        assert kubernetes_validate.validate(again, KUBERNETES, strict=True) == "1.30"


def test_the_validation_is_not_vacuous():
    _, docs = next(all_docs())
    sts = yaml.safe_load(emit.to_yaml(docs[2]))
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = "30"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES, strict=True)
    sts = yaml.safe_load(emit.to_yaml(docs[2]))
    sts["spec"]["template"]["spec"]["terminationGracePeriod"] = 10  # strict: unknown key
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES, strict=True)


@pytest.mark.parametrize("name", ["demo", "llm-team"])
def test_golden_files(name):
    files = rendered(name)
    folder = GOLDEN / name
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for file, text in files.items():
            (folder / file).write_text(text, encoding="utf-8")
    golden = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}
    assert sorted(files) == sorted(golden), \
        "run UPDATE_GOLDEN=1 pytest tests/unit/test_k8s_output.py"
    for file in files:
        assert files[file] == golden[file], f"{file} differs from tests/golden/k8s/{name}/{file}"


def test_the_stream_reads_back_as_the_documents():
    _, docs = next(all_docs())
    text = k8s.stream(docs)
    assert emit.is_generated(text)
    assert list(yaml.safe_load_all(text)) == docs


def test_file_names_are_numbered_in_apply_order_and_unique():
    for _, docs in all_docs():
        names = list(k8s.files(docs))
        assert names == sorted(names) and len(set(names)) == len(docs)
        assert names[0] == "00-configmap-coffee-team.yaml"
        assert all(emit.is_generated(t) for t in k8s.files(docs).values())


def test_the_llm_team_carries_its_role_files():
    team, _, files = example("llm-team")
    assert sorted(files) == sorted(f"examples/llm-team/agents/{a}.md" for a in team.names)
    docs = k8s.render(team, "x", GOLDEN_OPTIONS, files)
    assert len(docs[0]["data"]) == 1 + len(files)


def test_the_containerfile():
    team, _, _ = example("demo")
    text = k8s.containerfile(team)
    assert text.splitlines()[4] == f"FROM {emit.BASE_IMAGE}"
    assert '"$wheel[postgres]"' in text
    assert f"USER {n.USER_ID}:{n.USER_ID}" in text and "also run" not in text
    llm, _, _ = example("llm-team")
    assert '"$wheel[postgres,mcp]"' in k8s.containerfile(llm)
    assert "# The team's agents also run: claude." in k8s.containerfile(llm)
    _, text, _ = example("llm-team")
    merge = "merge: &merge {into: roadmap, review_by: project_manager}"
    assert merge in text
    checked = parse_team_text(text.replace(merge, merge[:-1] + ", checks: [[pytest, -q]]}"),
                              REPO / "data" / "team.yaml")
    assert "also run: claude, pytest." in k8s.containerfile(checked)
    everything, _ = everything_team()
    assert '"$wheel[postgres,notify]"' in k8s.containerfile(everything)
    assert "also run: /usr/local/bin/page-me, node." in k8s.containerfile(everything)


# --- the command -----------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("COFFEE_TEAM", raising=False)
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir()
    path.write_text((REPO / "data/team.yaml").read_text().replace(SQLITE_LINE,
                                                                    f"database_path: {PG}"))
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_gen_k8s_prints_the_stream_and_the_secrets_keys(project):
    result = run("--team", str(project), "gen-k8s", "--image", "img:1", "--namespace", "ns")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 10 and all(d["metadata"]["namespace"] == "ns" for d in docs)
    assert docs[2]["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    assert result.stderr.strip() == "the Secret coffee-team needs the keys: COFFEE_DATABASE_URL"


def test_gen_k8s_out_writes_files_and_removes_its_stale_ones(project, tmp_path):
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "99-statefulset-gone.yaml").write_text(emit.HEADER + "kind: StatefulSet\n")
    (out / "mine.yaml").write_text("kind: Secret\n")  # not ours: left alone
    result = run("--team", str(project), "gen-k8s", "--out", str(out), "--secret", "s")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert "99-statefulset-gone.yaml" not in written and "mine.yaml" in written
    assert emit.CONTAINERFILE in written and len(written) == 12
    assert f"removed {out / '99-statefulset-gone.yaml'}" in result.output
    assert result.output.splitlines()[-1].startswith(f"wrote 10 manifests and Containerfile "
                                                     f"to {out}; the Secret s needs the keys")
    deployment = yaml.safe_load((out / "08-deployment-coffee-control-plane.yaml").read_text())
    assert "namespace" not in deployment["metadata"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("coffee-team:")


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    return line


def test_gen_k8s_refuses_a_sqlite_team(project):
    project.write_text(project.read_text().replace(PG, "data/q.db"))
    line = one_line_error(run("--team", str(project), "gen-k8s"))
    assert "a cluster needs the PostgreSQL queue" in line


def test_gen_k8s_bad_option_and_missing_role_file(project):
    assert "--namespace" in one_line_error(run("--team", str(project), "gen-k8s",
                                               "--namespace", "Not_A_Label"))
    text = project.read_text().replace(
        "    handler: coffee_team.agent.demo:handle\n    handles: [design_request]\n",
        "    handles: [design_request]\n    llm: {command: [claude, -p], "
        "system_prompt_file: data/agents/architect.md}\n", 1)
    project.write_text(text)
    line = one_line_error(run("--team", str(project), "gen-k8s"))
    assert "architect.md: cannot read a file the team reads" in line
    (project.parent / "agents").mkdir()
    (project.parent / "agents" / "architect.md").write_text("You design.\n")
    result = run("--team", str(project), "gen-k8s")
    assert result.exit_code == 0, result.output
    config = next(yaml.safe_load_all(result.stdout))
    assert config["data"]["file0-architect.md"] == "You design.\n"


# --- any team ------------------------------------------------------------------------------

ENV_VALUE = st.text(st.sampled_from("ab$(){}/: 1"), max_size=12).filter(
    lambda v: v[:1] != "'" and v[-1:] != "'" and " ;" not in v and " #" not in v)
AGENT = st.fixed_dictionaries({"handler": st.just("m:f")}, optional={
    "priority": st.integers(0, 999),
    "memory_limit_mb": st.integers(1, 10**7),
    "cpu": st.one_of(st.integers(1, 1024), st.sampled_from(["1m", "250m", "1500m", 0.5, 0.125])),
    "restart_on_hang": st.booleans(),
    "environment": st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True),
                                   ENV_VALUE, max_size=3),
    "secrets": st.lists(st.from_regex(r"S_[A-Z0-9]{1,6}", fullmatch=True), max_size=3,
                        unique=True)})


@st.composite
def teams(draw):
    interval = draw(st.floats(0.1, 1000))
    settings = {"database_path": PG, "heartbeat_interval": interval,
                "heartbeat_stale_after": interval + draw(st.floats(0.1, 5000)),
                "start_seconds": draw(st.integers(0, 3600)),
                "stop_wait_seconds": draw(st.integers(1, 3600))}
    names = draw(st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True),
                          min_size=1, max_size=3, unique=True))
    return parse_team({"team": settings, "agents": {name: draw(AGENT) for name in names}},
                      "/p/data/team.yaml")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(team=teams(), namespace=st.one_of(
    st.none(), st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)))
def test_any_valid_team_renders_manifests_kubernetes_accepts(team, namespace):
    docs = k8s.render(team, f"team:\n  database_path: {PG}\n",
                      k8s.Options(image="img:1", namespace=namespace))
    for doc in docs:
        assert yaml.safe_load(emit.to_yaml(doc)) == doc
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    assert len({d["metadata"]["name"] for d in sets}) == len(team.agents)
    first = min(a.priority for a in team.agents)
    for sts in sets:
        name = sts["metadata"]["name"]
        assert n.is_dns_label(name) and len(name) <= n.MAX_STATEFULSET_NAME
        agent = team.agent(sts["metadata"]["annotations"][n.AGENT_NAME_ANNOTATION])
        spec = sts["spec"]["template"]["spec"]
        assert spec["containers"][0]["command"][-1] == agent.name
        assert ("initContainers" in spec) == (agent.priority != first)
        startup = spec["containers"][0]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= \
            team.settings.start_seconds + team.settings.heartbeat_stale_after
