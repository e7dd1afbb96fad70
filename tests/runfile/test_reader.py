"""RunFile reader: finished files, live files read from another process, and non-run files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from chipctl.runfile import Event, FlushReport, RunFile, RunFileError, RunFileWriter, open_run

PROTOCOL = 'name = "dose"\n'
WAIT_S = 10.0


class FakeNow:
    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def make_writer(path: Path, **kw: Any) -> RunFileWriter:
    args: dict[str, Any] = {
        "chipctl_version": "0.1.0",
        "simulated": True,
        "seed": 5,
        "started_utc": "2026-11-21T06:00:00+00:00",
        "config_text": "[rig]\n",
        "protocol_text": PROTOCOL,
        "protocol_name": "dose",
        "telemetry": {"pump": {"volume_ul": "uL"}, "flow": {"flow_ul_min": "uL/min"}},
        "now_s": FakeNow(),
    }
    args.update(kw)
    return RunFileWriter(path, **args)


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    w = make_writer(tmp_path / "run.h5")
    w.open()
    for i in range(5):
        w.telemetry("pump", float(i), {"volume_ul": i * 2.0})
    w.event(0.0, "engine", "run_started", "go")
    w.event(4.0, "engine", "run_finished", "done ✓")
    w.close("completed", "2026-11-21T06:10:00+00:00")
    return w.path


def test_reads_a_finished_run(finished_run: Path) -> None:
    with open_run(finished_run) as run:
        assert isinstance(run, RunFile)
        assert run.path == finished_run
        assert run.status == "completed"
        assert run.attrs["seed"] == 5
        assert run.attrs["simulated"] is True
        assert run.config_text == "[rig]\n"
        assert run.protocol_text == PROTOCOL
        assert run.protocol_name == "dose"
        assert run.protocol_sha256 == hashlib.sha256(PROTOCOL.encode()).hexdigest()
        assert run.telemetry_devices() == ["flow", "pump"]
        assert run.tables() == ["/events", "/telemetry/flow", "/telemetry/pump"]
        pump = run.telemetry("pump")
        assert pump["t_s"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert pump["volume_ul"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert run.units("pump") == {"t_s": "s", "volume_ul": "uL"}
        assert run.telemetry("flow")["t_s"].size == 0
        assert run.events() == [
            Event(0.0, "engine", "run_started", "go"),
            Event(4.0, "engine", "run_finished", "done ✓"),
        ]
        with pytest.raises(KeyError):
            run.telemetry("nope")


def test_columns_are_cut_to_the_shortest(finished_run: Path) -> None:
    """A reader never returns misaligned columns, even if the writer stopped between them."""
    with h5py.File(finished_run, "r+") as h5:
        ds = h5["telemetry/pump/t_s"]
        ds.resize((7,))
        ds[5:] = [5.0, 6.0]
    with open_run(finished_run) as run:
        data = run.telemetry("pump")
    assert len(data["t_s"]) == len(data["volume_ul"]) == 5


def test_not_a_run_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["x"] = np.arange(3)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    cases = {
        plain: "not a chipctl run file",
        text: "not a readable HDF5 file",
        tmp_path / "missing.h5": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(RunFileError, match=message) as info:
            open_run(path)
        assert "\n" not in str(info.value)
        assert str(path) in str(info.value)


def test_newer_schema_is_refused(finished_run: Path) -> None:
    with h5py.File(finished_run, "r+") as h5:
        h5.attrs["schema_version"] = 99
    with pytest.raises(RunFileError, match="schema version 99 is not supported"):
        open_run(finished_run)


def test_reads_a_copy_of_a_live_file(tmp_path: Path) -> None:
    """A snapshot copied mid-run (as a backup tool would) reads as a running run."""
    w = make_writer(tmp_path / "run.h5")
    w.open()
    try:
        w.telemetry("flow", 0.0, {"flow_ul_min": 1.0})
        w.event(0.0, "engine", "step", "x")
    finally:
        w.close("completed", "x")
    copy = tmp_path / "copy.h5"
    shutil.copy(w.path, copy)
    with open_run(copy) as run:
        assert len(run.events()) == 1


# -- live reading from another process (the SWMR case) ------------------------------------

_FOLLOWER = textwrap.dedent(
    """
    import json, sys
    from chipctl.runfile import open_run
    with open_run(sys.argv[1]) as run:
        for line in sys.stdin:  # one snapshot per line received
            run.refresh()
            pump = run.telemetry("pump")
            print(json.dumps({
                "status": run.status,
                "rows": len(pump["t_s"]),
                "last_volume": float(pump["volume_ul"][-1]) if len(pump["t_s"]) else None,
                "events": [e.message for e in run.events()],
            }), flush=True)
    """
)


class Flushes:
    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, report: FlushReport) -> None:
        with self._cond:
            self.count = report.count
            self._cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= count, timeout=WAIT_S)


def test_another_process_follows_a_live_run(tmp_path: Path) -> None:
    now = FakeNow()
    flushes = Flushes()
    w = make_writer(tmp_path / "live.h5", now_s=now, on_flush=flushes)
    w.open()
    follower = subprocess.Popen(
        [sys.executable, "-c", _FOLLOWER, str(w.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdin is not None and follower.stdout is not None

    def snapshot() -> dict[str, Any]:
        assert follower.stdin is not None and follower.stdout is not None
        follower.stdin.write("\n")
        follower.stdin.flush()
        line = follower.stdout.readline()
        assert line, "the reader process died"
        result: dict[str, Any] = json.loads(line)
        return result

    try:
        assert snapshot() == {"status": "running", "rows": 0, "last_volume": None, "events": []}
        for i in range(100):
            w.telemetry("pump", i * 0.1, {"volume_ul": float(i)})
        w.event(9.9, "engine", "step", "first ✓")
        now.t_s = 1.0
        w.event(10.0, "engine", "tick", "wake")
        flushes.wait_for(1)
        first = snapshot()
        assert first["status"] == "running"
        assert first["rows"] == 100 and first["last_volume"] == 99.0
        assert first["events"][0] == "first ✓"

        for i in range(100, 250):
            w.telemetry("pump", i * 0.1, {"volume_ul": float(i)})
        now.t_s = 2.0
        w.event(25.0, "engine", "tick", "wake")
        flushes.wait_for(2)
        second = snapshot()
        assert second["rows"] == 250 and second["last_volume"] == 249.0

        w.close("completed", "2026-11-21T06:10:00+00:00")  # works while the reader holds the file
        after = snapshot()  # the open reader keeps working; its root attributes are from open
        assert after["rows"] == 250 and after["status"] == "running"
    finally:
        w.close("completed", "2026-11-21T06:10:00+00:00")
        follower.stdin.close()
        follower.wait(timeout=WAIT_S)
    assert follower.returncode == 0
    with open_run(w.path) as run:  # a fresh open sees the final status
        assert run.status == "completed"
