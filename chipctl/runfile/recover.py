"""Resume a run file whose writer died: find how far it is complete, cut it there, append on.

A run whose process was killed (or whose writer stopped on a full disk) leaves a run file with
status "running" and HDF5's "open for (SWMR) writing" flags set in its superblock. Its
contents are consistent (SWMR orders every write so that a reader never sees a dangling
pointer), but HDF5 refuses to open it for writing again: ``h5py.File(path, "r+")`` fails with
"file is already open for write/SWMR write (may use <h5clear file> to clear file consistency
flags)", whatever the ``locking`` and ``swmr`` options (measured, HDF5 2.0 / h5py 3.16).

**Choice: clear the flags in place**, as ``h5clear -s`` does, rather than copy the file.
The superblock (version 2 or 3; run files are version 3, ``libver=v110``) holds the flags in
one byte and a Jenkins lookup3 checksum of itself; :func:`clear_open_flags` zeroes the byte,
makes the stored end-of-file address agree with the real size, and rewrites the checksum: one
48-byte write and one ``fsync``. The file then opens ``r+`` like any other. Measured with
``tests/runfile/test_resume_bench.py`` on a killed file holding 1 GiB of frames (512 x 2 MiB):
the whole in-place resume (inspect, clear, cut, fsync, open the appending writer, close) took
71-106 ms (3 runs; it does not grow with the frames); a plain copy of the same file with
fsync, the least that the alternative (copy the content up to the cut into a fresh file,
replace the original and keep it as ``<name>.crashed.h5``) would cost, took 1.8-8.0 s (the
spread is the VM's page-cache regime, perf-limits §0), 24-113 times more. The copy also needs
as much free disk as the run itself (exactly what is missing after a disk-full failure) and
grows with the run. The price of in place: the original is not kept, so the rows cut off (those
after the cut: at most about one flush interval, ~1 s, when cutting at the mark) are gone;
what is before the cut keeps its bytes in the file, only metadata (extents, superblock) is
rewritten.

What :func:`reopen_for_resume` does, in order:

1. :func:`inspect_run` reads (read-only, ``swmr=True``) the config and protocol text, seed,
   simulated flag, clock mode, start time, and every table's and frame stack's layout, rows
   and last time.
2. It chooses the cut: by default :attr:`CrashedRun.last_t_s`, the latest time before which
   *every* table is complete: the completeness mark (``/complete_before_t_s``, see
   :mod:`chipctl.runfile.layout`) when the file has one, else (files written before the mark
   existed) the earliest of the tables' last row times. A caller may cut earlier
   (``cut_t_s``: the engine's last safe point), never later. The cut is the instant from which
   the run is redone: records *at* it are dropped too (records of one instant may straddle a
   flush, so those on disk may be only some of them).
3. It takes the writer lock (:func:`~chipctl.runfile.writer.lock_for_writing`: refused while
   the process that was writing the file still runs, since HDF5's own lock is gone once SWMR
   starts), clears the flags and cuts every table to its rows up to the last one before the cut
   (rows are in the order they were handed to the writer: time order for each producer);
   tables without a ``t_s`` column are only cut to their shortest column. A frame stack is cut
   with its metadata table (``<stack>_meta``, or ``meta`` beside a stack named ``frames``) to
   the same count, so frame *i* and row *i* still belong together. The mark is set to the cut,
   so a second crash before the resumed writer's first flush finds the same cut.
4. It returns a :class:`ReopenedRun` holding a :class:`~chipctl.runfile.writer.RunFileWriter`
   (from :meth:`~chipctl.runfile.writer.RunFileWriter.appending`) with every existing table and
   stack declared again. The session may declare them once more exactly as for a new run (the
   same layout is accepted, another is a ValueError; see
   :meth:`~chipctl.runfile.writer.RunFileWriter.adopt_existing`) and declare new ones before
   :meth:`ReopenedRun.open`, which records the resume in the root attributes
   (``resumed_count``, ``resumed_utc``: one ISO time per resume), switches SWMR on again, and
   writes a ``runfile``/``resumed`` event.

A run that ended (completed, aborted, failed) is refused: only a run whose process died is
resumed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np

from chipctl.errors import RunFileError
from chipctl.runfile import layout
from chipctl.runfile.framestore import Compression
from chipctl.runfile.writer import FlushReport, RunFileWriter, lock_for_writing, unlock

__all__ = [
    "CrashedRun",
    "ReopenedRun",
    "StackInfo",
    "TableInfo",
    "clear_open_flags",
    "inspect_run",
    "lookup3",
    "reopen_for_resume",
]

#: Source and kind of the event that :meth:`ReopenedRun.open` writes.
EVENT_SOURCE: Final = "runfile"
EVENT_KIND: Final = "resumed"

_SIGNATURE: Final = b"\x89HDF\r\n\x1a\n"
_FLAGS_OFFSET: Final = 11  # signature 8, version, size of offsets, size of lengths, flags
_SCAN_ROWS: Final = 65536  # rows read per step when looking for the cut from a table's end


# -- the superblock ------------------------------------------------------------------------


def lookup3(data: bytes, initval: int = 0) -> int:
    """Return Bob Jenkins' lookup3 ``hashlittle`` of ``data``: HDF5's metadata checksum.

    Written from the published description of lookup3 (2006, public domain); the checks are
    its published test values and the checksum HDF5 stored in a real superblock.
    """
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & mask
    if length == 0:
        return c
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & mask
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & mask
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & mask
        a = ((a - c) & mask) ^ rot(c, 4)
        c = (c + b) & mask
        b = ((b - a) & mask) ^ rot(a, 6)
        a = (a + c) & mask
        c = ((c - b) & mask) ^ rot(b, 8)
        b = (b + a) & mask
        a = ((a - c) & mask) ^ rot(c, 16)
        c = (c + b) & mask
        b = ((b - a) & mask) ^ rot(a, 19)
        a = (a + c) & mask
        c = ((c - b) & mask) ^ rot(b, 4)
        b = (b + a) & mask
        i += 12
    tail = data[i:].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    c = ((c ^ b) - rot(b, 14)) & mask
    a = ((a ^ c) - rot(c, 11)) & mask
    b = ((b ^ a) - rot(a, 25)) & mask
    c = ((c ^ b) - rot(b, 16)) & mask
    a = ((a ^ c) - rot(c, 4)) & mask
    b = ((b ^ a) - rot(a, 14)) & mask
    c = ((c ^ b) - rot(b, 24)) & mask
    return c


def _find_superblock(fh: Any, size: int) -> int:
    """Return the superblock's offset: 0, or after a user block of 512, 1024, 2048... bytes."""
    offset = 0
    while offset + len(_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(_SIGNATURE)) == _SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    raise RunFileError(f"{fh.name}: not an HDF5 file (no superblock signature)")


