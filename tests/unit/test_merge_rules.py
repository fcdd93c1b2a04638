"""The review and merge queue's pure rules, exhaustively: the merge item's state machine
(taskstate), what a task's commits, a merge attempt and a worktree's position lead to
(merge/rules.py), and the tasks and verdicts (merge/review.py). No process, no database."""
from __future__ import annotations

import itertools
import json

import pytest

from coffee_team.merge import review, rules
from coffee_team.taskstate import (MERGE_ACTIONS, MERGE_FINISHED, MERGE_LIVE, MERGE_STATES,
                                   TransitionError, merge_transition)

# --- the item's state machine -----------------------------------------------------------------

ALLOWED = {
    ("waiting_review", "approve"): "approved",
    ("waiting_review", "reject"): "failed",
    ("approved", "begin"): "checking",
    ("checking", "merged"): "merged",
    ("checking", "fail"): "failed",
    ("checking", "release"): "approved",
}


@pytest.mark.parametrize("state,action", list(itertools.product(MERGE_STATES, MERGE_ACTIONS)))
def test_every_state_and_action(state, action):
    if (state, action) in ALLOWED:
        assert merge_transition(state, action) == ALLOWED[state, action]
    else:
        with pytest.raises(TransitionError, match=f"cannot {action} a merge item that is {state}"):
            merge_transition(state, action)


def test_finished_items_never_move_and_every_state_is_live_or_finished():
    assert not any(state in MERGE_FINISHED for state, _ in ALLOWED)
    assert set(MERGE_LIVE) | set(MERGE_FINISHED) == set(MERGE_STATES)
    assert not set(MERGE_LIVE) & set(MERGE_FINISHED)


def test_every_state_is_reachable_from_waiting_review():
    seen, frontier = {"waiting_review"}, ["waiting_review"]
    while frontier:
        state = frontier.pop()
        for (source, _), target in ALLOWED.items():
            if source == state and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(MERGE_STATES)


# --- what to do next --------------------------------------------------------------------------

@pytest.mark.parametrize("before,after,contained,expected", [
    ("a", "b", False, True),      # new commits
    (None, "b", False, True),     # a new branch
    ("a", "a", True, False),      # nothing committed
    ("a", "b", True, False),      # reset back to an older commit
    ("a", None, False, False),    # the branch is gone
])
def test_needs_review(before, after, contained, expected):
    assert rules.needs_review(before, after, contained) is expected


@pytest.mark.parametrize("head_in_target,target_in_head,expected", [
    (True, True, rules.ALREADY),  # the same commit
    (True, False, rules.ALREADY),
    (False, True, rules.FAST_FORWARD),
    (False, False, rules.MERGE),
])
def test_merge_plan(head_in_target, target_in_head, expected):
    assert rules.merge_plan(head_in_target, target_in_head) == expected


def test_every_outcome_has_an_ending_that_is_an_action_from_checking():
    for outcome in rules.OUTCOMES:
        end = rules.ending(rules.Attempt(outcome, detail="d"), "roadmap")
        merge_transition("checking", end.action)  # raises unless allowed
        assert end.tell_author == (end.action == "fail")
        assert end.broadcast == (outcome == rules.MERGED)
        assert (end.retry_after > 0) == (outcome == rules.BLOCKED)


@pytest.mark.parametrize("outcome,action,reason", [
    (rules.MERGED, "merged", None),
    (rules.ALREADY_THERE, "merged", "already on roadmap: nothing to merge"),
    (rules.CONFLICT, "fail", "conflict with roadmap: f.txt"),
    (rules.CHECK_FAILED, "fail", "check failed: f.txt"),
    (rules.ERROR, "fail", "merge failed: f.txt"),
    (rules.MOVED, "release", "roadmap moved during the merge: merging again"),
])
def test_ending(outcome, action, reason):
    end = rules.ending(rules.Attempt(outcome, detail="f.txt"), "roadmap")
    assert (end.action, end.reason) == (action, reason)


def test_a_blocked_merge_warns_a_person_once():
    attempt = rules.Attempt(rules.BLOCKED, detail="/repo: f.txt")
    first = rules.ending(attempt, "roadmap")
    assert first.action == "release" and first.warn
    assert first.retry_after == rules.BLOCKED_RETRY
    assert not rules.ending(attempt, "roadmap", previous_reason=first.reason).warn
    other = rules.Attempt(rules.BLOCKED, detail="/repo: g.txt")
    assert rules.ending(other, "roadmap", previous_reason=first.reason).warn


@pytest.mark.parametrize("target_in_branch,branch_in_target,under_review,dirty",
                         list(itertools.product((True, False), repeat=4)))
