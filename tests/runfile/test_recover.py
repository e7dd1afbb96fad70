"""Resume support: inspect a crashed run file, cut it back, append to the same file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from chipctl.runfile import (
    RunFileError,
    RunFileWriter,
    inspect_run,
    layout,
    open_run,
    reopen_for_resume,
)
from chipctl.runfile.images import read_stack
from chipctl.runfile.recover import EVENT_KIND, EVENT_SOURCE, clear_open_flags, lookup3

sys.path.insert(0, str(Path(__file__).parent))
import _crashing_writer as crash

HELPER = Path(__file__).with_name("_crashing_writer.py")
NOW = "2026-11-22T08:00:00+00:00"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


@pytest.fixture(scope="module")
def crashed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run file whose writer was killed (see _crashing_writer.py); copy it before use."""
    path = tmp_path_factory.mktemp("crash") / "template.h5"
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout == "ready\n", proc.stderr[-3000:]
    assert proc.returncode == -9
    return path


@pytest.fixture
def crashed(crashed_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "crashed.h5"
    path.write_bytes(crashed_template.read_bytes())
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the superblock ------------------------------------------------------------------------


def test_lookup3_gives_the_published_values() -> None:
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_lookup3_is_the_checksum_hdf5_writes(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w", libver=layout.LIBVER) as h5:
        h5["x"] = np.arange(3)
    block = path.read_bytes()[:48]
    assert block[8] == 3  # superblock version 3: 44 bytes, then the checksum
    assert lookup3(block[:44]) == int.from_bytes(block[44:48], "little")


def test_a_crashed_file_refuses_r_plus_until_its_flags_are_cleared(crashed: Path) -> None:
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(crashed, "r+")
    assert clear_open_flags(crashed) is True
    with h5py.File(crashed, "r+") as h5:
        assert h5.attrs["status"] == "running"
    assert clear_open_flags(crashed) is False  # closed cleanly now: nothing to do


def test_clear_open_flags_extends_a_file_shorter_than_its_recorded_end(tmp_path: Path) -> None:
    path = tmp_path / "short.h5"
    with h5py.File(path, "w", libver=layout.LIBVER) as h5:
        h5["x"] = np.arange(3)
    size = path.stat().st_size
    block = bytearray(path.read_bytes()[:48])
    block[11] = 0x05  # open for write + SWMR write, as a killed writer leaves it
    block[28:36] = (size + 4096).to_bytes(8, "little")  # its end recorded past the real end
    block[44:48] = lookup3(bytes(block[:44])).to_bytes(4, "little")
    with open(path, "r+b") as fh:
        fh.write(block)
    assert clear_open_flags(path) is True
    assert path.stat().st_size == size + 4096
    with h5py.File(path, "r+") as h5:
        np.testing.assert_array_equal(h5["x"][()], np.arange(3))


def test_clear_open_flags_refuses_what_it_cannot_fix(tmp_path: Path) -> None:
    old = tmp_path / "v0.h5"
    with h5py.File(old, "w", libver="earliest") as h5:
        h5["x"] = 1
    with pytest.raises(RunFileError, match=r"v0.h5: HDF5 superblock version 0"):
        clear_open_flags(old)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w", libver=layout.LIBVER) as h5:
        h5["x"] = 1
    data = bytearray(bad.read_bytes())
    data[11] ^= 0x01  # flags changed, checksum not
    bad.write_bytes(bytes(data))
    with pytest.raises(RunFileError, match="checksum does not match"):
        clear_open_flags(bad)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(RunFileError, match="not an HDF5 file"):
        clear_open_flags(text)


# -- inspecting ----------------------------------------------------------------------------


def test_inspect_reads_the_run_and_changes_nothing(crashed: Path) -> None:
    before = sha256(crashed)
    run = inspect_run(crashed)
    assert sha256(crashed) == before
    assert run.status == "running"
    assert run.config_text == '[rig]\nname = "crash"\n'
    assert run.protocol_text == "steps = []  # ✓\n"
    assert run.protocol_name == "crash"
    assert (run.seed, run.simulated, run.clock) == (11, True, "virtual")
    assert run.started_utc == "2026-11-21T06:00:00+00:00"
    assert run.flush_interval_s == 1.0
    assert run.resumed_utc == ()
    assert run.attrs["instrument"] == "bench-1"
    assert run.telemetry == {"pump": {"volume_ul": "uL", "rate_ul_min": "uL/min"}}
    assert run.complete_before_t_s == run.last_t_s == crash.FLUSHED_T_S
    assert run.tables[layout.EVENTS].rows >= 11  # ten seconds and the wake event
    assert run.tables[crash.VIABILITY].columns["well"][0] == layout.utf8(8)
    assert run.tables[crash.VIABILITY].columns["live"] == (np.dtype(np.float32), "1")
    assert run.tables[crash.NOTES].last_t_s is None  # a table without time
    stack = run.stacks[crash.STACK]
    assert (stack.shape, stack.dtype, stack.units) == (crash.SHAPE, np.dtype(np.uint16), "ADU")
    assert stack.meta_path == crash.STACK + "_meta" and stack.attrs == {"channel": "bf"}
    assert run.stacks[crash.STREAM + "/frames"].meta_path == crash.STREAM + "/meta"
    assert set(run.stacks) == {crash.STACK, crash.STREAM + "/frames"}


def test_inspect_refuses_what_is_not_a_run_file(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"missing\.h5: no such file"):
        inspect_run(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = 1
    with pytest.raises(RunFileError, match=r"other\.h5: not a chipctl run file"):
        inspect_run(other)


# -- cutting and appending -----------------------------------------------------------------


def test_resume_cuts_at_the_mark_and_appends_to_the_same_file(crashed: Path) -> None:
    reopened = reopen_for_resume(crashed, resumed_utc=NOW, now_s=lambda: 0.0)
    assert reopened.cut_t_s == crash.FLUSHED_T_S
    assert reopened.resumed_count == 1
    kept = reopened.kept
    assert kept["/telemetry/pump"] == kept[crash.STACK] == kept[crash.STREAM + "/frames"] == 10
    assert kept[crash.VIABILITY] == 4  # t = 0, 3, 6, 9
    assert kept[layout.EVENTS] == 10  # the wake event at 9.5 itself is redone
    assert "resumed after a crash (resume 1): kept every record before t=9.5 s" in (
        reopened.summary()
    )
    with h5py.File(crashed, "r") as h5:  # cut and closed cleanly: a plain open works
        assert h5.attrs["status"] == "running"
        assert len(h5["images/p0/bf"]) == len(h5["images/p0/bf_meta/t_s"]) == 10

    writer = reopened.writer
    writer.declare_table("/analysis/after", {"t_s": (np.float64, "s"), "x": (np.float64, "1")})
    assert reopened.open() is writer
    with h5py.File(crashed, "r", swmr=True) as live:  # SWMR again: readable while written
        assert live.attrs["resumed_count"] == 1
    for t in range(10, 13):
        crash.write_second(writer, t)
    writer.append_rows("/analysis/after", {"t_s": [12.0], "x": [1.0]})
    writer.close("completed", "2026-11-22T09:00:00+00:00")

    with open_run(crashed) as run:
        assert run.status == "completed"
        assert run.attrs["resumed_count"] == 1 and run.attrs["resumed_utc"] == [NOW]
        assert run.clock == "virtual"
        pump = run.telemetry("pump")
        np.testing.assert_array_equal(pump["t_s"], np.arange(13.0))
        np.testing.assert_array_equal(pump["volume_ul"], np.arange(13.0))
        frames, meta = read_stack(run, "p0", "bf")
        np.testing.assert_array_equal(meta["frame"], np.arange(13))
        for k in range(13):
            np.testing.assert_array_equal(frames[k], crash.frame(k))
        stream = run.frames(crash.STREAM + "/frames")[()]
        np.testing.assert_array_equal(stream[:, 0, 0], np.arange(13))
        np.testing.assert_array_equal(run.table(crash.VIABILITY)["t_s"], [0, 3, 6, 9, 12])
        notes = run.table(crash.NOTES)["n"]
        np.testing.assert_array_equal(notes[-3:], [10, 11, 12])  # no time: nothing cut
        events = run.events()
        resumed = [e for e in events if e.source == EVENT_SOURCE]
        assert [(e.kind, e.t_s) for e in resumed] == [(EVENT_KIND, crash.FLUSHED_T_S)]
        steps = [e.message for e in events if e.kind == "step"]
        assert steps == [f"second {t}" for t in range(13)]
        assert run.table("/analysis/after")["x"].tolist() == [1.0]
    with h5py.File(crashed, "r") as h5:
        assert h5[layout.COMPLETE_BEFORE][0] == 12.0  # the last record: the file is whole


def test_a_resumed_writer_accepts_the_sessions_declarations_again(crashed: Path) -> None:
    """The session declares its tables and stacks as for a new run: same layout accepted."""
    reopened = reopen_for_resume(crashed, resumed_utc=NOW)
    writer = reopened.writer
    # The declarations of a new run (those of _crashing_writer.make_writer), made again:
    writer.declare_frames(crash.STACK, crash.SHAPE, np.uint16, "ADU", flush_every_frames=1)
    meta = {"t_s": (np.float64, "s"), "frame": (np.int64, "1")}
    writer.declare_table(crash.STACK + "_meta", meta)
    writer.declare_table(
        crash.VIABILITY,
        {"t_s": (np.float64, "s"), "well": (layout.utf8(8), ""), "live": (np.float32, "1")},
    )
    with pytest.raises(ValueError, match=r"table /analysis/notes is in the run file with"):
        writer.declare_table(crash.NOTES, {"n": (np.float64, "1")})
    with pytest.raises(ValueError, match=r"frame stack /images/p0/bf is in the run file as"):
        writer.declare_frames(crash.STACK, crash.SHAPE, np.uint8, "ADU")
    with pytest.raises(ValueError, match="overlaps"):  # a new path still may not overlap
        writer.declare_table(crash.STACK + "/x", {"t_s": (np.float64, "s")})
    reopened.open()
    crash.write_second(writer, 10)
    writer.close("completed", "x")
    with open_run(crashed) as run:
        frames, meta = read_stack(run, "p0", "bf")
        assert len(frames) == 11 and meta["frame"].tolist() == list(range(11))


def test_resume_at_an_earlier_safe_point(crashed: Path) -> None:
    reopened = reopen_for_resume(crashed, cut_t_s=5.5, resumed_utc=NOW)
    assert reopened.cut_t_s == 5.5
    assert reopened.kept["/telemetry/pump"] == 6
    assert reopened.kept[crash.STACK] == reopened.kept[crash.STACK + "_meta"] == 6
    assert reopened.kept[crash.STREAM + "/frames"] == reopened.kept[crash.STREAM + "/meta"] == 6
    assert reopened.kept[crash.VIABILITY] == 2
    assert reopened.dropped["/telemetry/pump"] == 4
    assert "dropped" in reopened.summary()
    with open_run(crashed) as run:
        assert run.telemetry("pump")["t_s"].tolist() == [0, 1, 2, 3, 4, 5]
    with h5py.File(crashed, "r") as h5:
        assert h5[layout.COMPLETE_BEFORE][0] == 5.5  # the mark follows the cut
    # A second crash before the resumed writer flushes finds the same cut.
    assert inspect_run(crashed).last_t_s == 5.5


def test_resume_refuses_a_cut_after_the_complete_part(crashed: Path) -> None:
    before = sha256(crashed)
    with pytest.raises(RunFileError) as info:
        reopen_for_resume(crashed, cut_t_s=11.0)
    assert str(info.value) == (
        f"{crashed}: cannot resume from t=11 s: the file is complete only before t=9.5 s"
    )
    assert sha256(crashed) == before  # refused before anything was changed


def test_resume_refuses_a_run_that_ended(tmp_path: Path) -> None:
    writer = crash.make_writer(tmp_path / "done.h5", crash.Now())
    writer.open()
    writer.close("aborted", "x")
    with pytest.raises(RunFileError, match=r"the run ended \(aborted\)"):
        reopen_for_resume(writer.path)


def test_resume_refuses_while_the_writer_still_runs(tmp_path: Path) -> None:
    writer = crash.make_writer(tmp_path / "live.h5", crash.Now())
    writer.open()
    try:
        crash.write_second(writer, 0)
        with pytest.raises(RunFileError, match="still writing this run file"):
            reopen_for_resume(writer.path)
    finally:
        writer.close("completed", "x")
    with open_run(writer.path) as run:
        assert run.status == "completed"
        assert len(run.telemetry("pump")["t_s"]) == 1


def test_appending_needs_the_cut_and_the_same_layout(crashed: Path) -> None:
    telemetry = {"pump": {"volume_ul": "uL", "rate_ul_min": "uL/min"}}
    writer = RunFileWriter.appending(crashed, telemetry=telemetry, set_attrs={})
    with pytest.raises(RunFileError, match="reopen_for_resume first"):
        writer.open()
    reopen_for_resume(crashed)  # cut, then closed cleanly (status still running)
    wrong = RunFileWriter.appending(crashed, telemetry=telemetry, set_attrs={})
    wrong.declare_frames(crash.STACK, (8, 7), np.uint16, "ADU")
    with pytest.raises(RunFileError, match=r"frame stack /images/p0/bf: \(8, 6\) uint16"):
        wrong.open()
    renamed = RunFileWriter.appending(crashed, telemetry=telemetry, set_attrs={})
    renamed.declare_table(crash.NOTES, {"m": (np.int64, "1")})
    with pytest.raises(RunFileError, match=r"table /analysis/notes: columns \['n'\]"):
        renamed.open()
    with pytest.raises(ValueError, match="cannot be changed"):
        RunFileWriter.appending(crashed, telemetry=telemetry, set_attrs={"format": "x"})


def test_a_file_without_mark_is_cut_at_its_earliest_last_row(tmp_path: Path) -> None:
    now = crash.Now()
    writer = crash.make_writer(tmp_path / "old.h5", now)
    writer.open()
    for t in range(5):
        crash.write_second(writer, t)
    writer.telemetry("pump", 5.0, {"volume_ul": 5.0})  # only the pump got further
    writer.close("running", "")  # as a crash, but closed: status still running
    with h5py.File(writer.path, "r+") as h5:
        del h5[layout.COMPLETE_BEFORE]  # a file from before the mark existed
    run = inspect_run(writer.path)
    assert run.complete_before_t_s is None
    # The earliest of the tables' last times: the viability table, with a row only every
    # third second, holds the cut back to t = 3 although everything up to 4 (the pump: 5) is
    # there. The completeness mark exists to avoid exactly this.
    assert run.last_t_s == 3.0
    reopened = reopen_for_resume(writer.path)
    assert reopened.kept["/telemetry/pump"] == 3  # t = 0, 1, 2: the run is redone from 3
    reopened.open()
    reopened.writer.close("completed", "x")
    with h5py.File(writer.path, "r") as done:
        assert done[layout.COMPLETE_BEFORE][0] == 3.0  # created on append; the resumed event


def test_clock_mode_is_recorded(tmp_path: Path) -> None:
    writer = crash.make_writer(tmp_path / "clock.h5", crash.Now())
    writer.open()
    writer.close("completed", "x")
    with open_run(writer.path) as run:
        assert run.clock == "virtual"
        assert run.attrs[layout.ATTR_FLUSH_INTERVAL_S] == 1.0
    with pytest.raises(ValueError, match="'clock' would overwrite"):
        RunFileWriter(
            tmp_path / "both.h5",
            chipctl_version="0",
            simulated=True,
            seed=None,
            started_utc="",
            config_text="",
            protocol_text="",
            protocol_name="p",
            telemetry={},
            clock="real",
            extra_attrs={"clock": "virtual"},
        )
