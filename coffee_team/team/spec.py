"""The team as the program sees it: frozen dataclasses, no file access (``parse`` reads
the team file into them).

Kept apart from the parser so modules that only read a Team do not need YAML or the llm
package's checkers to describe one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TeamError, UnknownAgentError
from ..dburl import is_postgres_url
from ..taskstate import RetryPolicy

if TYPE_CHECKING:  # imported by the parser only for a team that has llm agents or budgets
    from ..llm.budget import Budget
    from .llm import ApprovalsSpec, LlmSpec, WorkspaceSpec
    from .schedule import MemoryTrend, ScheduleEntry


@dataclass(frozen=True)
class HttpSettings:
    """``team.http`` (XML-RPC over HTTP) or ``team.web`` (the dashboard)."""
    port: int
    username: str
    password_env: str
    host: str = "127.0.0.1"
    allow_remote: bool = False
    head_timeout: float | None = None  # seconds to send a request's head; None: httpd's 10


def check_http(http: HttpSettings, source: str, where: str = "team.http",
               what: str = "the XML-RPC API") -> None:
    """Refuse a server that would be open: it controls every agent. ``team.web`` (the
    dashboard) follows the same rules as ``team.http``."""
    if not http.username or not http.password_env:
        raise TeamError(f"{source}: {where}: username and password_env are required")
    from .fields import is_loopback  # here: the checkers' regexes are not an agent's
    if not http.allow_remote and not is_loopback(http.host):
        raise TeamError(f"{source}: {where}.host: {http.host!r} is not a loopback address; "
                        f"{what} controls every agent, so set allow_remote: true to "
                        f"expose it on purpose")


# The web program's name in supervisord; an agent cannot have it while team.web or team.http
# is set.
WEB_PROGRAM = "web"


@dataclass(frozen=True)
class NotifyTarget:
    """One ``team.notify`` entry: an Apprise ``url`` or a ``command`` argv, and the minimum
    ``level`` it receives."""
    level: str = "WARNING"
    url: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        """Stable id of the destination (the deliveries table keys on it): the same URL or
        argv is the same target whatever its place in the list or its level."""
        import hashlib  # here: it loads OpenSSL, which `status` and most agents never need
        what = self.url if self.url is not None else "\0".join(self.command or ())
        return hashlib.sha256(what.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """What a person sees: the name, else the URL without credentials or path, else argv[0]."""
        if self.name:
            return self.name
        if self.url is not None:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://{rest.split('/')[0].rpartition('@')[2]}"
        return Path((self.command or ("?",))[0]).name


@dataclass(frozen=True)
class AgentSpec:
    """One agent of the team file (``agents.NAME``)."""
    name: str
    priority: int = 5
    check_interval: float = 300.0
    auto_approve: bool = False
    # None: no hard limit. LLM tasks take hours; budgets, stall_after and heartbeats bound
    # a run instead of a wall-clock default that would cut real work off.
    timeout_seconds: float | None = None
    memory_limit_mb: int | None = None
    handler: str | None = None
    command: tuple[str, ...] | None = None
    handles: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()  # variables it reads from the environment, never in the file
    cpu: str | None = None  # a Kubernetes CPU quantity (gen-k8s); supervisord ignores it
    restart_on_hang: bool = True
    stall_after: float | None = None  # seconds without output or ctx.progress(): a stall
    on_stall: str = "warn"            # warn (one WARNING per stall) or cancel (fail the task)
    cpu_warn_percent: float = 80.0
    rss_warn_mb: float = 256.0
    options: tuple[tuple[str, Any], ...] = ()
    retry: RetryPolicy | None = None  # the team's retry when the agent sets none
    llm: LlmSpec | None = None        # a coding CLI run per task (coffee_team.llm)
    budget: Budget | None = None      # per UTC day; reaching it pauses intake
    workspace: WorkspaceSpec | None = None
    rate_limit: str | None = None     # regex of a rate-limit message (else the default)
    rate_limit_group: str | None = None  # who pauses with it at a limit (else: same CLI)
    schedule: tuple[ScheduleEntry, ...] = ()  # wall-clock tasks the watchdog sends it
    memory_trend: MemoryTrend | None = None   # restart between tasks before memory_limit_mb
    # an llm agent whose tool calls may wait for a person (set for auto_approve: false on
    # the claude preset: the defaults, or the team file's approvals:); None: nothing asks
    approvals: ApprovalsSpec | None = None
    approve_before: tuple[str, ...] = ()  # task types a person approves before they run


@dataclass(frozen=True)
class TeamSettings:
    """The team file's ``team:`` section."""
    database_path: str = "data/orchestrator.db"
    health_check_interval: float = 30.0
    max_restart_attempts: int = 3
    restart_backoff: float = 60.0
    restart_reset_after: float = 600.0
    restart_backoff_max: float = 3600.0
    max_queue_size: int = 1000
    cleanup_interval_hours: float = 24.0
    heartbeat_interval: float = 30.0
    heartbeat_stale_after: float = 300.0
    lease_seconds: float = 300.0
    start_seconds: int = 1
    start_retries: int = 3
    stop_wait_seconds: int = 10
    python: str | None = None  # None: the interpreter coffee-team runs from (team/interpreter.py)
    require_branch: str | None = None
    http: HttpSettings | None = None
    web: HttpSettings | None = None  # the dashboard (coffee_team/web), same shape as http
    retry: RetryPolicy | None = None
    escalate_after: float | None = None  # seconds; None: pending tasks are never escalated
    host_name: str | None = None  # this host among hosts sharing PostgreSQL; None: hostname
    notify: tuple[NotifyTarget, ...] = ()
    budget: Budget | None = None  # the whole team's, per UTC day
    timezone: str | None = None  # schedules' default time zone (None: UTC)

    @property
    def web_program(self) -> bool:
        """Whether supervisord runs the web program: it serves the dashboard (``web``) and
        XML-RPC over HTTP (``http``); supervisord itself listens on its unix socket only."""
        return self.web is not None or self.http is not None


