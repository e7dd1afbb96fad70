"""Run-file writer: one HDF5 file per run, written by one thread, readable live (SWMR).

Thread topology:

* **Producer threads** (the engine worker, a device poller, the GUI bridge: any number) call
  :meth:`RunFileWriter.event`, :meth:`~RunFileWriter.telemetry`,
  :meth:`~RunFileWriter.append_rows` and :meth:`~RunFileWriter.append_frame`. Each call
  validates and converts its arguments (so a bad value raises in the caller, at once), then
  puts one item on an unbounded :class:`queue.SimpleQueue`. It never touches h5py and never
  waits for the disk; its cost is a few microseconds (plus one copy of a frame). The one
  exception is backpressure on frames: :meth:`~RunFileWriter.append_frame` waits while
  ``MAX_PENDING_FRAMES`` frames are queued unwritten, so memory stays bounded when frames
  come faster than the disk takes them (and a stalled disk becomes a RunFileError).
  :meth:`~RunFileWriter.append_encoded_frame` is the copy-free variant for frame streams: it
  lends the writer a buffer (raw or pre-compressed) and gets it back through a callback, so
  the stream (:class:`chipctl.streaming.FrameStream`) bounds the memory that frames occupy.
* **One writer thread** (``runfile-writer:<file name>``, a daemon) owns the ``h5py.File``:
  it is the only thread that calls h5py after :meth:`~RunFileWriter.open`. It collects rows
  per table and writes them in blocks (one resize + write per column per block, never per
  record: perf-limits §3, 64 µs per record versus ~1 µs per record in blocks), writes each
  frame as one whole HDF5 chunk (:mod:`chipctl.runfile.framestore`: ``write_direct_chunk``
  runs at 0.96 of a raw write, ``ds[i] = frame`` at 0.79, perf-limits §2a), and flushes
  (then fsyncs) the file at least every ``flush_interval_s`` of real time, so a reader in
  another process sees data at most that old, and a killed process loses at most that much.
* The owner (the session) calls :meth:`~RunFileWriter.open` before the run and
  :meth:`~RunFileWriter.close` after it, from one thread. ``open`` creates every group and
  dataset, then switches to SWMR; ``close`` stops the writer thread, which drains the queue and
  flushes, then closes the SWMR file and reopens it normally to record the final status.

SWMR on HDF5 2.0 (h5py 3.16), measured here: the library does *not* refuse to create groups,
datasets or attributes, nor to write variable-length strings, once ``swmr_mode`` is on, and a
file killed after doing so still opened. But the SWMR design only orders flushes for appends
to existing chunked datasets (creating objects "is not possible using the existing SWMR
feature", HDF Group, VFD SWMR announcement; variable-length data lives in the global heap,
outside that ordering), so a live reader could see inconsistent metadata. This writer therefore
creates every object before SWMR starts: tables and frame stacks are declared up front with
:meth:`~RunFileWriter.declare_table` / :meth:`~RunFileWriter.declare_frames`, and text
columns are fixed-length UTF-8. Root attributes are only rewritten after the SWMR session ends,
by reopening the file ``r+`` without HDF5's file lock: a live reader that still holds the file
keeps a lock that makes a locking reopen fail (EAGAIN, measured). A file whose writer died keeps
its "file open for writing" flag: it opens read-only with ``swmr=True`` (the reader does so),
while a plain ``h5py.File(path)`` refuses it until ``h5clear -s``; its status stays "running".

The completeness mark (``/complete_before_t_s``, :data:`chipctl.runfile.layout.
COMPLETE_BEFORE`): after each flush has put on disk every record handed over before it, the
writer overwrites the mark with the latest record time ``t_s`` it had taken in, and flushes
again. That second flush (and fsync) costs the writer thread ~2 ms per flush interval here
(median, 8 tables and 10 frames per flush, machine loaded), never the producers. A mark on disk
therefore proves that every record from *before* its time is on disk (records of its very
instant may straddle the flush);
:mod:`chipctl.runfile.recover` cuts a crashed file there. The proof holds for records handed
over in time order (the engine's thread); a producer that lags behind the others (a device
poller) can leave a hole of its lag just before the cut.

A failure in the writer thread stops it; the first error is kept and raised, as
:class:`RunFileError` (:class:`DiskFullError` when the disk or a size limit is full: ENOSPC,
EDQUOT, EFBIG), from the next producer call and from ``close``; :attr:`RunFileWriter.failure`
holds it for monitors. Its message is one line naming the file, what was being written and
before which time the file is complete. An exception from an owner's callback (``on_flush``,
``on_written``) stops the writer too, but is named as the callback's, and the file is then
flushed and closed normally. The queue is unbounded so that producers never block: if the disk
stalls, memory grows instead.

Keeping what was written when the disk is full. Measured on HDF5 2.0 / h5py 3.16 with a file
size limit (EFBIG; tests/runfile/test_diskfull.py), the writer used to lose in three ways:

* Write errors vanished into destructors. Each table write looked its column datasets up
  anew, and h5py closes a dataset when its last Python object goes; that close flushes the
  dataset's chunk cache, and when the flush failed h5py could only print it ("Exception
  ignored ... Can't decrement id ref count"). The writer carried on, and the half-closed
  datasets crashed the interpreter at exit (SIGSEGV in ``H5F__dest -> H5D__flush_all_cb``,
  every one of 6 runs). Every column now stays open from ``open`` to the end of the writer
  thread, so a failed write raises where it happens.
* Closing after the error wrote what HDF5 still held: metadata of chunks whose write had
  failed (frames that read back as zeros) and an end of file past the real one, which HDF5
  then refused to open for writing ("truncated file"). After an I/O error the writer now
  *fences* the file first: it points HDF5's file descriptor at ``/dev/null`` (``dup2``), so
  nothing more reaches the disk, then closes it (a second attempt if the first fails: a file
  whose close failed also crashed the interpreter at exit).
* The file is left exactly as it was when the write failed: the state a killed process leaves,
  which SWMR keeps consistent. It opens (read-only with ``swmr=True``, as the reader does),
  holds every record and frame of the last flush, and :func:`chipctl.runfile.recover.
  reopen_for_resume` resumes it once there is space. With both fixes: exit status 0 and no
  stderr in every run since (12 runs by hand, and the test). Writes are never retried after a
  failure: HDF5's state is unknown then.

Appending to an existing file (:meth:`RunFileWriter.appending`): the same writer, opened on a
run file that :mod:`chipctl.runfile.recover` has cut back to a consistent point. Its tables and
stacks are declared again with their layout (``open`` checks that they match the file), new
ones may be declared, and ``open`` writes the given root attributes, creates what is new and
switches SWMR on again before the writer thread starts.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import queue
import re
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt

from chipctl.errors import RunFileError
from chipctl.runfile import layout
from chipctl.runfile.framestore import Compression, FrameStack, dataset_options, describe
from drivers.clock import RealClock

if sys.platform != "win32":
    import fcntl

__all__ = ["DiskFullError", "FlushReport", "RunFileError", "RunFileWriter", "disk_free_bytes"]


class DiskFullError(RunFileError):
    """Raised when the run file could not be written because the disk is full.

    That is ENOSPC (no space left on the device), EDQUOT (the user's disk quota) or EFBIG
    (the process's file size limit, or the file system's largest file). The file keeps
    everything of its last flush and can be resumed once there is space.
    """


def disk_free_bytes(path: Path | str) -> int:
    """Return the bytes free for an unprivileged user on the file system holding ``path``.

    ``path`` may be a file that does not exist yet: its nearest existing folder is asked. One
    ``statvfs`` call when the folder exists (~10 us here, more under load), so the engine can
    poll it for a low-disk alarm.

    Raises:
        RunFileError: no folder of ``path`` can be asked.
    """
    folder = Path(path).parent
    while True:
        try:
            stat = os.statvfs(folder)
            return int(stat.f_bavail * stat.f_frsize)
        except (FileNotFoundError, NotADirectoryError):
            if folder == folder.parent:
                raise RunFileError(f"{path}: no folder of it exists") from None
            folder = folder.parent
        except OSError as exc:
            raise RunFileError(f"{path}: cannot ask the free disk space: {exc.strerror}") from exc


@dataclass(frozen=True)
class FlushReport:
    """What was on disk after one flush of the writer thread.

    Attributes:
        count: flushes so far, starting at 1.
        rows: rows in the file per table path (and frames per frame-stack path): written
            by this writer, plus those already there when it appended to an existing file.
        appends: write operations per table path so far (one per block, not per row).
        complete_t_s: the completeness mark after this flush (every record handed over with a
            time before it is on disk), or None while no timed record has come.
    """

    count: int
    rows: Mapping[str, int]
    appends: Mapping[str, int]
    complete_t_s: float | None = None


@dataclass(frozen=True)
class _Column:
    name: str
    dtype: np.dtype[Any]
    units: str


@dataclass(frozen=True)
class _Table:
    path: str
    columns: tuple[_Column, ...]
    chunk_rows: int
    index: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Frames:
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    units: str
    compression: Compression = Compression.NONE
    flush_every_frames: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


_STOP: Final = object()
_MAX_CHUNK_BYTES: Final = 64 * 1024
_MAX_CHUNK_ROWS: Final = layout.TELEMETRY_CHUNK_ROWS
_MIN_CHUNK_ROWS: Final = 16


def _default_chunk_rows(columns: Sequence[_Column]) -> int:
    """Rows per chunk so that the widest column's chunk stays near 64 KiB."""
    widest = max(col.dtype.itemsize for col in columns)
    return max(_MIN_CHUNK_ROWS, min(_MAX_CHUNK_ROWS, _MAX_CHUNK_BYTES // widest))


def _encode(text: str, width: int) -> bytes:
    """Encode ``text`` as UTF-8 that fits ``width`` bytes, marking any truncation."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= width:
        return data
    marker = layout.TRUNCATION_MARKER.encode("utf-8")
    if len(marker) >= width:
        marker = b""
    cut = width - len(marker)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never split a multi-byte character
        cut -= 1
    return data[:cut] + marker


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {kind} name {name!r}: must be non-empty and contain no '/'")


def _check_path(path: str) -> str:
    parts = path.strip("/").split("/")
    if not path.startswith("/") or any(not p or p in (".", "..") for p in parts):
        raise ValueError(f"invalid run-file path {path!r}: expected '/group/name'")
    return "/" + "/".join(parts)


_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_ERRNO_IN_TEXT: Final = re.compile(r"errno = (\d+)")


def _errno_of(exc: BaseException) -> int | None:
    """Return the errno behind a failure, also when h5py has it only in HDF5's message text."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return int(current.errno)
        found = _ERRNO_IN_TEXT.search(str(current))
        if found:
            return int(found.group(1))
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _errno_words(number: int) -> str:
    return f"{os.strerror(number)}, {errno.errorcode.get(number, str(number))}"


_LOCK_BYTE: Final = 1 << 62  # far past any end of file: the lock covers no data


def lock_for_writing(path: Path) -> int | None:
    """Take the lock that says "a live process writes this run file"; return its descriptor.

    HDF5 gives up its own file lock once SWMR starts (so that readers can open the file), so
    nothing else would stop a second writer, such as a resume started while the first process
    still runs, from corrupting the file. This is a Linux open-file-description lock
    (``F_OFD_SETLK``) on one byte far past the end of the file: it covers no data, HDF5's
    ``flock`` and readers ignore it, the kernel drops it when the process dies (SIGKILL
    included), and unlike a POSIX ``lockf`` lock it survives other descriptors of the file
    being closed in the same process. Close the descriptor to release it.

    Returns:
        The descriptor holding the lock, or None where such locks are not available (other
        systems, some network file systems): there is then no guard.

    Raises:
        RunFileError: another open writer holds the lock.
    """
    if sys.platform == "win32" or not hasattr(fcntl, "F_OFD_SETLK"):
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot open the run file: {exc.strerror}") from exc
    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _LOCK_BYTE, 1, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise RunFileError(
                f"{path}: another process (or writer) is still writing this run file; stop it first"
            ) from exc
        return None
    return fd


def unlock(fd: int | None) -> None:
    """Release a lock taken by :func:`lock_for_writing` (None: nothing to do)."""
    if fd is not None:
        os.close(fd)


#: Frames given to :meth:`RunFileWriter.append_frame` that may wait in the queue unwritten;
#: beyond this the producer waits for the disk (time-lapse frames are data: never dropped).
MAX_PENDING_FRAMES = 16
#: How long :meth:`RunFileWriter.append_frame` waits for the disk before calling it stalled.
FRAME_SLOT_TIMEOUT_S = 60.0
_SLOT_POLL_S = 0.5


class RunFileWriter:
    """Write one run file from any number of producer threads; see the module docstring.

    Args:
        path: the file to create; it must not exist (runs are never overwritten).
        chipctl_version: recorded in the root attributes.
        simulated: whether the run used simulated devices (recorded, shown by readers).
        seed: the simulator's random seed, or None (recorded as -1).
        started_utc: ISO-8601 UTC start time, from the session's clock.
        config_text: the exact instrument config text.
        protocol_text: the exact protocol text; its sha256 is recorded beside it.
        protocol_name: the protocol's name.
        telemetry: device -> {quantity: units}; one table per device is declared with a
            ``t_s`` column (units "s") and one float64 column per quantity.
        flush_interval_s: the longest real time between a write and its flush.
        now_s: real-time source for the flush deadline; injected by tests.
        on_flush: called on the writer thread after each flush (keep it short); used by tests
            and monitors to know what a reader can already see.
        clock: how the run's time runs (``"virtual"``, ``"real"``, ``"scaled x10"``),
            recorded as the root attribute ``clock`` so that a resumed run goes on in the same
            mode; None leaves it out (it may then come in ``extra_attrs``).
        extra_attrs: more root attributes (instrument name, protocol source...); they may
            not replace the required ones.
        fsync: also ``fsync`` the file after each flush, so a power cut or kernel crash (not
            only a killed process) loses at most ``flush_interval_s``. It costs the writer
            thread ~40 us here, milliseconds on real SSDs, and never the producers.
    """

    def __init__(
        self,
        path: Path,
        *,
        chipctl_version: str,
        simulated: bool,
        seed: int | None,
        started_utc: str,
        config_text: str,
        protocol_text: str,
        protocol_name: str,
        telemetry: Mapping[str, Mapping[str, str]],
        flush_interval_s: float = 1.0,
        now_s: Callable[[], float] | None = None,
        on_flush: Callable[[FlushReport], None] | None = None,
        clock: str | None = None,
        extra_attrs: Mapping[str, str | int | float | bool] | None = None,
        fsync: bool = True,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        root_attrs: dict[str, Any] = {
            layout.ATTR_FORMAT: layout.FORMAT_NAME,
            layout.ATTR_SCHEMA_VERSION: layout.SCHEMA_VERSION,
            layout.ATTR_CHIPCTL_VERSION: chipctl_version,
            layout.ATTR_STATUS: layout.RunStatus.RUNNING.value,
            layout.ATTR_SIMULATED: bool(simulated),
            layout.ATTR_STARTED_UTC: started_utc,
            layout.ATTR_ENDED_UTC: "",
            layout.ATTR_SEED: layout.NO_SEED if seed is None else int(seed),
            layout.ATTR_FLUSH_INTERVAL_S: float(flush_interval_s),
        }
        if clock is not None:
            root_attrs[layout.ATTR_CLOCK] = str(clock)
        for key, value in (extra_attrs or {}).items():
            if key in root_attrs:
                raise ValueError(f"extra attribute {key!r} would overwrite a required one")
            root_attrs[key] = value
        self._setup(
            path,
            root_attrs=root_attrs,
            telemetry=telemetry,
            flush_interval_s=flush_interval_s,
            now_s=now_s,
            on_flush=on_flush,
            fsync=fsync,
            append=False,
        )
        self._config_text = config_text
        self._protocol_text = protocol_text
        self._protocol_name = protocol_name

    @classmethod
    def appending(
        cls,
        path: Path,
        *,
        telemetry: Mapping[str, Mapping[str, str]],
        set_attrs: Mapping[str, Any],
        flush_interval_s: float = 1.0,
        now_s: Callable[[], float] | None = None,
        on_flush: Callable[[FlushReport], None] | None = None,
        fsync: bool = True,
    ) -> RunFileWriter:
        """Return a writer that appends to the existing run file ``path`` (not opened yet).

        The file must be a run file closed cleanly: one that a killed writer left is first cut
        back by :func:`chipctl.runfile.recover.reopen_for_resume`, which builds this writer.
        Declare every table and stack of the file again (with their layout) and any new ones,
        then :meth:`open`.

        Args:
            path: the run file.
            telemetry: device -> {quantity: units}, as in the file (new devices are created).
            set_attrs: root attributes written at :meth:`open` (e.g. the resume count);
                ``format`` and ``schema_version`` may not be among them.
            flush_interval_s: as for a new file.
            now_s: as for a new file.
            on_flush: as for a new file.
            fsync: as for a new file.

        Raises:
            ValueError: a bad argument.
        """
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        for key in (layout.ATTR_FORMAT, layout.ATTR_SCHEMA_VERSION):
            if key in set_attrs:
                raise ValueError(f"attribute {key!r} of an existing run file cannot be changed")
        writer = cls.__new__(cls)
        writer._setup(
            path,
            root_attrs=dict(set_attrs),
            telemetry=telemetry,
            flush_interval_s=flush_interval_s,
            now_s=now_s,
            on_flush=on_flush,
            fsync=fsync,
            append=True,
        )
        return writer

    def _setup(
        self,
        path: Path,
        *,
        root_attrs: dict[str, Any],
        telemetry: Mapping[str, Mapping[str, str]],
        flush_interval_s: float,
        now_s: Callable[[], float] | None,
        on_flush: Callable[[FlushReport], None] | None,
        fsync: bool,
        append: bool,
    ) -> None:
        self._path = Path(path)
        self._append = append
        self._root_attrs = root_attrs
        self._config_text = ""
        self._protocol_text = ""
        self._protocol_name = ""
        self._flush_interval_s = float(flush_interval_s)
        self._now_s = now_s if now_s is not None else RealClock().now_s
        self._on_flush = on_flush
        self._fsync = fsync

        self._tables: dict[str, _Table] = {}
        self._frames: dict[str, _Frames] = {}
        self._telemetry: dict[str, _Table] = {}
        self._from_file: set[str] = set()  # declared from an existing file (adopt_existing)
        self._events = self._add_table(layout.EVENTS, layout.event_columns(), None)
        for device, quantities in telemetry.items():
            _check_name("device", device)
            columns: dict[str, tuple[npt.DTypeLike, str]] = {layout.TIME_COLUMN: (np.float64, "s")}
            for quantity, units in quantities.items():
                _check_name("quantity", quantity)
                if quantity == layout.TIME_COLUMN:
                    raise ValueError(f"device {device!r}: quantity name 't_s' is reserved")
                columns[quantity] = (np.float64, units)
            self._telemetry[device] = self._add_table(
                layout.telemetry_path(device), columns, layout.TELEMETRY_CHUNK_ROWS
            )

        self._lock = threading.Lock()
        self._frame_slots = threading.BoundedSemaphore(MAX_PENDING_FRAMES)
        self._state = "new"  # new -> open -> closed
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: RunFileError | None = None
        self._file: Any = None  # h5py.File, touched only by the writer thread once open
        self._fd: int | None = None  # its descriptor, kept to fence it after an I/O error
        self._lock_fd: int | None = None  # holds lock_for_writing() from open to close
        self._in_callback = False  # an exception now is the callback's, not an I/O error
        self._stacks: dict[str, FrameStack] = {}
        self._columns: dict[str, list[Any]] = {}  # table path -> its open column datasets
        self._last_flush: FlushReport | None = None
        # Writer-thread state (set up by open()).
        self._counts: dict[str, int] = {}
        self._appends: dict[str, int] = {}
        self._pending: dict[str, list[Any]] = {}
        self._pending_rows: dict[str, int] = {}
        self._dirty = False
        self._flushes = 0
        self._writing = "the file"  # what the writer thread is doing, for a failure message
        self._seen_t_s = -math.inf  # latest record time written
        self._journal_t_s = -math.inf  # the completeness mark on disk
        self._mark: Any = None  # its dataset, open from open() to the end of the writer thread

    @property
    def path(self) -> Path:
        """The run file's path."""
        return self._path

    @property
    def last_flush(self) -> FlushReport | None:
        """The report of the writer thread's latest flush, or None before the first."""
        return self._last_flush

    def disk_free_bytes(self) -> int:
        """Return the bytes free on the run file's file system (see :func:`disk_free_bytes`).

        Raises:
            RunFileError: the file's folder cannot be asked.
        """
        return disk_free_bytes(self._path)

    # -- declaration (before open) --------------------------------------------------------

    def declare_table(
        self,
        path: str,
        columns: Mapping[str, tuple[npt.DTypeLike, str]],
        *,
        chunk_rows: int | None = None,
    ) -> None:
        """Declare an appendable table, to be created by :meth:`open`.

        SWMR forbids creating objects once the run is live, so every table (analysis results,
        per-frame metadata) is declared before ``open``.

        Args:
            path: the table's group, e.g. ``"/analysis/viability"``.
            columns: column name -> (dtype, units). Numeric dtypes, or fixed-length UTF-8
                text from :func:`chipctl.runfile.layout.utf8` (units ``""``).
            chunk_rows: rows per chunk; by default about 64 KiB of the widest column.

        Raises:
            RunFileError: the writer is already open.
            ValueError: a bad path, a duplicate path, or a bad column.
        """
        with self._lock:
            if self._state != "new":
                raise RunFileError(f"{self._path}: declare_table({path!r}) after open()")
            existing = self._tables.get(_check_path(path))
            if self._append and existing is not None and existing.path in self._from_file:
                self._redeclare_table(existing, columns)
                return
            self._add_table(path, columns, chunk_rows)

    def declare_frames(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: npt.DTypeLike,
        units: str,
        *,
        compression: Compression | str = Compression.NONE,
        flush_every_frames: int | None = None,
        attrs: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        """Declare an appendable stack of frames (one frame per chunk), created by :meth:`open`.

        Frames are written as whole chunks (:mod:`chipctl.runfile.framestore`).

        Args:
            path: the dataset, e.g. ``"/images/pos0/gfp/frames"``.
            shape: the shape of one frame, e.g. ``(2048, 2048)``.
            dtype: the pixel dtype.
            units: the pixel units, e.g. ``"ADU"``.
            compression: how frames are stored (:class:`~chipctl.runfile.framestore.
                Compression` or its value); compressed stacks need hdf5plugin and blosc2,
                and readers need hdf5plugin.
            flush_every_frames: also flush this stack (no fsync) every that many frames, so
                live readers see frames before the next periodic file flush; None: only the
                periodic flush.
            attrs: more attributes of the stack (pixel size, channel...), written at
                :meth:`open` beside ``units`` and ``compression``, which they may not replace
                (attributes cannot be created safely once SWMR is on).

        Raises:
            RunFileError: the writer is already open.
            ValueError: a bad or duplicate path, a bad shape, an unavailable compression, or
                a reserved or non-scalar attribute.
        """
        with self._lock:
            if self._state != "new":
                raise RunFileError(f"{self._path}: declare_frames({path!r}) after open()")
            checked = _check_path(path)
            redeclared = self._append and checked in self._frames and checked in self._from_file
            path = checked if redeclared else self._claim(path)
            if not shape or any(int(n) < 1 for n in shape):
                raise ValueError(f"{path}: invalid frame shape {shape!r}")
            codec = Compression(compression)
            dataset_options(codec)  # fails now, not at open(), if its packages are missing
            if flush_every_frames is not None and flush_every_frames < 1:
                raise ValueError(f"{path}: flush_every_frames must be >= 1")
            extra = dict(attrs or {})
            for key, value in extra.items():
                if key in (layout.ATTR_UNITS, *describe(codec)):
                    raise ValueError(f"{path}: attribute {key!r} is set by the writer")
                if not isinstance(value, str | int | float | bool | np.generic):
                    raise ValueError(f"{path}: attribute {key!r} is not a scalar: {value!r}")
            frames = _Frames(
                path,
                tuple(int(n) for n in shape),
                np.dtype(dtype),
                units,
                codec,
                flush_every_frames,
                extra,
            )
            if redeclared:
                before = self._frames[path]
                if (before.shape, before.dtype, before.compression) != (
                    frames.shape,
                    frames.dtype,
                    frames.compression,
                ):
                    raise ValueError(
                        f"frame stack {path} is in the run file as {before.shape} "
                        f"{before.dtype} {before.compression.value}, declared {frames.shape} "
                        f"{frames.dtype} {frames.compression.value}"
                    )
            self._frames[path] = frames

    def adopt_existing(self) -> None:
        """Mark everything declared so far as already in the file (appending writers only).

        :func:`chipctl.runfile.recover.reopen_for_resume` declares the file's tables and
        stacks, then calls this, so that the session may declare them again exactly as for a
        new run (the same code path for a fresh and a resumed run): declaring one of them
        again with the same layout is then accepted (its runtime options, such as
        ``flush_every_frames``, are taken), with another layout it is a ValueError.

        Raises:
            RunFileError: not an appending writer, or already open.
        """
        with self._lock:
            if not self._append or self._state != "new":
                raise RunFileError(f"{self._path}: adopt_existing() is for appending writers")
            self._from_file = {*self._tables, *self._frames}

    def _redeclare_table(
        self, existing: _Table, columns: Mapping[str, tuple[npt.DTypeLike, str]]
    ) -> None:
        declared = [(name, np.dtype(dtype), units) for name, (dtype, units) in columns.items()]
        found = [(c.name, c.dtype, c.units) for c in existing.columns]
        if declared != found:
            raise ValueError(
                f"table {existing.path} is in the run file with columns {found}, declared "
                f"{declared}"
            )

    def _claim(self, path: str) -> str:
        path = _check_path(path)
        reserved = (layout.CONFIG_TEXT, layout.PROTOCOL_SOURCE)
        taken = (*self._tables, *self._frames, *reserved)
        for other in taken:
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise ValueError(f"run-file path {path!r} overlaps {other!r}")
        return path

    def _add_table(
        self,
        path: str,
        columns: Mapping[str, tuple[npt.DTypeLike, str]],
        chunk_rows: int | None,
    ) -> _Table:
        path = self._claim(path)
        if not columns:
            raise ValueError(f"table {path}: no columns")
        cols: list[_Column] = []
        for name, (dtype_like, units) in columns.items():
            _check_name("column", name)
            dtype = np.dtype(dtype_like)
            if dtype.kind not in "biufS":
                raise ValueError(
                    f"table {path}, column {name!r}: dtype {dtype} is neither numeric nor "
                    "fixed-length text (layout.utf8(n))"
                )
            if not isinstance(units, str):
                raise ValueError(f"table {path}, column {name!r}: units must be a string")
            cols.append(_Column(name, dtype, units))
        rows = chunk_rows if chunk_rows is not None else _default_chunk_rows(cols)
        if rows < 1:
            raise ValueError(f"table {path}: chunk_rows must be >= 1, got {rows}")
        table = _Table(path, tuple(cols), rows, {c.name: i for i, c in enumerate(cols)})
        self._tables[path] = table
        return table

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Create the file with every group and dataset, switch to SWMR, start the writer.

        A writer from :meth:`appending` opens the existing file instead: it checks that every
        declared table and stack that is already there has the declared layout, creates the
        new ones, writes the given root attributes, then switches to SWMR.

        Raises:
            RunFileError: the file exists (it is never overwritten), or cannot be created;
                for appending, it is missing, not a run file, still marked open by a writer
                that died, or does not match the declarations; or the writer was opened before.
        """
        with self._lock:
            if self._state != "new":
                raise RunFileError(f"{self._path}: run file writer opened twice")
            h5 = self._open_existing() if self._append else self._create()
            self._file = h5
            if not self._append:
                try:
                    self._lock_fd = lock_for_writing(self._path)
                except RunFileError:
                    h5.close()
                    raise
            self._fd = int(h5.id.get_vfd_handle())
            self._stacks = {
                path: FrameStack(
                    h5[path], frames.compression, flush_every_frames=frames.flush_every_frames
                )
                for path, frames in self._frames.items()
            }
            # Every column stays open for the whole run: h5py closes a dataset when its last
            # Python object goes, and that close flushes the dataset's chunk cache. After a
            # write error such a flush failed inside a destructor (ignored: h5py can only print
            # it), leaving a half-closed dataset that crashed HDF5 at interpreter exit.
            self._columns = {
                path: [h5[path][col.name] for col in table.columns]
                for path, table in self._tables.items()
            }
            self._counts = {path: len(cols[0]) for path, cols in self._columns.items()}
            self._counts.update({path: stack.n_frames for path, stack in self._stacks.items()})
            self._appends = dict.fromkeys(self._counts, 0)
            self._pending = {path: [] for path in self._tables}
            self._pending_rows = dict.fromkeys(self._tables, 0)
            self._mark = h5[layout.COMPLETE_BEFORE]
            mark = float(self._mark[0])
            if math.isfinite(mark):
                self._journal_t_s = self._seen_t_s = mark
            self._thread = threading.Thread(
                target=self._run, name=f"runfile-writer:{self._path.name}", daemon=True
            )
            self._state = "open"
            self._thread.start()

    def _create(self) -> Any:
        if self._path.exists():
            raise RunFileError(f"{self._path}: refusing to overwrite an existing file")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            h5 = h5py.File(self._path, "x", libver=layout.LIBVER)
        except FileExistsError as exc:
            raise RunFileError(f"{self._path}: refusing to overwrite an existing file") from exc
        except OSError as exc:
            raise RunFileError(f"{self._path}: cannot create run file: {exc}") from exc
        try:
            self._create_layout(h5)
            h5.swmr_mode = True
        except Exception as exc:
            h5.close()
            self._path.unlink(missing_ok=True)  # ours, just created, tiny
            raise RunFileError(f"{self._path}: cannot create run file: {exc}") from exc
        return h5

    def _open_existing(self) -> Any:
        if not self._path.is_file():
            raise RunFileError(f"{self._path}: no run file to append to")
        self._lock_fd = lock_for_writing(self._path)
        try:
            return self._open_existing_locked()
        except BaseException:
            unlock(self._lock_fd)
            self._lock_fd = None
            raise

    def _open_existing_locked(self) -> Any:
        try:
            h5 = h5py.File(self._path, "r+", libver=layout.LIBVER)
        except OSError as exc:
            if "already open for write" in str(exc):
                raise RunFileError(
                    f"{self._path}: the file is still marked open by a writer that died; "
                    "cut it back with chipctl.runfile.recover.reopen_for_resume first"
                ) from exc
            raise RunFileError(
                f"{self._path}: cannot open the run file to append: {_first_line(exc)}"
            ) from exc
        try:
            self._extend_layout(h5)
            h5.swmr_mode = True
        except RunFileError:
            h5.close()
            raise
        except Exception as exc:
            h5.close()
            raise RunFileError(f"{self._path}: cannot append to run file: {exc}") from exc
        return h5

    def _create_layout(self, h5: Any) -> None:
        h5.attrs.update(self._root_attrs)
        text = h5py.string_dtype("utf-8")
        config = h5.create_dataset(layout.CONFIG_TEXT, data=self._config_text, dtype=text)
        config.attrs[layout.ATTR_UNITS] = ""
        h5.require_group(layout.PROTOCOL_GROUP).attrs[layout.ATTR_NAME] = self._protocol_name
        source = h5.create_dataset(layout.PROTOCOL_SOURCE, data=self._protocol_text, dtype=text)
        source.attrs[layout.ATTR_UNITS] = ""
        source.attrs[layout.ATTR_NAME] = self._protocol_name
        source.attrs[layout.ATTR_SHA256] = hashlib.sha256(
            self._protocol_text.encode("utf-8")
        ).hexdigest()
        for group in (layout.TELEMETRY_GROUP, layout.IMAGES_GROUP, layout.ANALYSIS_GROUP):
            h5.require_group(group)
        for table in self._tables.values():
            self._create_table(h5, table)
        for frames in self._frames.values():
            self._create_frames(h5, frames)
        self._create_mark(h5)

    @staticmethod
    def _create_mark(h5: Any) -> None:
        # Contiguous and written now, so that its storage exists before SWMR starts: the
        # writer then only overwrites these 8 bytes in place.
        mark = h5.create_dataset(layout.COMPLETE_BEFORE, data=[math.nan], dtype=np.float64)
        mark.attrs[layout.ATTR_UNITS] = "s"

    def _extend_layout(self, h5: Any) -> None:
        if h5.attrs.get(layout.ATTR_FORMAT) != layout.FORMAT_NAME:
            raise RunFileError(f"{self._path}: not a chipctl run file")
        version = h5.attrs.get(layout.ATTR_SCHEMA_VERSION)
        if not isinstance(version, int | np.integer) or version > layout.SCHEMA_VERSION:
            raise RunFileError(f"{self._path}: run-file schema version {version!r} not supported")
        for group in (layout.TELEMETRY_GROUP, layout.IMAGES_GROUP, layout.ANALYSIS_GROUP):
            h5.require_group(group)
        for table in self._tables.values():
            if table.path in h5:
                self._check_table(h5[table.path], table)
            else:
                self._create_table(h5, table)
        for frames in self._frames.values():
            if frames.path in h5:
                self._check_frames(h5[frames.path], frames)
            else:
                self._create_frames(h5, frames)
        if layout.COMPLETE_BEFORE not in h5:
            self._create_mark(h5)
        h5.attrs.update(self._root_attrs)

    @staticmethod
    def _create_table(h5: Any, table: _Table) -> None:
        group = h5.require_group(table.path)
        group.attrs[layout.ATTR_COLUMNS] = [c.name for c in table.columns]
        for col in table.columns:
            ds = group.create_dataset(
                col.name,
                shape=(0,),
                maxshape=(None,),
                dtype=col.dtype,
                chunks=(table.chunk_rows,),
            )
            ds.attrs[layout.ATTR_UNITS] = col.units

    @staticmethod
    def _create_frames(h5: Any, frames: _Frames) -> None:
        ds = h5.create_dataset(
            frames.path,
            shape=(0, *frames.shape),
            maxshape=(None, *frames.shape),
            dtype=frames.dtype,
            chunks=(1, *frames.shape),
            **dataset_options(frames.compression),
        )
        ds.attrs[layout.ATTR_UNITS] = frames.units
        ds.attrs.update(describe(frames.compression))
        ds.attrs.update(frames.attrs)

    def _check_table(self, group: Any, table: _Table) -> None:
        where = f"{self._path}: table {table.path}"
        if not isinstance(group, h5py.Group) or layout.ATTR_COLUMNS not in group.attrs:
            raise RunFileError(f"{where} is not a table in the file")
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in group.attrs["columns"]]
        if names != [c.name for c in table.columns]:
            raise RunFileError(f"{where}: columns {names} in the file, declared differently")
        lengths = set()
        for col in table.columns:
            ds = group[col.name]
            if ds.dtype != col.dtype or ds.ndim != 1 or ds.maxshape != (None,):
                raise RunFileError(f"{where}, column {col.name!r}: {ds.dtype} in the file")
            lengths.add(len(ds))
        if len(lengths) > 1:
            raise RunFileError(
                f"{where}: columns of unequal length; cut the file back with "
                "chipctl.runfile.recover.reopen_for_resume first"
            )

    def _check_frames(self, ds: Any, frames: _Frames) -> None:
        where = f"{self._path}: frame stack {frames.path}"
        if not isinstance(ds, h5py.Dataset):
            raise RunFileError(f"{where} is not a dataset in the file")
        stored = str(ds.attrs.get("compression", Compression.NONE.value))
        if (
            tuple(ds.shape[1:]) != frames.shape
            or ds.dtype != frames.dtype
            or ds.chunks != (1, *frames.shape)
            or stored != frames.compression.value
        ):
            raise RunFileError(
                f"{where}: {tuple(ds.shape[1:])} {ds.dtype} {stored} in the file, declared "
                f"{frames.shape} {frames.dtype} {frames.compression.value}"
            )

    def close(self, status: str, ended_utc: str) -> None:
        """Drain and flush, end SWMR, then record the final ``status`` and ``ended_utc``.

        Blocks until everything queued is on disk. Calling it again does nothing.

        Args:
            status: one of completed, aborted, failed (or running, for a test).
            ended_utc: ISO-8601 UTC end time.

        Raises:
            ValueError: an unknown status.
            RunFileError: the writer thread failed (with its cause), or the final
                attributes could not be written.
        """
        final = layout.RunStatus(status).value
        with self._lock:
            if self._state == "closed":
                return
            was_open = self._state == "open"
            self._state = "closed"
            if was_open:
                self._queue.put(_STOP)
        if not was_open or self._thread is None:
            return
        self._thread.join()
        try:
            self._raise_if_failed()
            self._write_final_status(final, ended_utc)
        finally:
            unlock(self._lock_fd)
            self._lock_fd = None

    def _write_final_status(self, final: str, ended_utc: str) -> None:
        try:
            # locking=False: a live reader (GUI, notebook) still holding the file has a shared
            # lock that makes a locking r+ open fail (EAGAIN, measured). HDF5's lock guards
            # against a second writer; this object is the file's only writer by construction.
            with h5py.File(self._path, "r+", libver=layout.LIBVER, locking=False) as h5:
                h5.attrs[layout.ATTR_STATUS] = final
                h5.attrs[layout.ATTR_ENDED_UTC] = ended_utc
        except OSError as exc:
            raise RunFileError(f"{self._path}: cannot write the final status: {exc}") from exc

    # -- producer side --------------------------------------------------------------------

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Record an event (a command, an alarm, a step): one row of ``/events``.

        Text longer than its field (source 64, kind 32, message 512 UTF-8 bytes) is truncated
        with a marker rather than rejected: losing an alarm is worse than shortening it.
        """
        row = (
            float(t_s),
            _encode(str(source), layout.EVENT_SOURCE_BYTES),
            _encode(str(kind), layout.EVENT_KIND_BYTES),
            _encode(str(message), layout.EVENT_MESSAGE_BYTES),
        )
        self._put(("row", self._events.path, row))

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Record one telemetry sample of ``device`` at ``t_s``.

        A declared quantity missing from ``values`` is recorded as NaN (a partial reading).

        Raises:
            ValueError: an undeclared device or quantity, or a non-numeric value.
            RunFileError: the writer failed, or is not open.
        """
        table = self._telemetry.get(device)
        if table is None:
            raise ValueError(
                f"telemetry from undeclared device {device!r} (declared: {sorted(self._telemetry)})"
            )
        row = [math.nan] * len(table.columns)
        row[0] = float(t_s)
        for quantity, value in values.items():
            i = table.index.get(quantity)
            if i is None or i == 0:
                raise ValueError(f"device {device!r}: undeclared quantity {quantity!r}")
            row[i] = float(value)
        self._put(("row", table.path, tuple(row)))

    def append_rows(self, path: str, rows: Mapping[str, npt.ArrayLike]) -> None:
        """Append a block of rows to a declared table, given column by column.

        Args:
            path: the table declared with :meth:`declare_table` (or a telemetry table).
            rows: column name -> 1-D values, every declared column, all of one length. Text
                columns take ``str`` values (truncated with a marker if too long).

        Raises:
            ValueError: an undeclared table, missing or extra columns, unequal lengths, or
                values that do not convert to the column's dtype.
            RunFileError: the writer failed, or is not open.
        """
        table = self._tables.get(_check_path(path))
        if table is None or table is self._events:
            raise ValueError(f"append_rows: {path!r} is not a declared table")
        names = {c.name for c in table.columns}
        if set(rows) != names:
            raise ValueError(
                f"table {table.path}: columns {sorted(rows)} do not match {sorted(names)}"
            )
        arrays: list[np.ndarray[Any, Any]] = []
        for col in table.columns:
            values = rows[col.name]
            if col.dtype.kind == "S":
                texts = np.asarray(values, dtype=object)
                if texts.ndim != 1:
                    raise ValueError(f"table {table.path}, column {col.name!r}: not 1-D")
                data = [_encode(str(v), col.dtype.itemsize) for v in texts]
                arr = np.array(data, dtype=col.dtype) if data else np.empty(0, col.dtype)
            else:
                arr = np.array(values, dtype=col.dtype)  # a copy: the caller may reuse its buffer
            if arr.ndim != 1:
                raise ValueError(f"table {table.path}, column {col.name!r}: not 1-D")
            arrays.append(arr)
        if len({len(a) for a in arrays}) != 1:
            raise ValueError(f"table {table.path}: columns have different lengths")
        if len(arrays[0]):
            self._put(("block", table.path, arrays))

    def append_frame(self, path: str, frame: npt.ArrayLike) -> None:
        """Append one frame to a stack declared with :meth:`declare_frames` (copied now).

        Raises:
            ValueError: an undeclared stack, or a frame of the wrong shape.
            RunFileError: the writer failed, or is not open.
        """
        stack = self._frames.get(_check_path(path))
        if stack is None:
            raise ValueError(f"append_frame: {path!r} is not a declared frame stack")
        data = np.array(frame, dtype=stack.dtype)
        if data.shape != stack.shape:
            raise ValueError(f"{stack.path}: frame shape {data.shape} != {stack.shape}")
        # Backpressure: at most MAX_PENDING_FRAMES frames wait unwritten, so memory stays
        # bounded however fast frames come (a simulated run renders faster than the disk).
        for _ in range(int(FRAME_SLOT_TIMEOUT_S / _SLOT_POLL_S)):
            if self._frame_slots.acquire(timeout=_SLOT_POLL_S):
                break
            self._raise_if_failed()  # a dead writer frees no slot: say why at once
        else:
            raise RunFileError(
                f"{self._path}: the disk took more than {FRAME_SLOT_TIMEOUT_S:g} s to take a "
                f"frame ({MAX_PENDING_FRAMES} frames waiting)"
            )
        try:
            self._put(("frame", stack.path, data))
        except BaseException:
            self._frame_slots.release()
            raise

    def append_encoded_frame(
        self,
        path: str,
        chunk: np.ndarray[Any, Any] | bytes,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """Append one frame already encoded as its chunk, without copying it (fast path).

        The caller lends ``chunk`` until ``on_written`` is called: for an uncompressed stack
        the frame itself (C-contiguous, the stack's shape and dtype), for a compressed one
        the bytes of :meth:`chipctl.runfile.framestore.FrameEncoder.encode`. This is how
        :class:`chipctl.streaming.FrameStream` recycles a ring of pre-allocated buffers.

        Args:
            path: a stack declared with :meth:`declare_frames`.
            chunk: the encoded frame; not copied, not to be changed before ``on_written``.
            on_written: called on the writer thread once the chunk is in the file (keep it
                short; an exception in it stops the writer like an I/O error). It is never
                called if the writer fails first: see :attr:`failure`.

        Raises:
            ValueError: an undeclared stack, or an uncompressed frame of the wrong shape or
                dtype.
            RunFileError: the writer failed, or is not open.
        """
        stack = self._frames.get(_check_path(path))
        if stack is None:
            raise ValueError(f"append_encoded_frame: {path!r} is not a declared frame stack")
        if stack.compression is Compression.NONE:
            if not isinstance(chunk, np.ndarray):
                raise ValueError(f"{stack.path}: an uncompressed chunk must be a numpy frame")
            if chunk.shape != stack.shape or chunk.dtype != stack.dtype:
                raise ValueError(
                    f"{stack.path}: frame {chunk.shape} {chunk.dtype} != {stack.shape} "
                    f"{stack.dtype}"
                )
            if not chunk.flags.c_contiguous:
                raise ValueError(f"{stack.path}: frame is not C-contiguous")
        self._put(("chunk", stack.path, (chunk, on_written)))

    @property
    def failure(self) -> RunFileError | None:
        """The error that stopped the writer thread, or None while it is healthy.

        The same one-line error the producers get (:class:`DiskFullError` for a full disk),
        with the original exception as its ``__cause__``; monitors poll it.
        """
        return self._error

    def _put(self, item: tuple[str, str, Any]) -> None:
        with self._lock:
            self._raise_if_failed()
            if self._state != "open":
                raise RunFileError(f"{self._path}: run file is {self._state_word()}")
            self._queue.put(item)

    def _state_word(self) -> str:
        return "not open yet" if self._state == "new" else "closed"

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is not None:
            # A fresh exception each time: re-raising one object from many threads would
            # chain every caller's traceback onto it.
            raise type(error)(str(error)) from error.__cause__

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._fail(exc)
            io_error = _errno_of(exc) is not None or isinstance(exc, OSError)
            self._release(io_failed=io_error and not self._in_callback)
        else:
            self._writing = "the end of the file (close)"
            try:
                self._file.close()
            except BaseException as exc:  # everything was flushed; only the close failed
                self._fail(exc)
        finally:
            self._stacks = {}
            self._columns = {}
            self._mark = None
            self._file = None
            self._fd = None

    def _fail(self, exc: BaseException) -> None:
        """Keep the first failure as a one-line RunFileError naming what and how much is kept."""
        where = f"in {self._writing}" if self._in_callback else f"while writing {self._writing}"
        if math.isfinite(self._journal_t_s):
            kept = f"the file keeps every record before t={self._journal_t_s:.6g} s"
        else:
            kept = "the file keeps what its last flush wrote"
        number = _errno_of(exc)
        error: RunFileError
        if number in _DISK_FULL_ERRNOS:
            error = DiskFullError(
                f"{self._path}: disk full {where} ({_errno_words(number)}); "
                f"nothing more is written, {kept}"
            )
        elif number is not None:
            error = RunFileError(
                f"{self._path}: write failed {where} ({_errno_words(number)}); "
                f"nothing more is written, {kept}"
            )
        else:
            error = RunFileError(
                f"{self._path}: run file writer failed {where}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            )
        error.__cause__ = exc
        self._error = error

    def _release(self, *, io_failed: bool) -> None:
        """Let go of the file after a failure without writing anything HDF5 got wrong.

        After an I/O error the descriptor is fenced first (module docstring); after another
        failure (a callback's exception) the file is healthy and is flushed, then closed, and
        fenced only if that flush fails. A close that fails is tried once more: HDF5 2.0
        crashes at interpreter exit if a file whose close failed is left in its list.
        """
        h5 = self._file
        if not io_failed:
            try:
                h5.flush()
            except Exception:
                io_failed = True
        if io_failed:
            self._fence()
        for _ in range(2):
            try:
                h5.close()
                return
            except Exception:
                continue

    def _fence(self) -> None:
        """Point the file's descriptor at /dev/null: HDF5 can write nothing more to the file."""
        fd = self._fd
        if fd is None:
            return
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)

    def _loop(self) -> None:
        next_flush_s = self._now_s() + self._flush_interval_s
        while True:
            remaining_s = next_flush_s - self._now_s()
            if remaining_s <= 0:
                # Take in what is already queued, so a flush covers every call made before it.
                for _ in range(self._queue.qsize()):
                    if not self._handle(self._queue.get_nowait()):
                        return
                self._write_pending()
                self._flush()
                next_flush_s = self._now_s() + self._flush_interval_s
                continue
            try:
                item = self._queue.get(timeout=remaining_s)
            except queue.Empty:
                continue
            if not self._handle(item):
                return

    def _handle(self, item: Any) -> bool:
        """Take one queued item; on the stop marker, write and flush everything, return False."""
        if item is _STOP:
            self._write_pending()
            self._flush(force=True)
            return False
        kind, path, payload = item
        if kind == "frame":
            self._write_frame(path, payload)
            return True
        if kind == "chunk":
            chunk, on_written = payload
            self._writing = path
            self._stacks[path].append_chunk(chunk)
            self._count_frame(path)
            if on_written is not None:
                self._callback(on_written)
            return True
        self._pending[path].append(payload)
        self._pending_rows[path] += 1 if kind == "row" else len(payload[0])
        if self._pending_rows[path] >= self._tables[path].chunk_rows:
            self._write_table(path)
        return True

    def _write_pending(self) -> None:
        for path, n in self._pending_rows.items():
            if n:
                self._write_table(path)

    def _write_table(self, path: str) -> None:
        self._writing = path
        table = self._tables[path]
        pending = self._pending[path]
        per_column: list[list[np.ndarray[Any, Any]]] = [[] for _ in table.columns]
        rows: list[tuple[Any, ...]] = []
        for item in pending:
            if isinstance(item, tuple):
                rows.append(item)
                continue
            self._collect_rows(table, rows, per_column)
            for i, arr in enumerate(item):
                per_column[i].append(arr)
        self._collect_rows(table, rows, per_column)
        n0 = self._counts[path]
        n = self._pending_rows[path]
        time_index = table.index.get(layout.TIME_COLUMN)
        for i, (ds, parts) in enumerate(zip(self._columns[path], per_column)):
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            ds.resize((n0 + n,))
            ds[n0:] = data
            if i == time_index and data.dtype.kind in "iuf":
                latest = float(np.max(data, initial=-np.inf, where=~np.isnan(data)))
                self._seen_t_s = max(self._seen_t_s, latest)
        pending.clear()
        self._pending_rows[path] = 0
        self._counts[path] = n0 + n
        self._appends[path] += 1
        self._dirty = True

    @staticmethod
    def _collect_rows(
        table: _Table, rows: list[tuple[Any, ...]], per_column: list[list[np.ndarray[Any, Any]]]
    ) -> None:
        if not rows:
            return
        dtypes = {col.dtype for col in table.columns}
        if len(dtypes) == 1 and next(iter(dtypes)).kind in "biuf":
            # Telemetry: one C-level conversion of the whole block, then one row per column.
            block = np.array(rows, dtype=next(iter(dtypes))).T.copy()
            for i in range(len(table.columns)):
                per_column[i].append(block[i])
        else:
            for i, col in enumerate(table.columns):
                per_column[i].append(np.array([r[i] for r in rows], dtype=col.dtype))
        rows.clear()

    def _write_frame(self, path: str, frame: np.ndarray[Any, Any]) -> None:
        self._writing = path
        try:
            self._stacks[path].append_frame(frame)
            self._count_frame(path)
        finally:
            self._frame_slots.release()

    def _count_frame(self, path: str) -> None:
        self._counts[path] += 1
        self._appends[path] += 1
        self._dirty = True

    def _flush(self, *, force: bool = False) -> None:
        if not (self._dirty or force):
            return
        self._writing = "the flush"
        self._sync()
        for stack in self._stacks.values():
            stack.flushed()
        if self._seen_t_s > self._journal_t_s:
            # Only now is everything before _seen_t_s on disk: say so, and flush that too.
            self._write_mark(self._seen_t_s)
            self._sync()
            self._journal_t_s = self._seen_t_s
        self._dirty = False
        self._flushes += 1
        complete = self._journal_t_s if math.isfinite(self._journal_t_s) else None
        report = FlushReport(self._flushes, dict(self._counts), dict(self._appends), complete)
        self._last_flush = report
        if self._on_flush is not None:
            self._callback(self._on_flush, report)

    def _callback(self, function: Callable[..., None], *args: Any) -> None:
        """Call an owner's callback; an exception from it is reported as the callback's."""
        before = self._writing
        self._writing = f"the callback {getattr(function, '__qualname__', repr(function))}"
        self._in_callback = True
        function(*args)
        self._in_callback = False
        self._writing = before

    def _sync(self) -> None:
        self._file.flush()
        if self._fsync and self._fd is not None:
            os.fsync(self._fd)

    def _write_mark(self, t_s: float) -> None:
        self._writing = layout.COMPLETE_BEFORE
        self._mark[0] = t_s
