"""Team → Kubernetes manifests: a pure function of the team, the team file's text and the
options (``render``), returning plain dicts in the order ``kubectl apply`` should see them.

What is rendered (docs/kubernetes.md says why):
  - a ConfigMap holding the team file (its database URL without a password) and the role
    files its llm agents read, mounted where the team file says they are;
  - one StatefulSet per agent (replicas 1: the singleton; the PostgreSQL advisory lock still
    guards it) running ``coffee-team agent run NAME``, with requests/limits from
    ``memory_limit_mb`` and ``cpu``, ``terminationGracePeriodSeconds`` from
    ``stop_wait_seconds``, exec probes timed from the team's heartbeat settings, and for every
    priority group after the first an init container that waits for the earlier groups;
  - a headless Service governing the StatefulSets;
  - the control plane: a Deployment running ``coffee-team control-plane`` and its Service.
Secrets (the database URL, ``password_env`` values, an agent's ``secrets:``) come from the
Secret the user names, key = the variable's name; they are never written in a manifest.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import yaml

from ..dburl import is_postgres_url
from ..errors import KubernetesError
from ..liveness import MEMORY_OVERSHOOT
from ..team import AgentSpec, Team
from . import names as n

# An exec probe starts a Python process that imports coffee-team: give it time on a busy node.
PROBE_TIMEOUT = 10
MAX_PROBE_PERIOD = 10
INIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}}
CONTROL_PLANE_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}}
MAX_CONFIGMAP = 1024 * 1024  # bytes of data a ConfigMap may hold


@dataclass(frozen=True)
class Options:
    image: str
    namespace: str | None = None  # None: kubectl's current namespace
    secret: str = n.DEFAULT_SECRET


def check_options(options: Options) -> None:
    image = options.image
    if not image or any(c.isspace() for c in image) or not image.isprintable():
        raise KubernetesError(f"--image: expected an image reference like "
                              f"registry.example.com/coffee-team:0.1.0, got {image!r}")
    if options.namespace is not None and not n.is_dns_label(options.namespace):
        raise KubernetesError(f"--namespace: expected a DNS label (lowercase letters, digits, "
                              f"'-', at most 63), got {options.namespace!r}")
    if not n.is_dns_subdomain(options.secret):
        raise KubernetesError(f"--secret: expected a Secret's name (lowercase letters, digits, "
                              f"'-' and '.'), got {options.secret!r}")


def written_database(team: Team, text: str) -> str:
    """``team.database_path`` as the team file writes it: the ConfigMap holds the file, and
    what is rendered must not depend on a COFFEE_DATABASE_URL in the environment of whoever
    runs gen-k8s (it overrides the setting in every process that reads the team file)."""
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        doc = None
    settings = doc.get("team") if isinstance(doc, dict) else None
    value = settings.get("database_path") if isinstance(settings, dict) else None
    return value if isinstance(value, str) else team.settings.database_path


def check_team(team: Team, text: str) -> None:
    """Refuse what a cluster cannot run; one line each."""
    if not is_postgres_url(written_database(team, text)):
        raise KubernetesError(f"{team.path}: team.database_path is a SQLite file; a cluster "
                              f"needs the PostgreSQL queue (set database_path: "
                              f"postgresql://user@host/db, see docs/kubernetes.md)")
    if team.settings.host_name:  # each pod's host name is its own (the pod's name)
        raise KubernetesError(f"{team.path}: team.host_name would give every pod the same host "
                              f"name (restart state, the singleton's holder); on Kubernetes "
                              f"each pod is named by its pod: drop team.host_name")
    for agent in team.agents:
        for key, _ in agent.environment:
            if key == n.DATABASE_URL_ENV:
                raise KubernetesError(f"{team.path}: agents.{agent.name}.environment.{key}: "
                                      f"on Kubernetes the database URL comes from the Secret; "
                                      f"drop it from the team file")


def without_password(url: str) -> str:
    """The database URL as the ConfigMap may hold it: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def config_text(team: Team, text: str) -> str:
    """The team file as the ConfigMap holds it: the database URL's password removed."""
    for url in dict.fromkeys([written_database(team, text), team.settings.database_path]):
        clean = without_password(url)
        if clean == url:
            continue
        password = urlsplit(url).password or ""
        text = text.replace(url, clean)
        if f":{password}@" in text:  # the URL written another way, or a second one
            raise KubernetesError(f"{team.path}: team.database_path: the password in the URL "
                                  f"cannot be taken out of the team file; write the URL "
                                  f"without it (the Secret's {n.DATABASE_URL_ENV} carries the "
                                  f"whole URL)")
    return text