@dataclass(frozen=True)
class HostSpec:
    """One supervisord of a team spread over several hosts (``hosts:`` in the team file)."""
    name: str
    url: str  # unix:///path/supervisor.sock or http://host:port
    username: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class Team:
    """The team file as the program sees it: its settings, agents and hosts."""
    settings: TeamSettings
    agents: tuple[AgentSpec, ...]
    path: Path = field(default=Path("data/team.yaml"))
    hosts: tuple[HostSpec, ...] = ()

    @cached_property
    def root(self) -> Path:
        return self.path.resolve().parent.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def status_dir(self) -> Path:
        return self.data_dir / "agent_status"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def conf_dir(self) -> Path:
        return self.root / "supervisord.conf.d"

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "supervisord.conf"

    @property
    def database_url(self) -> str:
        """``postgresql://...`` as written; SQLite (a bare path or ``sqlite:///path``) as an
        absolute path, relative paths taken from the project root."""
        db = self.settings.database_path
        if is_postgres_url(db):
            return db
        if db.startswith("sqlite:///"):
            db = db[len("sqlite:///"):]
        return str(self.resolve(db))

    @property
    def is_postgres(self) -> bool:
        return is_postgres_url(self.settings.database_path)

    @property
    def host(self) -> str:
        """This host's name among hosts sharing a PostgreSQL database (restart state, the
        singleton's holder): ``team.host_name``, else the machine's host name."""
        import socket
        return self.settings.host_name or socket.gethostname()

    @property
    def state_host(self) -> str:
        """The host whose restart state this team file's processes keep: this host on a
        shared PostgreSQL; '' on SQLite, which serves one host."""
        return self.host if self.is_postgres else ""

    @property
    def wake_dir(self) -> str:
        return str(self.run_dir / "wake")

    def queue_options(self, **overrides: Any) -> dict[str, Any]:
        """MessageQueue's keyword options from this team file, the database aside
        (``database_url``): the one team → queue mapping. The agent, the rpc plugin, the CLI,
        the watchdog and the web program all open their queue with it (``from_team`` calls
        it, so ``queue/`` needs no import of this package); ``overrides`` (a clock) win."""
        return {
            "agents": self.names,
            "handles": {a.name: tuple(a.handles) for a in self.agents},
            "max_queue_size": self.settings.max_queue_size,
            "retry": {a.name: a.retry for a in self.agents if a.retry is not None},
            "escalate_after": self.settings.escalate_after,
            "lease_seconds": self.settings.lease_seconds,
            "wake_dir": self.wake_dir,
            "approve_before": {a.name: a.approve_before for a in self.agents
                               if a.approve_before},
            "host": self.state_host,  # hosts sharing PostgreSQL keep their own restart state
            **overrides,
        }

    def lock_path(self, agent: str) -> Path:
        """The file lock that keeps one instance of ``agent`` on a SQLite team. In run/, not
        agent_status/: an unusable status dir costs heartbeats, never the agent itself."""
        return self.run_dir / f"{agent}.lock"

    def agent(self, name: str) -> AgentSpec:
        self.require(name)
        return next(spec for spec in self.agents if spec.name == name)

    def require(self, *names: str) -> tuple[str, ...]:
        """The names, if each is an agent of this team (the one place that says which are not)."""
        unknown = [str(n)[:60] for n in names if n not in self.names]
        if unknown:
            raise UnknownAgentError(f"{self.path}: unknown agent(s) {', '.join(unknown)} "
                                    f"(known: {', '.join(self.names)})")
        return names

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)
