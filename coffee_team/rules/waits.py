"""Deadlock among agents: cycles in the wait-for graph, as a pure function of what the queue
reads (queue.wait_graph()).

The graph's nodes are unfinished tasks. A task waits on another when it was sent after it and
is still ``waiting``, or when its running handler waits on it (``ctx.wait_for``). A task not
yet running waits on its agent's running tasks too: an agent runs one task at a time, so it
cannot start the next before the one it runs finishes. A cycle there never resolves by itself:
alice's running task waits on a task to bob, while bob's only task waits on one to alice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

RUNNING = "in_progress"


@dataclass(frozen=True)
class WaitCycle:
    tasks: tuple[int, ...]    # each waits on the next, the last on the first; smallest id first
    agents: tuple[str, ...]   # the agents those tasks are for, in the same order

    @property
    def key(self) -> str:
        """Stable text naming the cycle: the same cycle found again has the same key."""
        return ">".join(f"#{t}" for t in self.tasks)

    def describe(self) -> str:
        """``alice → bob → alice (#12 → #13 → #14 → #12)``: consecutive tasks of one agent
        are one step among agents."""
        steps = [a for i, a in enumerate(self.agents) if i == 0 or a != self.agents[i - 1]]
        if len(steps) > 1 and steps[-1] == steps[0]:
            steps.pop()
        ring = " → ".join([*steps, steps[0]])
        return f"{ring} ({' → '.join(f'#{t}' for t in (*self.tasks, self.tasks[0]))})"


def find_cycles(waits: Iterable[Sequence], running: Mapping[str, Sequence[int]]
                ) -> list[WaitCycle]:
    """Every distinct wait cycle (one per strongly connected group of tasks), smallest task
    id first. ``waits``: (task, its agent, its status, awaited task, its agent, its status)
    rows; ``running``: {agent: ids of its tasks in progress}."""
    edges: dict[int, set[int]] = {}
    agent_of: dict[int, str] = {}
    status_of: dict[int, str] = {}
    for task, agent, status, awaited, awaited_agent, awaited_status in waits:
        edges.setdefault(task, set()).add(awaited)
        agent_of.update({task: agent, awaited: awaited_agent})
        status_of.update({task: status, awaited: awaited_status})
    for task, status in status_of.items():
        if status != RUNNING:  # it runs only once its agent's running task is done
            for busy in running.get(agent_of[task], ()):
                if busy != task:
                    edges.setdefault(task, set()).add(busy)
                    agent_of.setdefault(busy, agent_of[task])
    cycles = []
    for group in _strongly_connected(edges):
        cycle = _cycle_in(group, edges)
        if cycle:
            cycles.append(WaitCycle(cycle, tuple(agent_of[t] for t in cycle)))
    return sorted(cycles, key=lambda c: c.tasks)


def _strongly_connected(edges: Mapping[int, set[int]]) -> list[set[int]]:
    """Tarjan's strongly connected components, iteratively (a long chain must not reach
    Python's recursion limit)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    groups: list[set[int]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _cycle_in(group: set[int], edges: Mapping[int, set[int]]) -> tuple[int, ...]:
    """One cycle through the group's smallest task, staying inside the group (empty for a
    single task that does not wait on itself)."""
    start = min(group)
    if len(group) == 1 and start not in edges.get(start, ()):
        return ()
    path, seen = [start], {start}
    while True:  # in a strongly connected group every task leads back; greedy smallest step
        nexts = sorted(n for n in edges.get(path[-1], ()) if n in group)
        if start in nexts and (len(path) > 1 or path[-1] in edges.get(start, ())):
            return tuple(path)
        step = next((n for n in nexts if n not in seen), None)
        if step is None:  # dead end inside the group: back off (cannot happen at the start)
            path.pop()
            if not path:
                return ()
            continue
        path.append(step)
        seen.add(step)