def test_sync_plan(target_in_branch, branch_in_target, under_review, dirty):
    plan = rules.sync_plan(target_in_branch, branch_in_target, under_review, dirty)
    if target_in_branch:
        expected = rules.CURRENT  # nothing new on the target: whatever else holds
    elif dirty:
        expected = rules.DIRTY  # never touch uncommitted work
    elif branch_in_target:
        expected = rules.UPDATE  # nothing of its own to keep
    elif under_review:
        expected = rules.KEEP  # its commits are merged by id: no copies
    else:
        expected = rules.REBASE
    assert plan == expected


# --- tasks and verdicts -----------------------------------------------------------------------

@pytest.mark.parametrize("result,expected", [
    ({"verdict": "approve"}, (True, None)),
    ({"verdict": "request_changes", "comments": "split it"}, (False, "split it")),
    ({"text": "...", "data": {"verdict": "approve", "comments": ""}}, (True, None)),
    ({"text": "...", "data": {"verdict": "request_changes", "comments": 3}}, (False, None)),
])
def test_verdicts(result, expected):
    assert review.verdict_of(result) == expected


@pytest.mark.parametrize("result,says", [
    (None, "no verdict"), ("approve", "no verdict"), ({"text": "LGTM"}, "no verdict"),
    ({"data": {"verdict": "yes"}}, "verdict 'yes'"), ({"verdict": None}, "verdict None"),
    ({"data": ["approve"]}, "no verdict"),
])
def test_an_answer_without_a_verdict_says_how_to_answer(result, says):
    with pytest.raises(review.NoVerdict) as caught:
        review.verdict_of(result)
    message = str(caught.value)
    assert says in message and '{"verdict": "approve"}' in message and "\n" not in message


ITEM = {"id": 7, "author": "dev", "branch": "agents/dev", "target": "roadmap", "base": "a" * 40,
        "head": "b" * 40, "reviewer": "rev"}


def test_item_of_reads_only_review_tasks():
    assert review.item_of({"type": "review_requested", "content": {"merge_item": 7}}) == 7
    for task in ({"type": "branch_updated", "content": {"merge_item": 7}},
                 {"type": "review_requested", "content": {"merge_item": "7"}},
                 {"type": "review_requested", "content": {"merge_item": True}},
                 {"type": "review_requested", "content": None}):
        assert review.item_of(task) is None


def test_the_review_request_carries_the_range_commits_stat_task_and_how_to_answer():
    message = review.review_request(ITEM, {"id": 3, "type": "spec_created"},
                                    ["bbbbbbb add x"], " x | 1 +")
    assert (message["recipient"], message["type"], message["sender"]) == (
        "rev", "review_requested", "dev")
    content = message["content"]
    assert content["range"] == f"{'a' * 40}..{'b' * 40}" and content["into"] == "roadmap"
    assert content["commits"] == ["bbbbbbb add x"] and content["diffstat"] == " x | 1 +"
    assert content["task"] == {"id": 3, "type": "spec_created"}
    assert "request_changes" in content["answer"]


def test_merge_failed_goes_back_to_the_author_with_the_end_of_the_output():
    message = review.merge_failed(ITEM, "conflict", "f.txt", "x" * 10_000 + "CONFLICT")
    content = message["content"]
    assert (message["recipient"], message["type"], message["sender"]) == (
        "dev", "merge_failed", review.SENDER)
    assert content["merge_item"] == 7 and content["reason"] == "conflict"
    assert "git merge roadmap" in content["todo"]
    assert content["output"].endswith("CONFLICT")
    assert len(content["output"]) == review.OUTPUT_CHARS + 1
    asked = review.changes_requested(ITEM, "rev", "rename it")["content"]
    assert (asked["reason"], asked["detail"]) == ("changes_requested", "rename it")
    assert "output" not in asked


def test_branch_updated_goes_to_everyone():
    message = review.branch_updated(ITEM, "c" * 40, "d" * 40)
    assert message["recipient"] == "all" and message["type"] == review.BRANCH_UPDATED
    assert message["content"]["head"] == "d" * 40


# --- the team file's workspace.merge ----------------------------------------------------------

LLM = {"command": ["claude", "-p"]}
MERGE = {"into": "roadmap", "review_by": "rev"}


def team_with(merge, workspace=None) -> dict:
    return {"agents": {"dev": {"llm": LLM, "workspace": {"worktree": True, "merge": merge,
                                                         **(workspace or {})}},
                       "rev": {"llm": LLM}}}


def test_a_merging_agent_loads():
    from coffee_team.team.parse import parse_team
    team = parse_team(team_with({**MERGE, "checks": [["pytest", "-q"], ["make", "lint"]],
                                 "check_timeout": 600}), "team.yaml")
    merge = team.agent("dev").workspace.merge
    assert (merge.into, merge.reviewer, merge.check_timeout) == ("roadmap", "rev", 600.0)
    assert merge.checks == (("pytest", "-q"), ("make", "lint"))
    person = parse_team(team_with({"into": "roadmap", "review_by": "person"}), "team.yaml")
    assert person.agent("dev").workspace.merge.reviewer is None
    assert person.agent("dev").workspace.merge.checks == ()


