"""LLM agents: a coding CLI (claude, codex, ...) run once per task.

``template`` renders the prompt from the task (substituted, never evaluated), ``presets``
reads what the CLI printed (result, cost, tokens, session id), ``ratelimit`` finds a
rate-limit message and its reset time, ``budget`` decides when a day's spend stops intake,
``workspace`` is where the CLI runs (a directory or a git worktree) and ``runner``
runs the CLI. Everything but the runner and the workspace is pure.
"""
