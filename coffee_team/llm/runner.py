"""LlmRunner: one run of the agent's coding CLI per task.

The prompt is rendered from the task (template.py), the role text prepended, and given to the
CLI on stdin (or as its last argument); argv comes from the team file only. The CLI runs in
the agent's workspace. A streaming CLI's events (claude stream-json, codex --json) are read as
they come: each is a tagged log line and the agent's current step, and the run's spend so far
is recorded and held against the day's budgets at each (meter.py): a crossing stops the run
and its task goes back to pending while the budget pauses the agent. Other CLIs' output
streams into the log like any command's, read by the preset at the end. The answer becomes
the task's result (with ``send`` follow-ups from its JSON or a fenced JSON block); every run
leaves its cost and tokens, however it ends (the run ends at the CLI's exit, plus a short
grace, even if something it started holds its stdout: handlers.CommandRunner.execute); with
``session: keep`` the session id is kept for the next task. A rate-limit message defers the
task (handlers.Deferred) to the reset time the CLI states, or a backoff.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Optional

from .. import events as kinds
from .. import otel
from ..errors import HandlerError, PermanentError, TeamError
from ..handlers import CommandRunner, Deferred, HandlerContext
from ..output import log, task_tag
from ..merge.review import BRANCH_UPDATED
from ..merge.worktree import AgentMerging
from .workspace import Workspace
from . import mcpconfig, ratelimit, template
from .budget import settle, stop
from .gate import BudgetGate
from .live import EventScan, StdoutTail
from .meter import OverBudget, RunMeter, outcome_of
from .presets import PRESETS, OutputError, Reading, preview, result_of
from .reading import Usage

# Linux refuses one argument longer than this (MAX_ARG_STRLEN).
MAX_ARG_BYTES = 128 * 1024 - 1
BUDGET_CAP = "error_max_budget_usd"  # Claude Code's result subtype at --max-budget-usd


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
        self.session_key = template.parse(self.llm.session_key) if self.llm.session_key else None
        self.key: Optional[str] = None  # the running task's session key (None: keep none)
        self.rate_limit = spec.rate_limit or ratelimit.DEFAULT_PATTERN
        self.rate_limit_group = ratelimit.group_of(spec)
        self.rate_limit_peers = ratelimit.peers(team.agents, spec.name)  # pause with it
        self.workspace = Workspace.of(team, spec)
        self.merging = AgentMerging.of(team, self.workspace)  # None: no workspace.merge
        self.review: Optional[dict] = None  # the last task's review request (merge/worktree.py)
        self.role_text = ""
        self.queue: Any = None
        self.durable: Any = lambda operation, *args, **kwargs: operation(*args, **kwargs)
        self.gate: Optional[BudgetGate] = None
        self.session_id: Optional[str] = None
        self.rate_limited_runs = 0  # in a row, for the backoff when no reset time is stated
        # Claude Code gets coffee-team's MCP server (its tools; the permission prompt when
        # a person approves its calls): load time made sure the SDK is there if it must be
        self.asks = spec.approvals is not None
        self.mcp = self.preset.name == "claude" and (self.asks or mcpconfig.sdk_installed())

    # --- set-up, once the agent has its queue --------------------------------------------------
    def attach(self, queue: Any, durable: Any, clock: Any = None) -> None:
        """Read the role text, make the workspace, settle killed runs: a problem here is the
        team file's (TeamError), reported when the agent starts, not at its first task."""
        self.queue, self.durable, self.clock = queue, durable, clock or self.clock
        role = self.llm.system_prompt_file
        if role is not None:
            try:
                self.role_text = self.team.resolve(role).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TeamError(f"agents.{self.spec.name}.llm.system_prompt_file: {exc}") from None
        self.workspace.ensure()
        killed = durable(queue.settle_running_usage, self.spec.name)
        if killed:
            log(self.spec.name, f"{killed} run(s) cut off when this agent died recorded as "
                                f"killed, with what they had spent (estimated)")
        if self.asks:  # a run cut off by the agent's death left its requests waiting
            durable(queue.withdraw_approvals, self.spec.name, "the agent restarted")
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
        self.review = None
        if task.get("type") == BRANCH_UPDATED and task.get("id") is not None:
            return {"worktree": self._sync()}  # "update your local branch": no model run
        prompt_template = self.prompt if task.get("id") is not None else self.periodic_prompt
        if prompt_template is None:
            return None  # a periodic run without periodic_prompt calls no model
        if task.get("id") is None and self._paused():
            return None
        cwd = self.workspace.require()
        prompt = self.render(prompt_template, task)
        self._resume(task)
        set_aside = self._set_aside(task)  # a cut-off run's leftovers first, then the target
        self._sync()
        before = self.merging.head() if self.merging is not None else None
        self.workspace.begin_run(task)
        meter = RunMeter(self.spec.name, self.queue, self.durable, self.clock, self.gate,
                         self.llm.prices)
        meter.begin(task)
        stream = self.preset.stream() if self.preset.stream is not None else None
        scan = StdoutTail() if stream is None else EventScan(
            stream, task_tag(task), self.sink, ctx, lambda: meter.observe(stream))
        capped = self.budget_cap(meter.usd_left())
        scratch = tempfile.mkdtemp(prefix="coffee-llm-")
        try:
            code, out, err = self.execute(
                self.argv_for(prompt, capped, self._mcp_args(task, cwd)),
                prompt.encode() if self.llm.prompt_via == "stdin" else b"",
                task, ctx, os.path.join(scratch, "result.json"), cwd=str(cwd), scan=scan)
        except OverBudget as exc:  # the run crossed a budget: stopped at this event
            meter.finish("over_budget")
            raise self._budget_stop(exc) from None
        except BaseException as exc:  # timeout, stall, cancel, stop: what it spent so far
            self._finish_quietly(meter, outcome_of(exc))
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._withdraw_requests()
        result = self.outcome(task, code, out.text(), err.tail.decode(errors="replace"),
                              stream, meter, capped, out.not_read())
        self.workspace.end_run()  # it answered: what it left uncommitted is its work
        if self.merging is not None and task.get("id") is not None:
            try:
                self.review = self.merging.request(task, before)
            except TeamError as exc:  # git failing: the next task's review takes them in
                log(self.spec.name, f"task {task['id']}: no review requested: {exc}")
        return {**result, "set_aside": set_aside} if set_aside else result

    def take_review(self) -> Optional[dict]:
        """The review request of the task just run (its new commits), for its completion."""
        review, self.review = self.review, None
        return review

    def render(self, prompt_template: template.Template, task: dict) -> str:
        try:
            body = prompt_template.render(template.task_values(task, self.spec.name))
        except template.TemplateError as exc:  # the same task renders the same way every time
            raise PermanentError(f"prompt template: {exc}") from None
        prompt = f"{self.role_text}\n\n{body}" if self.role_text else body
        if self.llm.prompt_via == "arg" and len(prompt.encode()) > MAX_ARG_BYTES:
            raise HandlerError(f"the prompt is {len(prompt.encode())} bytes, too long for "
                               f"one argument (use prompt_via: stdin)")
        return prompt

    def budget_cap(self, usd_left: Optional[float]) -> Optional[float]:
        """The USD the CLI's own spend cap gets (the preset's budget_args), when a dollar
        budget applies and the command sets no cap of its own."""
        args = self.preset.budget_args
        if usd_left is None or not args or args[0] in self.llm.command:
            return None
        return usd_left

    def _mcp_args(self, task: dict, cwd: Any) -> list[str]:
        """This run's --mcp-config (with its task and trace) and the options naming it."""
        if not self.mcp:
            return []
        path = mcpconfig.write_config(self.team, self.spec.name, task.get("id"), str(cwd),
                                      otel.current_context())
        return mcpconfig.cli_args(path, self.asks)

    def _withdraw_requests(self) -> None:
        """The run ended: its tool calls still waiting for a person are withdrawn (their
        server went with the CLI). Never hides how the run ended."""
        if not self.asks or self.queue is None:
            return
        try:
            withdrawn = self.durable(self.queue.withdraw_approvals, self.spec.name,
                                     "the run ended before a decision")
        except Exception as exc:  # noqa: BLE001 (whatever ended the run goes on)
            log(self.spec.name, f"approval requests of the ended run not withdrawn: {exc}")
            return
        if withdrawn:
            log(self.spec.name, f"approval(s) {', '.join(map(str, withdrawn))} withdrawn: the "
                                f"run ended before a decision")

    def argv_for(self, prompt: str, capped: Optional[float] = None,
                 extra: Optional[list[str]] = None) -> list[str]:
        argv = list(self.llm.command) + list(extra or ())
        if self.llm.session == "keep" and self.session_id:
            values = {"session_id": self.session_id, "agent": self.spec.name}
            argv += [arg.render(values) for arg in self.session_args]
        if capped is not None:
            argv += [a.replace("${usd}", f"{capped:.4f}") for a in self.preset.budget_args]
        if self.llm.prompt_via == "arg":
            # a prompt is never an option, whatever the task's content starts with
            argv.append(" " + prompt if prompt.startswith("-") else prompt)
        return argv

    def outcome(self, task: dict, code: int, stdout: str, stderr: str, stream: Any = None,
                meter: Optional[RunMeter] = None, capped: Optional[float] = None,
                not_read: str = "") -> Any:
        """The task's result, or HandlerError / Deferred; the run's spend is recorded
        either way. ``not_read`` says what of its output was too long to read."""
        reading: Optional[Reading] = stream.reading() if stream is not None else None
        problem = None
        if reading is None:
            try:
                reading = self.preset.read(stdout, self.fields)
            except OutputError as exc:
                problem = str(exc) + not_read
        failed = code != 0 or problem is not None or (reading is not None and reading.is_error)
        evidence = "\n".join([stderr, stdout[-4000:], reading.text if reading else ""])
        limited = failed and ratelimit.is_rate_limited(evidence, self.rate_limit)
        usage, estimated = self._spent(reading, stream)
        capped_out = reading is not None and reading.subtype == BUDGET_CAP and capped is not None
        if meter is not None:
            meter.finish("rate_limited" if limited else "over_budget" if capped_out
                         else "error" if failed else "ok", usage, estimated)
        if limited:
            raise self._deferral(evidence)
        if capped_out:
            raise self._budget_stop(None, meter, usage)
        if failed:
            # output unreadable after a clean exit: the preset cannot read what this CLI prints
            error = PermanentError if code == 0 and problem is not None else HandlerError
            raise error(self._failure(code, problem, reading, stderr, stdout))
        self.rate_limited_runs = 0
        self._keep_session(reading)
        return result_of(reading)

    # --- helpers ------------------------------------------------------------------------------
    def _spent(self, reading: Optional[Reading], stream: Any) -> tuple[Usage, bool]:
        """What the run cost and whether that is an estimate (budget.settle)."""
        if stream is not None and (reading is None or stream.reading() is not None):
            return settle(stream.usage, stream.cost_reported, stream.complete, self.llm.prices)
        if reading is None:
            return Usage(), True  # unreadable: what it spent is not known
        stated = self.preset.name == "claude" or "cost" in self.fields
        return settle(reading.usage, stated, True, self.llm.prices)

    def _budget_stop(self, exc: Optional[OverBudget], meter: Optional[RunMeter] = None,
                     usage: Optional[Usage] = None) -> Deferred:
        """Stop for the budget the run crossed (or whose cap the CLI reached): the agent (or
        the team) pauses with one CRITICAL notification, and the task goes back to pending,
        without an attempt used, for when the budget allows again."""
        if exc is None:  # the CLI stopped at the cap it was given: the tightest dollar limit
            limit = min((lm for lm in meter.limits if lm.budget is not None
                         and lm.budget.usd_per_day is not None),
                        key=lambda lm: lm.budget.usd_per_day - lm.spend.usd)
            why = (f"usd_per_day {limit.budget.usd_per_day:g} reached: "
                   f"{limit.spend.usd + usage.cost_usd:.4f} USD spent "
                   f"({os.path.basename(self.llm.command[0])} stopped at its own cap)")
            exc = OverBudget(limit, stop(limit.scope, why, self.clock()))
        if self.gate is not None:
            self.durable(self.gate.stop, exc.limit, exc.stop)
        return Deferred(f"stopped by the budget: {exc.stop.reason}", self.clock(), pause=False)

    def _finish_quietly(self, meter: RunMeter, outcome: str) -> None:
        """Record a run cut off; a failure here must not hide what cut it off (and the
        agent's next start settles a row left 'running')."""
        try:
            meter.finish(outcome)
        except Exception:  # noqa: BLE001 (the original exception goes on)
            pass

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
        self.rate_limited_runs += 1
        until, stated = ratelimit.paused_until(evidence, self.clock(), self.rate_limited_runs)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
        group = (f"; group {self.rate_limit_group} ({', '.join(self.rate_limit_peers)}) "
                 f"pauses too" if self.rate_limit_peers else "")
        return Deferred(f"rate limited: retrying at {when} "
                        f"({'the reset time the CLI stated' if stated else 'backoff'}){group}",
                        until, pause_also=self.rate_limit_peers)

    def _resume(self, task: dict) -> None:
        """With session: keep, the session kept for this task's key (one read per task)."""
        self.session_id, self.key = None, None
        if self.llm.session == "keep":
            self.key = template.session_key(self.session_key, task, self.spec.name)
        if self.key is not None and self.queue is not None:
            self.session_id = self.durable(self.queue.agent_session, self.spec.name, self.key)

    def _keep_session(self, reading: Reading) -> None:
        if self.key is None or not reading.session_id or reading.session_id == self.session_id:
            return
        self.session_id = reading.session_id
        if self.queue is not None:
            self.durable(self.queue.save_agent_session, self.spec.name, reading.session_id,
                         self.key)

    def _set_aside(self, task: dict) -> Optional[dict]:
        """A stopped run's uncommitted edits stashed (workspace.py), logged and journaled on
        the task that left them; what the next task's result records, or None."""
        aside = self.workspace.set_aside(task)
        if aside is not None:
            log(self.spec.name, f"{aside['message']}: stash {aside['stash']}, "
                                f"{len(aside['files'])} file(s)")
            if self.queue is not None:
                self.durable(self.queue.record_event, self.spec.name, kinds.SET_ASIDE,
                             task_id=aside["left_by"].get("task_id"), before_task=task.get("id"),
                             stash=aside["stash"], files=aside["files"])
        return aside

    def _sync(self) -> str:
        """The worktree brought onto the merge target's head (merge/worktree.py)."""
        if self.merging is None or self.queue is None:
            return "no worktree to update"
        try:
            return self.merging.sync(
                lambda: self.durable(self.queue.live_merges, self.spec.name),
                lambda *a, **k: self.durable(self.queue.record_event, *a, **k))
        except TeamError as exc:  # git failing: the task runs on the worktree as it is
            log(self.spec.name, f"worktree not updated: {exc}")
            return f"not updated: {exc}"

    def _paused(self) -> bool:
        if self.queue is None:
            return False
        self.before_claim()
        return self.spec.name in self.durable(self.queue.pauses)
