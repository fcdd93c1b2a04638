"""gen-k8s's renderer (coffee_team/k8s/manifests.py): team → manifest dicts, over each option
and each team setting it reads; and the team-file settings it added (``secrets:``, ``cpu:``).
Pure: no files, no processes."""
from __future__ import annotations

import math

import pytest

from coffee_team.errors import KubernetesError, TeamError
from coffee_team.k8s import Options, render, secret_keys
from coffee_team.k8s import names as n
from coffee_team.k8s.manifests import without_password
from coffee_team.team import parse_team
from coffee_team.team.fields import Invalid, cpu, secrets

PG = "postgresql://coffee@postgres:5432/coffee"
IMAGE = "registry.example.com/coffee-team:1.0"


def team_of(agents: dict, path: str = "/p/data/team.yaml", **settings):
    settings.setdefault("database_path", PG)
    for spec in agents.values():
        spec.setdefault("handler", "coffee_team.agent.demo:handle")
    return parse_team({"team": settings, "agents": agents}, path, None)


def docs_of(team, text: str = f"team:\n  database_path: {PG}\n", files=None, **options):
    options.setdefault("image", IMAGE)
    return render(team, text, Options(**options), files)


def by_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def statefulset(docs, agent: str) -> dict:
    return next(d for d in by_kind(docs, "StatefulSet")
                if d["metadata"]["annotations"][n.AGENT_NAME_ANNOTATION] == agent)


def agent_container(docs, agent: str) -> dict:
    return statefulset(docs, agent)["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- the team-file settings ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (1, "1"), (2, "2"), (0.5, "500m"), (0.25, "250m"), (1.5, "1500m"), ("500m", "500m"),
    ("2000m", "2"), ("1m", "1m"), (0.001, "1m"), (1024, "1024")])
def test_cpu_is_kept_as_a_canonical_quantity(value, expected):
    assert cpu(value) == expected


@pytest.mark.parametrize("value", [0, -1, 0.0001, 0.0015, 1025, "0.5", "500", "0m", "05m",
                                   "1.5m", True, None, [], float("nan"), float("inf"),
                                   "1025000m"])
def test_cpu_refuses_what_kubernetes_or_reason_would_not_take(value):
    with pytest.raises(Invalid, match="cores"):
        cpu(value)


def test_secrets_are_variable_names_once_each():
    assert secrets(["ANTHROPIC_API_KEY", "GH_TOKEN"]) == ("ANTHROPIC_API_KEY", "GH_TOKEN")
    assert secrets([]) == ()
    for bad, match in [("KEY", "a list"), (["1KEY"], "variable names"), ([3], "variable names"),
                       (["A", "A"], "each name once, got A twice")]:
        with pytest.raises(Invalid, match=match):
            secrets(bad)


def test_the_team_file_takes_secrets_and_cpu():
    team = team_of({"a": {"secrets": ["TOKEN"], "cpu": 0.5}, "b": {}})
    assert (team.agent("a").secrets, team.agent("a").cpu) == (("TOKEN",), "500m")
    assert (team.agent("b").secrets, team.agent("b").cpu) == ((), None)


@pytest.mark.parametrize("agent, message", [
    ({"cpu": "lots"}, "agents.a.cpu: expected cores"),
    ({"secrets": "TOKEN"}, "agents.a.secrets: expected a list"),
    ({"secrets": ["TOKEN"], "environment": {"TOKEN": "x"}},
     "agents.a.secrets: TOKEN is in environment too"),
])
def test_bad_settings_are_one_line_naming_the_key(agent, message):
    with pytest.raises(TeamError, match=message):
        team_of({"a": agent})


# --- what gen-k8s refuses --------------------------------------------------------------------

@pytest.mark.parametrize("db", ["data/orchestrator.db", "sqlite:///data/q.db", "/abs/q.db"])
def test_a_sqlite_team_is_refused_in_one_line(db):
    with pytest.raises(KubernetesError) as caught:
        docs_of(team_of({"a": {}}, database_path=db), f"team:\n  database_path: {db}\n")
    message = str(caught.value)
    assert "\n" not in message and "a cluster needs the PostgreSQL queue" in message


