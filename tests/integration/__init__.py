"""Tests that start processes (supervisord, agents, CLIs, git); each is marked slow."""
