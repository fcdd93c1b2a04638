"""The shape of coffee_team.queue, read with ``ast``: absolute imports, and MessageQueue's parts
keeping to their declared contracts (its import rules and module sizes: test_layering.py).

MessageQueue is core.py's class plus thirteen mixins (completion, enqueue, control, journal,
reporting, delivery, usage, dependencies, schedules, approvals, failures, merges, instances). Each part
states in a ``...Needs`` protocol, beside it, what it uses of the queue's state and of the
other parts; here every ``self.x`` a part reads must be its own or declared there, every
declared name must be used (no stale contract), and the real MessageQueue must provide each
one, methods with the declared parameters.
"""
from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUEUE = ROOT / "coffee_team" / "queue"


def test_the_queue_uses_absolute_imports():
    """(Its import graph, leaves and module sizes are test_layering.py's rules.)"""
    relative = [f"{p.name}:{node.lineno}" for p in sorted(QUEUE.glob("*.py"))
                for node in ast.walk(ast.parse(p.read_text(), str(p)))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


# --- MessageQueue's parts and their contracts -------------------------------------------

def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _self_attributes(cls: ast.ClassDef) -> tuple[set[str], set[str]]:
    """(names read as self.x, names assigned as self.x) anywhere in the class."""
    read, stored = set(), set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "self":
            (stored if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    return read, stored


def _declared(cls: ast.ClassDef) -> set[str]:
    """What a class body names: its methods, annotations and class attributes."""
    names = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def parts(source: str) -> list[tuple[str, str]]:
    """(part, its Needs protocol) pairs of a module: ``XMixin`` with ``XNeeds``, and core's
    ``MessageQueue`` with ``CoreNeeds``."""
    classes = _classes(ast.parse(source))
    found = [(name, name.removesuffix("Mixin") + "Needs") for name in classes
             if name.endswith("Mixin")]
    if "MessageQueue" in classes:
        found.append(("MessageQueue", "CoreNeeds"))
    return found


def contract_breaches(source: str, part: str, needs: str) -> list[str]:
    classes = _classes(ast.parse(source))
    if needs not in classes:
        return [f"{part} has no {needs} protocol"]
    read, stored = _self_attributes(classes[part])
    own = _declared(classes[part]) | stored
    declared = _declared(classes[needs])
    return ([f"{part} uses self.{name}, which {needs} does not declare"
             for name in sorted(read - own - declared)]
            + [f"{needs} declares {name}, which {part} never uses"
               for name in sorted(declared - read)]
            + [f"{needs} declares {name}, which {part} defines itself"
               for name in sorted(declared & own)])


def queue_parts() -> list[tuple[str, str, str]]:
    """(module, part, Needs) for every part of MessageQueue in queue/."""
    found = []
    for path in sorted(QUEUE.glob("*.py")):
        found += [(path.stem, part, needs) for part, needs in parts(path.read_text())]
    return found


def test_messagequeue_is_the_parts_that_declare_their_contracts():
    from coffee_team.queue.core import MessageQueue
    mixins = {part for _, part, _ in queue_parts()} - {"MessageQueue"}
    assert {cls.__name__ for cls in MessageQueue.__mro__ if cls.__name__.endswith("Mixin")} \
        == mixins and len(mixins) == 13


@pytest.mark.parametrize("module, part, needs", queue_parts())
def test_each_part_uses_only_what_it_declares(module, part, needs):
    assert contract_breaches((QUEUE / f"{module}.py").read_text(), part, needs) == []


def test_the_contract_check_sees_an_undeclared_and_a_stale_name():
    source = ("from typing import Protocol\n"
              "class FooNeeds(Protocol):\n    clock: object\n    stale: int\n"
              "    def finish(self): ...\n"
              "class FooMixin:\n"
              "    def run(self):\n        self.count = 1\n"
              "        return self.clock() + self._other_part() + self.count + self.finish()\n"
              "    def finish(self): ...\n")
    assert parts(source) == [("FooMixin", "FooNeeds")]
    assert contract_breaches(source, "FooMixin", "FooNeeds") == [
        "FooMixin uses self._other_part, which FooNeeds does not declare",
        "FooNeeds declares stale, which FooMixin never uses",
        "FooNeeds declares finish, which FooMixin defines itself"]


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_messagequeue_provides_what_each_part_needs(tmp_path):
    from coffee_team.queue.core import MessageQueue
    with MessageQueue(str(tmp_path / "q.db"), agents=("a",)) as queue:
        for module, part, needs in queue_parts():
            protocol = getattr(sys.modules[f"coffee_team.queue.{module}"], needs)
            for name in sorted(_declared(_classes(ast.parse(inspect.getsource(protocol)))[needs])):
                assert hasattr(queue, name), f"{needs}.{name}: MessageQueue has none"
                declared = getattr(protocol, name, None)
                if callable(declared):
                    assert _parameters(getattr(MessageQueue, name)) == _parameters(declared), \
                        f"{needs}.{name}: MessageQueue's parameters differ"