def metadata(name: str, options: Options, labels: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if options.namespace is not None:
        meta["namespace"] = options.namespace
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return meta


def labels(component: str, **more: str) -> dict[str, str]:
    return {n.APP_LABEL: n.APP, n.COMPONENT_LABEL: component, **more}


def secret_env(name: str, options: Options) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": options.secret, "key": name}}}


def coffee(*args: str) -> list[str]:
    return [n.PROGRAM, "--team", n.TEAM_FILE, *args]


def exec_probe(command: list[str], period: int, failures: int) -> dict[str, Any]:
    return {"exec": {"command": command}, "periodSeconds": period,
            "timeoutSeconds": PROBE_TIMEOUT, "failureThreshold": failures}


def probes(team: Team, agent: AgentSpec) -> dict[str, Any]:
    """startup: the first heartbeat within start_seconds + heartbeat_stale_after (past that
    the team calls an agent hung); liveness: the agent's own rule (``agent probe``: no
    heartbeat for 2 x heartbeat_stale_after; a long task is never a failure), asked every
    heartbeat_interval, twice before a restart so one slow probe is no restart; readiness:
    ready to claim, asked as often as the startup probe. ``restart_on_hang: false``: no
    liveness probe (the team does not restart that agent when it hangs; neither does the
    kubelet)."""
    s = team.settings
    often = max(1, math.ceil(min(s.heartbeat_interval, MAX_PROBE_PERIOD)))
    startup_window = s.start_seconds + s.heartbeat_stale_after
    probe = ("agent", "probe", agent.name)
    found = {
        "startupProbe": exec_probe(coffee(*probe, "--started"), often,
                                   max(1, math.ceil(startup_window / often))),
        "livenessProbe": exec_probe(coffee(*probe), max(1, math.ceil(s.heartbeat_interval)), 2),
        "readinessProbe": exec_probe(coffee(*probe, "--ready"), often, 1),
    }
    if not agent.restart_on_hang:
        del found["livenessProbe"]
    return found


def resources(agent: AgentSpec) -> dict[str, Any]:
    """memory_limit_mb is what the agent holds its process tree to (it fails a task over it,
    and the tree never passes MEMORY_OVERSHOOT times it): the request, and the container's
    limit at the overshoot, so the team's own rule acts before the kernel's OOM killer.
    ``cpu`` is both the request and the limit."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if agent.memory_limit_mb is not None:
        requests["memory"] = f"{agent.memory_limit_mb}Mi"
        limits["memory"] = f"{math.ceil(agent.memory_limit_mb * MEMORY_OVERSHOOT)}Mi"
    if agent.cpu is not None:
        requests["cpu"] = limits["cpu"] = agent.cpu
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def mounts(files: Mapping[str, str]) -> list[dict[str, Any]]:
    # The data directory first: the team file (and role files under data/) are mounted in it.
    found = [{"name": "data", "mountPath": n.DATA_DIR},
             {"name": "team", "mountPath": n.TEAM_FILE, "subPath": n.TEAM_KEY, "readOnly": True}]
    for i, path in enumerate(sorted(files)):
        found.append({"name": "team", "mountPath": n.mounted_at(path),
                      "subPath": n.file_key(i, path), "readOnly": True})
    return found


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_spec(team: Team, containers: list[dict[str, Any]],
             init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # nothing in the pod talks to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": team.settings.stop_wait_seconds,
        "securityContext": {"runAsNonRoot": True, "runAsUser": n.USER_ID,
                            "runAsGroup": n.USER_ID, "fsGroup": n.USER_ID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if init:
        spec["initContainers"] = init
    spec["containers"] = containers
    spec["volumes"] = [{"name": "team", "configMap": {"name": n.CONFIGMAP}},
                       {"name": "data", "emptyDir": {}}]
    return spec


def team_hash(text: str, files: Mapping[str, str]) -> str:
    digest = hashlib.sha256(text.encode())
    for path in sorted(files):
        digest.update(b"\0" + path.encode() + b"\0" + files[path].encode())
    return digest.hexdigest()[:16]


def configmap(text: str, files: Mapping[str, str], options: Options) -> dict[str, Any]:
    data = {n.TEAM_KEY: text}
    data.update({n.file_key(i, path): files[path] for i, path in enumerate(sorted(files))})
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > MAX_CONFIGMAP:
        raise KubernetesError(f"the team file and the role files come to {size} bytes, over a "
                              f"ConfigMap's {MAX_CONFIGMAP}; shorten the role files")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(n.CONFIGMAP, options, labels("team-file")), "data": data}


def agents_service(options: Options) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(n.AGENTS_SERVICE, options, labels("agent")),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": labels("agent")}}


def literal(value: str) -> str:
    """An env value the kubelet passes on as written: it expands ``$(NAME)`` and reads ``$$``
    as ``$``, where supervisord passes the team file's values unchanged."""
    return value.replace("$", "$$") if "$(" in value or "$$" in value else value


def agent_env(agent: AgentSpec, options: Options) -> list[dict[str, Any]]:
    plain = dict([("PYTHONUNBUFFERED", "1"), *agent.environment])
    env: list[dict[str, Any]] = [{"name": k, "value": literal(v)} for k, v in plain.items()]
    secret = dict.fromkeys([n.DATABASE_URL_ENV, *agent.secrets])
    return env + [secret_env(name, options) for name in secret]


def statefulset(team: Team, agent: AgentSpec, name: str, first_group: bool, digest: str,
                options: Options, files: Mapping[str, str]) -> dict[str, Any]:
    own = labels("agent", **{n.AGENT_LABEL: name})
    container: dict[str, Any] = {
        "name": "agent", "image": options.image,
        "command": coffee("agent", "run", agent.name),
        "env": agent_env(agent, options),
    }
    if resources(agent):
        container["resources"] = resources(agent)
    container.update(probes(team, agent))
    container["volumeMounts"] = mounts(files)
    container["securityContext"] = container_security()
    init = None
    if not first_group:
        init = [{"name": "wait-ready", "image": options.image,
                 "command": coffee("agent", "wait-ready", "--before", str(agent.priority)),
                 "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                         secret_env(n.DATABASE_URL_ENV, options)],
                 "resources": INIT_RESOURCES, "volumeMounts": mounts(files),
                 "securityContext": container_security()}]
    annotations = {n.AGENT_NAME_ANNOTATION: agent.name,
                   n.PRIORITY_ANNOTATION: str(agent.priority)}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(name, options, own, annotations),
        "spec": {
            "replicas": 1,  # the singleton: the advisory lock still keeps a second one idle
            "serviceName": n.AGENTS_SERVICE,
            "selector": {"matchLabels": own},
            "template": {
                "metadata": {"labels": own,
                             "annotations": {**annotations, n.TEAM_HASH_ANNOTATION: digest}},
                "spec": pod_spec(team, [container], init),
            },
        },
    }


