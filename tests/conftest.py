"""Shared fixtures: clocks, the simulated reference rig, temporary run paths."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from drivers.clock import VirtualClock

# Qt tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent

#: Import names of what the ``test`` extra installs beyond the base dependencies. Some test
#: modules skip when a vendor SDK is absent (so a single test file can be run anywhere);
#: this check keeps such skips from hiding an incomplete install of the whole suite.
TEST_EXTRA_MODULES = (
    "hypothesis",
    "nesp_lib",
    "ome_types",
    "hdf5plugin",
    "blosc2",
    "pypylon",
    "harvesters",
    "genicam",
    "pymmcore_plus",
    "PyQt5",
    "pyqtgraph",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail at once, in one line, if the test extra is not fully installed."""
    missing = [name for name in TEST_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.exit(
            f"missing test dependencies {', '.join(missing)}: pip install -e '.[test]'",
            returncode=4,
        )


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at t = 0."""
    return VirtualClock()


@pytest.fixture
def chipctl_cmd() -> list[str]:
    """The command that runs this checkout's CLI in a subprocess."""
    return [sys.executable, "-m", "chipctl"]