@pytest.mark.parametrize("options, where", [
    ({"image": ""}, "--image"), ({"image": "a b"}, "--image"), ({"image": "x\ty"}, "--image"),
    ({"namespace": "Team"}, "--namespace"), ({"namespace": "a" * 64}, "--namespace"),
    ({"namespace": "-a"}, "--namespace"), ({"secret": "My_Secret"}, "--secret"),
    ({"secret": ""}, "--secret")])
def test_bad_options_are_refused(options, where):
    with pytest.raises(KubernetesError, match=where):
        docs_of(team_of({"a": {}}), **options)


def test_a_team_host_name_is_refused_each_pod_is_its_own_host():
    with pytest.raises(KubernetesError, match="team.host_name") as caught:
        docs_of(team_of({"a": {}}, host_name="box"))
    assert "\n" not in str(caught.value)


def test_the_database_url_in_an_agents_environment_is_refused():
    team = team_of({"a": {"environment": {n.DATABASE_URL_ENV: PG}}})
    with pytest.raises(KubernetesError, match="agents.a.environment.COFFEE_DATABASE_URL"):
        docs_of(team)


# --- the documents ---------------------------------------------------------------------------

def test_what_is_rendered_and_in_which_order():
    team = team_of({"late": {"priority": 3}, "first": {"priority": 1}, "mid": {"priority": 2},
                    "also_first": {"priority": 1}})
    docs = docs_of(team)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("ConfigMap", n.CONFIGMAP), ("Service", n.AGENTS_SERVICE),
        ("StatefulSet", "first"), ("StatefulSet", "also-first"), ("StatefulSet", "mid"),
        ("StatefulSet", "late"), ("Deployment", n.CONTROL_PLANE), ("Service", n.CONTROL_PLANE)]
    assert docs == docs_of(team)  # the same team, the same manifests


@pytest.mark.parametrize("namespace", [None, "coffee"])
def test_the_namespace_is_on_every_document_or_none(namespace):
    for doc in docs_of(team_of({"a": {}}), namespace=namespace):
        assert doc["metadata"].get("namespace") == namespace


def test_every_document_carries_the_apps_labels():
    for doc in docs_of(team_of({"a": {}})):
        assert doc["metadata"]["labels"][n.APP_LABEL] == n.APP


def test_the_configmap_holds_the_team_file_as_written():
    text = f"# my team\nteam:\n  database_path: {PG}\nagents:\n  a: {{handler: m:f}}\n"
    config = docs_of(team_of({"a": {}}), text)[0]
    assert config["data"] == {n.TEAM_KEY: text}


def test_a_password_in_the_database_url_never_reaches_a_manifest():
    url = "postgresql://coffee:hunter2@db.example.com:5432/coffee?sslmode=require"
    text = f"team:\n  database_path: '{url}'\nagents:\n  a: {{handler: m:f}}\n"
    docs = docs_of(team_of({"a": {}}, database_path=url), text)
    assert docs[0]["data"][n.TEAM_KEY] == text.replace("coffee:hunter2@", "coffee@")
    assert "hunter2" not in repr(docs)


def test_a_password_that_cannot_be_taken_out_is_refused():
    url = "postgresql://coffee:hunter2@db/coffee"
    text = f"# was postgresql://coffee:hunter2@old/coffee\nteam:\n  database_path: {url}\n"
    with pytest.raises(KubernetesError, match="write the URL without it"):
        docs_of(team_of({"a": {}}, database_path=url), text)


def test_a_password_that_is_also_a_word_of_the_file_is_no_trouble():
    url = "postgresql://coffee:coffee@db/coffee"
    text = f"# coffee\nteam:\n  database_path: {url}\n"
    config = docs_of(team_of({"a": {}}, database_path=url), text)[0]
    assert config["data"][n.TEAM_KEY] == text.replace("coffee:coffee@", "coffee@")


