"""LlmRunner: one run of the agent's coding CLI per task.

The prompt is rendered from the task (template.py), the role text prepended, and given to the
CLI on stdin (or as its last argument); argv comes from the team file only. The CLI runs in
the agent's workspace, its output streams into the log like any command's, and what it
printed is read by the preset: the answer becomes the task's result (with ``send`` follow-ups
from its JSON or a fenced JSON block), the cost and tokens are stored at once (failed and
rate-limited runs cost money too), and with ``session: keep`` the session id is kept for the
next task. A rate-limit message defers the task (handlers.Deferred) to the reset time the CLI
states, or a backoff.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Optional

from ..errors import HandlerError, TeamError
from ..handlers import CommandRunner, Deferred, HandlerContext
from .workspace import Workspace
from . import ratelimit, template
from .gate import BudgetGate
from .presets import PRESETS, OutputError, Reading, preview, result_of

# Linux refuses one argument longer than this (MAX_ARG_STRLEN).
MAX_ARG_BYTES = 128 * 1024 - 1
OUTPUT_TAIL = 8 << 20  # bytes of stdout kept for the preset (results and usage come last)


class StdoutTail:
    """Keeps the last OUTPUT_TAIL bytes of stdout (fed complete lines by the runner's pump)."""

    def __init__(self, limit: int = OUTPUT_TAIL):
        self.limit = limit
        self.data = bytearray()

    def feed(self, lines: bytes) -> None:
        self.data += lines
        if len(self.data) > 2 * self.limit:  # trim in batches, not on every line
            del self.data[:-self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode(errors="replace")


class LlmRunner(CommandRunner):
    def __init__(self, team: Any, spec: Any, sink: Any = None, clock=time.time):
        super().__init__(spec.llm.command, cwd=str(team.root), sink=sink)
        self.team, self.spec, self.llm, self.clock = team, spec, spec.llm, clock
        self.preset = PRESETS[self.llm.preset]
        self.fields = dict(self.llm.fields)
        self.prompt = template.parse(self.llm.prompt)
        self.periodic_prompt = (template.parse(self.llm.periodic_prompt)
                                if self.llm.periodic_prompt else None)
        self.session_args = [template.parse(a, template.SESSION_FIELDS)
                             for a in self.llm.resume_args]
        self.rate_limit = spec.rate_limit or ratelimit.DEFAULT_PATTERN
        self.workspace = Workspace.of(team, spec)
        self.role_text = ""
        self.queue: Any = None
        self.durable: Any = lambda operation, *args, **kwargs: operation(*args, **kwargs)
        self.gate: Optional[BudgetGate] = None
        self.session_id: Optional[str] = None
        self.rate_limited_runs = 0  # in a row, for the backoff when no reset time is stated

    # --- set-up, once the agent has its queue --------------------------------------------------
    def attach(self, queue: Any, durable: Any, clock: Any = None) -> None:
        """Read the role text, make the workspace, restore the session: a problem here is the
        team file's (TeamError), reported when the agent starts, not at its first task."""
        self.queue, self.durable, self.clock = queue, durable, clock or self.clock
        role = self.llm.system_prompt_file
        if role is not None:
            try:
                self.role_text = self.team.resolve(role).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TeamError(f"agents.{self.spec.name}.llm.system_prompt_file: {exc}") from None
        self.workspace.ensure()
        if self.llm.session == "keep":
            self.session_id = durable(queue.agent_session, self.spec.name)
        settings = self.team.settings
        if self.spec.budget is not None or settings.budget is not None:
            llm_agents = [a.name for a in self.team.agents if a.llm is not None]
            self.gate = BudgetGate(self.spec.name, self.spec.budget, settings.budget,
                                   llm_agents, queue, self.clock)

    def before_claim(self) -> None:
        """The budget check: at a limit the agent is paused, so the claim finds nothing."""
        if self.gate is not None:
            self.gate.check()

    # --- one task -----------------------------------------------------------------------------
    def __call__(self, task: dict, ctx: HandlerContext) -> Any:
        prompt_template = self.prompt if task.get("id") is not None else self.periodic_prompt
        if prompt_template is None:
            return None  # a periodic run without periodic_prompt calls no model
        if task.get("id") is None and self._paused():
            return None
        cwd = self.workspace.require()
        prompt = self.render(prompt_template, task)
        scratch = tempfile.mkdtemp(prefix="coffee-llm-")
        try:
            code, out, err = self.execute(
                self.argv_for(prompt), prompt.encode() if self.llm.prompt_via == "stdin" else b"",
                task, ctx, os.path.join(scratch, "result.json"), cwd=str(cwd), scan=StdoutTail())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.outcome(task, code, out.text(), err.tail.decode(errors="replace"))

    def render(self, prompt_template: template.Template, task: dict) -> str:
        try:
            body = prompt_template.render(template.task_values(task, self.spec.name))
        except template.TemplateError as exc:
            raise HandlerError(f"prompt template: {exc}") from None
        return f"{self.role_text}\n\n{body}" if self.role_text else body

    def argv_for(self, prompt: str) -> list[str]:
        argv = list(self.llm.command)
        if self.llm.session == "keep" and self.session_id:
            values = {"session_id": self.session_id, "agent": self.spec.name}
            argv += [arg.render(values) for arg in self.session_args]
        if self.llm.prompt_via == "arg":
            if len(prompt.encode()) > MAX_ARG_BYTES:
                raise HandlerError(f"the prompt is {len(prompt.encode())} bytes, too long for "
                                   f"one argument (use prompt_via: stdin)")
            # a prompt is never an option, whatever the task's content starts with
            argv.append(" " + prompt if prompt.startswith("-") else prompt)
        return argv

    def outcome(self, task: dict, code: int, stdout: str, stderr: str) -> Any:
        """The task's result, or HandlerError / Deferred; usage is stored either way."""
        reading: Optional[Reading] = None
        problem = None
        try:
            reading = self.preset.read(stdout, self.fields)
        except OutputError as exc:
            problem = str(exc)
        failed = code != 0 or problem is not None or (reading is not None and reading.is_error)
        evidence = "\n".join([stderr, stdout[-4000:], reading.text if reading else ""])
        limited = failed and ratelimit.is_rate_limited(evidence, self.rate_limit)
        if reading is not None:
            self._record(task, reading, "rate_limited" if limited else
                         "error" if failed else "ok")
        if limited:
            raise self._deferral(evidence)
        if failed:
            raise HandlerError(self._failure(code, problem, reading, stderr, stdout))
        self.rate_limited_runs = 0
        self._keep_session(reading)
        return result_of(reading)

    # --- helpers ------------------------------------------------------------------------------
    def _failure(self, code: int, problem: Optional[str], reading: Optional[Reading],
                 stderr: str, stdout: str) -> str:
        name = self.llm.command[0]
        if code != 0:
            last = stderr.strip().splitlines()[-1:] or [preview(stdout)]
            return f"{name} exited with {code}: {last[0][:500]}"
        if problem is not None:
            return f"{name}: {problem}"
        return f"{name} reported an error: {preview(reading.text)}"

    def _deferral(self, evidence: str) -> Deferred:
        now = self.clock()
        self.rate_limited_runs += 1
        until = ratelimit.reset_time(evidence, now)
        stated = until is not None
        until = until if stated else now + ratelimit.backoff(self.rate_limited_runs)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
        return Deferred(f"rate limited: retrying at {when} "
                        f"({'the reset time the CLI stated' if stated else 'backoff'})", until)

    def _record(self, task: dict, reading: Reading, outcome: str) -> None:
        if self.queue is not None:
            self.durable(self.queue.record_usage, task.get("id"), self.spec.name,
                         task.get("type") or "periodic", reading.usage.as_dict(), outcome)

    def _keep_session(self, reading: Reading) -> None:
        if self.llm.session != "keep" or not reading.session_id \
                or reading.session_id == self.session_id:
            return
        self.session_id = reading.session_id
        if self.queue is not None:
            self.durable(self.queue.save_agent_session, self.spec.name, reading.session_id)

    def _paused(self) -> bool:
        if self.queue is None:
            return False
        self.before_claim()
        return self.spec.name in self.durable(self.queue.pauses)
