"""Which of an llm agent's tool calls wait for a person: its ``approvals`` rules, written in
Claude Code's permission rule syntax, applied to the calls Claude Code asks about (those its
own settings neither allow nor deny reach ``--permission-prompt-tool``). Pure: no I/O.

The rule syntax, from Claude Code's documentation (IAM, "permission rules"):

- ``Tool`` matches every call of the tool (``Bash``, ``Write``, ``WebFetch``,
  ``mcp__server`` every tool of that MCP server, ``mcp__server__tool`` one tool);
- ``Bash(npm run test:*)`` a command starting with ``npm run test``, ``Bash(git * main)``
  with a wildcard, ``Bash(make)`` that exact command; a compound command (``a && b``,
  ``a; b``, ``a | b``) is judged part by part;
- ``Edit(docs/**)``, ``Write(*.env)``, ``Read(~/.ssh/**)``: gitignore-style paths, ``//x``
  absolute, ``~/x`` from the home directory, ``/x`` and ``x`` from the workspace (the
  agent's working directory); a pattern without ``/`` matches at any depth;
- ``WebFetch(domain:example.com)``; any other ``Tool(pattern)`` matches the call's telling
  argument (its path, command, url, query...) with ``*`` wildcards.

The decision (``decide``): a call matching an ``ask`` rule waits for a person; else one
matching an ``allow`` rule runs; else a file edit inside the workspace runs; anything else
waits for a person (Claude Code asked because nothing it knows allows it).
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

ASK, ALLOW = "ask", "allow"
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
PATH_TOOLS = EDIT_TOOLS | {"Read", "Glob", "Grep", "LS"}
_PATH_KEYS = ("file_path", "notebook_path", "path")
_ARG_KEYS = ("command", "url", "query", "pattern", "prompt", "description", "skill",
             "subagent_type")
_TOOL = re.compile(r"^(?:mcp__[A-Za-z0-9_-]+(?:__[A-Za-z0-9_*-]+)?|[A-Za-z][A-Za-z0-9_]*)$")
_RULE = re.compile(r"^([^()\s]+)(?:\((.+)\))?$", re.S)
# A shell command's parts: split at && || ; | & and newlines. Quotes are not parsed, so a
# quoted separator splits too: more parts can only make an ask rule match more often.
_SEPARATORS = re.compile(r"&&|\|\||[;|&\n]")
_ASSIGNMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+")


class RuleError(ValueError):
    """A rule that is not Claude Code's syntax; ``str()`` says what is expected."""


@dataclass(frozen=True)
class Rule:
    tool: str
    pattern: Optional[str] = None  # what is inside the parentheses, if any

    def __str__(self) -> str:
        return self.tool if self.pattern is None else f"{self.tool}({self.pattern})"


@dataclass(frozen=True)
class Decision:
    verdict: str            # ASK or ALLOW
    why: str                # the rule that decided, or the default's name

    @property
    def asks(self) -> bool:
        return self.verdict == ASK


def parse_rule(text: Any) -> Rule:
    """``Bash(git push:*)`` → Rule("Bash", "git push:*"); RuleError if it is not a rule."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"a rule such as Bash(git push:*) or Write, got {text!r}")
    match = _RULE.match(text.strip())
    if match is None or not _TOOL.match(match.group(1)):
        raise RuleError(f"a rule such as Bash(git push:*), Edit(docs/**) or "
                        f"mcp__server__tool, got {text!r}")
    tool, pattern = match.group(1), match.group(2)
    if pattern is not None and not pattern.strip():
        raise RuleError(f"an empty pattern in {text!r} (write {tool} for every call)")
    if tool.startswith("mcp__") and pattern is not None:
        raise RuleError(f"an MCP rule takes no pattern (mcp__server or mcp__server__tool), "
                        f"got {text!r}")
    return Rule(tool, pattern)


# --- matching ---------------------------------------------------------------------------

def _glob(pattern: str, slash: bool) -> str:
    """A wildcard pattern as a regex: ``**`` anything, ``*`` anything but ``/`` (anything
    when ``slash`` is False: commands and arguments have no path segments), ``?`` one."""
    out, i = [], 0
    while i < len(pattern):
        if slash and pattern.startswith("**/", i):  # no directory, or any number of them
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*" if slash else ".*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]" if slash else ".")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def command_parts(command: str) -> list[str]:
    """The simple commands of a shell command line, leading ``VAR=value`` words dropped."""
    parts = (_ASSIGNMENT.sub("", part.strip()) for part in _SEPARATORS.split(command))
    return [part for part in parts if part]


def _command_matches(pattern: str, command: str) -> bool:
    if pattern.endswith(":*"):  # a prefix, at a word boundary
        prefix = pattern[:-2].rstrip()
        return command == prefix or command.startswith(prefix + " ")
    if "*" in pattern:
        return re.fullmatch(_glob(pattern, slash=False), command, re.S) is not None
    return command == pattern.strip()


def resolve(path: str, workspace: str, home: str) -> str:
    """A tool's path as an absolute, normalized one (relative: from the workspace)."""
    if path.startswith("~/"):
        path = posixpath.join(home, path[2:])
    elif not path.startswith("/"):
        path = posixpath.join(workspace, path)
    return posixpath.normpath(path)


