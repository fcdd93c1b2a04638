"""The team on Kubernetes, as plain manifests (``coffee-team gen-k8s``): ``manifests`` renders
the team into dicts (a pure function), ``emit`` writes them as YAML and writes the
Containerfile of their image, ``names`` holds the paths, ports and names the manifests and the
runtime share (the team file at /srv/coffee/data/team.yaml, COFFEE_DATABASE_URL, ...).

A library: it reads a Team, never the queue or a process package. See docs/kubernetes.md.
"""
from .emit import containerfile, files, read_paths, stream
from .manifests import Options, render, secret_keys

__all__ = ["Options", "containerfile", "files", "read_paths", "render", "secret_keys",
           "stream"]
