"""Shared fixtures: clocks, the simulated reference rig, temporary run paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from drivers.clock import VirtualClock

# Qt tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at t = 0."""
    return VirtualClock()


@pytest.fixture
def chipctl_cmd() -> list[str]:
    """The command that runs this checkout's CLI in a subprocess."""
    return [sys.executable, "-m", "chipctl"]
