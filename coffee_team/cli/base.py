"""The ``coffee-team`` group, its context and the helpers every command shares.

Commands are thin over the library. User errors are one line and a non-zero exit: 2 for bad
input or a bad team file, 3 when supervisord is not running, 4 when it runs but does not
answer (stopped, overloaded), 130 for Ctrl+C, 1 otherwise."""
from __future__ import annotations

import json
import os
import sys
import xmlrpc.client
from contextlib import contextmanager

import click

from .. import client
from ..errors import (ActionRefused, CoffeeError, SupervisorDown, SupervisorNotAnswering,
                      TeamError, describe_error)
from ..team import Team, load_team


class UserError(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# what a shell reports for a command that SIGINT (Ctrl+C) ended: 128 + 2
INTERRUPTED = 130


class Interrupted(UserError):
    """Ctrl+C: one line saying what it left behind, exit 130, no traceback."""

    def __init__(self, message: str):
        super().__init__(message, INTERRUPTED)

    def show(self, file=None) -> None:
        click.echo(f"interrupted: {self.message}" if self.message else "interrupted", err=True)


class Context:
    def __init__(self, team_path: str, conf: str | None):
        self.team_path = team_path
        self.conf = conf
        self._team: Team | None = None
        self._checked = False  # for a supervisord stopped in state T, before the first call

    @property
    def team(self) -> Team:
        if self._team is None:
            try:
                self._team = load_team(self.team_path)
            except TeamError as exc:
                raise UserError(str(exc), exit_code=2) from None
        return self._team

    @property
    def endpoint(self) -> client.Endpoint:
        try:
            return client.endpoint_for(self.team, self.conf)
        except SupervisorDown as exc:
            raise UserError(str(exc), exit_code=3) from None

    def rpc(self, method: str, *args, timeout: float = 30.0):
        """One call to supervisord, given up after ``timeout`` seconds (saying what it waits
        for meanwhile): not running is exit 3, alive but not answering exit 4."""
        from .waiting import waiting
        endpoint = self.endpoint
        if not self._checked:  # a stopped supervisord never answers: say so at once
            self._checked = True
            self.refuse_stopped()
        try:
            with waiting(lambda: f"supervisord{self.pid_text()} to answer {method}"):
                return client.call(endpoint, method, *args, timeout=timeout)
        except SupervisorDown as exc:
            raise self.down(exc) from None
        except xmlrpc.client.Fault as exc:
            exc.call = (method, args)  # for fault_line, if no caller handles it
            raise

    def refuse_stopped(self) -> None:
        from ..ops import probe
        pid = probe.own_pid(self.team, self.endpoint)
        if probe.stopped_supervisord(pid):
            verdict = probe.judge(probe.Seen(pid, probe.STOPPED, probe.UNASKED,
                                             self.endpoint.url))
            raise UserError(verdict.line, exit_code=verdict.exit_code)

    def pid_text(self) -> str:
        from ..ops.lifecycle import pid_text
        return pid_text(self.team, self.endpoint)

    def down(self, exc: SupervisorDown) -> "UserError":
        """The one line for a call that failed: supervisord gone (3), or there and silent (4,
        naming its PID)."""
        from ..ops import probe
        verdict = probe.after_failure(self.team, self.endpoint, exc,
                                      getattr(exc, "waited", 0.0))
        return UserError(verdict.line, exit_code=verdict.exit_code)


# What to do about the faults a person can meet on the CLI's paths (supervisor.xmlrpc.Faults)
FAULT_HINTS = {
    "NO_FILE": "the program's command does not exist: check team.python, then run "
               "`coffee-team gen-config` and `coffee-team apply` (`coffee-team doctor` checks)",
    "NOT_EXECUTABLE": "the program's command is not executable: check team.python",
    "SPAWN_ERROR": "supervisord could not start it: see `coffee-team logs {name}`",
    "ABNORMAL_TERMINATION": "it exited while starting: see `coffee-team logs {name}`",
}


def fault_line(exc: xmlrpc.client.Fault) -> str:
    """A fault of supervisord's API as one line: which call, its message, what to do."""
    method, args = getattr(exc, "call", ("a call", ()))
    name = str(args[0]) if args else ""
    what = f"{method.rpartition('.')[2]} {name}".strip()
    hint = FAULT_HINTS.get(exc.faultString.split(":")[0], "")
    message = f"supervisord refused {what}: {exc.faultString}".replace("\n", " ")
    return message + (f"; {hint.format(name=name or 'NAME')}" if hint else "")


def quiet_stdout() -> None:
    """The reader of our stdout went away (``| head -1``): stop writing, without the
    interpreter's complaint when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


pass_ctx = click.make_pass_decorator(Context)


def environment_trouble(exc: Exception) -> str | None:
    """One line for an error of the machine rather than of the command (a damaged or locked
    database, a full disk), or None for anything else (a bug: keep its traceback)."""
    db = sys.modules.get("coffee_team.queue.db")  # not imported: no database error possible
    if db is not None and isinstance(exc, db.database_errors()):
        return f"database error: {describe_error(exc)}"
    if isinstance(exc, CoffeeError):  # e.g. an extra a command needs is not installed
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return None


# Which module registers each top-level command: imported when that command is asked for.
COMMAND_MODULES = {
    **dict.fromkeys(("gen-config", "start", "stop", "restart", "status", "logs", "doctor"),
                    "lifecycle"),
    "agent": "agentcmd",
    "control-plane": "cluster",
    "init": "init",
    "gen-k8s": "k8s",
    **dict.fromkeys(("apply", "service"), "live"),
    **dict.fromkeys(("queue", "metrics", "cleanup", "notifications", "history", "trace"),
                    "data"),
    **dict.fromkeys(("send", "task", "pause", "resume", "schedule"), "tasks"),
    **dict.fromkeys(("approvals", "approve", "deny"), "approvals"),
    "costs": "costs",
    "mcp": "mcpsetup",
    "merges": "merges",
}


# what a shell reports for a command that SIGPIPE ended (128 + 13), as `head` users expect
PIPE_CLOSED = 141


class EdgeGroup(click.Group):
    """The CLI's edge: whatever the command, trouble of the environment is one line, exit 1.
    Commands load lazily (COMMAND_MODULES): start-up imports only the one that runs."""

    def main(self, *args, **kwargs):
        import signal
        if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "_interrupted_early":
            signal.signal(signal.SIGINT, signal.default_int_handler)  # loaded: ours to handle
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, name: str):
        if name not in self.commands and name in COMMAND_MODULES:
            import importlib
            importlib.import_module(f"{__package__}.{COMMAND_MODULES[name]}")  # registers it
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            quiet_stdout()
            raise click.exceptions.Exit(PIPE_CLOSED) from None
        except KeyboardInterrupt:
            raise Interrupted("") from None
        except SupervisorNotAnswering as exc:  # e.g. client.is_running's: alive but silent
            raise ctx.obj.down(exc) from None
        except xmlrpc.client.Fault as exc:
            raise UserError(fault_line(exc)) from None
        except Exception as exc:
            message = environment_trouble(exc)
            if message is None:
                raise
            raise UserError(message) from None


@click.group(cls=EdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coffee-team", prog_name="coffee-team")
@click.option("--team", "team_path", default="data/team.yaml", envvar="COFFEE_TEAM",
              show_default=True, help="Team file (its directory's parent is the project root).")
@click.option("-c", "--conf", default=None, help="supervisord config to reach the server by.")
@click.pass_context
def main(ctx: click.Context, team_path: str, conf: str | None) -> None:
    """Run a team of AI agents as supervised processes."""
    ctx.obj = Context(team_path, conf)


@contextmanager
def refused():
    """An action the library refused (errors.ActionRefused) as the command's one line."""
    try:
        yield
    except ActionRefused as exc:
        raise UserError(str(exc), exc.exit_code) from None


def config_team(ctx: Context) -> Team:
    """The team, if it can run (ops.lifecycle.runnable); else one line and exit 2
    (gen-config, start, apply)."""
    from ..ops.lifecycle import runnable
    with refused():
        return runnable(ctx.team)


def parse_agents(team: Team, agents: str | None) -> tuple[str, ...]:
    if not agents:
        return ()
    return require_agents(team, *(a.strip() for a in agents.split(",") if a.strip()))


def require_agents(team: Team, *names: str) -> tuple[str, ...]:
    """The names, if each is an agent of the team; else one line and exit 2."""
    try:
        return team.require(*names)
    except TeamError as exc:
        raise UserError(str(exc), exit_code=2) from None


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
