"""RunFileWriter: layout, units, events, telemetry blocks, flush timing, errors, determinism."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from chipctl.runfile import (
    DiskFullError,
    FlushReport,
    RunFileError,
    RunFileWriter,
    layout,
    open_run,
)

CONFIG = '[rig]\nname = "bench-1"\n# ünïcode comment\n'
PROTOCOL = 'name = "dose"\n[[steps]]\naction = "infuse"\nrate = "5 uL/min"\n'
TELEMETRY = {
    "pump_a": {"rate_ul_min": "uL/min", "volume_ul": "uL"},
    "flow": {"flow_ul_min": "uL/min", "temperature_c": "degC"},
}
WAIT_S = 10.0  # generous bound on real waits for the writer thread; never reached when green


class FakeNow:
    """A settable time source for the writer's flush deadline."""

    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


class Flushes:
    """Collects flush reports; lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.reports: list[FlushReport] = []
        self._cond = threading.Condition()

    def __call__(self, report: FlushReport) -> None:
        with self._cond:
            self.reports.append(report)
            self._cond.notify_all()

    def wait_for(self, count: int) -> FlushReport:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.reports) >= count, timeout=WAIT_S)
        assert ok, f"flush {count} never came (got {len(self.reports)})"
        return self.reports[count - 1]


def make_writer(path: Path, **kw: Any) -> RunFileWriter:
    args: dict[str, Any] = {
        "chipctl_version": "0.1.0",
        "simulated": True,
        "seed": 42,
        "started_utc": "2026-11-21T06:00:00+00:00",
        "config_text": CONFIG,
        "protocol_text": PROTOCOL,
        "protocol_name": "dose",
        "telemetry": TELEMETRY,
        "now_s": FakeNow(),
    }
    args.update(kw)
    return RunFileWriter(path, **args)


def all_datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    h5.visititems(visit)
    return found


# -- layout -------------------------------------------------------------------------------


def test_layout_and_root_attributes(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "deep" / "run.h5"  # parent directories are created
    w = make_writer(path)
    assert not path.exists(), "__init__ must do no I/O"
    w.open()
    assert w.path == path
    with h5py.File(path, "r", swmr=True) as h5:  # while running
        assert h5.attrs["status"] == "running"
        assert h5.attrs["ended_utc"] == ""
    w.close("completed", "2026-11-21T07:00:00+00:00")

    with h5py.File(path, "r") as h5:  # a plain open works once closed
        attrs = dict(h5.attrs)
        assert attrs["format"] == layout.FORMAT_NAME
        assert attrs["schema_version"] == layout.SCHEMA_VERSION
        assert attrs["chipctl_version"] == "0.1.0"
        assert attrs["status"] == "completed"
        assert bool(attrs["simulated"]) is True
        assert attrs["started_utc"] == "2026-11-21T06:00:00+00:00"
        assert attrs["ended_utc"] == "2026-11-21T07:00:00+00:00"
        assert attrs["seed"] == 42
        for group in ("config", "protocol", "events", "telemetry", "images", "analysis"):
            assert isinstance(h5[group], h5py.Group), group
        assert h5["config/text"].asstr()[()] == CONFIG
        source = h5["protocol/source"]
        assert source.asstr()[()] == PROTOCOL
        assert source.attrs["sha256"] == hashlib.sha256(PROTOCOL.encode()).hexdigest()
        assert h5["protocol"].attrs["name"] == "dose"
        assert sorted(h5["telemetry"]) == ["flow", "pump_a"]
        assert sorted(h5["telemetry/pump_a"]) == ["rate_ul_min", "t_s", "volume_ul"]
        assert sorted(h5["events"]) == ["kind", "message", "source", "t_s"]


def test_seed_none_is_minus_one(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5", seed=None, simulated=False)
    w.open()
    w.close("aborted", "2026-11-21T06:30:00+00:00")
    with open_run(w.path) as run:
        assert run.attrs["seed"] == -1
        assert run.attrs["simulated"] is False
        assert run.status == "aborted"


def test_every_dataset_has_units_and_explicit_chunks(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    w.declare_table("/analysis/viability", {"t_s": (np.float64, "s"), "live": (np.float32, "1")})
    w.declare_frames("/images/pos0/bf", (8, 6), np.uint16, "ADU")
    w.open()
    w.close("completed", "x")
    with h5py.File(w.path, "r") as h5:
        datasets = all_datasets(h5)
        # text 2, events 4, completeness mark 1, telemetry 3 + 3, analysis 2, frames 1
        assert len(datasets) == 16
        for name, ds in datasets.items():
            assert "units" in ds.attrs, name
            if name.endswith("/t_s"):
                assert ds.attrs["units"] == "s", name
        for device, quantities in TELEMETRY.items():
            for quantity, units in quantities.items():
                assert h5[f"telemetry/{device}/{quantity}"].attrs["units"] == units
        assert h5["telemetry/pump_a/t_s"].chunks == (layout.TELEMETRY_CHUNK_ROWS,)
        assert h5["events/message"].chunks == (layout.EVENTS_CHUNK_ROWS,)
        assert h5["images/pos0/bf"].chunks == (1, 8, 6)
        assert h5["analysis/viability/live"].attrs["units"] == "1"
        assert h5["telemetry/pump_a/rate_ul_min"].compression is None  # h5py #980


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    path.write_bytes(b"precious")
    w = make_writer(path)
    with pytest.raises(RunFileError, match="refusing to overwrite"):
        w.open()
    assert path.read_bytes() == b"precious"


# -- producer-side validation and lifecycle -----------------------------------------------


def test_unknown_device_or_quantity_raises_at_call_time(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    w.open()
    try:
        with pytest.raises(ValueError, match="undeclared device 'pump_b'"):
            w.telemetry("pump_b", 0.0, {"rate_ul_min": 1.0})
        with pytest.raises(ValueError, match="undeclared quantity 'pressure_kpa'"):
            w.telemetry("pump_a", 0.0, {"pressure_kpa": 1.0})
        with pytest.raises(ValueError, match="undeclared quantity 't_s'"):
            w.telemetry("pump_a", 0.0, {"t_s": 1.0})
        with pytest.raises(ValueError):
            w.telemetry("pump_a", 0.0, {"rate_ul_min": "fast"})  # type: ignore[dict-item]
        w.telemetry("pump_a", 1.0, {"rate_ul_min": 2.0})  # volume missing -> NaN
    finally:
        w.close("completed", "x")
    with open_run(w.path) as run:
        data = run.telemetry("pump_a")
        assert data["t_s"].tolist() == [1.0]
        assert data["rate_ul_min"].tolist() == [2.0]
        assert np.isnan(data["volume_ul"][0])


def test_calls_before_open_and_after_close(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    with pytest.raises(RunFileError, match="not open"):
        w.event(0.0, "engine", "step", "x")
    w.open()
    with pytest.raises(RunFileError, match="opened twice"):
        w.open()
    with pytest.raises(RunFileError, match="after open"):
        w.declare_table("/analysis/late", {"x": (np.float64, "1")})
    with pytest.raises(ValueError):
        w.close("finished", "x")  # not a status
    w.close("completed", "2026-11-21T07:00:00+00:00")
    w.close("failed", "later")  # idempotent: the first close wins
    with pytest.raises(RunFileError, match="closed"):
        w.telemetry("flow", 0.0, {"flow_ul_min": 1.0})
    with open_run(w.path) as run:
        assert run.status == "completed"
        assert run.attrs["ended_utc"] == "2026-11-21T07:00:00+00:00"


def test_declare_validation(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    with pytest.raises(ValueError, match="overlaps"):
        w.declare_table("/events", {"x": (np.float64, "1")})
    with pytest.raises(ValueError, match="overlaps"):
        w.declare_table("/telemetry/flow/extra", {"x": (np.float64, "1")})
    with pytest.raises(ValueError, match="overlaps"):
        w.declare_frames("/config/text", (2, 2), np.uint8, "ADU")
    with pytest.raises(ValueError, match="neither numeric"):
        w.declare_table("/analysis/bad", {"x": (object, "")})
    with pytest.raises(ValueError, match="invalid run-file path"):
        w.declare_table("analysis//bad", {"x": (np.float64, "1")})
    with pytest.raises(ValueError, match="invalid device name"):
        make_writer(tmp_path / "r2.h5", telemetry={"a/b": {"x": "1"}})


# -- events -------------------------------------------------------------------------------


def test_events_round_trip_unicode_and_truncation(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    w.open()
    long_message = "dépassement ✓ " * 400  # ~6 kB of multi-byte UTF-8
    w.event(0.0, "engine", "run_started", "")
    w.event(1.5, "pümpe_β", "alarm", "stall détecté: 圧力 高い ⚠")
    w.event(2.0, "s" * 100, "k" * 100, long_message)
    w.close("completed", "x")
    with open_run(w.path) as run:
        events = run.events()
    assert [e.t_s for e in events] == [0.0, 1.5, 2.0]
    assert events[0].message == ""
    assert (events[1].source, events[1].kind) == ("pümpe_β", "alarm")
    assert events[1].message == "stall détecté: 圧力 高い ⚠"
    cut = events[2]
    assert cut.source.startswith("sss") and cut.source.endswith(layout.TRUNCATION_MARKER)
    assert len(cut.source.encode()) <= layout.EVENT_SOURCE_BYTES
    assert len(cut.kind.encode()) <= layout.EVENT_KIND_BYTES
    assert cut.message.endswith(layout.TRUNCATION_MARKER)
    body = cut.message.removesuffix(layout.TRUNCATION_MARKER)
    assert long_message.startswith(body)  # cut on a character boundary, nothing garbled
    assert len(cut.message.encode()) <= layout.EVENT_MESSAGE_BYTES
    assert len(body) > 200


def test_event_strings_are_fixed_length_utf8(tmp_path: Path) -> None:
    """Other HDF5 tools see plain fixed-length UTF-8 strings (no vlen heap under SWMR)."""
    w = make_writer(tmp_path / "run.h5")
    w.open()
    w.event(0.0, "engine", "step", "ünïcode")
    w.close("completed", "x")
    with h5py.File(w.path, "r") as h5:
        tid = h5["events/message"].id.get_type()
        assert isinstance(tid, h5py.h5t.TypeStringID)
        assert not tid.is_variable_str()
        assert tid.get_cset() == h5py.h5t.CSET_UTF8
        assert tid.get_size() == layout.EVENT_MESSAGE_BYTES


# -- telemetry blocks and flush timing ----------------------------------------------------


def test_telemetry_is_written_in_blocks(tmp_path: Path) -> None:
    flushes = Flushes()
    w = make_writer(tmp_path / "run.h5", on_flush=flushes)
    w.open()
    n = 10_000
    for i in range(n):
        w.telemetry("pump_a", i * 0.1, {"rate_ul_min": 5.0, "volume_ul": float(i)})
    w.close("completed", "x")  # the fake clock never moved: only full blocks and the final drain
    report = flushes.reports[-1]
    assert len(flushes.reports) == 1
    assert report.rows["/telemetry/pump_a"] == n
    blocks = -(-n // layout.TELEMETRY_CHUNK_ROWS)
    assert report.appends["/telemetry/pump_a"] == blocks
    with open_run(w.path) as run:
        data = run.telemetry("pump_a")
    np.testing.assert_array_equal(data["volume_ul"], np.arange(n, dtype=float))
    np.testing.assert_allclose(data["t_s"], np.arange(n) * 0.1)


def test_flushes_once_per_interval_of_the_injected_clock(tmp_path: Path) -> None:
    now = FakeNow()
    flushes = Flushes()
    w = make_writer(tmp_path / "run.h5", now_s=now, on_flush=flushes, flush_interval_s=1.0)
    w.open()
    try:
        rows = 0
        for k in range(1, 4):
            for _ in range(25):  # clock frozen: buffered, not flushed
                w.telemetry("flow", rows, {"flow_ul_min": 1.0, "temperature_c": 37.0})
                rows += 1
            now.t_s += 1.0  # the interval passes ...
            w.event(now.t_s, "engine", "tick", str(k))  # ... and the next item wakes the writer
            report = flushes.wait_for(k)
            assert report.count == k  # exactly one flush per interval
            # Every row submitted before the deadline is in that flush (the writer takes in
            # what is queued before flushing), written as one block, not row by row. The tick
            # event itself may land in this flush or the next: the writer can see the deadline
            # before it is queued.
            assert report.rows["/telemetry/flow"] == rows
            assert report.appends["/telemetry/flow"] == k
            assert report.rows["/events"] in (k - 1, k)
    finally:
        w.close("completed", "x")
    assert len(flushes.reports) == 4  # + the final flush at close
    assert flushes.reports[-1].rows["/events"] == 3


def test_real_clock_flushes_without_any_call(tmp_path: Path) -> None:
    """With the default (real) clock, buffered rows reach the disk on the writer's own timer."""
    flushes = Flushes()
    w = make_writer(tmp_path / "run.h5", now_s=None, on_flush=flushes, flush_interval_s=0.05)
    w.open()
    try:
        w.telemetry("flow", 0.0, {"flow_ul_min": 3.0})
        assert flushes.wait_for(1).rows["/telemetry/flow"] == 1
    finally:
        w.close("completed", "x")