def test_the_team_file_as_written_decides_not_the_environments_override():
    """COFFEE_DATABASE_URL replaces database_path in the Team of whoever runs gen-k8s: the
    refusal and the password's removal read the file's own value."""
    overridden = team_of({"a": {}}, database_path="postgresql://me:envpw@db/coffee")
    with pytest.raises(KubernetesError, match="a cluster needs the PostgreSQL queue"):
        docs_of(overridden, "team:\n  database_path: data/q.db\n")
    text = "team:\n  database_path: postgresql://u:filepw@db/coffee\n"
    config = docs_of(overridden, text)[0]
    assert config["data"][n.TEAM_KEY] == "team:\n  database_path: postgresql://u@db/coffee\n"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:p@h/db", "postgresql://u@h/db"),
    ("postgres://u:p%40x@h:5/db?a=b", "postgres://u@h:5/db?a=b"),
    ("postgresql://:p@h/db", "postgresql://h/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"), ("postgresql://h/db", "postgresql://h/db")])
def test_without_password(url, expected):
    assert without_password(url) == expected


def test_an_agent_runs_its_own_name_from_the_mounted_team_file():
    docs = docs_of(team_of({"code_developer": {}}))
    sts = statefulset(docs, "code_developer")
    assert sts["metadata"]["name"] == "code-developer"
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == n.AGENTS_SERVICE
    assert sts["spec"]["selector"]["matchLabels"] == sts["spec"]["template"]["metadata"]["labels"]
    container = agent_container(docs, "code_developer")
    assert container["command"] == ["coffee-team", "--team", "/srv/coffee/data/team.yaml",
                                    "agent", "run", "code_developer"]
    assert container["image"] == IMAGE
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[n.TEAM_FILE]["subPath"] == n.TEAM_KEY and mounts[n.TEAM_FILE]["readOnly"]
    assert mounts[n.DATA_DIR]["name"] == "data"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"team": {"name": "team", "configMap": {"name": n.CONFIGMAP}},
                       "data": {"name": "data", "emptyDir": {}}}


def test_the_data_directory_is_where_the_team_puts_it():
    team = team_of({"a": {}}, path=n.TEAM_FILE)
    assert str(team.data_dir) == n.DATA_DIR
    assert str(team.root) == n.PROJECT_ROOT


@pytest.mark.parametrize("stop_wait", [1, 10, 3600])
def test_the_grace_period_is_stop_wait_seconds(stop_wait):
    docs = docs_of(team_of({"a": {}}, stop_wait_seconds=stop_wait))
    for doc in by_kind(docs, "StatefulSet") + by_kind(docs, "Deployment"):
        assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == stop_wait


