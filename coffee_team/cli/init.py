"""``coffee-team init``: a team for the repository you are in, from an example shipped in the
package (coffee_team/examples/), its generated config, and a .gitignore block for what the
team writes while it runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import click

from .base import Context, UserError, main, pass_ctx

EXAMPLES = ("starter", "demo", "llm-team")
DEFAULT_TEAM = "data/team.yaml"  # the CLI's --team default
# Where init puts an example's agents/ files (role texts, scripts; committed with the team),
# which its team file names by their place in the checkout: examples/NAME/agents/.
ROLE_DIR = "data/agents"
GITIGNORE_MARK = "# coffee-team: runtime state"
# what a running team writes under the project root: never committed
RUNTIME = ("/data/orchestrator.db*", "/data/logs/", "/data/run/", "/data/agent_status/",
           "/data/worktrees/", "/data/service.env")
# what to send first, per example
FIRST_TASK = {
    "starter": "send - draft --content '{\"text\": \"hello from my repository\"}'",
    "demo": "send - question --content '{\"text\": \"status?\"}'",
    "llm-team": "send architect design_request --content '{\"spec_id\": \"SPEC-001\", "
                "\"text\": \"...\"}'",
}


def example_dir(name: str):
    return resources.files("coffee_team") / "examples" / name


def yaml_scalar(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./+-]+", text) else json.dumps(text)


def team_text(example: str, python: str) -> str:
    """The example's team file as it is written into a project."""
    text = (example_dir(example) / "team.yaml").read_text(encoding="utf-8")
    text = text.replace("[${python},", f"[{yaml_scalar(python)},")
    return text.replace(f"examples/{example}/agents/", ROLE_DIR + "/")


def role_files(example: str) -> dict[str, str]:
    """The example's agents/ files (role texts, scripts): path under the project root ->
    text."""
    agents = example_dir(example) / "agents"
    if not agents.is_dir():
        return {}
    return {f"{ROLE_DIR}/{item.name}": item.read_text(encoding="utf-8")
            for item in sorted(agents.iterdir(), key=lambda i: i.name)
            if item.name.endswith((".md", ".py"))}


def gitignore_block(python: str) -> str:
    """The runtime state; a virtualenv in the project that the interpreter lives in; the
    generated config when it names an interpreter outside the project (this machine's)."""
    lines = [GITIGNORE_MARK + " (coffee-team init); commit data/team.yaml"]
    lines += RUNTIME
    parts = Path(python).parts
    if Path(python).is_absolute():
        lines += ["# names this machine's interpreter: `coffee-team gen-config` after a clone",
                  "/supervisord.conf.d/"]
    elif len(parts) >= 3 and parts[-2] == "bin":  # .venv/bin/python: the venv itself
        lines.append("/" + "/".join(parts[:-2]) + "/")
    return "\n".join(lines) + "\n"


def command_name() -> str:
    """How to call coffee-team again: plain if that is the one on PATH, else its path."""
    me = Path(sys.argv[0])
    found = shutil.which("coffee-team")
    try:
        if found and os.path.samefile(found, me):
            return "coffee-team"
    except OSError:
        pass
    if me.name != "coffee-team":  # python -m coffee_team
        return f"{os.path.relpath(sys.executable)} -m coffee_team"
    return os.path.relpath(me) if not me.is_absolute() or Path.cwd() in me.parents else str(me)


@main.command()
@click.option("--example", type=click.Choice(EXAMPLES), default="starter", show_default=True,
              help="starter: two small command agents; demo: the six seed agents (Python "
                   "handlers); llm-team: six agents running Claude Code, with role files.")
@click.option("--force", is_flag=True, help="Overwrite the team file and role files.")
@click.option("--mcp", "with_mcp", is_flag=True,
              help="Also give Claude Code the team's MCP server (.mcp.json) and the "
                   "orchestrator subagent (.claude/agents/orchestrator.md), as `coffee-team mcp "
                   "install` does.")
@pass_ctx
def init(ctx: Context, example: str, force: bool, with_mcp: bool) -> None:
    """Set up a team in this repository: data/team.yaml, its config, a .gitignore block."""
    from .. import layout
    from ..team import interpreter
    team_path = Path(ctx.team_path)
    root = team_path.resolve().parent.parent
    python = interpreter.python_for(root)
    files = {team_path: team_text(example, python)}
    files.update((root / rel, text) for rel, text in role_files(example).items())
    existing = [p for p in files if p.exists()]
    if existing and not force:
        shown = ", ".join(os.path.relpath(p) for p in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        raise UserError(f"{shown}: already {verb}; `coffee-team init --force` overwrites "
                        f"{'it' if len(existing) == 1 else 'them'}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {os.path.relpath(path)}")
    outside = Path(python).is_absolute()
    if _append_gitignore(root / ".gitignore", gitignore_block(python)):
        click.echo(f"added the runtime state to {os.path.relpath(root / '.gitignore')}")
    from .base import config_team
    try:
        team = config_team(ctx)
    except UserError as exc:  # e.g. llm-team's worktrees outside a git repository
        raise UserError(f"{exc.message}; then run `coffee-team gen-config`",
                        exc.exit_code) from None
    layout.ensure_data_dirs(team)
    layout.write_config(team)
    click.echo(f"wrote {os.path.relpath(team.conf_dir)}/ ({len(team.agents)} agents: "
               f"{', '.join(team.names)})")
    _make_database(team)
    commit = [os.path.relpath(team_path)] + ([os.path.relpath(root / ROLE_DIR) + "/"]
                                             if role_files(example) else [])
    commit += [os.path.relpath(root / ".gitignore")]
    if with_mcp:
        from ..ops.claude import install
        from .base import refused
        with refused():
            for line in install(team, force):
                click.echo(line)
        commit += [os.path.relpath(root / ".mcp.json"), os.path.relpath(root / ".claude")]
    if outside:
        click.echo(f"the programs run {python} (outside the project), so "
                   f"{os.path.relpath(team.conf_dir)}/ is ignored: run `coffee-team gen-config` "
                   f"after a clone")
    else:
        commit.append(os.path.relpath(team.conf_dir) + "/")
    me = command_name()
    if ctx.team_path != DEFAULT_TEAM:
        me += f" --team {ctx.team_path}"
    click.echo(f"\ncommit: git add {' '.join(commit)}\nthen:\n  {me} start\n"
               f"  {me} {FIRST_TASK[example]}")


def _make_database(team) -> None:
    """The team's SQLite database, on a project that never had one (init and start are the
    commands that make one: queue/files.py); where one was, what is left says so."""
    from ..errors import DatabaseUnavailable
    from .dbfile import never_made
    if not never_made(team):
        if not team.is_postgres and not os.path.exists(team.database_url):
            from ..queue import files
            try:
                files.may_create(files.sqlite_path(team.database_url), True)
            except DatabaseUnavailable as exc:
                click.echo(f"note: {exc}", err=True)
        return
    from ..queue import MessageQueue
    MessageQueue.from_team(team, create=True).close()
    click.echo(f"made {os.path.relpath(team.database_url)} (empty)")


def _append_gitignore(path: Path, block: str) -> bool:
    """Append the block unless the file has it already; whether it was appended."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if GITIGNORE_MARK in current:
        return False
    separator = "" if not current or current.endswith("\n\n") else (
        "\n" if current.endswith("\n") else "\n\n")
    with path.open("a", encoding="utf-8") as f:
        f.write(separator + block)
    return True
