"""Real processes sharing one SQLite queue: exactly-once delivery under
contention, recovery after SIGKILL, and cross-process wake-ups."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from coffee_team.queue import MessageQueue

pytestmark = pytest.mark.slow  # the tests here start processes

PRODUCERS, CONSUMERS, PER_PRODUCER = 4, 4, 500
TOTAL = PRODUCERS * PER_PRODUCER
ctx = multiprocessing.get_context("spawn")  # no inherited sqlite handles


def _queue(tmp: str, **kw) -> MessageQueue:
    return MessageQueue(os.path.join(tmp, "q.db"), wake_dir=os.path.join(tmp, "w"),
                        max_queue_size=10 * TOTAL, **kw)


def _produce(tmp: str, n: int) -> None:
    with _queue(tmp) as q:
        ids = []
        for i in range(PER_PRODUCER):
            if i % 100 == 99:  # mix single sends and batches
                ids += q.send_many([dict(sender=f"p{n}", recipient="worker", type="job",
                                         content=[n, i, j]) for j in range(3)])
            else:
                ids.append(q.send(f"p{n}", "worker", "job", [n, i], priority=i % 10))
        Path(tmp, f"sent-{n}").write_text("\n".join(map(str, ids)))


def _consume(tmp: str, n: int, expected: int) -> None:
    with _queue(tmp) as q, open(Path(tmp, f"done-{n}"), "a") as log:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = q.claim("worker", limit=4)
            for task in tasks:
                log.write(f"{task.id}\n")  # the side effect that must happen once
                log.flush()
                assert q.mark_completed(task.id, agent="worker")
            if not tasks:
                if q.stats().get("worker", {}).get("completed", 0) >= expected:
                    return
                q.wait("worker", 0.2)


def _claim_and_hang(tmp: str, lease: float) -> None:
    q = _queue(tmp, lease_seconds=lease)
    [task] = q.claim("victim")
    Path(tmp, "held").write_text(str(task.id))
    time.sleep(600)  # killed long before


def _wait_for_wake(tmp: str) -> None:
    with _queue(tmp) as q:
        q.wait("sleeper", 0)  # binds the wake socket
        Path(tmp, "ready").write_text("1")
        woke = q.wait("sleeper", 10)
        Path(tmp, "woke").write_text(f"{woke} {time.time()!r}")


def _wait_for_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.01)
    return path.read_text()


def _join_all(procs, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


@pytest.fixture
def tmp(tmp_path_factory):
    # Short path: unix socket paths are limited to 107 bytes.
    import tempfile
    import shutil

    path = tempfile.mkdtemp(prefix="ctp", dir="/tmp")
    _queue(path).close()  # create the schema before the crowd arrives
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_many_producers_and_consumers_complete_every_task_exactly_once(tmp):
    expected = TOTAL + PRODUCERS * (PER_PRODUCER // 100) * 2  # batches send 3, replace 1
    consumers = [ctx.Process(target=_consume, args=(tmp, n, expected), name=f"consumer{n}")
                 for n in range(CONSUMERS)]
    producers = [ctx.Process(target=_produce, args=(tmp, n), name=f"producer{n}")
                 for n in range(PRODUCERS)]
    for p in consumers + producers:
        p.start()
    _join_all(producers + consumers)

    sent = [int(x) for n in range(PRODUCERS) for x in Path(tmp, f"sent-{n}").read_text().split()]
    done = [int(x) for n in range(CONSUMERS) for x in Path(tmp, f"done-{n}").read_text().split()]
    assert len(sent) == expected == len(set(sent))
    assert len(done) == len(set(done)), "a task was processed twice"
    assert set(done) == set(sent)
    with _queue(tmp) as q:
        assert q.stats()["worker"]["completed"] == expected
        assert q.agent_performance()[0]["count"] == expected


@pytest.mark.parametrize("recovery", ["requeue_agent", "lease_expiry"])
def test_task_held_by_killed_agent_completes_later_exactly_once(tmp, recovery):
    lease = 0.5 if recovery == "lease_expiry" else 300.0
    with _queue(tmp, lease_seconds=lease) as q:
        task_id = q.send("cli", "victim", "job", {"x": 1})
        victim = ctx.Process(target=_claim_and_hang, args=(tmp, lease))
        victim.start()
        try:
            assert int(_wait_for_file(Path(tmp, "held"))) == task_id
        finally:
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
        assert victim.exitcode == -signal.SIGKILL
        assert q.claim("victim") == []  # still leased to the dead process
        if recovery == "requeue_agent":
            assert q.requeue_agent("victim") == 1
        else:
            time.sleep(lease + 0.1)
        [task] = q.claim("victim")
        assert task.id == task_id and task.attempts == 2
        assert q.mark_completed(task.id)
        assert q.claim("victim") == []
        [row] = q.get_messages("victim", status="completed")
        assert row["id"] == task_id


def test_wait_wakes_promptly_on_send_from_another_process(tmp):
    sleeper = ctx.Process(target=_wait_for_wake, args=(tmp,))
    sleeper.start()
    try:
        _wait_for_file(Path(tmp, "ready"))
        with _queue(tmp) as q:
            sent_at = time.time()
            q.send("cli", "sleeper", "ping")
        woke, at = _wait_for_file(Path(tmp, "woke"), timeout=10).split()
    finally:
        _join_all([sleeper], timeout=15)
    assert woke == "True"
    assert float(at) - sent_at < 2.0


def _open_and_close(tmp: str) -> None:
    _queue(tmp).close()


def test_a_second_queue_in_one_process_keeps_the_first_ones_writes_visible(tmp_path):
    """Opening a second queue on the same file (the watchdog's delivery thread does) must not
    drop the first connection's locks: another process closing its own connection would then
    delete the WAL from under it, and every later write of the first would be lost to others."""
    first = _queue(str(tmp_path))
    first.record_event(None, "before")
    second = _queue(str(tmp_path))
    other = ctx.Process(target=_open_and_close, args=(str(tmp_path),))
    other.start()
    other.join(30)
    first.record_event(None, "after")
    with ctx.Pool(1) as pool:
        kinds = pool.apply(_event_kinds, (str(tmp_path),))
    first.close()
    second.close()
    assert kinds == ["before", "after"]


def _event_kinds(tmp: str) -> list[str]:
    with _queue(tmp) as q:
        return [e["kind"] for e in q.events()]


def test_a_broadcast_pokes_every_waiting_agent(tmp_path):
    """One sender's datagrams count against its buffer until read: 500 idle agents poked by
    one send_all must all get theirs (a fresh sending socket when the buffer is spent)."""
    from coffee_team.queue.wake import WakeSockets
    waiting, sender = WakeSockets(str(tmp_path / "w")), WakeSockets(str(tmp_path / "w"))
    names = [f"a{i:03d}" for i in range(500)]
    sockets = [waiting.listener(name) for name in names]
    sender.notify(names)
    poked = 0
    for sock in sockets:
        try:
            poked += len(sock.recv(8)) > 0
        except BlockingIOError:
            pass
    waiting.close()
    sender.close()
    assert poked == len(names)
