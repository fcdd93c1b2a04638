"""The floor plan of coffee-team, checked by reading every module's imports with ``ast``
(an import inside a function counts: it runs too, only later).

    dispatcher  coffee_team.__main__ (``python -m coffee_team``): the agent's runtime or the CLI
    processes   coffee_team.agent     the agent program
                coffee_team.rpc       the supervisord plugin ([rpcinterface:coffee])
                coffee_team.watchdog  the watchdog event listener (python -m coffee_team.watchdog)
                coffee_team.cli       coffee-team, the command line
                coffee_team.web       the dashboard (python -m coffee_team.web)
                coffee_team.mcpserver the MCP server (coffee-team mcp: python -m coffee_team.mcpserver)
                coffee_team.controlplane the cluster's duties on Kubernetes (coffee-team control-plane)
    library     everything else outside queue/: team/, llm/ and the flat top level
    database    coffee_team.queue: the only code that names a driver or writes SQL

The rules (``violations`` names the one each line breaks):
  - a process package never imports another one, the library never imports a process package,
    and nothing imports the dispatcher;
  - ``queue/`` imports only the leaves in QUEUE_LEAVES outside itself (never team/ or llm/),
    those leaves import only each other, and ``team/`` never imports ``queue/``;
  - the database drivers and SQL text appear only in ``queue/``; the MCP SDK (``mcp``) only in
    ``mcpserver/``, so no other process ever loads it;
  - no import cycle between modules (``typing.TYPE_CHECKING`` imports never run: not counted);
  - no module over MAX_LINES lines; at most MAX_TOP_LEVEL modules in the flat top level.

No exceptions: the cycle in queue/ and the modules over 400 lines (rpc/interface.py,
queue/sql.py) that were allowed while issue #22 was under way are gone.
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "coffee_team"
DISPATCHER = "coffee_team.__main__"
PROCESSES = ("coffee_team.agent", "coffee_team.rpc", "coffee_team.watchdog", "coffee_team.cli",
             "coffee_team.web", "coffee_team.mcpserver", "coffee_team.controlplane")
MCP_SERVER, MCP_SDK = "coffee_team.mcpserver", "mcp"
QUEUE, TEAM = "coffee_team.queue", "coffee_team.team"
# Leaves that import nothing of ours but each other (taskstate's backoff is retry's).
QUEUE_LEAVES = {"coffee_team.errors", "coffee_team.taskstate", "coffee_team.retry",
                "coffee_team.otel", "coffee_team.dburl", "coffee_team.clock", "coffee_team.events",
                "coffee_team.extras"}
DRIVERS = {"sqlite3", "psycopg2", "psycopg", "peewee", "playhouse"}
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)"
                 r"|ALTER TABLE|PRAGMA \w+|LISTEN \w|NOTIFY \w|pg_\w+\()", re.S)
MAX_LINES = 400
MAX_TOP_LEVEL = 25



@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported: a coffee_team module when it is one, else the name
    line: int
    runs: bool   # False under ``if TYPE_CHECKING:``


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    package: str  # what its relative imports start from
    tree: ast.Module
    lines: int


def modules() -> dict[str, Module]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = dotted.removesuffix(".__init__")
        text = path.read_text()
        found[name] = Module(name, path, name if dotted != name else name.rpartition(".")[0],
                             ast.parse(text, str(path)), len(text.splitlines()))
    return found


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def type_checking_nodes(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return ids


def imports(module: Module, known: dict[str, Module]) -> list[Import]:
    """Every import in the module, resolved to the module it loads: ``from a import b`` is the
    module ``a.b`` when that is one, else ``a`` (the parent packages are not edges)."""
    skipped = type_checking_nodes(module.tree)
    out = []
    for node in ast.walk(module.tree):
        runs = id(node) not in skipped
        if isinstance(node, ast.Import):
            out += [Import(module.name, alias.name, node.lineno, runs) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                out.append(Import(module.name, target, node.lineno, runs))
    return out


def process_of(module: str) -> str | None:
    return next((p for p in PROCESSES if under(module, p)), None)


def layer_breaches(imp: Import) -> list[str]:
    where = f"{imp.source}:{imp.line} imports {imp.target}"
    src, dst = imp.source, imp.target
    if not under(dst, PACKAGE):
        if imp.target.split(".")[0] in DRIVERS and not under(src, QUEUE):
            return [f"driver outside queue/: {where}"]
        if imp.target.split(".")[0] == MCP_SDK and not under(src, MCP_SERVER):
            return [f"the MCP SDK outside mcpserver/: {where}"]
        return []
    found = []
    if dst == DISPATCHER:
        found.append(f"imports the dispatcher: {where}")
    mine, theirs = process_of(src), process_of(dst)
    if theirs and mine and theirs != mine:
        found.append(f"process imports another process: {where}")
    elif theirs and not mine and src != DISPATCHER:
        found.append(f"library imports a process: {where}")
    if under(src, QUEUE) and not under(dst, QUEUE) and dst not in QUEUE_LEAVES:
        found.append(f"queue/ imports beyond its leaves: {where}")
    if src in QUEUE_LEAVES and dst != PACKAGE and dst not in QUEUE_LEAVES:
        found.append(f"a leaf imports beyond the leaves: {where}")
    if under(src, TEAM) and under(dst, QUEUE):
        found.append(f"team/ imports queue/: {where}")
    return found


def docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_outside_queue(module: Module) -> list[str]:
    if under(module.name, QUEUE):
        return []
    prose = docstrings(module.tree)
    return [f"SQL outside queue/: {module.name}:{node.lineno} {node.value[:50]!r}"
            for node in ast.walk(module.tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in prose and SQL.search(node.value)]


def cycles(known: dict[str, Module]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan), over the imports
    that run; a module importing itself is not a cycle worth a rule."""
    edges: dict[str, set[str]] = {name: set() for name in known}
    for module in known.values():
        for imp in imports(module, known):
            if imp.runs and imp.target in known and imp.target != module.name:
                edges[module.name].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(known) + 100))
    try:
        for name in sorted(edges):
            if name not in index:
                visit(name)
    finally:
        sys.setrecursionlimit(limit)
    return found


