import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffee_team.errors import RoutingError
from coffee_team.queue.routing import BROADCAST, resolve_recipients

AGENTS = ("architect", "code_developer", "reviewer")
HANDLES = {"architect": ("design",), "code_developer": ("implement", "fix"),
           "reviewer": ("review", "fix")}


@pytest.mark.parametrize("agent", AGENTS)
def test_explicit_known_recipient(agent):
    assert resolve_recipients(agent, "anything", AGENTS, HANDLES) == [agent]


def test_explicit_recipient_wins_over_handles():
    assert resolve_recipients("architect", "implement", AGENTS, HANDLES) == ["architect"]


def test_broadcast_goes_to_every_agent_in_team_order():
    assert resolve_recipients(BROADCAST, "announce", AGENTS, HANDLES) == list(AGENTS)


def test_broadcast_without_team_is_an_error():
    with pytest.raises(RoutingError, match="no team agents"):
        resolve_recipients("all", "announce", (), {})


@pytest.mark.parametrize("recipient", [None, ""])
@pytest.mark.parametrize("task_type, expected", [
    ("design", "architect"), ("implement", "code_developer"), ("review", "reviewer"),
    ("fix", "code_developer"),  # two handlers: first in agent order
])
def test_route_by_type(recipient, task_type, expected):
    assert resolve_recipients(recipient, task_type, AGENTS, HANDLES) == [expected]


def test_first_handler_follows_agent_order_not_handles_order():
    handles = {"reviewer": ("fix",), "code_developer": ("fix",)}
    assert resolve_recipients(None, "fix", ("reviewer", "code_developer"), handles) == ["reviewer"]


def test_handles_of_agents_outside_the_team_are_ignored():
    with pytest.raises(RoutingError):
        resolve_recipients(None, "spy", AGENTS, {"ghost": ("spy",)})


def test_unknown_recipient_lists_known_agents_on_one_line():
    with pytest.raises(RoutingError) as info:
        resolve_recipients("nobody", "design", AGENTS, HANDLES)
    message = str(info.value)
    assert message == "unknown recipient 'nobody'; known agents: architect, code_developer, reviewer"
    assert "\n" not in message


def test_unroutable_type_names_type_and_routable_types():
    with pytest.raises(RoutingError) as info:
        resolve_recipients(None, "dance", AGENTS, HANDLES)
    assert str(info.value) == (
        "no agent handles task type 'dance'; routable types: design, fix, implement, review")


def test_unroutable_type_with_no_handlers_at_all():
    with pytest.raises(RoutingError, match="routable types: none"):
        resolve_recipients(None, "dance", AGENTS, {})
    with pytest.raises(RoutingError, match="routable types: none"):
        resolve_recipients(None, "dance", (), {})


@pytest.mark.parametrize("name", ["alice", "code_developer", "agent-2", "x", "0"])
def test_without_team_any_valid_name_is_accepted(name):
    assert resolve_recipients(name, "t", (), {}) == [name]


@pytest.mark.parametrize("name", ["Alice", "a b", "a/b", "../x", "é", "a.b", "a\n"])
def test_without_team_invalid_names_are_rejected(name):
    with pytest.raises(RoutingError, match=r"\[a-z0-9_-\]\+"):
        resolve_recipients(name, "t", (), {})


def test_routing_error_is_a_value_error():
    assert issubclass(RoutingError, ValueError)


def test_inputs_are_not_mutated_and_result_is_a_fresh_list():
    agents = list(AGENTS)
    result = resolve_recipients("all", "t", agents, HANDLES)
    result.append("x")
    assert agents == list(AGENTS)


@given(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1,
                max_size=6, unique=True).filter(lambda a: "all" not in a),
       st.data())
def test_properties(agents, data):
    handles = {a: tuple(data.draw(st.lists(st.sampled_from("abcde"), max_size=3))) for a in agents}
    # Every explicit member routes to itself; broadcast is the whole team.
    for agent in agents:
        assert resolve_recipients(agent, "t", agents, handles) == [agent]
    assert resolve_recipients("all", "t", agents, handles) == agents
    # Routing by type: exactly the first handler in team order, or an error.
    task_type = data.draw(st.sampled_from("abcdef"))
    handlers = [a for a in agents if task_type in handles[a]]
    if handlers:
        assert resolve_recipients(None, task_type, agents, handles) == handlers[:1]
    else:
        with pytest.raises(RoutingError):
            resolve_recipients(None, task_type, agents, handles)
