import sys

argv = sys.argv[1:]
if len(argv) == 5 and argv[0] == "--team" and argv[2:4] == ["agent", "run"]:
    # Every program's command: go straight to the runtime, skipping the CLI's imports and
    # (agent/lean.py) the standard modules it would load without using them.
    from .agent.lean import defer
    defer()
    from .agent.runtime import main as agent_main
    sys.exit(agent_main(argv[1], argv[4]))

from .cli import main  # noqa: E402

main(prog_name="coffee-team")
