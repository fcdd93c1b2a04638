"""Running an agent's work: a Python callable or an external command.

A Python handler is ``def handle(task: dict, ctx: HandlerContext) -> JSON-able``; it may call
``ctx.progress()`` to say it is still getting somewhere (see ``stall_after``). An external
command gets the task as JSON on stdin; its output is streamed into the agent's log, the last
line it printed is its current step, and its result is found as output.py describes. Its argv comes from the team file only, so task content
can never become a shell command. A result (from either kind) may
hold ``"send": [{"recipient", "type", "content", "priority"}]`` to emit follow-up messages.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import HandlerError
from .output import (FdSink, NullSink, ResultScan, TaggedLines, has_result, last_line, log,
                     read_result_file, task_tag)
from .parentwatch import become_subreaper, children, die_with_parent, end_leftovers

if TYPE_CHECKING:  # CommandRunner imports them when it runs a command: an agent is ready sooner
    import subprocess

READ_CHUNK = 1 << 20
# Linux: a 1 MiB pipe instead of 64 KiB lets a chatty command write ahead and us read in large
# chunks: 16x fewer wake-ups and system calls per MB of output.
PIPE_SIZE = 1 << 20
EXIT_GRACE = 2.0  # seconds its output is still read after the command exited
EXIT_POLL = 0.25  # how often it is asked whether it exited, where no pidfd can tell


class Deferred(HandlerError):
    """The task could not run now (e.g. the model's rate limit): back to pending, claimable
    at ``until``, counting neither a delivery nor a failure; the agent pauses intake until
    then, unless ``pause`` is False (it is paused already, e.g. by its budget), and so do
    the agents in ``pause_also`` (those sharing the limit)."""

    def __init__(self, message: str, until: float, pause: bool = True,
                 pause_also: tuple[str, ...] = ()):
        super().__init__(message)
        self.until = until
        self.pause = pause
        self.pause_also = pause_also


class Interrupted(BaseException):
    """Raised from a signal handler to stop a running handler.

    A BaseException, so a handler's own ``except Exception`` cannot swallow it. ``reason`` is
    "timeout", "stalled" or "memory" (the task fails), "stop" (the task is requeued for the
    next run) or "cancelled" (the task is no longer this agent's: nothing is recorded).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class HandlerContext:
    """What a handler gets besides the task: its agent, options and the calls below."""
    agent: str
    options: dict[str, Any]
    auto_approve: bool = False
    outbox: list[dict[str, Any]] = field(default_factory=list)
    on_progress: Callable[[str | None], None] | None = None
    on_step: Callable[[str], None] | None = None
    # (task ids, timeout) -> {id: result}: given by the agent running the task
    waiter: Callable[[list[int], float | None], dict[int, Any]] | None = None

    def send(self, recipient: str | None, type: str, content: Any = None,
             priority: int = 5, after: list[int] | None = None,
             on_dependency_failure: str = "fail") -> None:
        """Queue a follow-up message; it is sent when the current task completes. ``after``
        (task ids, this task's own included) makes it wait until each of them completed."""
        message = {"recipient": recipient, "type": type, "content": content,
                   "priority": priority}
        if after:
            message.update(after=list(after), on_dependency_failure=on_dependency_failure)
        self.outbox.append(message)

    def wait_for(self, *task_ids: int, timeout: float | None = None) -> dict[int, Any]:
        """Block until each task (sent by this handler, or any other) completed: {id: result}.
        HandlerError if one failed, was cancelled or the timeout passed. The wait is recorded,
        so the watchdog names a cycle of agents waiting on each other's tasks; waiting on a
        task sent after this one (it could never start) is refused at once."""
        if self.waiter is None:
            raise HandlerError("wait_for needs a task run by an agent")
        return self.waiter(list(task_ids), timeout)

    def progress(self, message: str | None = None) -> None:
        """Mark progress: the task is not stalled (``stall_after``). A message is logged."""
        if self.on_progress is not None:
            self.on_progress(message)

    def step(self, message: str) -> None:
        """Show ``message`` as the current step (heartbeat ``progress``, ``status``); unlike
        progress() it is not logged: the output it comes from already is."""
        if self.on_step is not None:
            self.on_step(message)
        else:
            self.progress()


def load_callable(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise HandlerError(f"cannot load handler {ref!r}: {exc}") from None


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise ``Interrupted("timeout")`` in the main thread after ``seconds``; None: no limit
    (the timer is left alone, so a stop's grace period set meanwhile still runs)."""
    if seconds is None:
        yield
        return

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
    in_process = True  # runs in the agent's process: memory_limit_mb caps it (agent/memguard)

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
    """Runs one external command per task in its own process group, streaming its output."""

    def __init__(self, argv: tuple[str, ...], cwd: str | None = None, sink: Any = None):
        self.argv = list(argv)
        self.cwd = cwd
        self.sink = sink or FdSink()
        self.current: subprocess.Popen | None = None
        self.marked: tuple[str, set[int]] = ("", set())  # the run's marker, our children before
        self.exit_grace = EXIT_GRACE
        self.until: tuple[float, float] | None = None  # execute's timeout: (when, seconds)

    def __call__(self, task: dict, ctx: HandlerContext) -> Any:
        # here, not at import: with bz2/lzma/random they are ~1.4 MB that an agent running
        # Python handlers never needs
        import shutil
        import tempfile
        scratch = tempfile.mkdtemp(prefix="coffee-task-")
        result_file = os.path.join(scratch, "result.json")
        try:
            code, out, err = self.execute(self.argv, json.dumps(task).encode(), task, ctx,
                                          result_file)
            name = self.argv[0]
            if code != 0:
                raise HandlerError(f"{name} exited with {code}: {err.last_line()}")
            written = read_result_file(result_file, name)
            return written if has_result(written) else out.result(name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def execute(self, argv: list[str], stdin_data: bytes, task: dict, ctx: HandlerContext,
                result_file: str, cwd: str | None = None, scan: Any = None,
                tag: str | None = None, timeout: float | None = None
                ) -> tuple[int, Any, TaggedLines]:
        """Run ``argv`` to its end in its own process group, streaming its output into the
        log, each line after ``tag`` (the task's); (exit code, the stdout scan, stderr's
        lines). It ends when the command exits (EXIT_GRACE more for its last output, even if
        something it started still holds its stdout), and what it left running is ended
        with it (parentwatch.end_leftovers). Interrupted kills the group and what left it;
        ``timeout`` raises it from here (a thread, which has no SIGALRM: time_limit)."""
        tag = task_tag(task) if tag is None else tag
        self.marked = (result_file, children())  # the marker, and the children we had before
        self.until = None if timeout is None else (time.monotonic() + timeout, timeout)
        proc = self._start(result_file, argv, cwd)
        self.current = proc
        try:
            out, err, held = self._pump(proc, stdin_data, tag.encode(), ctx,
                                        scan or ResultScan())
            exited = _wait_exit(proc)
            ended = end_leftovers(proc.pid, proc.pid if exited else None, self.marked[1],
                                  result_file, search=held)
            proc.wait()
            if held or ended:
                log(ctx.agent, f"{tag}{argv[0]} exited with {proc.returncode}; "
                               f"{'its output was still held open; ' if held else ''}ended "
                               f"what it left running{_pids(ended)}")
        except BaseException:  # timeout, stop or cancel (Interrupted): take the group down
            self.kill()
            raise
        finally:
            self.current = None
        return proc.returncode, out, err

    def _start(self, result_file: str, argv: list[str] | None = None,
               cwd: str | None = None) -> subprocess.Popen:
        import subprocess
        argv = argv or self.argv
        env = {**os.environ, "COFFEE_RESULT_FILE": result_file}
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=cwd or self.cwd, start_new_session=True,
                preexec_fn=_child_setup, env=env, bufsize=0)
        except OSError as exc:
            raise HandlerError(f"cannot start {argv[0]!r}: {exc}") from None

    def _pump(self, proc: subprocess.Popen, stdin_data: bytes, tag: bytes,
              ctx: HandlerContext, scan: Any) -> tuple[Any, TaggedLines, bool]:
        """Feed stdin, log stdout and stderr as they come, feeding stdout's complete lines to
        ``scan``, until both end or the command exited EXIT_GRACE ago; return (scan,
        stderr, whether they were still open). The last line printed is the current step,
        unless the scan shows steps itself (``shows_steps``: it reads events, and logs them
        instead of stdout's raw lines)."""
        import fcntl
        own_steps = getattr(scan, "shows_steps", False)
        out = TaggedLines(tag, NullSink() if own_steps else self.sink)
        err = TaggedLines(tag, self.sink)
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        for fd in streams:
            with contextlib.suppress(AttributeError, OSError):  # not Linux, or over the limit
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        exit_fd = _exit_fd(proc.pid)  # readable once it exited (Linux 5.3+); else polled
        try:
            held = self._select(proc, stdin_data, streams, exit_fd, scan, ctx, own_steps)
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
        for fd in held:  # something the command started holds them: what came is kept
            last = streams[fd].close()
            if fd == proc.stdout.fileno():
                scan.feed(last)
        if getattr(scan, "end", None) is not None:
            scan.end()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        return scan, err, bool(held)

    def _select(self, proc: subprocess.Popen, stdin_data: bytes, streams: dict,
                exit_fd: int | None, scan: Any, ctx: HandlerContext, own_steps: bool) -> list:
        """The pump's loop; the streams still open when it ended (held by a descendant)."""
        import selectors
        deadline = None
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            if exit_fd is not None:
                selector.register(exit_fd, selectors.EVENT_READ)
            pending = memoryview(stdin_data)
            stdin_fd = proc.stdin.fileno()
            os.set_blocking(stdin_fd, False)  # a command that does not read must not block us
            selector.register(stdin_fd, selectors.EVENT_WRITE)
            held = list(streams)
            while held:
                wait = (max(0.0, deadline - time.monotonic()) if deadline is not None
                        else None if exit_fd is not None else EXIT_POLL)
                if deadline is None and self.until is not None:  # not exited yet
                    left = self.until[0] - time.monotonic()
                    if left <= 0:
                        raise Interrupted("timeout", f"timed out after {self.until[1]:g}s")
                    wait = left if wait is None else min(wait, left)
                exited = False
                for key, _ in selector.select(wait):
                    fd = key.fd
                    if fd == exit_fd:
                        selector.unregister(fd)  # stays readable: once is enough
                        exited = True
                    elif fd == stdin_fd:
                        pending = self._feed_stdin(selector, proc, pending)
                    else:
                        self._read(fd, selector, streams, proc, scan, ctx, own_steps)
                held = [fd for fd in streams if fd in selector.get_map()]
                if deadline is None and (exited or exit_fd is None and _exited(proc)):
                    deadline = time.monotonic() + self.exit_grace
                elif deadline is not None and time.monotonic() >= deadline:
                    break
        return held

    def _read(self, fd: int, selector: Any, streams: dict, proc: subprocess.Popen, scan: Any,
              ctx: HandlerContext, own_steps: bool) -> None:
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            selector.unregister(fd)
            last = streams[fd].close()
            if fd == proc.stdout.fileno():
                scan.feed(last)
            return
        lines = streams[fd].feed(chunk)
        if fd == proc.stdout.fileno():
            scan.feed(lines)
        shown = None if own_steps else last_line(lines)
        if shown:
            ctx.step(shown)
        else:
            ctx.progress()  # output all the same: not stalled

    @staticmethod
    def _feed_stdin(selector, proc: subprocess.Popen, pending: memoryview) -> memoryview:
        try:
            pending = pending[os.write(proc.stdin.fileno(), pending[:READ_CHUNK]):]
        except BrokenPipeError:  # the command exited or closed stdin without reading it all
            pending = pending[:0]
        if not pending:
            selector.unregister(proc.stdin.fileno())
            proc.stdin.close()
        return pending

    def kill(self) -> None:
        """Kill the command's group and what left it (a stop, timeout or cancel)."""
        proc = self.current
        if proc is None:
            return
        if proc.returncode is None:  # not reaped: its pid still names its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        end_leftovers(proc.pid, None, self.marked[1], self.marked[0], search=True)

    def adopt_orphans(self) -> bool:
        """Make this process a child subreaper (the agent program does, at its start): what
        a command started that left its session is found, ended and reaped at its end."""
        return become_subreaper()


def _exit_fd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+: polled every EXIT_POLL instead
        return None


def _exited(proc: subprocess.Popen) -> bool:
    """Has it exited? Not reaped: its pid keeps naming its group until the sweep is done."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except AttributeError:  # no waitid (macOS): wait for its output to end, as before
        return False
    except ChildProcessError:
        return True


def _wait_exit(proc: subprocess.Popen) -> bool:
    """Wait for it to exit, leaving it unreaped; False where that cannot be done."""
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        return True
    except (AttributeError, ChildProcessError):
        return False


def _pids(pids: list[int]) -> str:
    return f" (PID {', '.join(map(str, pids[:10]))}{', …' if len(pids) > 10 else ''})" \
        if pids else ""


def split_follow_ups(result: Any) -> tuple[Any, list[dict[str, Any]], list[tuple[Any, str]]]:
    """Take the ``send`` list out of a handler result: (the rest, the message objects, the
    malformed entries with why). A malformed entry costs neither the task nor the other
    follow-ups (agent/followups.py)."""
    if not (isinstance(result, dict) and "send" in result):
        return result, [], []
    rest = {k: v for k, v in result.items() if k != "send"}
    sends = result["send"]
    if not isinstance(sends, list):
        return (rest or None), [], [(sends, "result 'send' must be a list of message objects")]
    malformed = [(s, "a follow-up must be a message object {recipient, type, content, "
                     "priority}") for s in sends if not isinstance(s, dict)]
    return (rest or None), [s for s in sends if isinstance(s, dict)], malformed