def clear_open_flags(path: Path | str) -> bool:
    """Clear the "open for writing" flags a dead writer left in the superblock, like ``h5clear``.

    Also makes the stored end-of-file address and the file's real size agree: a smaller stored
    end is raised to the real size (space HDF5 used after it last wrote the superblock), a
    larger one is met by extending the file with zeros (sparse). A file whose flags are clear
    and whose ends agree is left untouched.

    Args:
        path: an HDF5 file with a version 2 or 3 superblock.

    Returns:
        True if the superblock was rewritten.

    Raises:
        RunFileError: not an HDF5 file, another superblock version, a bad checksum, or an I/O
            error; one line naming the file.
    """
    path = Path(path)
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            base = _find_superblock(fh, size)
            fh.seek(base)
            head = fh.read(_FLAGS_OFFSET + 1)
            version, offsets = head[8], head[9]
            if version not in (2, 3) or offsets not in (2, 4, 8):
                raise RunFileError(
                    f"{path}: HDF5 superblock version {version} (offsets {offsets} B) cannot be "
                    "reopened for writing after a crash (run files use version 3)"
                )
            n = _FLAGS_OFFSET + 1 + 4 * offsets  # base, extension, end of file, root group
            fh.seek(base)
            block = bytearray(fh.read(n + 4))
            stored = int.from_bytes(block[n : n + 4], "little")
            if lookup3(bytes(block[:n])) != stored:
                raise RunFileError(f"{path}: HDF5 superblock checksum does not match")
            eof_at = _FLAGS_OFFSET + 1 + 2 * offsets
            base_address = int.from_bytes(block[_FLAGS_OFFSET + 1 : eof_at - offsets], "little")
            eof = int.from_bytes(block[eof_at : eof_at + offsets], "little")
            real_eof = size - base_address
            if block[_FLAGS_OFFSET] == 0 and eof == real_eof:
                return False
            if eof > real_eof:
                # A write at the end of the file failed after the superblock recorded it (an
                # unfenced close on a full disk did this): HDF5 refuses a file shorter than its
                # recorded end, so extend it (sparse: no disk space) with zeros.
                os.ftruncate(fh.fileno(), base_address + eof)
            block[_FLAGS_OFFSET] = 0
            block[eof_at : eof_at + offsets] = max(eof, real_eof).to_bytes(offsets, "little")
            block[n : n + 4] = lookup3(bytes(block[:n])).to_bytes(4, "little")
            fh.seek(base)
            fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
            return True
    except OSError as exc:
        raise RunFileError(f"{path}: cannot clear the superblock flags: {exc.strerror}") from exc


