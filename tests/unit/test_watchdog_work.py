"""The watchdog's work over time, on the watchdog rig (fake supervisord, fake clock, real
SQLite queue): schedule slots sent once (across a DST change, a downtime, two watchdogs on one
database), a wait cycle among agents reported once, a leaking agent restarted before its
memory limit and never mid-task."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from coffee_team.watchdog.health import Usage
from coffee_team.watchdog.work import TREND_PAUSE
from tests import fakes
from tests.fakes import FakeSampler
from tests.watchdog_rig import AGENTS, HEALTH, check, make_rig  # noqa: F401  (fixture)

PARIS = ZoneInfo("Europe/Paris")


def paris(*fields) -> float:
    return datetime(*fields, tzinfo=PARIS).timestamp()


def scheduled(entries: list[dict], **agent) -> dict:
    return {**AGENTS, "architect": {"priority": 1, "schedule": entries, **agent}}


def run_minutes(rig, watchdogs, minutes: int) -> None:
    """The watchdogs' timers, each minute (taking turns when there are several)."""
    for minute in range(minutes):
        rig.clock.advance(60)
        watchdogs[minute % len(watchdogs)].on_timer()


def sent(rig, agent="architect") -> list[dict]:
    return sorted(rig.queue.list_tasks(agent=agent, limit=10000), key=lambda t: t["id"])


def local(t: float) -> str:
    return datetime.fromtimestamp(t, PARIS).strftime("%m-%d %H:%M %Z")


# --- schedules ---------------------------------------------------------------------------

def test_a_daily_slot_across_spring_forward_and_autumn_back_is_sent_once_a_day(make_rig):
    rig = make_rig(agents=scheduled([{"cron": "30 2 * * *", "type": "nightly",
                                      "content": {"deep": True}}]), timezone="Europe/Paris")
    for start, days in ((paris(2024, 3, 30, 12, 0), 3), (paris(2024, 10, 26, 12, 0), 3)):
        rig.clock.set(start)
        rig.wd = rig.new_watchdog()  # in October: back after months down
        rig.wd.on_timer()
        run_minutes(rig, [rig.wd], days * 24 * 60)
    slots = [local(e["detail"]["slot"]) for e in rig.events("architect", "scheduled")]
    assert slots == ["03-31 03:00 CEST", "04-01 02:30 CEST", "04-02 02:30 CEST",
                     "10-26 02:30 CEST",  # the one catch-up for the months down
                     "10-27 02:30 CEST", "10-28 02:30 CET", "10-29 02:30 CET"]
    tasks = sent(rig)
    assert [(t["type"], t["content"], t["sender"]) for t in tasks] == [
        ("nightly", {"deep": True}, "schedule")] * 7


def test_a_downtime_sends_one_catch_up_and_catch_up_none_sends_none(make_rig):
    rig = make_rig(agents=scheduled([
        {"cron": "0 * * * *", "type": "hourly"},
        {"cron": "0 * * * *", "type": "hourly", "name": "strict", "catch_up": "none"}]))
    rig.clock.set(paris(2024, 5, 1, 8, 30))
    rig.wd.on_timer()
    run_minutes(rig, [rig.wd], 60)  # 09:00 sent by both entries
    assert len(sent(rig)) == 2
    rig.clock.advance(5 * 3600 + 10 * 60)  # down from 09:30 to 14:40: 5 slots missed
    rig.wd = rig.new_watchdog()
    rig.wd.on_timer()
    after = sent(rig)
    assert len(after) == 3  # one catch-up (14:00), none for catch_up none
    assert rig.events("architect", "scheduled")[-1]["detail"]["late"] == 40 * 60
    assert [e["detail"]["entry"] for e in rig.events("architect", "schedule_skipped")] == [
        "strict"]
    run_minutes(rig, [rig.wd], 25)
    assert len(sent(rig)) == 5  # 15:00, on time, by both
    assert rig.wd.seconds_to_next_timer() <= 1.0


def test_two_watchdogs_on_one_database_never_both_send_a_slot(make_rig):
    rig = make_rig(agents=scheduled([{"cron": "*/5 * * * *", "type": "tick"}]))
    other = rig.new_watchdog(queue=rig.open_queue())
    first = rig.new_watchdog()
    rig.clock.set(paris(2024, 5, 1, 9, 1))
    for wd in (first, other):
        wd.on_timer()
    for minute in range(120):  # both look every minute, in either order
        rig.clock.advance(60)
        for wd in ((first, other) if minute % 2 else (other, first)):
            wd.on_timer()
    slots = [e["detail"]["slot"] for e in rig.events("architect", "scheduled")]
    assert len(sent(rig)) == len(slots) == len(set(slots)) == 25  # 09:00 (on time) to 11:00
    assert sorted(slots) == [paris(2024, 5, 1, 9, 0) + 300 * k for k in range(25)]


def test_check_interval_still_drives_the_periodic_run():
    """Schedules add tasks; the agent's own periodic run (check_interval) is untouched."""
    from coffee_team.team import parse_team
    team = parse_team({"agents": {"a": {"handler": "x.y:z", "check_interval": 60,
                                        "schedule": [{"cron": "0 9 * * *", "type": "t"}]}}})
    assert team.agents[0].check_interval == 60.0


# --- wait cycles -------------------------------------------------------------------------