# -- generic tables and frames ------------------------------------------------------------


def test_declared_table_and_frames_round_trip(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "run.h5")
    w.declare_table(
        "/analysis/viability",
        {"t_s": (np.float64, "s"), "well": (layout.utf8(16), ""), "live": (np.float32, "1")},
    )
    w.declare_frames("/images/pos0/gfp", (4, 3), np.uint16, "ADU")
    w.open()
    buf = np.array([0.5, 0.25], dtype=np.float32)
    w.append_rows("/analysis/viability", {"t_s": [10.0, 20.0], "well": ["A1", "B2"], "live": buf})
    buf[:] = 0  # the writer copied it
    w.append_rows("/analysis/viability", {"t_s": [30.0], "well": ["C3"], "live": [1.0]})
    frame = np.arange(12, dtype=np.uint16).reshape(4, 3)
    w.append_frame("/images/pos0/gfp", frame)
    w.append_frame("/images/pos0/gfp", frame * 2)
    with pytest.raises(ValueError, match="do not match"):
        w.append_rows("/analysis/viability", {"t_s": [1.0]})
    with pytest.raises(ValueError, match="different lengths"):
        w.append_rows("/analysis/viability", {"t_s": [1.0], "well": [], "live": [1.0]})
    with pytest.raises(ValueError, match="frame shape"):
        w.append_frame("/images/pos0/gfp", np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not a declared table"):
        w.append_rows("/events", {"t_s": [1.0]})
    w.close("completed", "x")
    with open_run(w.path) as run:
        table = run.table("/analysis/viability")
        assert table["t_s"].tolist() == [10.0, 20.0, 30.0]
        assert table["well"].tolist() == ["A1", "B2", "C3"]
        assert table["live"].tolist() == [0.5, 0.25, 1.0]
        assert run.table_units("/analysis/viability") == {"t_s": "s", "well": "", "live": "1"}
        frames = run.frames("/images/pos0/gfp")
        assert frames.shape == (2, 4, 3)
        np.testing.assert_array_equal(frames[1], frame * 2)


# -- determinism --------------------------------------------------------------------------


def _scripted_run(path: Path, flush_every_call: bool) -> None:
    now = FakeNow()
    w = make_writer(path, now_s=now, flush_interval_s=1.0)
    w.open()
    rng = np.random.default_rng(7)
    for i in range(3000):
        if flush_every_call:
            now.t_s += 2.0  # a different flush/block pattern must not change the contents
        w.telemetry("pump_a", i * 0.5, {"rate_ul_min": float(rng.normal()), "volume_ul": i})
        if i % 97 == 0:
            w.event(i * 0.5, "engine", "step", f"step {i} ✓")
    w.close("completed", "2026-11-21T07:00:00+00:00")


def test_same_calls_give_identical_datasets(tmp_path: Path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _scripted_run(a, flush_every_call=False)
    _scripted_run(b, flush_every_call=True)
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        da, db = all_datasets(ha), all_datasets(hb)
        assert sorted(da) == sorted(db)
        assert ha["complete_before_t_s"][0] == 2999 * 0.5  # the last record's time
        for name in da:
            assert da[name].dtype == db[name].dtype, name
            np.testing.assert_array_equal(da[name][()], db[name][()], err_msg=name)
            assert dict(da[name].attrs) == dict(db[name].attrs), name
        assert dict(ha.attrs) == dict(hb.attrs)


# -- producers never wait for the disk ---------------------------------------------------


def test_producers_do_not_wait_for_a_stalled_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = FakeNow()
    w = make_writer(tmp_path / "run.h5", now_s=now)
    w.open()
    entered, release = threading.Event(), threading.Event()
    real_resize = h5py.Dataset.resize

    def stalled_resize(self: h5py.Dataset, *args: Any, **kwargs: Any) -> None:
        entered.set()
        assert release.wait(WAIT_S)
        real_resize(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "resize", stalled_resize)
    try:
        now.t_s = 5.0
        w.event(5.0, "engine", "tick", "wake the writer")
        assert entered.wait(WAIT_S)  # the writer thread is now stuck inside h5py
        for i in range(5000):  # ... and the producer carries on regardless
            w.telemetry("flow", float(i), {"flow_ul_min": 1.0, "temperature_c": 37.0})
        assert not release.is_set()
    finally:
        release.set()
        w.close("completed", "x")
    with open_run(w.path) as run:
        assert len(run.telemetry("flow")["t_s"]) == 5000
        assert len(run.events()) == 1


# -- writer-thread failures ---------------------------------------------------------------


def test_writer_failure_is_raised_from_next_call_and_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = FakeNow()
    w = make_writer(tmp_path / "run.h5", now_s=now)
    w.open()
    w.telemetry("flow", 0.0, {"flow_ul_min": 1.0})

    def no_space(self: h5py.Dataset, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "resize", no_space)
    now.t_s = 5.0
    w.event(5.0, "engine", "tick", "wake the writer")  # the writer now writes, and fails
    thread = w._thread
    assert thread is not None
    thread.join(WAIT_S)
    assert not thread.is_alive()
    with pytest.raises(DiskFullError) as info:
        w.telemetry("flow", 6.0, {"flow_ul_min": 1.0})
    message = str(info.value)
    assert message.startswith(f"{w.path}: disk full while writing /")
    assert "(No space left on device, ENOSPC)" in message
    assert isinstance(info.value.__cause__, OSError)
    assert isinstance(w.failure, DiskFullError) and str(w.failure) == message
    with pytest.raises(DiskFullError, match="No space left on device"):
        w.close("failed", "x")
    w.close("failed", "x")  # nothing more to report


def test_a_failing_callback_is_named_and_the_file_stays_whole(tmp_path: Path) -> None:
    """An exception from on_flush is not an I/O error: the file is flushed and closed cleanly."""
    now = FakeNow()

    def on_flush(report: FlushReport) -> None:
        raise OSError(32, "Broken pipe")  # e.g. a monitor printing to a closed pipe

    w = make_writer(tmp_path / "run.h5", now_s=now, on_flush=on_flush)
    w.open()
    w.telemetry("flow", 0.0, {"flow_ul_min": 1.0})
    now.t_s = 5.0
    w.event(5.0, "engine", "tick", "wake the writer")
    thread = w._thread
    assert thread is not None
    thread.join(WAIT_S)
    failure = w.failure
    assert failure is not None and not isinstance(failure, DiskFullError)
    assert "in the callback test_a_failing_callback" in str(failure)
    assert "Broken pipe" in str(failure) and "\n" not in str(failure)
    with pytest.raises(RunFileError):
        w.close("failed", "x")
    with h5py.File(w.path, "r") as h5:  # closed cleanly: a plain open works
        assert len(h5["telemetry/flow/t_s"]) == 1
        assert len(h5["events/t_s"]) == 1


def test_append_frame_waits_for_the_disk_instead_of_queueing_without_bound(tmp_path: Path) -> None:
    """Frames beyond MAX_PENDING_FRAMES wait for the writer: memory stays bounded."""
    import threading

    from chipctl.runfile import writer as writer_module

    gate = threading.Event()
    written: list[int] = []

    class SlowWriter(writer_module.RunFileWriter):
        def _write_frame(self, path: str, frame: np.ndarray) -> None:
            gate.wait(10)
            super()._write_frame(path, frame)
            written.append(1)

    w = SlowWriter(
        tmp_path / "slow.h5",
        chipctl_version="t",
        simulated=True,
        seed=0,
        started_utc="t",
        config_text="",
        protocol_text="",
        protocol_name="t",
        telemetry={},
    )
    w.declare_frames("/images/p/c", (4, 4), np.uint16, "ADU")
    w.open()
    producer_done = threading.Event()

    def produce() -> None:
        for _ in range(writer_module.MAX_PENDING_FRAMES + 5):
            w.append_frame("/images/p/c", np.zeros((4, 4), np.uint16))
        producer_done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    # with the writer blocked, the producer stops after MAX_PENDING_FRAMES frames
    assert not producer_done.wait(1.0)
    gate.set()
    assert producer_done.wait(10)
    thread.join()
    w.close("completed", "t")
    assert len(written) == writer_module.MAX_PENDING_FRAMES + 5