def violations() -> list[str]:
    found: list[str] = []
    table = modules()
    for module in table.values():
        for imp in imports(module, table):
            found += layer_breaches(imp)
        found += sql_outside_queue(module)
        relative = module.path.relative_to(ROOT).as_posix()
        if module.lines > MAX_LINES:
            found.append(f"module over {MAX_LINES} lines: {relative} has {module.lines}")
    found += [f"import cycle: {' -> '.join(sorted(c))}" for c in cycles(table)]
    top_level = sorted(p.name for p in (ROOT / PACKAGE).glob("*.py"))
    if len(top_level) > MAX_TOP_LEVEL:
        found.append(f"flat top level has {len(top_level)} modules (at most {MAX_TOP_LEVEL})")
    return found


def test_the_package_follows_its_floor_plan():
    assert violations() == []


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_sees_every_broken_rule(tmp_path, monkeypatch):
    """Each rule above reports its breach in a fake package; what is allowed stays quiet."""
    write(tmp_path / PACKAGE, {
        "__init__.py": "",
        "__main__.py": "from .agent import main\nfrom .cli import main\n",  # the dispatcher may
        "errors.py": "from coffee_team import status\n",
        "agent/__init__.py": "from coffee_team.rpc import interface\nmain = 1\n",
        "rpc/__init__.py": "", "rpc/interface.py": "from .. import errors\n",
        "cli/__init__.py": "main = 1\n",
        "watchdog/__init__.py": "from coffee_team import __main__\n",
        "web/__init__.py": "",
        "mcpserver/__init__.py": "import mcp.server\n",                 # its own: allowed
        "web/main.py": "from mcp import Client\n",
        # A function-level import counts.
        "status.py": '"""SELECT x FROM y in a docstring is prose."""\n'
                     "def show():\n    from coffee_team.cli import main\n",
        "llm/__init__.py": "import psycopg\nX = 'UPDATE tasks SET status = 1'\n",
        "team/__init__.py": "def f():\n    from coffee_team.queue import core\n",
        "queue/__init__.py": "import sqlite3\nfrom coffee_team.errors import E\n"
                             "Q = 'SELECT id FROM tasks'\n",
        "queue/core.py": "from typing import TYPE_CHECKING\nfrom coffee_team import llm\n"
                         "from . import a\nif TYPE_CHECKING:\n    from . import c\n",
        "queue/a.py": "from coffee_team.queue import b\n",
        "queue/b.py": "def f():\n    from .a import x\n",        # a -> b -> a
        "queue/c.py": "from . import core\n",                        # only a type-hint loop
        "queue/long.py": "x = 1\n" * (MAX_LINES + 1),
        **{f"leaf{i}.py": "" for i in range(MAX_TOP_LEVEL - 3)},    # 26 with the three above
    })
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = "\n".join(violations())
    assert "process imports another process: coffee_team.agent:1 imports coffee_team.rpc.interface" in found
    assert "library imports a process: coffee_team.status:3 imports coffee_team.cli" in found
    assert "imports the dispatcher: coffee_team.watchdog:1 imports coffee_team.__main__" in found
    assert "queue/ imports beyond its leaves: coffee_team.queue.core:2 imports coffee_team.llm" in found
    assert "team/ imports queue/: coffee_team.team:2 imports coffee_team.queue.core" in found
    assert "a leaf imports beyond the leaves: coffee_team.errors:1 imports coffee_team.status" in found
    assert "driver outside queue/: coffee_team.llm:1 imports psycopg" in found
    assert "SQL outside queue/: coffee_team.llm:2" in found
    assert "the MCP SDK outside mcpserver/: coffee_team.web.main:1 imports mcp" in found
    assert "import cycle: coffee_team.queue.a -> coffee_team.queue.b" in found
    assert f"module over {MAX_LINES} lines: coffee_team/queue/long.py has {MAX_LINES + 1}" in found
    assert f"flat top level has {MAX_TOP_LEVEL + 1} modules" in found
    assert len(found.splitlines()) == 12, found  # nothing else: the allowed imports stay quiet
    assert "docstring" not in found and "coffee_team.queue.c -> " not in found  # type hints only

