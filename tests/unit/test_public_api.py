"""``coffee_team.__all__`` is the public API: each name resolves to the object its home module
documents, nothing else public is exported, and importing the package imports none of them."""
from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import coffee_team
from coffee_team.errors import CoffeeError
from coffee_team.handlers import HandlerContext
from coffee_team.queue import MessageQueue
from coffee_team.team import Team, load_team

DOCUMENTED = {"CoffeeError": CoffeeError, "HandlerContext": HandlerContext,
              "MessageQueue": MessageQueue, "Team": Team, "load_team": load_team}


def public_names(module: types.ModuleType) -> set[str]:
    """What ``dir()`` offers, less the private names and the subpackages the import system
    binds on the package (``coffee_team.queue`` is a module, not an export)."""
    return {name for name in dir(module) if not name.startswith("_")
            and not (isinstance(getattr(module, name), types.ModuleType)
                     and getattr(module, name).__name__ == f"{module.__name__}.{name}")}


def test_every_name_in_all_is_the_documented_object():
    assert coffee_team.__all__ == sorted(coffee_team.__all__, key=str.casefold)
    assert set(coffee_team.__all__) == set(DOCUMENTED)
    for name in coffee_team.__all__:
        assert getattr(coffee_team, name) is DOCUMENTED[name], name


def test_nothing_else_public_is_exported():
    assert public_names(coffee_team) == set(coffee_team.__all__)
    namespace: dict = {}
    exec("from coffee_team import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(coffee_team.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Queue'"):
        coffee_team.Queue  # noqa: B018
    assert not hasattr(coffee_team, "describe_error")  # public in errors, not in the API


def test_the_check_sees_an_extra_export():
    """``public_names`` is not vacuous: a stray public name or a missing one is seen."""
    fake = types.ModuleType("fake")
    fake.__all__ = ["A"]
    fake.A, fake.helper, fake._private = 1, 2, 3
    fake.sub = types.ModuleType("fake.sub")
    assert public_names(fake) == {"A", "helper"}


def test_importing_the_package_imports_none_of_its_modules():
    """Lazy by construction: the package's module body holds no import statement (an agent's
    full set of modules is checked in a fresh interpreter by test_lean_imports.py)."""
    tree = ast.parse(Path(coffee_team.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert top_level == []
