"""The documentation holds together: README.md and docs/*.md link only to files and headings
that exist, the README stays a front page, the XML-RPC reference names every ``coffee.*``
method, and the team-file examples are valid team files. Fast: no processes, no network."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from coffee_team.errors import TeamError
from coffee_team.team import parse_team

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
YAML_BLOCK = re.compile(r"^[ \t]*```ya?ml\n(.*?)^[ \t]*```", re.S | re.M)


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for page in files:
        for number, line in prose_lines(page.read_text()):
            for target in LINK.findall(CODE_SPAN.sub("code", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                where = f"{page.relative_to(root)}:{number}: {target}"
                path, _, anchor = target.partition("#")
                file = (page.parent / path).resolve() if path else page
                if not file.exists() or root.resolve() not in (file, *file.parents):
                    problems.append(f"{where}: no such file")
                elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                    problems.append(f"{where}: no heading with that anchor")
    return problems


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(pages()) == []


def test_the_link_check_sees_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "README.md").write_text("# Bench\n")
    (tmp_path / "docs" / "a.md").write_text("# The `coffee.*` page: A\n\n## Over TCP\n")
    (tmp_path / "README.md").write_text(
        "# Top\n\n"
        "[ok](docs/a.md#over-tcp) [ok](docs/a.md#the-coffee-page-a) [ok](#top)\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#over-udp) [web](https://example.com)\n"
        "```\n[in a code block](nowhere.md)\n```\n"
        "`[in a code span](nowhere.md)` ![image](pic.png)\n")
    found = broken_links(pages(tmp_path), tmp_path)
    assert found == ["README.md:4: docs/missing.md: no such file",
                     "README.md:4: docs/a.md#over-udp: no heading with that anchor",
                     "README.md:8: pic.png: no such file"]


def test_readme_is_a_front_page_that_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(readme)}
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert orphans == []


def test_readme_test_command_is_what_ci_runs():
    """The quick start's second command is the one ``.ci/run`` ends with."""
    block = (ROOT / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    start, test = block.splitlines()
    assert start.endswith(".venv/bin/coffee-team start")
    ci = (ROOT / ".ci" / "run").read_text().split("# The README's test command:\n", 1)[1]
    assert ci.strip() == test


def rpc_methods() -> set[str]:
    """The names of every ``coffee.*`` method: functions under the rpc_method decorator."""
    names = set()
    for path in (ROOT / "coffee_team" / "rpc").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id in ("rpc_method", "_rpc")
                    for d in node.decorator_list):
                names.add(node.name)
    return names


def test_xmlrpc_reference_has_every_method_and_no_other():
    methods = rpc_methods()
    assert {"getTeamStatus", "sendMessage", "getCosts"} <= methods  # the scan found them
    text = (ROOT / "docs" / "xmlrpc.md").read_text()
    documented = set(re.findall(r"^### coffee\.(\w+)$", text, re.M))
    assert documented == methods


def team_examples(text: str) -> list[dict]:
    """The YAML blocks that hold team-file keys, completed into whole team files: an agent
    without work gets a handler, a fragment without agents gets one agent."""
    out = []
    for block in YAML_BLOCK.findall(text):
        doc = yaml.safe_load(block)  # YAML 1.1, like the team file's loader: `on` is true
        if not isinstance(doc, dict) or not {"team", "agents", "hosts"} & set(doc):
            continue
        agents = doc.get("agents") or {"demo": {}}
        for spec in agents.values():
            if not {"handler", "command", "llm"} & set(spec):
                spec["handler"] = "example:handle"
        out.append({**doc, "agents": agents})
    return out


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name if p.parent == ROOT / "docs"
                         else str(p.relative_to(ROOT)))
def test_team_file_examples_are_valid(page):
    for example in team_examples(page.read_text()):
        parse_team(example, str(page.relative_to(ROOT)))


def test_the_example_check_sees_a_bad_example():
    text = ("```yaml\nagents:\n  a:\n    retry: {attempts: 2, colour: [75]}\n```\n"
            "```yaml\nteam:\n  hosts: []\n```\n"
            "```yaml\nteam:\n  heartbeat_interval: 5\n```\n")
    examples = team_examples(text)
    assert len(examples) == 3
    for bad in examples[:2]:
        with pytest.raises(TeamError):
            parse_team(bad)
    parse_team(examples[2])
