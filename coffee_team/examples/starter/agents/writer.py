"""The writer agent's command (data/team.yaml: agents.writer.command): one run per task.

The task comes as JSON on stdin. What this prints goes to the agent's log (`coffee-team logs
writer -f`); the last line of stdout that is JSON is the task's result. A "send" list in the
result queues follow-up tasks when this one completes. Contract: docs/command-handlers.md.
"""
import json
import sys

task = json.load(sys.stdin)   # {"id", "sender", "recipient", "type", "content", "priority", ...}
if task["type"] != "draft":   # a periodic run (at start, then every check_interval) or a
    sys.exit(0)               # broadcast: nothing to do (no output: the result is null)

text = (task["content"] or {}).get("text", "")
print(f"drafting {text!r}")   # output, not the result: it is not JSON
draft = text.strip().capitalize() + "."
review = {"recipient": None, "type": "review", "content": {"draft": draft}}  # None: by type
print(json.dumps({"draft": draft, "send": [review]}))
