"""Names, dtypes and chunk sizes of the run file: the one place that defines its layout.

Writer and reader both take their paths from here, so the layout cannot drift between them.
Layout of schema version 1::

    /                      attrs: format="chipctl-run", schema_version, chipctl_version,
                                  status (running|completed|aborted|failed), simulated (bool),
                                  started_utc, ended_utc ("" while running), seed (-1 = none),
                                  flush_interval_s; when known clock ("virtual", "real",
                                  "scaled x10"); after a crash resume resumed_count and
                                  resumed_utc (one ISO time per resume)
    /config/text           scalar UTF-8 string: the exact instrument config text
    /protocol              attrs: name
    /protocol/source       scalar UTF-8 string: the exact protocol text; attrs: sha256, name
    /events/{t_s,source,kind,message}
                           one 1-D column per field (a "table", see below)
    /telemetry/<device>/{t_s,<quantity>...}
                           a table per device; float64 columns
    /images, /analysis     reserved for frame stacks and analysis tables
    /complete_before_t_s   one float64 (units "s"), the completeness mark: every record with
                           a time before it is on disk; NaN until the first such flush (see
                           COMPLETE_BEFORE)

A *table* is a group whose datasets are 1-D columns of equal length, all extended together;
the group carries ``columns`` (their order). Columns are separate datasets rather than one
compound dataset because every tool reads a plain float64 column, and so each column can carry
its own ``units`` attribute. Every dataset carries ``units`` (``""`` for text).

Text columns are fixed-length, NUL-padded UTF-8 (``h5py.string_dtype("utf-8", n)``), not
variable-length strings: variable-length data lives in the global heap, whose writes are not
ordered by SWMR's flush dependencies, so a live reader (or a reader of a file whose writer was
killed) could see a row pointing at heap data that is not yet on disk. A value longer than its
field is cut at a UTF-8 character boundary and ends with :data:`TRUNCATION_MARKER`.
"""

from __future__ import annotations

import enum
from typing import Final

import h5py
import numpy as np

__all__ = [
    "ANALYSIS_GROUP",
    "ATTR_CHIPCTL_VERSION",
    "ATTR_CLOCK",
    "ATTR_COLUMNS",
    "ATTR_ENDED_UTC",
    "ATTR_FLUSH_INTERVAL_S",
    "ATTR_FORMAT",
    "ATTR_NAME",
    "ATTR_RESUMED_COUNT",
    "ATTR_RESUMED_UTC",
    "ATTR_SCHEMA_VERSION",
    "ATTR_SEED",
    "ATTR_SHA256",
    "ATTR_SIMULATED",
    "ATTR_STARTED_UTC",
    "ATTR_STATUS",
    "ATTR_UNITS",
    "CONFIG_TEXT",
    "EVENTS",
    "EVENT_KIND_BYTES",
    "EVENT_MESSAGE_BYTES",
    "EVENT_SOURCE_BYTES",
    "EVENTS_CHUNK_ROWS",
    "COMPLETE_BEFORE",
    "FORMAT_NAME",
    "IMAGES_GROUP",
    "LIBVER",
    "NO_SEED",
    "PROTOCOL_GROUP",
    "PROTOCOL_SOURCE",
    "RunStatus",
    "SCHEMA_VERSION",
    "TELEMETRY_CHUNK_ROWS",
    "TELEMETRY_GROUP",
    "TIME_COLUMN",
    "TRUNCATION_MARKER",
    "event_columns",
    "telemetry_path",
    "utf8",
]

SCHEMA_VERSION: Final = 1
"""Bumped whenever a path, dtype or attribute changes meaning; readers refuse newer files."""

FORMAT_NAME: Final = "chipctl-run"
"""Value of the root ``format`` attribute: how a reader recognises a chipctl run file."""

LIBVER: Final = ("v110", "v110")
"""HDF5 format bounds: SWMR needs at least 1.10 objects; capping at 1.10 keeps run files
readable by every HDF5 >= 1.10 tool (h5dump, HDFView, MATLAB), not only by HDF5 2.0."""

