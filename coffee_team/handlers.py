"""Running an agent's work: a Python callable or an external command.

A Python handler is ``def handle(task: dict, ctx: HandlerContext) -> JSON-able``. An external
command gets the task as JSON on stdin and prints a JSON result; its argv comes from the team
file only, so task content can never become a shell command. A result (from either kind) may
hold ``"send": [{"recipient", "type", "content", "priority"}]`` to emit follow-up messages.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import HandlerError
from .singleton import die_with_parent


class Interrupted(BaseException):
    """Raised from a signal handler to stop a running handler.

    A BaseException, so a handler's own ``except Exception`` cannot swallow it. ``reason`` is
    "timeout" (the task fails) or "stop" (the task is requeued for the next run).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class HandlerContext:
    agent: str
    options: dict[str, Any]
    auto_approve: bool = False
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def send(self, recipient: str | None, type: str, content: Any = None,
             priority: int = 5) -> None:
        """Queue a follow-up message; it is sent when the current task completes."""
        self.outbox.append({"recipient": recipient, "type": type, "content": content,
                            "priority": priority})


def load_callable(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise HandlerError(f"cannot load handler {ref!r}: {exc}") from None


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``Interrupted("timeout")`` in the main thread after ``seconds`` (Python handlers)."""
    def expire(signum, frame):
        raise Interrupted("timeout", f"timed out after {seconds:g}s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CallableRunner:
    def __init__(self, func: Callable[..., Any]):
        self.func = func

    def __call__(self, task: dict, ctx: HandlerContext) -> Any:
        try:
            return self.func(task, ctx)
        except HandlerError:
            raise
        except Exception as exc:  # the handler's own bug: record it on the task
            raise HandlerError(f"{type(exc).__name__}: {exc}") from exc

    def kill(self) -> None:
        pass


def _child_setup() -> None:
    die_with_parent(signal.SIGKILL)


class CommandRunner:
    """Runs one external command per task in its own process group."""

    def __init__(self, argv: tuple[str, ...], cwd: str | None = None):
        self.argv = list(argv)
        self.cwd = cwd
        self.current: subprocess.Popen | None = None

    def __call__(self, task: dict, ctx: HandlerContext) -> Any:
        try:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=self.cwd, start_new_session=True,
                preexec_fn=_child_setup)
        except OSError as exc:
            raise HandlerError(f"cannot start {self.argv[0]!r}: {exc}") from None
        self.current = proc
        try:
            out, err = proc.communicate(json.dumps(task).encode())
        except BaseException:  # timeout or stop (Interrupted): take the whole group down
            self.kill()
            raise
        finally:
            self.current = None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise HandlerError(f"{self.argv[0]} exited with {proc.returncode}: {tail[0][:500]}")
        text = out.decode(errors="replace").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise HandlerError(f"{self.argv[0]} printed invalid JSON: {text[:200]!r}") from None

    def kill(self) -> None:
        proc = self.current
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def split_follow_ups(result: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Take the ``send`` list out of a handler result."""
    if isinstance(result, dict) and "send" in result:
        rest = {k: v for k, v in result.items() if k != "send"}
        sends = result["send"]
        if not isinstance(sends, list) or not all(isinstance(s, dict) for s in sends):
            raise HandlerError("result 'send' must be a list of message objects")
        return (rest or None), sends
    return result, []
