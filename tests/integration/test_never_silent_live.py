"""One line, or none, in a process of its own: tracing asked for without its SDK, and a
reader that closes our stdout early (``| head -1``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def team_file(tmp_path: Path, team: dict) -> Path:
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"team": team, "agents": {"a": {}}}))
    return path


def test_tracing_without_the_sdk_is_one_line_and_no_traces():
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from coffee_team import otel; print(otel.enabled())")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    env.pop("OTEL_SDK_DISABLED", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout == "False\n"
    assert done.stderr == ("coffee-team: tracing (asked for by the OTEL_* variables) needs the "
                           "OpenTelemetry SDK and its OTLP exporter: pip install "
                           "'coffee-team[otel]'; tracing is off\n")


# --- a closed pipe ---------------------------------------------------------------------------

def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True)
    agents = [f"a{i}" for i in range(5)]
    path.write_text(yaml.safe_dump({"agents": {name: {} for name in agents}}))
    from coffee_team.queue import MessageQueue
    from coffee_team.team import load_team
    with MessageQueue.from_team(load_team(path)) as queue:  # far more than a pipe holds
        queue.send_many([{"sender": "x", "recipient": name, "type": "t", "content": {"i": i}}
                         for name in agents for i in range(1000)])
    proc = subprocess.Popen([sys.executable, "-m", "coffee_team", "--team", str(path), "queue",
                             "list", "--limit", "5000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 141 and err == b""