def test_pods_run_as_the_images_user_without_privileges_or_api_token():
    for doc in by_kind(docs_of(team_of({"a": {}, "b": {"priority": 9}})), "StatefulSet"):
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == n.USER_ID
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_environment_and_secrets():
    team = team_of({"a": {"environment": {"MODE": "fast", "PYTHONUNBUFFERED": "0"},
                          "secrets": ["ANTHROPIC_API_KEY", n.DATABASE_URL_ENV]}, "b": {}})
    env = agent_container(docs_of(team, secret="team-secrets"), "a")["env"]
    assert env == [
        {"name": "PYTHONUNBUFFERED", "value": "0"}, {"name": "MODE", "value": "fast"},
        {"name": n.DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": {
            "name": "team-secrets", "key": n.DATABASE_URL_ENV}}},
        {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": "team-secrets", "key": "ANTHROPIC_API_KEY"}}}]
    assert "ANTHROPIC_API_KEY" not in env_of(agent_container(docs_of(team), "b"))


@pytest.mark.parametrize("value, rendered", [
    ("plain", "plain"), ("$HOME/x", "$HOME/x"), ("cost $5", "cost $5"), ("end$", "end$"),
    ("$(HOME)/x", "$$(HOME)/x"), ("a$$b", "a$$$$b"), ("$x $(y)", "$$x $$(y)")])
def test_environment_values_reach_the_process_as_written(value, rendered):
    """The kubelet expands $(NAME) and reads $$ as $; supervisord passes values unchanged."""
    env = agent_container(docs_of(team_of({"a": {"environment": {"V": value}}})), "a")["env"]
    assert {"name": "V", "value": rendered} in env
    # the kubelet's rule, applied to what is rendered, gives the value back
    assert kubelet_expand(rendered) == value


def kubelet_expand(text: str) -> str:
    """Kubernetes' env expansion with no variable defined: $$ → $, $(X) kept, $ otherwise."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_a_configmap_over_a_mebibyte_is_refused():
    with pytest.raises(KubernetesError, match="over a ConfigMap's 1048576"):
        docs_of(team_of({"a": {}}), files={"big.md": "x" * (1024 * 1024)})


@pytest.mark.parametrize("agent, expected", [
    ({}, None),
    ({"memory_limit_mb": 512}, {"requests": {"memory": "512Mi"}, "limits": {"memory": "768Mi"}}),
    ({"memory_limit_mb": 101}, {"requests": {"memory": "101Mi"}, "limits": {"memory": "152Mi"}}),
    ({"cpu": "250m"}, {"requests": {"cpu": "250m"}, "limits": {"cpu": "250m"}}),
    ({"cpu": 2, "memory_limit_mb": 1000},
     {"requests": {"memory": "1000Mi", "cpu": "2"}, "limits": {"memory": "1500Mi", "cpu": "2"}}),
])
def test_resources_from_memory_limit_mb_and_cpu(agent, expected):
    container = agent_container(docs_of(team_of({"a": agent})), "a")
    assert container.get("resources") == expected


@pytest.mark.parametrize("interval, stale, start", [(30, 300, 1), (1, 3, 0), (0.5, 2.5, 5),
                                                     (120, 600, 1), (7.5, 31, 2)])
def test_probes_are_timed_from_the_heartbeat_settings(interval, stale, start):
    team = team_of({"a": {}}, heartbeat_interval=interval, heartbeat_stale_after=stale,
                   start_seconds=start)
    container = agent_container(docs_of(team), "a")
    base = ["coffee-team", "--team", n.TEAM_FILE, "agent", "probe", "a"]
    startup, live, ready = (container[k] for k in ("startupProbe", "livenessProbe",
                                                   "readinessProbe"))
    assert startup["exec"]["command"] == base + ["--started"]
    assert live["exec"]["command"] == base
    assert ready["exec"]["command"] == base + ["--ready"]
    often = max(1, math.ceil(min(interval, 10)))
    assert startup["periodSeconds"] == ready["periodSeconds"] == often
    # the first heartbeat may take start_seconds + heartbeat_stale_after, never less
    assert startup["periodSeconds"] * startup["failureThreshold"] >= start + stale
    assert startup["periodSeconds"] * (startup["failureThreshold"] - 1) < start + stale
    assert live["periodSeconds"] == max(1, math.ceil(interval))
    assert live["failureThreshold"] == 2 and ready["failureThreshold"] == 1
    for probe in (startup, live, ready):
        assert probe["timeoutSeconds"] >= 1 and isinstance(probe["periodSeconds"], int)


def test_an_agent_not_restarted_when_hung_has_no_liveness_probe():
    docs = docs_of(team_of({"a": {"restart_on_hang": False}, "b": {}}))
    assert "livenessProbe" not in agent_container(docs, "a")
    assert {"startupProbe", "readinessProbe"} <= set(agent_container(docs, "a"))
    assert "livenessProbe" in agent_container(docs, "b")


def test_each_priority_group_after_the_first_waits_for_the_earlier_ones():
    team = team_of({"a": {"priority": 1}, "b": {"priority": 1}, "c": {"priority": 4},
                    "d": {"priority": 7}})
    docs = docs_of(team)
    for agent, before in [("a", None), ("b", None), ("c", "4"), ("d", "7")]:
        spec = statefulset(docs, agent)["spec"]["template"]["spec"]
        if before is None:
            assert "initContainers" not in spec
            continue
        (init,) = spec["initContainers"]
        assert init["command"] == ["coffee-team", "--team", n.TEAM_FILE, "agent", "wait-ready",
                                   "--before", before]
        assert init["image"] == IMAGE and n.DATABASE_URL_ENV in env_of(init)
        assert init["volumeMounts"] == spec["containers"][0]["volumeMounts"]


def test_a_team_of_one_priority_has_no_init_container():
    docs = docs_of(team_of({"a": {"priority": 5}, "b": {"priority": 5}}))
    assert all("initContainers" not in d["spec"]["template"]["spec"]
               for d in by_kind(docs, "StatefulSet"))


def test_the_control_plane():
    team = team_of({"a": {"secrets": ["TOKEN"]}},
                   web={"port": 9000, "username": "me", "password_env": "WEB_PASSWORD"})
    docs = docs_of(team)
    deployment, service = docs[-2:]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["coffee-team", "--team", n.TEAM_FILE, "control-plane"]
    assert container["ports"][0]["containerPort"] == n.CONTROL_PLANE_PORT
    env = env_of(container)
    assert env[n.CONTROL_PLANE_PORT_ENV] == str(n.CONTROL_PLANE_PORT)
    assert env["WEB_PASSWORD"] == {"secretKeyRef": {"name": "coffee-team", "key": "WEB_PASSWORD"}}
    assert "TOKEN" not in env  # an agent's secret is the agent's
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": n.HEALTH_PATH, "port": "http"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": n.CONTROL_PLANE_PORT,
                                         "targetPort": "http", "protocol": "TCP"}]


def test_the_secrets_keys_are_every_key_a_manifest_reads():
    team = parse_team({"team": {"database_path": PG,
                                "http": {"port": 9001, "username": "u", "password_env": "RPC"},
                                "web": {"port": 9000, "username": "u", "password_env": "WEB"}},
                       "hosts": [{"name": "h", "url": "http://h:9001", "username": "u",
                                  "password_env": "H"}],
                       "agents": {"a": {"handler": "m:f", "secrets": ["K1", "K2"]},
                                  "b": {"handler": "m:f", "secrets": ["K2", "WEB"]}}})
    keys = secret_keys(team)
    assert keys == [n.DATABASE_URL_ENV, "WEB", "RPC", "H", "K1", "K2"]
    read = {ref["valueFrom"]["secretKeyRef"]["key"] for doc in docs_of(team)
            for ref in _env_entries(doc) if "valueFrom" in ref}
    assert read == set(keys)


def _env_entries(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        yield from c["env"]


def test_role_files_ride_in_the_configmap_at_the_path_the_team_names():
    files = {"data/agents/b.md": "be brief\n", "/srv/roles/a role.md": "A\n"}
    docs = docs_of(team_of({"a": {}}), files=files)
    data = docs[0]["data"]
    assert data["file0-a-role.md"] == "A\n" and data["file1-b.md"] == "be brief\n"
    mounts = {m["mountPath"]: m for m in agent_container(docs, "a")["volumeMounts"]}
    assert mounts["/srv/roles/a role.md"]["subPath"] == "file0-a-role.md"
    assert mounts[f"{n.PROJECT_ROOT}/data/agents/b.md"]["subPath"] == "file1-b.md"


def test_a_changed_team_file_changes_every_pods_annotation():
    team = team_of({"a": {}})

    def hashes(text, files=None):
        return {d["spec"]["template"]["metadata"]["annotations"][n.TEAM_HASH_ANNOTATION]
                for d in docs_of(team, text, files) if d["kind"] in ("StatefulSet", "Deployment")}
    one, two, three = hashes("a"), hashes("b"), hashes("a", {"r.md": "x"})
    assert len(one) == len(two) == len(three) == 1 and len(one | two | three) == 3


# --- names -----------------------------------------------------------------------------------

def test_agent_names_become_dns_labels_unique_and_short_enough():
    agents = ["architect", "code_developer", "a_b", "a-b", "x" * 64, "y" * 60 + "_", "trail_",
              "coffee-control-plane", "coffee_agents", "0lead"]
    got = n.agent_names(agents)
    assert got["architect"] == "architect" and got["code_developer"] == "code-developer"
    assert got["trail_"] == "trail" and got["0lead"] == "0lead"
    assert len(set(got.values())) == len(agents)
    for agent, name in got.items():
        assert n.is_dns_label(name) and len(name) <= n.MAX_STATEFULSET_NAME, (agent, name)
    assert got["a_b"] != "a-b" and got["a-b"] != "a-b"
    assert got["coffee-control-plane"] != n.CONTROL_PLANE
    assert n.agent_names(agents) == got  # stable


def test_the_agent_label_and_annotation():
    sts = statefulset(docs_of(team_of({"ux_design_expert": {"priority": 4}})), "ux_design_expert")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels[n.AGENT_LABEL] == "ux-design-expert"
    assert labels[n.COMPONENT_LABEL] == "agent"
    assert sts["metadata"]["annotations"][n.PRIORITY_ANNOTATION] == "4"
