"""The team's duties over time, shared by the watchdog and the control plane (work.py)."""
