"""The pure rules of LLM agents, without processes: prompt templates, reading CLI output,
follow-ups, rate-limit reset times, budget decisions, and the team file's new keys."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from coffee_team.errors import TeamError
from coffee_team.llm import budget, presets, ratelimit, template
from coffee_team.llm.presets import OutputError, Reading, Usage
from coffee_team.team import parse_team
from tests.clock import T0

TASK = {"id": 42, "type": "spec_created", "sender": "architect", "priority": 2, "attempts": 1,
        "content": {"spec_id": "SPEC-7", "files": ["a.py", "b.py"], "n": 3,
                    "nested": {"deep": "yes"}}}


def render(text: str, task: dict = TASK, agent: str = "code_developer") -> str:
    return template.parse(text).render(template.task_values(task, agent))


# --- templates -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("${type} #${id} for ${agent}", "spec_created #42 for code_developer"),
    ("spec ${content.spec_id}", "spec SPEC-7"),
    ("${content.nested.deep}", "yes"),
    ("${content.files.1}", "b.py"),
    ("${content.n}", "3"),
    ("from ${sender} p${priority} try ${attempt}", "from architect p2 try 1"),
    ("costs $5 and $$10, $HOME stays", "costs $5 and $10, $HOME stays"),
    ("$${type} is literal", "${type} is literal"),
    ("${ type }", "spec_created"),
    ("", ""),
])
def test_placeholders_are_substituted(text, expected):
    assert render(text) == expected


def test_content_is_pasted_as_json_and_never_read_as_a_template():
    hostile = {"id": 1, "type": "t", "content": {"x": "${agent} $(rm -rf /) `id` {{7*7}}"}}
    out = render("${content}", hostile)
    assert json.loads(out) == hostile["content"]
    assert render("${content.x}", hostile) == "${agent} $(rm -rf /) `id` {{7*7}}"
    assert render("${content}", {"id": 1, "type": "t", "content": "plain text"}) == "plain text"


@pytest.mark.parametrize("text, message", [
    ("${foo}", "unknown field ${foo}"),
    ("${type.x}", "only ${content} has fields"),
    ("${", "malformed placeholder"),
    ("${}", "malformed placeholder"),
    ("${content..x}", "malformed placeholder"),
    ("${a b}", "malformed placeholder"),
    ("${session_id}", "unknown field ${session_id}"),
])
def test_bad_templates_are_refused_when_parsed(text, message):
    with pytest.raises(template.TemplateError, match=message.replace("$", r"\$")
                       .replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        template.parse(text)


@pytest.mark.parametrize("text, message", [
    ("${content.missing}", "${content.missing}: the task's content has no field 'missing'"),
    ("${content.nested.nope}", "the task's content.nested has no field 'nope'"),
    ("${content.files.9}", "the task's content.files has no field '9'"),
    ("${content.spec_id.x}", "the task's content.spec_id has no field 'x'"),
])
def test_a_missing_field_is_a_clear_error_at_render_time(text, message):
    with pytest.raises(template.TemplateError) as info:
        render(text)
    assert message in str(info.value)


def test_content_that_is_not_a_mapping_has_no_fields():
    with pytest.raises(template.TemplateError, match="has no field 'x'"):
        render("${content.x}", {"id": 1, "type": "t", "content": None})


# --- reading CLI output ----------------------------------------------------------------------

CLAUDE = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3,
          "result": "All done", "session_id": "0f7c-aa", "total_cost_usd": 0.0123,
          "usage": {"input_tokens": 1200, "output_tokens": 340,
                    "cache_creation_input_tokens": 50, "cache_read_input_tokens": 9000}}


def test_the_claude_preset_reads_result_cost_tokens_session_and_turns():
    reading = presets.PRESETS["claude"].read(json.dumps(CLAUDE, indent=2), {})
    assert reading == Reading(text="All done", usage=Usage(0.0123, 1200, 340, 9000, 50),
                              session_id="0f7c-aa", is_error=False, turns=3)
    assert reading.usage.tokens == 1540


def test_the_claude_preset_finds_its_json_after_warnings_and_reads_is_error():
    out = "warning: something\n" + json.dumps({**CLAUDE, "is_error": True})
    assert presets.PRESETS["claude"].read(out, {}).is_error


@pytest.mark.parametrize("out", ["", "plain text", "[1, 2]", '{"no": "result"}',
                                 "x" * 2000])
def test_output_the_preset_cannot_read_names_the_first_500_characters(out):
    with pytest.raises(OutputError) as info:
        presets.PRESETS["claude"].read(out, {})
    message = str(info.value)
    assert repr(out.strip()[:500]) in message and len(message) < 700


def test_a_session_id_that_could_be_an_option_is_not_kept():
    for bad in ("--dangerous", "a b", "", 7, "x" * 300):
        reading = presets.PRESETS["claude"].read(json.dumps({**CLAUDE, "session_id": bad}), {})
        assert reading.session_id is None


CODEX = "\n".join(json.dumps(e) for e in [
    {"type": "thread.started", "thread_id": "0199a213-81c0"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "hmm"}},
    {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "first"}},
    {"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 80,
                                         "output_tokens": 7}},
    {"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "final"}},
    {"type": "turn.completed", "usage": {"input_tokens": 10, "cached_input_tokens": 0,
                                         "output_tokens": 3}},
]) + "\nnot json\n"


def test_the_codex_preset_reads_the_last_message_and_adds_up_the_turns():
    reading = presets.PRESETS["codex"].read(CODEX, {})
    assert reading == Reading(text="final", usage=Usage(0.0, 110, 10, 80, 0),
                              session_id="0199a213-81c0")


def test_a_failed_codex_turn_is_an_error_and_no_message_is_unreadable():
    failed = json.dumps({"type": "turn.failed", "error": {"message": "usage limit"}})
    assert presets.PRESETS["codex"].read(failed, {}) .is_error
    with pytest.raises(OutputError):
        presets.PRESETS["codex"].read('{"type": "turn.started"}', {})


def test_the_json_preset_reads_field_paths_with_a_wildcard_adding_up_numbers():
    gemini_like = {"response": "hi", "stats": {"models": {
        "m1": {"tokens": {"prompt": 10, "candidates": 2, "cached": 5}},
        "m2": {"tokens": {"prompt": 1, "candidates": 1}}}}, "error": None}
    fields = {"result": "response", "tokens_in": "stats.models.*.tokens.prompt",
              "tokens_out": "stats.models.*.tokens.candidates", "is_error": "error",
              "cache_read": "stats.models.*.tokens.cached"}
    reading = presets.PRESETS["json"].read(json.dumps(gemini_like), fields)
    assert reading == Reading(text="hi", usage=Usage(0.0, 11, 3, 5, 0))
    assert presets.PRESETS["json"].read(json.dumps({**gemini_like, "error": {"m": 1}}),
                                        fields).is_error


def test_the_text_preset_keeps_stdout():
    assert presets.PRESETS["text"].read("  hello\nworld \n", {}) == Reading(text="hello\nworld")


def test_check_path_refuses_malformed_paths():
    for bad in ("", "a..b", ".a", "a b", 3):
        with pytest.raises(ValueError):
            presets.check_path(bad)
    assert presets.check_path("stats.models.*.tokens") == "stats.models.*.tokens"


# --- follow-ups --------------------------------------------------------------------------------

SEND = [{"recipient": None, "type": "spec_created", "content": {"spec_id": "S-1"}}]


@pytest.mark.parametrize("text", [
    json.dumps({"send": SEND, "note": 1}),
    "I wrote the spec.\n\n```json\n" + json.dumps({"send": SEND, "note": 1}) + "\n```\n",
    "```json\n{\"send\": []}\n```\nthen\n```JSON\n" + json.dumps({"send": SEND, "note": 1})
    + "\n```",
    "```\n" + json.dumps({"send": SEND, "note": 1}, indent=2) + "\n```",
])
def test_follow_ups_come_from_the_json_answer_or_its_last_fenced_block(text):
    result = presets.result_of(Reading(text=text))
    assert result["send"] == SEND and result["data"] == {"note": 1}


def test_an_answer_without_json_has_no_follow_ups():
    for text in ("just words", "```python\nprint(1)\n```", "```json\nnot json\n```"):
        result = presets.result_of(Reading(text=text, session_id="s", turns=2))
        assert "send" not in result and "data" not in result
        assert result["text"] == text and result["session_id"] == "s" and result["turns"] == 2


# --- rate limits -------------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("text", [
    "Claude AI usage limit reached|1760000400", "Error: 429 rate_limit_error",
    "You've hit your limit · resets 4pm (Europe/Rome)", "Too Many Requests",
    "You've hit your session limit · resets 12:50am", "API Error: Rate limit exceeded"])
def test_rate_limit_messages_are_recognised(text):
    assert ratelimit.is_rate_limited(text)


@pytest.mark.parametrize("text", ["all good", "limit the scope", "4290 lines", "reset the db"])
def test_other_failures_are_not_rate_limits(text):
    assert not ratelimit.is_rate_limited(text)


def test_an_agents_own_pattern_replaces_the_default():
    assert ratelimit.is_rate_limited("QUOTA EXHAUSTED", r"QUOTA \w+")
    assert not ratelimit.is_rate_limited("rate limit", r"QUOTA \w+")


@pytest.mark.parametrize("text, expected", [
    (f"Claude AI usage limit reached|{int(NOW) + 3600}", NOW + 3600),
    ("try again in 30 seconds", NOW + 30),
    ("Please retry after 5 minutes", NOW + 300),
    ("try again in 2h", NOW + 7200),
    ("Retry-After: 120", NOW + 120),
    ("Your limit will reset at 3pm (UTC)", NOW + 3 * 3600),
    ("resets 9:30am (UTC)", NOW + 21.5 * 3600),            # past today: tomorrow
    ("You've hit your limit · resets 4pm (Europe/Rome)", NOW + 2 * 3600),  # CEST = UTC+2
    ("resets Jun 3 at 4pm (UTC)", NOW + 2 * 86400 + 4 * 3600),
    ("resets at 14:00", NOW + 2 * 3600),                    # local zone (UTC here)
])
def test_reset_times_are_read_from_what_clis_print(text, expected):
    assert ratelimit.reset_time(text, NOW, local=timezone.utc) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "rate limited", f"limit|{int(NOW) - 10}",              # none stated, or in the past
    f"limit|{int(NOW) + 30 * 86400}",                     # not believed: too far
    "resets 4pm (Not/AZone)", "resets 13pm (UTC)", "resets 25:00", "resets Foo 3 at 4pm",
    "resets 3", "try again later"])
def test_no_believable_reset_time_means_none(text):
    assert ratelimit.reset_time(text, NOW, local=timezone.utc) is None


def test_the_backoff_doubles_from_a_minute_to_an_hour():
    assert [ratelimit.backoff(n) for n in (1, 2, 3, 7, 50)] == [60, 120, 240, 3600, 3600]


@pytest.mark.parametrize("text, now, consecutive, expected", [
    (f"usage limit reached|{int(NOW) + 3600}", NOW, 5, (NOW + 3600, True)),  # stated: it
    (f"usage limit reached|{int(NOW) + 3600}", NOW + 3600, 1, (NOW + 3660, False)),  # past
    ("rate limited", NOW, 1, (NOW + 60, False)),
    ("rate limited", NOW + 10, 3, (NOW + 250, False)),
])
def test_a_group_pauses_until_the_stated_reset_else_a_backoff(text, now, consecutive, expected):
    assert ratelimit.paused_until(text, now, consecutive) == expected


def test_rate_limit_groups_default_to_the_cli_and_an_explicit_group_wins():
    cli = lambda *argv: {"llm": {"command": list(argv)}}
    team = parse_team({"agents": {
        "architect": cli("claude", "-p"), "code_developer": cli("/usr/local/bin/claude"),
        "reviewer": {**cli("claude"), "rate_limit_group": "second-account"},
        "auditor": {**cli("codex", "exec"), "rate_limit_group": "second-account"},
        "coder": cli("codex", "exec"), "plain": {}}}, "team.yaml")
    groups = {a.name: ratelimit.group_of(a) for a in team.agents if a.llm is not None}
    assert groups == {"architect": "claude", "code_developer": "claude",
                      "reviewer": "second-account", "auditor": "second-account",
                      "coder": "codex"}
    assert ratelimit.peers(team.agents, "architect") == ("code_developer",)
    assert ratelimit.peers(team.agents, "auditor") == ("reviewer",)
    assert ratelimit.peers(team.agents, "coder") == ()


# --- budgets -------------------------------------------------------------------------------------

def test_a_budget_is_reached_at_its_limit_not_before():
    b = budget.Budget(usd_per_day=1.0)
    assert budget.decide("a", budget.Spend(0.75, 10), b, NOW) is None
    stop = budget.decide("a", budget.Spend(1.0, 10), b, NOW)
    assert stop.scope == "a" and stop.day == "2025-06-01"
    assert stop.until == datetime(2025, 6, 2, tzinfo=timezone.utc).timestamp()
    assert "usd_per_day 1 reached: 1.0000 USD spent" in stop.reason
    assert budget.decide("a", budget.Spend(0.1 + 0.2 + 0.7 - 1e-12, 0), b, NOW) is not None


def test_a_token_budget_and_the_team_scope():
    b = budget.Budget(tokens_per_day=1000)
    assert budget.decide(budget.TEAM_SCOPE, budget.Spend(5.0, 999), b, NOW) is None
    stop = budget.decide(budget.TEAM_SCOPE, budget.Spend(0.0, 1000), b, NOW)
    assert "the team's tokens_per_day 1000 reached" in stop.reason
    assert budget.decide("a", budget.Spend(99.0, 99), None, NOW) is None


PRICES = budget.Prices(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)


def test_a_runs_tokens_are_priced_per_million():
    assert budget.estimate(Usage(0.0, 1_000_000, 0, 0, 0), PRICES) == 3.0
    assert budget.estimate(Usage(9.9, 2000, 1000, 10_000, 400), PRICES) == pytest.approx(
        (2000 * 3 + 1000 * 15 + 10_000 * 0.3 + 400 * 3.75) / 1e6)
    assert budget.estimate(Usage(), PRICES) == 0.0


SEEN = Usage(0.0, 2000, 1000, 0, 0)
PRICED = Usage(0.021, 2000, 1000, 0, 0)


@pytest.mark.parametrize("usage, stated, complete, prices, expected", [
    (Usage(0.5, 2000, 1000), True, True, None, (Usage(0.5, 2000, 1000), False)),  # the CLI's
    (Usage(0.5, 2000, 1000), True, True, PRICES, (Usage(0.5, 2000, 1000), False)),  # it wins
    (Usage(0.5, 2000, 1000), True, False, None, (Usage(0.5, 2000, 1000), True)),
    (SEEN, False, False, PRICES, (PRICED, True)),        # cut off: the events seen, priced
    (SEEN, False, True, PRICES, (PRICED, True)),         # codex: tokens exact, cost priced
    (SEEN, False, True, None, (SEEN, False)),            # codex without prices: tokens only
    (SEEN, False, False, None, (SEEN, True)),            # cut off without prices
    (Usage(7.0, 1, 1), False, True, None, (Usage(0.0, 1, 1), False)),  # no stated cost: none
])
def test_what_a_run_has_spent_and_whether_it_is_an_estimate(usage, stated, complete, prices,
                                                            expected):
    settled, estimated = budget.settle(usage, stated, complete, prices)
    assert (settled.tokens_in, settled.tokens_out, estimated) == \
        (expected[0].tokens_in, expected[0].tokens_out, expected[1])
    assert settled.cost_usd == pytest.approx(expected[0].cost_usd)


B = budget.Budget


@pytest.mark.parametrize("base, allowance, expected", [
    (B(10.0, 1000), budget.Allowance(), B(10.0, 1000)),
    (B(10.0, 1000), budget.Allowance(5.0, 500), B(15.0, 1500)),
    (B(10.0, None), budget.Allowance(5.0, 500), B(15.0, None)),  # no token budget to raise
    (B(None, 1000), budget.Allowance(5.0, 0), B(None, 1000)),
    (B(10.0, 1000), budget.Allowance(5.0, 500, unlimited=True), None),
    (None, budget.Allowance(5.0), None),
])
def test_a_raise_adds_to_the_days_budget_and_no_budget_today_removes_it(base, allowance,
                                                                       expected):
    assert budget.effective(base, allowance) == expected


@pytest.mark.parametrize("day, run, limit, stops", [
    (budget.Spend(0.9, 0), Usage(0.05, 0, 0), B(1.0), False),
    (budget.Spend(0.9, 0), Usage(0.1, 0, 0), B(1.0), True),   # the run takes it to the limit
    (budget.Spend(0.0, 900), Usage(0.0, 60, 39), B(None, 1000), False),
    (budget.Spend(0.0, 900), Usage(0.0, 60, 40), B(None, 1000), True),
    (budget.Spend(0.0, 900), Usage(0.0, 60, 40, 10**6, 10**6), B(None, 1001), False),  # cache
    (budget.Spend(5.0, 0), Usage(0.0, 10**6, 0), B(None, None), False),
])
def test_a_runs_spend_so_far_crosses_the_days_budget(day, run, limit, stops):
    assert (budget.reached(budget.with_run(day, run), limit) is not None) is stops


@pytest.mark.parametrize("limits, left", [
    ([], None), ([(None, budget.Spend())], None), ([(B(None, 100), budget.Spend())], None),
    ([(B(8.0), budget.Spend(3.0, 0))], 5.0),
    ([(B(8.0), budget.Spend(3.0, 0)), (B(25.0), budget.Spend(23.5, 0))], 1.5),
    ([(B(8.0), budget.Spend(9.0, 0))], 0.0),
])
def test_usd_left_is_the_least_left_under_any_dollar_budget(limits, left):
    assert budget.usd_left(limits) == left


# --- the team file ---------------------------------------------------------------------------------

def team_error(agent: dict, **team) -> str:
    with pytest.raises(TeamError) as info:
        parse_team({"team": team, "agents": {"architect": agent}}, "team.yaml")
    message = str(info.value)
    assert message.splitlines() == [message] and message.startswith("team.yaml: ")
    return message


LLM = {"command": ["claude", "-p", "--output-format", "json"]}


@pytest.mark.parametrize("agent, message", [
    ({"llm": {"preset": "claude"}}, "agents.architect.llm.command: required"),
    ({"llm": {**LLM, "preset": "gpt"}}, "agents.architect.llm.preset: expected one of "
                                        "claude, codex, json, text"),
    ({"llm": {**LLM, "prompt": "do ${task.x}"}}, "agents.architect.llm.prompt: unknown field"),
    ({"llm": {**LLM, "prompt": "${"}}, "agents.architect.llm.prompt: malformed placeholder"),
    ({"llm": {**LLM, "session_args": ["--resume", "${content}"]}},
     "agents.architect.llm.session_args[1]: unknown field ${content}"),
    ({"llm": {**LLM, "session": "keep", "session_key": "${spec}"}},
     "agents.architect.llm.session_key: unknown field ${spec}"),
    ({"llm": {**LLM, "session": "keep", "session_key": ""}},
     "agents.architect.llm.session_key: expected a key template"),
    ({"llm": {**LLM, "session_key": "${content.spec_id}"}},
     "agents.architect.llm.session_key: only with session: keep"),
    ({"llm": {**LLM, "prompt_via": "env"}}, "agents.architect.llm.prompt_via: expected one of"),
    ({"llm": {**LLM, "bogus": 1}}, "agents.architect.llm.bogus: unknown key"),
    ({"llm": {**LLM, "preset": "json"}}, "agents.architect.llm.fields: preset json needs"),
    ({"llm": {**LLM, "fields": {"result": "r"}}}, "agents.architect.llm.fields: only preset json"),
    ({"llm": {**LLM, "preset": "json", "fields": {"answer": "r"}}},
     "agents.architect.llm.fields: expected field names among"),
    ({"llm": LLM, "budget": {"usd_per_day": 0}}, "agents.architect.budget.usd_per_day: expected"),
    ({"llm": LLM, "budget": {"tokens_per_day": -5}}, "agents.architect.budget.tokens_per_day"),
    ({"llm": LLM, "budget": {"tokens_per_day": 1.5}}, "agents.architect.budget.tokens_per_day"),
    ({"llm": LLM, "budget": {}}, "agents.architect.budget: set usd_per_day and/or"),
    ({"llm": LLM, "workspace": {}}, "agents.architect.workspace: set either dir"),
    ({"llm": LLM, "workspace": {"dir": "x", "branch": "b"}},
     "agents.architect.workspace: branch, path, base and merge are for worktree"),
    ({"llm": LLM, "workspace": {"worktree": True, "branch": "a b/${agent}"}},
     "agents.architect.workspace.branch: not a usable git branch name"),
    ({"llm": LLM, "workspace": {"worktree": True, "branch": "x/${type}"}},
     "agents.architect.workspace.branch: unknown field ${type}"),
    ({"llm": LLM, "rate_limit": "(("}, "agents.architect.rate_limit: expected a valid regular"),
    ({"llm": LLM, "rate_limit_group": "two words"},
     "agents.architect.rate_limit_group: expected a group name of letters, digits"),
    ({"llm": LLM, "rate_limit_group": 3}, "agents.architect.rate_limit_group: expected a group"),
    ({"rate_limit_group": "a"}, "agents.architect.rate_limit_group: only an llm agent has one"),
    ({"budget": {"usd_per_day": 1}}, "agents.architect.budget: only an llm agent has one"),
    ({"workspace": {"dir": "."}}, "agents.architect.workspace: only an llm agent has one"),
    ({"llm": LLM, "command": ["x"]}, "agents.architect: set either 'llm' or 'command'"),
    ({"llm": {**LLM, "prices": {"input": 3, "outptu": 15}}},
     "agents.architect.llm.prices: expected a mapping of input, output"),
    ({"llm": {**LLM, "prices": {"input": -1}}},
     "agents.architect.llm.prices: expected a price from 0 to 1e6 USD per million tokens for "
     "input"),
    ({"llm": {**LLM, "prices": []}}, "agents.architect.llm.prices: expected a mapping"),
    ({"llm": {"command": ["claude", "-p", "--output-format", "stream-json"]}},
     "agents.architect.llm.command: --output-format stream-json needs --verbose"),
    ({"llm": {"command": ["claude", "-p", "--output-format=stream-json"]}},
     "agents.architect.llm.command: --output-format stream-json needs --verbose"),
])
def test_bad_llm_settings_are_one_line_naming_the_key_path(agent, message):
    assert message in team_error(agent)


def test_a_team_budget_at_or_below_zero_is_refused():
    assert "team.budget.usd_per_day: expected" in team_error({"llm": LLM},
                                                             budget={"usd_per_day": -1})


def test_a_full_llm_agent_loads():
    team = parse_team({"team": {"budget": {"usd_per_day": 50}}, "agents": {"architect": {
        "llm": {**LLM, "prompt": "Task ${type}: ${content.spec_id}", "session": "keep",
                "system_prompt_file": "agents/architect.md"},
        "budget": {"usd_per_day": 20, "tokens_per_day": 2000000},
        "workspace": {"worktree": True, "branch": "agents/${agent}"}}}}, "team.yaml")
    spec = team.agents[0]
    assert spec.llm.resume_args == ("--resume", "${session_id}") and spec.llm.prices is None
    assert spec.budget == budget.Budget(20.0, 2000000)
    assert team.settings.budget == budget.Budget(50.0, None)
    assert spec.workspace.branch_for("architect") == "agents/architect"
    assert spec.workspace.path_for("architect") == "data/worktrees/architect"


@pytest.mark.parametrize("content, key", [
    ({"spec_id": "SPEC-1"}, "spec SPEC-1"),
    ({"spec_id": 7}, "spec 7"),
    ({"other": 1}, None),          # the task lacks the field: unrelated, starts fresh
    (None, None),                  # a periodic run's content
    ({"spec_id": "x" * 300}, "sha256:" + __import__("hashlib").sha256(
        ("spec " + "x" * 300).encode()).hexdigest()),
])
def test_the_session_key_of_a_task(content, key):
    task = {**TASK, "content": content}
    assert template.session_key(template.parse("spec ${content.spec_id}"), task, "a") == key
    assert template.session_key(None, task, "a") == ""  # no key: one session for every task
    assert template.session_key(template.parse("${content.spec_id}"),
                                {**TASK, "content": {"spec_id": ""}}, "a") is None


def test_an_answer_too_long_for_the_queue_is_cut_not_refused():
    result = presets.result_of(Reading(text="é" * 150_000))
    assert len(result["text"]) < 100_100 and result["text"].endswith("50000 more characters cut]")
    huge = json.dumps({"send": [], "blob": "x" * 200_000})
    assert "data" not in presets.result_of(Reading(text=huge))


@pytest.mark.parametrize("reason, outcome", [("timeout", "timeout"), ("stalled", "stalled"),
                                             ("cancelled", "cancelled"), ("stop", "stopped"),
                                             ("something new", "stopped")])
def test_a_run_cut_off_is_recorded_with_what_cut_it_off(reason, outcome):
    from coffee_team.handlers import HandlerError, Interrupted
    from coffee_team.llm.meter import outcome_of
    assert outcome_of(Interrupted(reason, "why")) == outcome
    assert outcome_of(HandlerError("cannot start claude")) == "error"
