"""A full disk while frames are written: one clear error, nothing flushed is lost, no crash.

The disk is emulated by a file size limit in a subprocess (``_full_disk_writer.py``): every
write past it fails with EFBIG exactly where a full disk fails with ENOSPC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.runfile import (
    disk_free_bytes,
    inspect_run,
    open_run,
    reopen_for_resume,
)
from chipctl.runfile.images import read_stack

sys.path.insert(0, str(Path(__file__).parent))
import _full_disk_writer as helper

HELPER = Path(__file__).with_name("_full_disk_writer.py")
LIMIT_BYTES = 2_000_000


def fill_the_disk(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, int]:
    """Run the helper until its "disk" is full; return (flush reports, errors, stderr, rc)."""
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(path), str(LIMIT_BYTES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    reports = [line for line in lines if "count" in line]
    errors = [line for line in lines if "where" in line]
    return reports, errors, proc.stderr, proc.returncode


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics")
def test_disk_full_while_writing_frames(tmp_path: Path) -> None:
    path = tmp_path / "full.h5"
    reports, errors, stderr, returncode = fill_the_disk(path)

    # The process ends normally: no crash of HDF5 at exit, no error printed by a destructor.
    assert returncode == 0, stderr[-3000:]
    assert stderr == ""
    # One clear line, to the producer and again from close(), naming the file and the cause.
    assert [e["where"] for e in errors] == ["producer", "close"], errors
    for e in errors:
        assert e["type"] == "DiskFullError"
        message = e["message"]
        assert "\n" not in message
        assert message.startswith(f"{path}: disk full while writing ")
        assert "(File too large, EFBIG)" in message
        assert "the file keeps every record before t=" in message
    assert len(reports) >= 3, "the writer should have flushed a few times before the limit"
    last = reports[-1]
    assert path.stat().st_size <= LIMIT_BYTES

    # Everything reported flushed before the fault is in the file, exactly as written.
    with open_run(path) as run:
        assert run.status == "running"  # like a killed run: the status could not be written
        samples = run.telemetry("s")
        frames, meta = read_stack(run, "p0", "bf")
        n, k = len(samples["t_s"]), len(meta["t_s"])
        assert n >= last["rows"]["/telemetry/s"]
        assert k >= last["rows"][helper.STACK]
        np.testing.assert_array_equal(samples["a"], np.arange(n, dtype=float))
        np.testing.assert_array_equal(meta["frame"], np.arange(k))
        for index in range(k):
            np.testing.assert_array_equal(frames[index], helper.frame(index))
    crashed = inspect_run(path)
    assert crashed.last_t_s is not None and crashed.last_t_s >= last["complete_t_s"]

    # Once there is space again, the run resumes in the same file.
    reopened = reopen_for_resume(path, now_s=lambda: 0.0)
    writer = reopened.open()
    n0, k0 = reopened.kept["/telemetry/s"], reopened.kept[helper.STACK]
    for i in range(n0, n0 + 20):
        writer.telemetry("s", i / 100, {"a": float(i)})
    writer.append_frame(helper.STACK, helper.frame(k0))
    writer.append_rows(helper.META, {"t_s": [n0 / 100], "frame": [k0]})
    writer.close("completed", "2026-11-21T06:00:02+00:00")
    with open_run(path) as run:
        assert run.status == "completed"
        a = run.telemetry("s")["a"]
        np.testing.assert_array_equal(a, np.arange(n0 + 20, dtype=float))
        frames, meta = read_stack(run, "p0", "bf")
        assert len(frames) == k0 + 1
        np.testing.assert_array_equal(frames[k0], helper.frame(k0))


def test_disk_free_bytes_asks_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = disk_free_bytes(tmp_path / "not" / "yet" / "run.h5")
    reference = shutil.disk_usage(tmp_path).free
    assert abs(free - reference) < 64 * 2**20  # other processes write meanwhile
    assert free > 0
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a file where a folder is expected: its own folder is asked
    assert abs(disk_free_bytes(blocker / "run.h5") - reference) < 64 * 2**20
