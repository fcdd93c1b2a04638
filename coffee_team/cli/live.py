"""Live operations: apply (team changes without a restart) and service (start on boot)."""
from __future__ import annotations

import xmlrpc.client

import click

from .. import client, layout
from ..client import Faults
from ..errors import TeamError
from .base import Context, UserError, config_team, echo_json, main, pass_ctx


# --- apply -----------------------------------------------------------------------------------

def running_team(ctx: Context):
    """The team supervisord runs (as its rpcinterface loaded it), or None if it is down."""
    from ..team import parse_team_text
    if not client.is_running(ctx.endpoint):
        return None
    try:
        loaded = ctx.rpc("coffee.getLoadedTeam")
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == Faults.UNKNOWN_METHOD:
            raise UserError("supervisord runs a config from before `apply` existed; restart "
                            "the team once: coffee-team stop && coffee-team start") from None
        raise UserError(f"coffee.getLoadedTeam: {exc.faultString}") from None
    try:
        return parse_team_text(loaded["text"], ctx.team.path)
    except TeamError as exc:
        raise UserError(f"the running team no longer parses ({exc}); restart the team") from None


def refuse_removal(work: dict[str, dict[str, int]]) -> None:
    counts = "; ".join(f"{n}: {c['pending']} pending, {c['in_progress']} in progress"
                       for n, c in work.items())
    raise UserError(f"refusing to remove agent(s) with open tasks ({counts}); let them finish, "
                    f"cancel them, or run `coffee-team apply --yes` to fail them with "
                    f"\"agent removed from the team\"")


def print_plan(plan, dry_run: bool, work: dict) -> None:
    would = "would " if dry_run else ""
    for label, names in (("added", plan.added), ("removed", plan.removed),
                         ("changed", plan.changed), ("unchanged", plan.unchanged)):
        click.echo(f"{label + ':':<11}{', '.join(names) or '-'}")
    for name, counts in work.items():
        click.echo(f"{name}: {counts['pending']} pending and {counts['in_progress']} in-progress "
                   f"task(s) {would}fail when it is removed")
    for note in plan.notes:
        click.echo(f"note: {note}")
    if dry_run:
        click.echo("dry run: nothing changed")
    elif plan.empty:
        click.echo("nothing to apply: every agent keeps running as it is")


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--yes", is_flag=True, help="Remove agents even if they have open tasks "
                                          "(those tasks fail with the reason).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and result) as JSON.")
@pass_ctx
def apply(ctx: Context, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Bring the running team to the team file: only what changed moves.

    Added agents start in priority order, removed ones stop, changed ones restart one at a
    time; every other agent keeps its PID. The watchdog and coffee.* use the new team."""
    from . import apply as applying
    from .data import open_queue
    team = config_team(ctx)
    old = running_team(ctx)
    if old is None:
        if not dry_run:
            layout.ensure_data_dirs(team)
            layout.write_config(team)
        message = "supervisord is not running: " + ("nothing to apply" if dry_run else
                                                     "config written; `coffee-team start` runs it")
        echo_json({"running": False, "dry_run": dry_run}) if as_json else click.echo(message)
        return
    plan = applying.plan(old, team)
    with open_queue(ctx) as queue:
        work = applying.open_work(queue, plan.removed)
        if work and not yes and not dry_run:
            refuse_removal(work)
        if dry_run:
            _report(plan, work, as_json, dry_run=True)
            return
        layout.ensure_data_dirs(team)
        layout.write_config(team)
        timeout = team.settings.stop_wait_seconds + 30
        applier = applying.Applier(team, lambda method, *args: ctx.rpc(method, *args,
                                                                       timeout=timeout),
                                   queue, say=(lambda _: None) if as_json else click.echo)
        try:
            plan = applier.run(plan)
        except xmlrpc.client.Fault as exc:
            raise UserError(f"apply stopped: {exc.faultString}; fix it and run apply again "
                            f"(it picks up where it stopped)") from None
    _report(plan, work, as_json, dry_run=False, failed=applier.failed_tasks)


def _report(plan, work: dict, as_json: bool, dry_run: bool, failed: dict | None = None) -> None:
    if as_json:
        echo_json({**plan.as_dict(), "running": True, "dry_run": dry_run, "open_work": work,
                   "failed_tasks": failed or {}})
    else:
        print_plan(plan, dry_run, work if dry_run else {})


# --- service ---------------------------------------------------------------------------------

user_option = click.option("--user", is_flag=True,
                           help="A user unit (~/.config/systemd/user) instead of a system one.")


@main.group()
def service() -> None:
    """Start the team on boot: a systemd unit running supervisord for this project."""


@service.command("install")
@user_option
@click.option("--print", "print_only", is_flag=True, help="Print the unit; write nothing.")
@pass_ctx
def service_install(ctx: Context, user: bool, print_only: bool) -> None:
    """Write and enable the unit (supervisord -n, Restart=on-failure, this project's venv)."""
    from . import service as units
    team = config_team(ctx)
    try:
        supervisord = client.supervisord_binary()
    except Exception as exc:
        raise UserError(str(exc)) from None
    text = units.unit_text(team, supervisord, user)
    if print_only:
        click.echo(text, nl=False)
        return
    path = units.unit_path(team, user)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        layout.atomic_write_private(path, text)
        path.chmod(0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the unit: {exc.strerror or exc}"
                        + ("" if user else " (try --user, or run as root)")) from None
    click.echo(f"wrote {path}")
    _systemctl_steps(user, ("daemon-reload",), ("enable", path.name))
    scope = "--user " if user else ""
    click.echo(f"start it now with: systemctl {scope}start {path.name} (stop a team started "
               f"with `coffee-team start` first)")


def _systemctl_steps(user: bool, *steps: tuple[str, ...]) -> None:
    from . import service as units
    for step in steps:
        ok, said = units.systemctl(user, *step)
        click.echo(f"systemctl {' '.join(step)}: " + ("ok" if ok else f"failed ({said}); "
                                                      "run it yourself once systemd is up"))


def _unit(ctx: Context, user: bool):
    from . import service as units
    return units.unit_path(ctx.team, user)


@service.command("uninstall")
@user_option
@pass_ctx
def service_uninstall(ctx: Context, user: bool) -> None:
    """Disable and remove the unit (a running team keeps running)."""
    path = _unit(ctx, user)
    if not path.exists():
        raise UserError(f"{path}: no unit installed for this project")
    _systemctl_steps(user, ("disable", path.name))
    path.unlink()
    click.echo(f"removed {path}")
    _systemctl_steps(user, ("daemon-reload",))


@service.command("status")
@user_option
@pass_ctx
def service_status(ctx: Context, user: bool) -> None:
    """Whether the unit is installed, enabled and active."""
    from . import service as units
    path = _unit(ctx, user)
    if not path.exists():
        click.echo(f"not installed ({path}); `coffee-team service install"
                   f"{' --user' if user else ''}` writes it")
        return
    click.echo(f"installed: {path}")
    for question in ("is-enabled", "is-active"):
        ok, said = units.systemctl(user, question, path.name)
        click.echo(f"{question.removeprefix('is-')}: {said}")
