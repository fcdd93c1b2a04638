"""The layers of coffee-team, checked by reading every module's imports with ``ast``.

    process            entry modules (top layer: they never import each other)
    agent              coffee_team.agent.runtime (+ handlers, singleton, demo, faults)
    supervisord        coffee_team.rpc.interface (+ rpcvalues)
    watchdog listener  coffee_team.watchdog.listener   (eventlisteners/watchdog.py runs it)
    CLI                coffee_team.cli.*                (coffee-team, python -m coffee_team)
    web                coffee_team.web.*                (python -m coffee_team.web: dashboard)

    library            coffee_team.team, schema, confgen, layout, status, hosts, client,
                       tracing, doctor, errors, heartbeat, promexport,
                       watchdog.{policy,health,protocol}
    database           coffee_team.queue.*: the only code that writes SQL or names a driver

Imports go down only: an entry module may import the library and the database package; the
library never imports an entry module; nothing but ``coffee_team.__main__`` imports the CLI.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
DRIVERS = {"sqlite3", "psycopg2", "peewee", "playhouse"}
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)"
                 r"|ALTER TABLE|PRAGMA \w+|LISTEN \w|NOTIFY \w|pg_\w+\()", re.S)
ENTRIES = {"agent": "coffee_team.agent", "rpc": "coffee_team.rpc",
           "watchdog": "coffee_team.watchdog.listener", "cli": "coffee_team.cli",
           "web": "coffee_team.web"}


def modules() -> dict[str, tuple[str, ast.Module]]:
    """{module name: (the package its relative imports start from, its syntax tree)}."""
    found = {}
    for path in sorted((ROOT / "coffee_team").rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = dotted.removesuffix(".__init__")
        package = name if dotted != name else name.rpartition(".")[0]
        found[name] = (package, ast.parse(path.read_text(), str(path)))
    return found


def imported(package: str, tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def entry_of(module: str) -> str | None:
    return next((e for e, m in ENTRIES.items() if module == m or module.startswith(m + ".")), None)


def docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def violations() -> list[str]:
    found = []
    for name, (package, tree) in modules().items():
        in_db = name.startswith("coffee_team.queue")
        imports = imported(package, tree)
        if not in_db:
            found += [f"{name} imports the driver {m}" for m in imports if m.split(".")[0] in DRIVERS]
            skip = docstrings(tree)
            found += [f"{name}:{node.lineno} has SQL in a string: {node.value[:50]!r}"
                      for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and id(node) not in skip and SQL.search(node.value)]
        mine = entry_of(name)
        for target in imports:
            theirs = entry_of(target)
            if theirs == "cli" and name != "coffee_team.__main__" and mine != "cli":
                found.append(f"{name} imports the CLI ({target})")
            elif theirs and mine and theirs != mine:
                found.append(f"entry {mine} ({name}) imports entry {theirs} ({target})")
            elif theirs and not mine and name != "coffee_team.__main__":
                found.append(f"library module {name} imports entry {theirs} ({target})")
    return found


def test_imports_follow_the_layers():
    assert violations() == []


def test_the_check_sees_a_broken_rule(tmp_path, monkeypatch):
    """The rules above are not vacuous: each kind of breach is reported."""
    fake = tmp_path / "coffee_team"
    (fake / "cli").mkdir(parents=True)
    (fake / "queue").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("from ..agent import main\n")
    (fake / "queue" / "__init__.py").write_text("import sqlite3\nQ = 'SELECT id FROM tasks'\n")
    (fake / "agent.py").write_text("import peewee\nfrom . import rpc\nmain = 1\n")
    (fake / "rpc.py").write_text("X = 'UPDATE tasks SET status = 1'\n")
    (fake / "status.py").write_text('"""SELECT x FROM y in a docstring is prose."""\n'
                                    "from coffee_team.cli import base\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = "\n".join(violations())
    assert "coffee_team.agent imports the driver peewee" in found
    assert "entry agent (coffee_team.agent) imports entry rpc" in found
    assert "entry cli (coffee_team.cli) imports entry agent" in found
    assert "coffee_team.rpc:1 has SQL in a string" in found
    assert "coffee_team.status imports the CLI" in found
    assert "coffee_team.queue" not in found  # the database package may do both
    assert "docstring" not in found
