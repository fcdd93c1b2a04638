"""The reviewer agent's command (data/team.yaml: agents.reviewer.command): reviews a draft.

A non-zero exit fails the task with the last line of stderr (an uncaught exception does so).
"""
import json
import sys

task = json.load(sys.stdin)
if task["type"] != "review":
    sys.exit(0)

draft = task["content"]["draft"]
print(json.dumps({"approved": len(draft) <= 280, "words": len(draft.split())}))
