"""The run file: one HDF5 file per run, written live (SWMR) and read back.

:class:`RunFileWriter` writes it from a single writer thread fed by a queue;
:func:`open_run` / :class:`RunFile` read it, live or finished; :func:`reopen_for_resume`
cuts the file of a run whose process died back to a complete point and appends to it again.
The layout is defined in :mod:`chipctl.runfile.layout`.
"""

from chipctl.runfile.layout import SCHEMA_VERSION, RunStatus
from chipctl.runfile.reader import Event, RunFile, open_run
from chipctl.runfile.recover import CrashedRun, ReopenedRun, inspect_run, reopen_for_resume
from chipctl.runfile.writer import (
    DiskFullError,
    FlushReport,
    RunFileError,
    RunFileWriter,
    disk_free_bytes,
)

__all__ = [
    "SCHEMA_VERSION",
    "CrashedRun",
    "DiskFullError",
    "Event",
    "FlushReport",
    "ReopenedRun",
    "RunFile",
    "RunFileError",
    "RunFileWriter",
    "RunStatus",
    "disk_free_bytes",
    "inspect_run",
    "open_run",
    "reopen_for_resume",
]