# Root attributes.
ATTR_FORMAT: Final = "format"
ATTR_SCHEMA_VERSION: Final = "schema_version"
ATTR_CHIPCTL_VERSION: Final = "chipctl_version"
ATTR_STATUS: Final = "status"
ATTR_SIMULATED: Final = "simulated"
ATTR_STARTED_UTC: Final = "started_utc"
ATTR_ENDED_UTC: Final = "ended_utc"
ATTR_SEED: Final = "seed"
NO_SEED: Final = -1
ATTR_FLUSH_INTERVAL_S: Final = "flush_interval_s"
ATTR_CLOCK: Final = "clock"
"""How the run's time ran: ``"virtual"``, ``"real"`` or ``"scaled x<speed>"``. A resumed run
goes on in the same mode, so the file says which it was."""
ATTR_RESUMED_COUNT: Final = "resumed_count"
ATTR_RESUMED_UTC: Final = "resumed_utc"

# Dataset and group attributes.
ATTR_UNITS: Final = "units"
ATTR_COLUMNS: Final = "columns"
ATTR_SHA256: Final = "sha256"
ATTR_NAME: Final = "name"

# Paths.
CONFIG_TEXT: Final = "/config/text"
PROTOCOL_GROUP: Final = "/protocol"
PROTOCOL_SOURCE: Final = "/protocol/source"
EVENTS: Final = "/events"
TELEMETRY_GROUP: Final = "/telemetry"
IMAGES_GROUP: Final = "/images"
ANALYSIS_GROUP: Final = "/analysis"
COMPLETE_BEFORE: Final = "/complete_before_t_s"
"""The completeness mark: a one-element float64 dataset. After a flush has put on disk every
record handed to the writer before it, the writer overwrites the mark (in place, raw data: safe
under SWMR) with the latest record time T it had taken in, and flushes again; so a mark on
disk proves that every record with a time *before* T, handed over in time order, is on disk
too. Not every record *at* T: records of one instant (many, on a virtual clock) can straddle a
flush. A file left by a killed writer is complete before its mark; :mod:`chipctl.runfile.
recover` cuts there and the run is redone from that instant. One value rather than a row per
flush, so that the file's contents do not depend on when flushes happened: a finished run's
mark is its last record time, and the same seed still gives the same run file."""
TIME_COLUMN: Final = "t_s"

# Field widths of the event table, in UTF-8 bytes.
EVENT_SOURCE_BYTES: Final = 64
EVENT_KIND_BYTES: Final = 32
EVENT_MESSAGE_BYTES: Final = 512
TRUNCATION_MARKER: Final = "…[truncated]"

# Chunk lengths in rows. Set explicitly: h5py's automatic choice is poor for narrow appendable
# data (perf-limits §3: 15 % overhead for a (0, 7) table). A telemetry column chunk is
# 4096 x 8 B = 32 KiB; an event chunk is 128 rows (the message column 64 KiB), since events
# are rare and most event files stay within a chunk or two.
TELEMETRY_CHUNK_ROWS: Final = 4096
EVENTS_CHUNK_ROWS: Final = 128


class RunStatus(enum.StrEnum):
    """Value of the root ``status`` attribute."""

    RUNNING = "running"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"


def utf8(n_bytes: int) -> np.dtype[np.bytes_]:
    """Return the dtype of a fixed-length UTF-8 text column of ``n_bytes`` bytes.

    Args:
        n_bytes: the field width in bytes (>= 1); longer values are truncated on write.
    """
    if n_bytes < 1:
        raise ValueError(f"a text column needs at least 1 byte, got {n_bytes}")
    dtype: np.dtype[np.bytes_] = h5py.string_dtype("utf-8", n_bytes)
    return dtype


def event_columns() -> dict[str, tuple[np.dtype[np.generic], str]]:
    """Return the column declaration of the ``/events`` table (name -> (dtype, units))."""
    return {
        TIME_COLUMN: (np.dtype(np.float64), "s"),
        "source": (utf8(EVENT_SOURCE_BYTES), ""),
        "kind": (utf8(EVENT_KIND_BYTES), ""),
        "message": (utf8(EVENT_MESSAGE_BYTES), ""),
    }


def telemetry_path(device: str) -> str:
    """Return the table path of one device's telemetry."""
    return f"{TELEMETRY_GROUP}/{device}"
