"""Where things live in the cluster: the paths, ports, labels and resource names the manifests
and the runtime agree on (the Kubernetes contract), and agent names made into DNS names.

Pure: no I/O. An agent name may hold '_' (``code_developer``); Kubernetes names may not, so
each agent gets a DNS label of its own (``code-developer``), made unique and short enough for
a StatefulSet (its pods' ``controller-revision-hash`` label adds 11 characters to the name).
"""
from __future__ import annotations

import hashlib
import posixpath
import re

# The team file, mounted from the ConfigMap; every container runs `coffee-team --team TEAM_FILE`.
# It sits where a checkout keeps it (data/team.yaml), so the project root is /srv/coffee: the
# place to mount the project's repository for agents that work in it.
TEAM_DIR = "/srv/coffee/data"
TEAM_FILE = f"{TEAM_DIR}/team.yaml"
TEAM_KEY = "team.yaml"
# team.root is the team file's directory's parent, so the data directory (heartbeats, the run
# directory, logs) is the team file's own: a writable emptyDir per pod, the file mounted in it.
PROJECT_ROOT = posixpath.dirname(TEAM_DIR)
DATA_DIR = posixpath.join(PROJECT_ROOT, "data")
PROGRAM = "coffee-team"  # the console script in the image

DATABASE_URL_ENV = "COFFEE_DATABASE_URL"
CONTROL_PLANE_PORT = 8080
CONTROL_PLANE_PORT_ENV = "COFFEE_CONTROL_PLANE_PORT"
HEALTH_PATH = "/healthz"

CONFIGMAP = "coffee-team"
CONTROL_PLANE = "coffee-control-plane"
AGENTS_SERVICE = "coffee-agents"  # the headless Service that governs the StatefulSets
DEFAULT_SECRET = "coffee-team"

APP_LABEL = "app.kubernetes.io/name"
APP = "coffee-team"
COMPONENT_LABEL = "app.kubernetes.io/component"
AGENT_LABEL = "coffee-team/agent"
AGENT_NAME_ANNOTATION = "coffee-team/agent-name"
PRIORITY_ANNOTATION = "coffee-team/priority"
TEAM_HASH_ANNOTATION = "coffee-team/team-sha256"  # a changed team file rolls every pod

USER_ID = 10001  # the image's non-root user (Containerfile)

# A StatefulSet's name: its pods carry `controller-revision-hash: NAME-<10 characters>`, a
# label value of at most 63 characters.
MAX_STATEFULSET_NAME = 52
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _plain(agent: str) -> str:
    """``code_developer`` → ``code-developer`` (agent names start with a letter or digit)."""
    return agent.replace("_", "-").rstrip("-")


def _hashed(agent: str, base: str) -> str:
    digest = hashlib.sha256(agent.encode()).hexdigest()[:8]
    return f"{base[:MAX_STATEFULSET_NAME - 9].rstrip('-')}-{digest}"


def agent_names(agents: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Each agent's Kubernetes name: its own name with '-' for '_', unless that is too long
    or another agent's too (``a_b`` and ``a-b``), then shortened with a hash of the name."""
    plain = {a: _plain(a) for a in agents}
    taken = [p for p in plain.values()]
    reserved = {CONTROL_PLANE, AGENTS_SERVICE}
    return {a: p if len(p) <= MAX_STATEFULSET_NAME and taken.count(p) == 1 and p not in reserved
            else _hashed(a, p) for a, p in plain.items()}


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(DNS_LABEL.fullmatch(name))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(DNS_SUBDOMAIN.fullmatch(name))


def file_key(index: int, path: str) -> str:
    """The ConfigMap key of a file the team reads (a role file): keys are [-._a-zA-Z0-9]."""
    base = re.sub(r"[^-._a-zA-Z0-9]+", "-", posixpath.basename(path)).strip("-.") or "file"
    return f"file{index}-{base}"[:253]


def mounted_at(path: str) -> str:
    """Where a path of the team file (relative to the project root, or absolute) is in a pod."""
    return posixpath.normpath(posixpath.join(PROJECT_ROOT, path))
