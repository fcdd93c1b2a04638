"""What an agent process defers: standard modules it imports through others but never uses.

``dataclasses`` imports ``inspect`` (with ``ast``, ``dis``, ``tokenize``: ~1.2 MB and ~5 ms
of an agent's start) only to write a docstring for a dataclass that has none; coffee_team's
dataclasses each have one. ``dataclasses`` also imports ``copy`` (with ``weakref``) only for
``asdict``/``astuple``, and ``urllib.parse`` (imported by ``pathlib``) imports ``ipaddress``
(~1.5 ms; Python 3.11.4+) only to check a URL's ``[bracketed]`` host. ``defer()`` puts each
in ``sys.modules`` unloaded, with a module ``__getattr__`` (PEP 562) that runs its code on
the first attribute asked of it: an ``import inspect`` gets the module (as
``importlib.util.LazyLoader``'s would, but that one loads as soon as an import statement
looks at its ``__spec__``), and whatever uses it (a user's handler, a dataclass without a
docstring, a URL with an IPv6 host) gets the real thing, only later.
``python -m coffee_team ... agent run NAME`` calls it before anything else is imported
(``__main__``).
"""
from __future__ import annotations

import sys
import threading

DEFERRED = ("inspect", "copy", "ipaddress")


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    import importlib.util
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = _loader(module, spec)
        sys.modules[name] = module


def _loader(module, spec):
    lock = threading.RLock()

    def __getattr__(attr: str):
        with lock:
            if module.__dict__.get("__getattr__") is __getattr__:  # not loaded yet
                del module.__dict__["__getattr__"]
                spec.loader.exec_module(module)
        return getattr(module, attr)  # AttributeError for a name the module has not

    __getattr__.deferred = True  # loaded() tells it from a module's own (urllib.parse has one)
    return __getattr__


def loaded(name: str) -> bool:
    """Is module ``name`` imported in full (not absent, not only deferred)?"""
    module = sys.modules.get(name)
    return module is not None and not getattr(vars(module).get("__getattr__"), "deferred", False)
