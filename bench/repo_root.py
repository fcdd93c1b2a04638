"""Importing this puts the repository root first on sys.path.

The bench scripts run as ``python bench/<script>.py``, which puts only bench/ on the path;
importing this module first lets them import ``tests.harness``, and ``coffee_team`` from this
checkout even where another copy is installed.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
