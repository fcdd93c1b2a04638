"""Tests that start no process: they run in the fast tier, pytest -m "not slow"."""