def test_an_agent_wait_cycle_is_reported_once(make_rig):
    rig = make_rig(**HEALTH)
    q = rig.queue
    z = q.send("cli", "architect", "z")           # alice's (architect's) next task
    x = q.send("cli", "architect", "x", priority=0)
    [running] = q.claim("architect")               # architect runs x ...
    assert running.id == x
    y = q.send("architect", "assistant", "y", after=[z])  # ... y (assistant's) waits on z
    q.wait_on(x, "architect", [y])                 # x's handler waits for y: a deadlock
    check(rig)
    check(rig)
    rig.wd = rig.new_watchdog()                    # a restarted watchdog says nothing again
    check(rig)
    found = [n for n in rig.notifications("WARNING") if n["title"].startswith("wait cycle")]
    assert [n["title"] for n in found] == ["wait cycle: architect → assistant → architect"]
    # z waits on x (architect runs one task at a time), x on y, y on z
    assert f"#{z} → #{x} → #{y} → #{z}" in found[0]["message"]
    assert len(rig.events("architect", "wait_cycle")) == 1
    assert rig.rpc.stopped() == [] and q.get_task(x)["status"] == "in_progress"  # no kill


def test_waiting_that_resolves_is_no_cycle(make_rig):
    rig = make_rig(**HEALTH)
    q = rig.queue
    z = q.send("cli", "architect", "z")
    q.send("cli", "assistant", "y", after=[z])    # waits on architect, who is free
    check(rig)
    assert not [n for n in rig.notifications() if n["title"].startswith("wait cycle")]


# --- predictive restart ------------------------------------------------------------------

def leaking_rig(make_rig):
    agents = {**AGENTS, "code_developer": {
        "priority": 2, "memory_limit_mb": 500, "rss_warn_mb": 10_000,
        "memory_trend": {"window": "30m", "restart_before": "10m"}}}
    rig = make_rig(agents=agents, **HEALTH)
    rig.rpc.set_state("code_developer", "RUNNING", started_at=int(rig.clock()))
    pid = rig.rpc.pids["code_developer"]
    rig.wd.sampler = FakeSampler({pid: Usage(cpu_percent=1.0, rss_mb=200.0)})
    return rig, pid


def leak(rig, pid, mb_per_check: float) -> float:
    usage = rig.wd.sampler.usage[pid]
    rig.wd.sampler.usage[pid] = Usage(1.0, usage.rss_mb + mb_per_check)
    rig.write_heartbeat("code_developer", rig.clock() + 30)
    check(rig)
    return rig.wd.sampler.usage[pid].rss_mb


def test_a_leaking_agent_is_restarted_before_its_limit_and_not_mid_task(make_rig):
    rig, pid = leaking_rig(make_rig)
    q = rig.queue
    q.send("cli", "code_developer", "long")
    [task] = q.claim("code_developer")  # the agent is in the middle of a task
    rss = 200.0
    while not rig.events("code_developer", "memory_trend"):  # +5 MB per 30 s: 10 MB a minute
        rss = leak(rig, pid, 5.0)
    assert rss < 500 and q.pauses()["code_developer"]["reason"] == TREND_PAUSE
    assert len([n for n in rig.notifications("WARNING") if "restart before" in n["title"]]) == 1
    for _ in range(3):  # still working on its task: never stopped mid-task
        rss = leak(rig, pid, 5.0)
    assert rig.rpc.stopped() == []
    assert q.mark_completed(task.id, agent="code_developer")
    assert q.claim("code_developer") == []  # paused: claims nothing new meanwhile
    rss = leak(rig, pid, 5.0)
    assert rig.rpc.stopped() == ["code_developer"] and rss < 500  # between tasks, in time
    rig.rpc.settle()
    rig.wd.handle(fakes.stopped("code_developer"))
    assert rig.rpc.started() == ["code_developer"]
    rig.rpc.settle()
    rig.clock.advance(1)
    rig.rpc.set_state("code_developer", "RUNNING", started_at=int(rig.clock()))
    rig.wd.sampler.usage[rig.rpc.pids["code_developer"]] = Usage(1.0, 180.0)
    check(rig)
    assert "code_developer" not in q.pauses()  # the new instance takes work again
    assert len(rig.events("code_developer", "memory_trend")) == 1


def test_a_flat_or_short_history_restarts_nothing(make_rig):
    rig, pid = leaking_rig(make_rig)
    for _ in range(10):
        leak(rig, pid, 0.0)   # flat at 200 MB for 5 minutes
    for _ in range(3):
        leak(rig, pid, 60.0)  # a jump, but over a minute and a half of a 30-minute window
    assert rig.events("code_developer", "memory_trend") == [] and rig.rpc.stopped() == []


def test_a_new_instance_starts_a_new_trend(make_rig):
    """Samples of the process before a crash restart do not count toward the new one's."""
    rig, pid = leaking_rig(make_rig)
    for _ in range(40):  # 20 minutes of +2 MB a check: 280 MB, not yet within 10 minutes
        leak(rig, pid, 2.0)
    rig.rpc.set_state("code_developer", "EXITED")
    rig.rpc.set_state("code_developer", "RUNNING", started_at=int(rig.clock()))
    new_pid = rig.rpc.pids["code_developer"]
    rig.wd.sampler.usage[new_pid] = Usage(1.0, 470.0)  # high, but flat from here on
    for _ in range(10):
        leak(rig, new_pid, 0.0)
    assert rig.events("code_developer", "memory_trend") == []
    assert len(rig.wd.rss_samples["code_developer"][1]) == 10