# -- what the file holds -------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    """One table of a run file, as found.

    Attributes:
        path: the table's group.
        columns: column name -> (dtype, units), in order.
        chunk_rows: rows per chunk.
        rows: complete rows (the shortest column's length).
        last_t_s: ``t_s`` of the last complete row; None without rows or a ``t_s`` column.
    """

    path: str
    columns: Mapping[str, tuple[np.dtype[Any], str]]
    chunk_rows: int
    rows: int
    last_t_s: float | None


@dataclass(frozen=True)
class StackInfo:
    """One frame stack of a run file, as found.

    Attributes:
        path: the dataset.
        shape: the shape of one frame.
        dtype: the pixel dtype.
        units: the pixel units.
        compression: how frames are stored.
        attrs: its other attributes (pixel size, channel...), as plain values.
        frames: frames in the dataset.
        meta_path: its per-frame metadata table, or None.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    units: str
    compression: Compression
    attrs: Mapping[str, Any]
    frames: int
    meta_path: str | None


@dataclass(frozen=True)
class CrashedRun:
    """What a run file says about its run, read without changing it (:func:`inspect_run`).

    Attributes:
        path: the run file.
        status: the root status ("running" for a run whose process died).
        chipctl_version: the version that started the run.
        config_text: the exact instrument config text.
        protocol_text: the exact protocol text.
        protocol_name: the protocol's name.
        seed: the simulator's seed, or None.
        simulated: whether the run used simulated devices.
        clock: the clock mode ("virtual", "real", "scaled x10"), "" if the file does not say.
        started_utc: when the run started.
        flush_interval_s: the writer's flush interval, None if the file does not say.
        resumed_utc: when it was resumed before, oldest first.
        attrs: every root attribute, as plain values.
        telemetry: device -> {quantity: units}.
        tables: table path -> layout and contents.
        stacks: frame-stack path -> layout and contents.
        complete_before_t_s: the completeness mark, None without one (or before any flush).
        last_t_s: the latest time before which every table is complete (module docstring):
            the default cut; None if no table has a timed row.
    """

    path: Path
    status: str
    chipctl_version: str
    config_text: str
    protocol_text: str
    protocol_name: str
    seed: int | None
    simulated: bool
    clock: str
    started_utc: str
    flush_interval_s: float | None
    resumed_utc: tuple[str, ...]
    attrs: Mapping[str, Any]
    telemetry: Mapping[str, Mapping[str, str]]
    tables: Mapping[str, TableInfo]
    stacks: Mapping[str, StackInfo]
    complete_before_t_s: float | None
    last_t_s: float | None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _table_info(path: str, group: Any) -> TableInfo | None:
    names = [str(n) for n in _plain(group.attrs[layout.ATTR_COLUMNS])]
    if not names or any(n not in group or not isinstance(group[n], h5py.Dataset) for n in names):
        return None
    datasets = [group[n] for n in names]
    if any(ds.ndim != 1 or ds.chunks is None for ds in datasets):
        return None
    rows = min(len(ds) for ds in datasets)
    last_t_s = None
    if layout.TIME_COLUMN in names and rows:
        last_t_s = float(group[layout.TIME_COLUMN][rows - 1])
    return TableInfo(
        path=path,
        columns={
            n: (np.dtype(ds.dtype), str(_plain(ds.attrs.get(layout.ATTR_UNITS, ""))))
            for n, ds in zip(names, datasets)
        },
        chunk_rows=int(datasets[0].chunks[0]),
        rows=rows,
        last_t_s=last_t_s,
    )


def _meta_for(stack_path: str, tables: Mapping[str, TableInfo]) -> str | None:
    candidates = [stack_path + "_meta"]
    parent, _, name = stack_path.rpartition("/")
    if name == "frames":
        candidates.append(f"{parent}/meta")
    return next((c for c in candidates if c in tables), None)


def _scan(h5: Any) -> tuple[dict[str, TableInfo], dict[str, StackInfo]]:
    tables: dict[str, TableInfo] = {}
    candidates: list[tuple[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        path = "/" + name
        if isinstance(obj, h5py.Group) and layout.ATTR_COLUMNS in obj.attrs:
            info = _table_info(path, obj)
            if info is not None:
                tables[path] = info
        elif isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.maxshape[0] is None:
            if obj.chunks == (1, *obj.shape[1:]):
                candidates.append((path, obj))

    h5.visititems(visit)
    stacks: dict[str, StackInfo] = {}
    for path, ds in candidates:
        if any(path.startswith(t + "/") for t in tables):
            continue
        attrs = {str(k): _plain(v) for k, v in ds.attrs.items()}
        units = str(attrs.pop(layout.ATTR_UNITS, ""))
        compression = str(attrs.pop("compression", Compression.NONE.value))
        try:
            codec = Compression(compression)
        except ValueError:
            raise RunFileError(
                f"{h5.filename}: {path}: unknown compression {compression!r}"
            ) from None
        stacks[path] = StackInfo(
            path=path,
            shape=tuple(int(n) for n in ds.shape[1:]),
            dtype=np.dtype(ds.dtype),
            units=units,
            compression=codec,
            attrs=attrs,
            frames=int(ds.shape[0]),
            meta_path=_meta_for(path, tables),
        )
    return tables, stacks


def _telemetry(tables: Mapping[str, TableInfo]) -> dict[str, dict[str, str]]:
    prefix = layout.TELEMETRY_GROUP + "/"
    out: dict[str, dict[str, str]] = {}
    for path, info in tables.items():
        device = path[len(prefix) :]
        if path.startswith(prefix) and "/" not in device:
            names = list(info.columns)
            if names[:1] == [layout.TIME_COLUMN] and all(
                dtype == np.float64 for dtype, _ in info.columns.values()
            ):
                out[device] = {q: units for q, (_, units) in info.columns.items() if q != "t_s"}
    return out


def _last_complete_t_s(tables: Mapping[str, TableInfo], mark_t_s: float | None) -> float | None:
    if mark_t_s is not None:
        return mark_t_s
    times = [t.last_t_s for t in tables.values() if t.last_t_s is not None]
    return min(times) if times else None


def inspect_run(path: Path | str) -> CrashedRun:
    """Read what a run file says about its run and how far it is complete; change nothing.

    Raises:
        RunFileError: the file is missing, not a run file, or of a newer schema (one line).
    """
    path = Path(path)
    try:
        h5 = h5py.File(path, "r", swmr=True)
    except FileNotFoundError as exc:
        raise RunFileError(f"{path}: no such file") from exc
    except OSError as exc:
        raise RunFileError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with h5:
        attrs = {str(k): _plain(v) for k, v in h5.attrs.items()}
        if attrs.get(layout.ATTR_FORMAT) != layout.FORMAT_NAME:
            raise RunFileError(f"{path}: not a chipctl run file")
        version = attrs.get(layout.ATTR_SCHEMA_VERSION)
        if not isinstance(version, int) or version > layout.SCHEMA_VERSION:
            raise RunFileError(f"{path}: run-file schema version {version!r} is not supported")
        tables, stacks = _scan(h5)
        mark_ds = h5.get(layout.COMPLETE_BEFORE)
        mark = float(mark_ds[0]) if isinstance(mark_ds, h5py.Dataset) and mark_ds.size else None
        mark_t_s = mark if mark is not None and np.isfinite(mark) else None
        seed = int(attrs.get(layout.ATTR_SEED, layout.NO_SEED))
        resumed = attrs.get(layout.ATTR_RESUMED_UTC, [])
        resumed_list = resumed if isinstance(resumed, list) else [resumed]
        interval = attrs.get(layout.ATTR_FLUSH_INTERVAL_S)
        return CrashedRun(
            path=path,
            status=str(attrs.get(layout.ATTR_STATUS, "")),
            chipctl_version=str(attrs.get(layout.ATTR_CHIPCTL_VERSION, "")),
            config_text=_text(h5[layout.CONFIG_TEXT][()]),
            protocol_text=_text(h5[layout.PROTOCOL_SOURCE][()]),
            protocol_name=str(_plain(h5[layout.PROTOCOL_GROUP].attrs.get(layout.ATTR_NAME, ""))),
            seed=None if seed == layout.NO_SEED else seed,
            simulated=bool(attrs.get(layout.ATTR_SIMULATED, False)),
            clock=str(attrs.get(layout.ATTR_CLOCK, "")),
            started_utc=str(attrs.get(layout.ATTR_STARTED_UTC, "")),
            flush_interval_s=None if interval is None else float(interval),
            resumed_utc=tuple(str(r) for r in resumed_list),
            attrs=attrs,
            telemetry=_telemetry(tables),
            tables=tables,
            stacks=stacks,
            complete_before_t_s=mark_t_s,
            last_t_s=_last_complete_t_s(tables, mark_t_s),
        )


# -- cutting and reopening -----------------------------------------------------------------


def _rows_before(column: Any, rows: int, cut_t_s: float) -> int:
    """Return the rows to keep: up to the last one before ``cut_t_s``, read from the end."""
    end = rows
    while end > 0:
        start = max(0, end - _SCAN_ROWS)
        times = column[start:end]
        before = np.flatnonzero(times < cut_t_s)
        if before.size:
            return start + int(before[-1]) + 1
        end = start
    return 0


def _plan_cut(h5: Any, run: CrashedRun, cut_t_s: float | None) -> dict[str, int]:
    """Return the rows (tables) and frames (stacks) to keep, per path."""
    keep: dict[str, int] = {}
    for path, info in run.tables.items():
        if cut_t_s is None or layout.TIME_COLUMN not in info.columns:
            keep[path] = info.rows
        else:
            keep[path] = _rows_before(h5[path][layout.TIME_COLUMN], info.rows, cut_t_s)
    for path, stack in run.stacks.items():
        if stack.meta_path is None:
            keep[path] = stack.frames
        else:
            both = min(stack.frames, keep[stack.meta_path])
            keep[path] = keep[stack.meta_path] = both
    return keep


def _cut(path: Path, run: CrashedRun, cut_t_s: float | None) -> dict[str, int]:
    """Cut every table and stack back (the file is closed cleanly after); return what is kept."""
    try:
        h5 = h5py.File(path, "r+", libver=layout.LIBVER)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot open the run file to resume it: {exc}") from exc
    with h5:
        keep = _plan_cut(h5, run, cut_t_s)
        for table_path, info in run.tables.items():
            for name in info.columns:
                ds = h5[table_path][name]
                if len(ds) != keep[table_path]:
                    ds.resize((keep[table_path],))
        for stack_path, stack in run.stacks.items():
            if keep[stack_path] != stack.frames:
                h5[stack_path].resize(keep[stack_path], axis=0)
        mark = h5.get(layout.COMPLETE_BEFORE)
        if cut_t_s is not None and isinstance(mark, h5py.Dataset) and mark.shape == (1,):
            mark[0] = cut_t_s  # everything before the cut is on disk (the writer creates one)
    with open(path, "rb") as fh:  # the cut must be on disk before anything is appended
        os.fsync(fh.fileno())
    return keep


@dataclass
class ReopenedRun:
    """A crashed run file cut back and ready to be appended to.

    Attributes:
        run: what the file held before the cut.
        cut_t_s: the time it was cut at (None: it had no timed rows; nothing was cut).
        kept: rows (tables) and frames (stacks) left by the cut, per path; appending goes on
            from there.
        dropped: rows and frames removed by the cut, per path (only paths that lost some).
        resumed_count: how many times the run has now been resumed (1 for the first).
        writer: the writer for the same file, every existing table and stack declared; it
            is not open: declare new tables on it, then call :meth:`open`.
    """

    run: CrashedRun
    cut_t_s: float | None
    kept: Mapping[str, int]
    dropped: Mapping[str, int]
    resumed_count: int
    writer: RunFileWriter
    _opened: bool = field(default=False, repr=False)

    def summary(self) -> str:
        """Return one line saying where the run was cut and what the cut removed."""
        rows = sum(n for p, n in self.dropped.items() if p not in self.run.stacks)
        frames = sum(n for p, n in self.dropped.items() if p in self.run.stacks)
        at = "no timed record" if self.cut_t_s is None else f"t={self.cut_t_s:.6g} s"
        return (
            f"resumed after a crash (resume {self.resumed_count}): kept every record before "
            f"{at}; dropped {rows} rows and {frames} frames from then on"
        )

    def open(self) -> RunFileWriter:
        """Open the writer (records the resume, SWMR on again), log the resume; return it.

        Raises:
            RunFileError: the writer cannot open the file (see
                :meth:`~chipctl.runfile.writer.RunFileWriter.open`).
        """
        if not self._opened:
            self.writer.open()
            self._opened = True
            t_s = self.cut_t_s if self.cut_t_s is not None else 0.0
            self.writer.event(t_s, EVENT_SOURCE, EVENT_KIND, self.summary())
        return self.writer


def reopen_for_resume(
    path: Path | str,
    cut_t_s: float | None = None,
    *,
    resumed_utc: str | None = None,
    flush_interval_s: float | None = None,
    now_s: Callable[[], float] | None = None,
    on_flush: Callable[[FlushReport], None] | None = None,
    fsync: bool = True,
) -> ReopenedRun:
    """Cut a crashed run file back to a complete point and return a writer that appends to it.

    See the module docstring for what is done and why in place.

    Args:
        path: the run file of a run whose process died (status "running").
        cut_t_s: keep the records from before this time (the run is redone from it); None:
            :attr:`CrashedRun.last_t_s`.
        resumed_utc: when the run is resumed (ISO 8601 UTC); None: now.
        flush_interval_s: the writer's flush interval; None: the one recorded in the file
            (1 s if it is not recorded).
        now_s: real-time source for the writer's flush deadline; injected by tests.
        on_flush: passed to the writer.
        fsync: passed to the writer.

    Raises:
        RunFileError: the file is missing or not a run file, its run ended, ``cut_t_s`` is
            after the time before which the file is complete, or the file cannot be cut or
            reopened. One line naming the file.
    """
    path = Path(path)
    run = inspect_run(path)
    if run.status != layout.RunStatus.RUNNING.value:
        raise RunFileError(
            f"{path}: the run ended ({run.status}); only a run whose process died "
            "(status running) can be resumed"
        )
    if cut_t_s is not None:
        if not np.isfinite(cut_t_s):
            raise RunFileError(f"{path}: cannot cut at t={cut_t_s}")
        if run.last_t_s is None or cut_t_s > run.last_t_s:
            complete = "no time" if run.last_t_s is None else f"t={run.last_t_s:.6g} s"
            raise RunFileError(
                f"{path}: cannot resume from t={cut_t_s:.6g} s: the file is complete only "
                f"before {complete}"
            )
    cut = float(cut_t_s) if cut_t_s is not None else run.last_t_s
    interval = flush_interval_s or run.flush_interval_s or 1.0
    when = resumed_utc if resumed_utc is not None else dt.datetime.now(dt.UTC).isoformat()
    count = int(run.attrs.get(layout.ATTR_RESUMED_COUNT, 0)) + 1
    writer = RunFileWriter.appending(
        path,
        telemetry=run.telemetry,
        set_attrs={
            layout.ATTR_RESUMED_COUNT: count,
            layout.ATTR_RESUMED_UTC: [*run.resumed_utc, when],
        },
        flush_interval_s=interval,
        now_s=now_s,
        on_flush=on_flush,
        fsync=fsync,
    )
    own = {layout.EVENTS, *(layout.telemetry_path(d) for d in run.telemetry)}
    try:
        for table_path, info in run.tables.items():
            if table_path not in own:
                writer.declare_table(table_path, info.columns, chunk_rows=info.chunk_rows)
        for stack_path, stack in run.stacks.items():
            writer.declare_frames(
                stack_path, stack.shape, stack.dtype, stack.units, compression=stack.compression
            )
    except ValueError as exc:
        raise RunFileError(f"{path}: cannot append to this run file: {exc}") from exc
    writer.adopt_existing()
    lock = lock_for_writing(path)  # refuses while the first process still writes the file
    try:
        clear_open_flags(path)
        kept = _cut(path, run, cut)
    finally:
        unlock(lock)
    before = {p: t.rows for p, t in run.tables.items()}
    before.update({p: stack.frames for p, stack in run.stacks.items()})
    dropped = {p: before[p] - n for p, n in kept.items() if before[p] != n}
    return ReopenedRun(
        run=run, cut_t_s=cut, kept=kept, dropped=dropped, resumed_count=count, writer=writer
    )