@pytest.mark.parametrize("merge, workspace, message", [
    ({"into": "roadmap"}, None, "workspace.merge.review_by: required"),
    ({"review_by": "rev"}, None, "workspace.merge.into: required"),
    ({**MERGE, "into": "a..b"}, None, "workspace.merge.into: expected a git branch name"),
    ({**MERGE, "review_by": "Nobody!"}, None, "workspace.merge.review_by: expected an agent"),
    ({**MERGE, "review_by": "ghost"}, None, "workspace.merge.review_by: 'ghost' is no agent"),
    ({**MERGE, "review_by": "dev"}, None, "cannot review its own commits"),
    ({**MERGE, "into": "agents/dev"}, None, "workspace.merge.into: 'agents/dev' is the agent's"),
    ({**MERGE, "checks": [["make"], []]}, None, "workspace.merge.checks: expected a list of"),
    ({**MERGE, "checks": [["make", 1]]}, None, "workspace.merge.checks: expected a list of"),
    ({**MERGE, "checks": "make test"}, None, "workspace.merge.checks: expected a list of"),
    ({**MERGE, "check_timeout": -1}, None, "workspace.merge.check_timeout: expected a positive"),
    ({**MERGE, "push": True}, None, "workspace.merge.push: unknown key (allowed: check_timeout,"
                                    " checks, into, review_by)"),
    ("roadmap", None, "workspace.merge: expected a mapping"),
    (None, None, "workspace.merge.into: required"),
    ({**MERGE, "into": "agents/x"}, {"branch": "agents/x"}, "is the agent's own branch"),
])
def test_a_bad_merge_is_one_line_naming_the_key(merge, workspace, message):
    from coffee_team.errors import TeamError
    from coffee_team.team.parse import parse_team
    with pytest.raises(TeamError) as caught:
        parse_team(team_with(merge, workspace), "team.yaml")
    text = str(caught.value)
    assert message in text and text.startswith("team.yaml: agents.dev.workspace")
    assert "\n" not in text


def test_merge_needs_a_worktree():
    from coffee_team.errors import TeamError
    from coffee_team.team.parse import parse_team
    doc = {"agents": {"dev": {"llm": LLM, "workspace": {"dir": ".", "merge": MERGE}},
                      "rev": {"llm": LLM}}}
    with pytest.raises(TeamError, match="branch, path, base and merge are for worktree: true"):
        parse_team(doc, "team.yaml")


# --- coffee-team merges -----------------------------------------------------------------------

def test_coffee_team_merges_lists_the_queue_by_state_and_shows_an_item(tmp_path):
    from click.testing import CliRunner

    from coffee_team.cli import main
    from coffee_team.queue import MessageQueue
    from coffee_team.team import load_team
    team_file = tmp_path / "data" / "team.yaml"
    team_file.parent.mkdir()
    team_file.write_text("agents:\n  dev: {command: [x]}\n  rev: {command: [x]}\n")

    def run(*args):
        return CliRunner().invoke(main, ["--team", str(team_file), *args],
                                  catch_exceptions=False)
    with MessageQueue.from_team(load_team(team_file)) as q:
        assert "no merges yet" in run("merges").output
        ids = []
        for n in range(3):
            q.send("cli", "dev", "work")
            [task] = q.claim("dev")
            ids.append(q.request_review(task.id, None, agent="dev", item={
                "author": "dev", "host": "", "branch": "agents/dev", "target": "roadmap",
                "base": f"{n}" * 40, "head": f"{n + 5}" * 40, "task_id": task.id,
                "reviewer": None if n == 2 else "rev"}, review=None)[1])
        q.decide_review(ids[0], True, by="rev")
        q.decide_review(ids[1], True, by="rev")
        q.begin_merge("")
        q.finish_merge(ids[0], "fail", reason="conflict with roadmap: f.txt", output="CONFLICT")
        q.begin_merge("")
        q.finish_merge(ids[1], "merged", merged_head="9" * 40)
    listing = run("merges").output.splitlines()
    assert listing[0] == "waiting for review (1):" and "reviewer a person" in listing[1]
    assert listing[2] == "merged (1):"
    assert f"#{ids[1]}" in listing[3] and "roadmap at 9999999999" in listing[3]
    assert listing[4] == "failed (1):" and listing[5].endswith("conflict with roadmap: f.txt")
    assert "agents/dev → roadmap  0000000000..5555555555" in listing[5]
    shown = run("merges", "show", str(ids[0])).output
    assert "state:       failed" in shown and shown.rstrip().endswith("output:\nCONFLICT")
    merged = json.loads(run("merges", "--state", "merged", "--json").output)
    assert [item["id"] for item in merged] == [ids[1]]
    missing = run("merges", "show", "99")
    assert missing.exit_code == 2 and missing.output.strip().splitlines() == [
        "Error: no merge item #99 (coffee-team merges lists them)"]