def _path_pattern(pattern: str, workspace: str, home: str) -> str:
    """A rule's gitignore-style path as a regex over absolute paths."""
    if pattern.startswith("//"):
        base, rest = "/", pattern[2:]
    elif pattern.startswith("~/"):
        base, rest = home, pattern[2:]
    elif pattern.startswith("/"):
        base, rest = workspace, pattern[1:]
    else:
        base, rest = workspace, pattern[2:] if pattern.startswith("./") else pattern
        if "/" not in rest.rstrip("/"):  # a bare name matches at any depth, as in gitignore
            rest = "**/" + rest
    rest = rest + "**" if rest.endswith("/") else rest
    prefix = re.escape(posixpath.normpath(base).rstrip("/")) + "/"
    # a directory's pattern also covers what is inside it
    return prefix + _glob(rest, slash=True) + "(?:/.*)?"


def _telling_argument(tool_input: dict) -> Optional[str]:
    for key in (*_PATH_KEYS, *_ARG_KEYS):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def matches(rule: Rule, tool: str, tool_input: Any, workspace: str, home: str) -> bool:
    """Does ``rule`` cover this call of ``tool`` with ``tool_input``?"""
    args = tool_input if isinstance(tool_input, dict) else {}
    if rule.tool.startswith("mcp__"):
        if rule.tool.endswith("__*"):
            return tool.startswith(rule.tool[:-1])
        return tool == rule.tool or (rule.tool.count("__") == 1 and tool.startswith(rule.tool + "__"))
    if rule.tool != tool:
        return False
    if rule.pattern is None:
        return True
    if tool == "Bash":
        command = args.get("command")
        return isinstance(command, str) and any(
            _command_matches(rule.pattern, part) for part in command_parts(command))
    if tool == "WebFetch" and rule.pattern.startswith("domain:"):
        host = urlsplit(str(args.get("url", ""))).hostname or ""
        domain = rule.pattern[len("domain:"):].strip().lower()
        return host == domain or host.endswith("." + domain)
    if tool in PATH_TOOLS:
        path = next((args[k] for k in _PATH_KEYS if isinstance(args.get(k), str)), None)
        if path is None:
            return False
        return re.fullmatch(_path_pattern(rule.pattern, workspace, home),
                            resolve(path, workspace, home), re.S) is not None
    argument = _telling_argument(args)
    return argument is not None and re.fullmatch(
        _glob(rule.pattern, slash=False), argument, re.S) is not None


def inside(path: str, workspace: str) -> bool:
    root = posixpath.normpath(workspace).rstrip("/") + "/"
    return path == root.rstrip("/") or path.startswith(root)


def decide(tool: str, tool_input: Any, ask: Iterable[Rule], allow: Iterable[Rule],
           workspace: str, home: Optional[str] = None) -> Decision:
    """Whether a call Claude Code asks about waits for a person (ASK) or runs (ALLOW)."""
    home = home if home is not None else os.path.expanduser("~")
    for rule in ask:
        if matches(rule, tool, tool_input, workspace, home):
            return Decision(ASK, f"ask rule {rule}")
    for rule in allow:
        if matches(rule, tool, tool_input, workspace, home):
            return Decision(ALLOW, f"allow rule {rule}")
    args = tool_input if isinstance(tool_input, dict) else {}
    path = next((args[k] for k in _PATH_KEYS if isinstance(args.get(k), str)), None)
    if tool in EDIT_TOOLS and path is not None and inside(resolve(path, workspace, home),
                                                          workspace):
        return Decision(ALLOW, "a write inside the workspace")
    return Decision(ASK, "no rule allows it")


def summary(tool: str, tool_input: Any, limit: int = 200) -> str:
    """One line for a person: ``Bash: git push origin main``, ``Write /etc/hosts``."""
    args = tool_input if isinstance(tool_input, dict) else {}
    path = next((args[k] for k in _PATH_KEYS if isinstance(args.get(k), str)), None)
    text = f"{tool} {path}" if path else (
        f"{tool}: {_telling_argument(args)}" if _telling_argument(args) else tool)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
