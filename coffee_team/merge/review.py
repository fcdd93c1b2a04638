"""The tasks the review and merge queue sends, and the reviewer's verdict: pure.

- ``review_requested`` to the reviewing agent: the commit range, its commits, the diff stat,
  the patch (cut to a prompt's size), the task that made them, and how to answer;
- for ``review_by: person`` an approval instead (``person_request``), decided with
  ``coffee-team approve``/``deny``, the dashboard or the MCP server;
- ``merge_failed`` back to the author: a conflict, a failed check or the reviewer's change
  request, with the output and what to do;
- ``branch_updated`` to every agent after a merge: the target's new head (an agent's worktree
  is brought onto it before its next task, worktree.py).

A reviewer answers with ``{"verdict": "approve"}`` or ``{"verdict": "request_changes",
"comments": "..."}``: a handler's or command's result, or an llm agent's JSON answer (its
last fenced JSON block: the result's ``data``).
"""
from __future__ import annotations

from typing import Any, Optional

REVIEW_REQUESTED = "review_requested"
MERGE_FAILED = "merge_failed"
BRANCH_UPDATED = "branch_updated"
TYPES = (REVIEW_REQUESTED, MERGE_FAILED, BRANCH_UPDATED)
SENDER = "merge_queue"          # who sends merge_failed and branch_updated
VERDICTS = {"approve": True, "request_changes": False}
ANSWER = ('Review the change (the patch here, or git log -p BASE..HEAD in the repository). '
          'End your answer with a JSON block: {"verdict": "approve"}, or '
          '{"verdict": "request_changes", "comments": "what to change"}.')
OUTPUT_CHARS = 6000             # of git's or the checks' output in a merge_failed task


class NoVerdict(ValueError):
    """The reviewer's answer approves nothing and asks for nothing; ``str()`` is one line."""


def verdict_of(result: Any) -> tuple[bool, Optional[str]]:
    """(approved, comments) from a reviewer's result, or NoVerdict saying how to answer."""
    found = None
    for place in (result, result.get("data") if isinstance(result, dict) else None):
        if isinstance(place, dict) and "verdict" in place:
            found = place
    verdict = found.get("verdict") if found is not None else None
    if verdict not in VERDICTS:
        got = f"verdict {verdict!r}" if found is not None else "no verdict"
        raise NoVerdict(f"the review's answer has {got}: end it with {{\"verdict\": "
                        f"\"approve\"}} or {{\"verdict\": \"request_changes\", "
                        f"\"comments\": \"...\"}}")
    comments = found.get("comments")
    return VERDICTS[verdict], comments if isinstance(comments, str) and comments else None


def item_of(task: dict) -> Optional[int]:
    """The merge item a review_requested task is about (None: another task)."""
    content = task.get("content")
    if task.get("type") != REVIEW_REQUESTED or not isinstance(content, dict):
        return None
    item = content.get("merge_item")
    return item if isinstance(item, int) and not isinstance(item, bool) else None


def review_request(item: dict, task: dict, commits: list[str], diffstat: str,
                   patch: str = "") -> dict:
    """The review_requested task to the reviewing agent (the queue adds ``merge_item``): the
    patch too, cut to a size a prompt takes, for a reviewer that may run no git."""
    content = {"author": item["author"], "branch": item["branch"], "into": item["target"],
               "range": f"{item['base']}..{item['head']}", "base": item["base"],
               "head": item["head"], "commits": commits, "diffstat": diffstat,
               "task": {"id": task.get("id"), "type": task.get("type")}, "patch": patch,
               "answer": ANSWER}
    return {"sender": item["author"], "recipient": item["reviewer"], "type": REVIEW_REQUESTED,
            "content": content}


def person_request(item: dict, task: dict, commits: list[str], diffstat: str) -> dict:
    """What a person is asked (``review_by: person``): an approval of kind ``review`` (the
    queue adds ``merge_item``); ``on_reject`` is the merge_failed task a denial sends the
    author, the person's reason as its detail."""
    count = f"{len(commits)} commit{'s' if len(commits) != 1 else ''}"
    subject = (f"review {item['branch']} {item['base'][:10]}..{item['head'][:10]} ({count}) "
               f"for {item['target']}")
    request = {"author": item["author"], "branch": item["branch"], "into": item["target"],
               "range": f"{item['base']}..{item['head']}", "commits": commits,
               "diffstat": diffstat, "task": {"id": task.get("id"), "type": task.get("type")},
               "on_reject": changes_requested({**item, "id": None}, "a person", None)}
    return {"subject": subject, "request": request}


def _back_to_author(item: dict, reason: str, detail: str, todo: str,
                    output: str = "") -> dict:
    content = {"merge_item": item["id"], "branch": item["branch"], "into": item["target"],
               "head": item["head"], "reason": reason, "detail": detail, "todo": todo}
    if output:
        content["output"] = output if len(output) <= OUTPUT_CHARS \
            else "…" + output[-OUTPUT_CHARS:]
    return {"sender": SENDER, "recipient": item["author"], "type": MERGE_FAILED,
            "content": content}


def changes_requested(item: dict, reviewer: str, comments: Optional[str]) -> dict:
    return _back_to_author(item, "changes_requested", comments or "-",
                           f"{reviewer} asked for changes: make them on {item['branch']} and "
                           f"commit; the result is reviewed again.")


def merge_failed(item: dict, outcome: str, detail: str, output: str) -> dict:
    """The merge_failed task of a conflict, a failed check or an error (rules.ending)."""
    branch, target = item["branch"], item["target"]
    todo = {
        "conflict": f"{branch} conflicts with {target}: bring {target} into your branch "
                    f"(git merge {target}), resolve the conflicts, commit; the result is "
                    f"reviewed again.",
        "check_failed": f"a check failed on {branch} merged into {target} (output below): fix "
                        f"it on your branch and commit; the result is reviewed again.",
    }.get(outcome, f"the merge into {target} could not be made: commit again on {branch} "
                   f"once the cause is gone.")
    return _back_to_author(item, outcome, detail, todo, output)


def branch_updated(item: dict, previous: str, head: str) -> dict:
    """To every agent: ``target`` moved (an llm agent updates its worktree, no model run;
    merges in a row leave one such task waiting per agent, not one per merge)."""
    return {"sender": SENDER, "recipient": "all", "type": BRANCH_UPDATED,
            "content": {"branch": item["target"], "head": head, "previous": previous,
                        "merge_item": item["id"], "author": item["author"]},
            # one waiting per agent: its worktree goes to the target's head of the moment
            "dedupe_key": f"{BRANCH_UPDATED}:{item['target']}"}