def passwords(team: Team) -> list[str]:
    """The ``password_env`` variables of team.web, team.http and hosts: the control plane's."""
    s = team.settings
    found = [server.password_env for server in (s.web, s.http) if server is not None]
    return found + [h.password_env for h in team.hosts if h.password_env]


def secret_keys(team: Team) -> list[str]:
    """Every key the manifests read from the Secret."""
    return list(dict.fromkeys([n.DATABASE_URL_ENV, *passwords(team),
                               *(name for a in team.agents for name in a.secrets)]))


def control_plane_env(team: Team, options: Options) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"},
                                 {"name": n.CONTROL_PLANE_PORT_ENV,
                                  "value": str(n.CONTROL_PLANE_PORT)}]
    return env + [secret_env(name, options)
                  for name in dict.fromkeys([n.DATABASE_URL_ENV, *passwords(team)])]


def control_plane(team: Team, digest: str, options: Options,
                  files: Mapping[str, str]) -> list[dict[str, Any]]:
    own = labels("control-plane")
    health = {"path": n.HEALTH_PATH, "port": "http"}
    container = {
        "name": "control-plane", "image": options.image,
        "command": coffee("control-plane"),
        "ports": [{"name": "http", "containerPort": n.CONTROL_PLANE_PORT, "protocol": "TCP"}],
        "env": control_plane_env(team, options),
        "resources": CONTROL_PLANE_RESOURCES,
        "startupProbe": {"httpGet": health, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {"httpGet": health, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 3},
        "readinessProbe": {"httpGet": health, "periodSeconds": 5, "timeoutSeconds": 5},
        "volumeMounts": mounts(files),
        "securityContext": container_security(),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(n.CONTROL_PLANE, options, own),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one control plane at a time, as one watchdog
            "selector": {"matchLabels": own},
            "template": {"metadata": {"labels": own,
                                      "annotations": {n.TEAM_HASH_ANNOTATION: digest}},
                         "spec": pod_spec(team, [container])},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(n.CONTROL_PLANE, options, own),
        "spec": {"selector": own,
                 "ports": [{"name": "http", "port": n.CONTROL_PLANE_PORT,
                            "targetPort": "http", "protocol": "TCP"}]},
    }
    return [deployment, service]


def render(team: Team, text: str, options: Options,
           files: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The team's manifests. ``text``: the team file as written (the ConfigMap holds it);
    ``files``: the files the team reads (llm agents' role files), by the path the team file
    gives them, mounted at that path under the pod's project root."""
    files = dict(files or {})
    check_options(options)
    check_team(team, text)
    text = config_text(team, text)
    digest = team_hash(text, files)
    k8s_names = n.agent_names(team.names)
    first = min(a.priority for a in team.agents)
    docs = [configmap(text, files, options), agents_service(options)]
    for agent in sorted(team.agents, key=lambda a: a.priority):
        docs.append(statefulset(team, agent, k8s_names[agent.name], agent.priority == first,
                                digest, options, files))
    return docs + control_plane(team, digest, options, files)
