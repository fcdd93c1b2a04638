"""A kubelet in miniature, for tests: runs what ``coffee-team gen-k8s`` rendered as local
processes, so the runtime's side of the Kubernetes contract (probes, init containers, the
control plane, the database URL from a Secret) is tested against the real manifests, not a
hand-written copy of their commands.

What it reads of the manifests: the ConfigMap (its keys written where the pods mount them),
each StatefulSet (one pod, ``NAME-0``) and Deployment (one pod, ``NAME-sim``), their init
containers and containers: command and args, env (``value``, and ``secretKeyRef`` from the
``secrets`` dict: a missing key is the pod's error, as CreateContainerConfigError), volume
mounts (a mount path in an argument or a value becomes the pod's own directory under
``root``), and the startup, liveness and readiness probes (exec and httpGet) with their
periods and thresholds.

What it does as the kubelet would: init containers one after the other, each to a zero exit
(restarted after a backoff otherwise); then the containers; the startup probe until it passes
(failureThreshold failures: killed and restarted), then liveness (failureThreshold in a row:
SIGTERM, terminationGracePeriodSeconds, SIGKILL, restart) and readiness (``ready``); a
container that exits is restarted after a backoff doubling from ``backoff`` to
``backoff_max`` (the kubelet's 10 s to 5 min, shorter here).

Each pod has its own host name (the pod name, as on Kubernetes: ``unshare --uts``, which
needs root; ``available()`` says whether it can run). Pods share this machine's PID space, so
``kill_pod`` (``kill -9`` of every process of the pod: its containers and their children)
stands in for a node losing it. ``stop()`` ends every process it started; the harness is a
context manager.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROGRAM = "coffee-team"


def available() -> str | None:
    """None if the harness can run here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--uts", "--", "hostname", "k8s-sim-check"],
                           capture_output=True)
    return None if probe.returncode == 0 else \
        "unshare --uts is not permitted (needs root): pods cannot have their own host names"


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    """Every manifest of ``gen-k8s --out DIR``, in the files' order."""
    docs = []
    for path in sorted(Path(directory).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@dataclass
class Container:
    pod: "Pod"
    spec: dict[str, Any]
    init: bool = False
    proc: subprocess.Popen | None = None
    restarts: int = 0
    ready: bool = False
    started: bool = False  # the startup probe passed (or there is none)

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass
class Pod:
    name: str
    kind: str
    template: dict[str, Any]
    root: Path
    grace: float = 10.0
    containers: list[Container] = field(default_factory=list)
    inits: list[Container] = field(default_factory=list)
    mounts: dict[str, Path] = field(default_factory=dict)  # mount path -> local path
    thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return bool(self.containers) and all(c.ready for c in self.containers)


class Cluster:
    def __init__(self, manifests: list[dict[str, Any]], root: Path, secrets: dict[str, str],
                 *, programs: dict[str, str], ports: dict[int, int] | None = None,
                 env_overrides: dict[str, str] | None = None, backoff: float = 1.0,
                 backoff_max: float = 8.0, tick: float = 0.1):
        self.root = Path(root)
        self.secrets = secrets
        self.programs = programs  # command[0] -> the local executable (the image's PATH)
        self.ports = ports or {}  # containerPort -> local port (a pod IP of its own)
        self.env_overrides = env_overrides or {}
        self.backoff, self.backoff_max, self.tick = backoff, backoff_max, tick
        self.config_maps = {m["metadata"]["name"]: m.get("data", {}) for m in manifests
                            if m["kind"] == "ConfigMap"}
        self.pods: dict[str, Pod] = {}
        for m in manifests:
            if m["kind"] in ("StatefulSet", "Deployment"):
                name = m["metadata"]["name"] + ("-0" if m["kind"] == "StatefulSet" else "-sim")
                self.pods[name] = self._pod(name, m["kind"], m["spec"]["template"])
        self.events: list[tuple[float, str, str, str]] = []  # (time, pod, container, what)
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # --- setting pods up -----------------------------------------------------------------
    def _pod(self, name: str, kind: str, template: dict[str, Any]) -> Pod:
        spec = template["spec"]
        pod = Pod(name, kind, template, self.root / name,
                  float(spec.get("terminationGracePeriodSeconds", 30)))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        pod.inits = [Container(pod, c, init=True) for c in spec.get("initContainers", [])]
        pod.containers = [Container(pod, c) for c in spec["containers"]]
        for container in pod.inits + pod.containers:
            for mount in container.spec.get("volumeMounts", []):
                self._mount(pod, volumes[mount["name"]], mount)
        return pod

    def _mount(self, pod: Pod, volume: dict[str, Any], mount: dict[str, Any]) -> None:
        local = pod.root / mount["mountPath"].lstrip("/")
        pod.mounts[mount["mountPath"]] = local
        if "configMap" in volume:
            data = self.config_maps[volume["configMap"]["name"]]
            if mount.get("subPath"):
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(data[mount["subPath"]])
            else:
                local.mkdir(parents=True, exist_ok=True)
                for key, text in data.items():
                    (local / key).write_text(text)
        elif "emptyDir" in volume:
            local.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"{pod.name}: volume {volume['name']}: the harness knows "
                             f"configMap and emptyDir only")

    def _local(self, pod: Pod, text: str) -> str:
        """A container path as the pod's local one (the longest mount path that holds it)."""
        for path in sorted(pod.mounts, key=len, reverse=True):
            if text == path or text.startswith(path.rstrip("/") + "/"):
                return str(pod.mounts[path]) + text[len(path):]
        return text

    def argv(self, container: Container, command: list[str]) -> list[str]:
        pod = container.pod
        argv = [self.programs.get(command[0], command[0])] + \
            [self._local(pod, a) for a in command[1:]]
        # the pod's own host name, as a pod has; then exec: the process is the container's
        return ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', pod.name,
                *argv]

    def env(self, container: Container) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": str(container.pod.root)}
        for item in container.spec.get("env", []):
            if "value" in item:
                env[item["name"]] = self._local(container.pod, str(item["value"]))
            else:
                key = item["valueFrom"]["secretKeyRef"]["key"]
                if key not in self.secrets:
                    raise KeyError(f"{container.pod.name}/{container.name}: secret key {key} "
                                   f"missing (CreateContainerConfigError)")
                env[item["name"]] = self.secrets[key]
        env.update({k: v for k, v in self.env_overrides.items() if k in env})
        return env

    # --- running ------------------------------------------------------------------------
    def log(self, pod: Pod, container: Container | None, what: str) -> None:
        with self._lock:
            self.events.append((time.time(), pod.name, container.name if container else "",
                                what))

    def start(self) -> "Cluster":
        for pod in self.pods.values():
            pod.thread = threading.Thread(target=self._run_pod, args=(pod,), daemon=True,
                                          name=f"kubelet-{pod.name}")
            pod.thread.start()
        return self

    def _spawn(self, container: Container) -> subprocess.Popen:
        command = container.spec.get("command", []) + container.spec.get("args", [])
        logfile = container.pod.root / f"{container.name}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(self.argv(container, command), env=self.env(container),
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=container.pod.root,
                                    start_new_session=True)
        self.log(container.pod, container, f"started pid {proc.pid}")
        return proc

    def _delay(self, restarts: int) -> float:
        return min(self.backoff_max, self.backoff * 2 ** max(0, restarts - 1))

    def _run_pod(self, pod: Pod) -> None:
        for init in pod.inits:
            while not self._stop.is_set():
                init.proc = self._spawn(init)
                code = self._wait(init.proc)
                self.log(pod, init, f"exited {code}")
                if code == 0:
                    break
                init.restarts += 1
                self._stop.wait(self._delay(init.restarts))
        threads = [threading.Thread(target=self._run_container, args=(c,), daemon=True)
                   for c in pod.containers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _wait(self, proc: subprocess.Popen) -> int:
        while not self._stop.is_set():
            try:
                return proc.wait(timeout=self.tick)
            except subprocess.TimeoutExpired:
                continue
        return -1

    def _run_container(self, container: Container) -> None:
        """restartPolicy Always: the container again after each exit, with the backoff."""
        pod, spec = container.pod, container.spec
        while not self._stop.is_set():
            container.proc = self._spawn(container)
            container.started = "startupProbe" not in spec
            container.ready = False
            code = self._watch(container)
            container.ready = False
            if self._stop.is_set():
                return
            container.restarts += 1
            delay = self._delay(container.restarts)
            self.log(pod, container, f"exited {code}; restart {container.restarts} in "
                                     f"{delay:g}s")
            if self._stop.wait(delay):
                return

    def _watch(self, container: Container) -> int:
        """Probe the running container until it exits; its exit code."""
        spec, proc, pod = container.spec, container.proc, container.pod
        due = {kind: time.monotonic() + float(spec[kind].get("initialDelaySeconds", 0))
               for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in spec}
        failures = dict.fromkeys(due, 0)
        while not self._stop.is_set():
            code = proc.poll()
            if code is not None:
                return code
            now = time.monotonic()
            for kind in list(due):
                if (kind == "startupProbe") == container.started or now < due[kind]:
                    continue  # startup first, the other two only once it passed
                probe = spec[kind]
                due[kind] = now + float(probe.get("periodSeconds", 10))
                if self.probe(container, probe):
                    failures[kind] = 0
                    if kind == "startupProbe":
                        container.started = True
                        self.log(pod, container, "started (startup probe)")
                    elif kind == "readinessProbe" and not container.ready:
                        container.ready = True
                        self.log(pod, container, "ready")
                    continue
                failures[kind] += 1
                if kind == "readinessProbe":
                    if container.ready:
                        self.log(pod, container, "not ready")
                    container.ready = False
                elif failures[kind] >= int(probe.get("failureThreshold", 3)):
                    self.log(pod, container, f"{kind} failed {failures[kind]} times: killing")
                    self.terminate(container)
                    break
            time.sleep(self.tick)
        return -1

    def probe(self, container: Container, probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "exec" in probe:
            try:
                done = subprocess.run(self.argv(container, probe["exec"]["command"]),
                                      env=self.env(container), capture_output=True,
                                      timeout=timeout, cwd=container.pod.root)
            except subprocess.TimeoutExpired:
                return False
            return done.returncode == 0
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):  # a named port of the container
                port = next(p["containerPort"] for p in container.spec.get("ports", [])
                            if p.get("name") == port)
            port = self.ports.get(port, port)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{get['path']}",
                                            timeout=timeout) as answer:
                    return 200 <= answer.status < 400
            except OSError:
                return False
        raise ValueError(f"unknown probe {json.dumps(probe)[:100]}")

    # --- stopping -------------------------------------------------------------------------
    def terminate(self, container: Container) -> None:
        """SIGTERM, the grace period, SIGKILL: what the kubelet does to a container."""
        proc = container.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)  # the container's PID 1 only
        except OSError:
            pass
        try:
            proc.wait(timeout=container.pod.grace)
        except subprocess.TimeoutExpired:
            _signal_tree(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_pod(self, name: str) -> None:
        """``kill -9`` of every process of the pod at once: each container exits and is
        restarted after the backoff, as the kubelet does."""
        pod = self.pods[name]
        self.log(pod, None, "killed (SIGKILL)")
        for container in pod.inits + pod.containers:
            if container.proc is not None and container.proc.poll() is None:
                _signal_tree(container.proc.pid, signal.SIGKILL)
                container.proc.wait()
            container.ready = False

    def stop(self) -> None:
        self._stop.set()
        for pod in self.pods.values():
            for container in pod.inits + pod.containers:
                if container.proc is not None and container.proc.poll() is None:
                    _signal_tree(container.proc.pid, signal.SIGKILL)
                    container.proc.wait()
        for pod in self.pods.values():
            if pod.thread is not None:
                pod.thread.join(timeout=15)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- for the tests --------------------------------------------------------------------
    def wait_for(self, condition, timeout: float, what: str, every: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; "
                             f"events: {self.events[-30:]}")

    def first(self, pod: str, what: str) -> float | None:
        """When the pod's first event starting with ``what`` happened."""
        return next((t for t, p, _, w in self.events if p == pod and w.startswith(what)), None)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (the pod's processes, whatever their group)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack += children.get(current, [])
    return found


def _signal_tree(pid: int, sig: int) -> None:
    for member in _tree(pid):
        try:
            os.kill(member, sig)
        except OSError:
            pass
