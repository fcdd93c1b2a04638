"""Which process holds each agent (queue/instances.py) against every backend: an instance's
row, its heartbeats, a clean stop, and restarts counted only after an unclean end on the
same host.

Mixed into the backend test classes next to QueueContract (make_queue() on a fresh database
and a FakeClock).
"""
from __future__ import annotations


class InstancesContract:
    def test_an_instance_starts_beats_and_stops(self):
        q = self.make_queue(agents=("a", "b"))
        assert q.instances() == {} and q.instance("a") is None
        assert q.instance_started("a", "pod-a", 7, 100.0) == 0
        row = q.instance("a")
        assert (row["host"], row["pid"], row["proc_start"], row["heartbeat"], row["ready"],
                row["state"], row["restarts"]) == ("pod-a", 7, 100.0, None, False, "starting", 0)
        assert row["started_at"] == self.clock.now
        assert q.instance_beat("a", "pod-a", 7, heartbeat=5.0, ready=True, state="working",
                               task_id=3, task_type="t")
        row = q.instances()["a"]
        assert (row["heartbeat"], row["ready"], row["state"], row["task_id"],
                row["task_type"]) == (5.0, True, "working", 3, "t")
        q.instance_beat("a", "pod-a", 7, heartbeat=6.0, ready=False, state="stopped")
        row = q.instance("a")
        assert (row["state"], row["ready"], row["task_id"]) == ("stopped", False, None)

    def test_another_instance_never_writes_over_the_holder(self):
        q = self.make_queue(agents=("a",))
        q.instance_started("a", "pod-a", 7, 1.0)
        assert not q.instance_beat("a", "pod-a", 8, heartbeat=5.0, ready=True, state="idle")
        assert not q.instance_beat("a", "pod-b", 7, heartbeat=5.0, ready=True, state="idle")
        assert q.instance("a")["state"] == "starting"

    def test_restarts_count_unclean_ends_on_one_host(self):
        q = self.make_queue(agents=("a",))
        q.instance_started("a", "pod-a", 7, 1.0)
        assert q.instance_started("a", "pod-a", 8, 2.0) == 1  # 7 never stopped: killed
        q.instance_beat("a", "pod-a", 8, heartbeat=6.0, ready=False, state="stopped")
        assert q.instance_started("a", "pod-a", 9, 3.0) == 1  # a clean stop is no restart
        assert q.instance_started("a", "pod-b", 10, 4.0) == 0  # another host starts afresh

    def test_holds_work_sees_a_task_in_progress(self):
        q = self.make_queue(agents=("a",))
        q.send("cli", "a", "t")
        assert not q.holds_work("a")
        q.claim("a")
        assert q.holds_work("a")
