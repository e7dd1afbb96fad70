"""The run file: one HDF5 file per run, written live (SWMR) and read back.

:class:`RunFileWriter` writes it from a single writer thread fed by a queue;
:func:`open_run` / :class:`RunFile` read it, live or finished. The layout is defined in
:mod:`chipctl.runfile.layout`.
"""

from chipctl.runfile.layout import SCHEMA_VERSION, RunStatus
from chipctl.runfile.reader import Event, RunFile, open_run
from chipctl.runfile.writer import FlushReport, RunFileError, RunFileWriter

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "FlushReport",
    "RunFile",
    "RunFileError",
    "RunFileWriter",
    "RunStatus",
    "open_run",
]
