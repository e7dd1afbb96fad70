"""Read a run file: finished, live (its writer still running), or left by a killed writer.

The file is opened read-only with ``swmr=True``, which is what lets another process follow a
run while it is written, and also what opens a file whose writer died (its "open for writing"
flag is still set; a plain read-only open refuses it). Reads see a *snapshot*: each table's
length is fixed at open and at :meth:`RunFile.refresh`, and cut to its shortest column, so the
columns of a table always line up even when the writer had extended only some of them.
Root attributes are read at open; a live file's ``status`` is "running" until its writer closes
it, and a file whose writer was killed stays "running".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from chipctl.runfile import layout
from chipctl.runfile.writer import RunFileError

__all__ = ["Event", "RunFile", "open_run"]


@dataclass(frozen=True)
class Event:
    """One row of ``/events``."""

    t_s: float
    source: str
    kind: str
    message: str


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _attr(value: Any) -> Any:
    """Turn an HDF5 attribute into a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class RunFile:
    """A run file opened for reading; use as a context manager.

    Args:
        path: the run file.

    Raises:
        RunFileError: the file is missing, is not HDF5, is not a chipctl run file, or was
            written by a newer chipctl; the message is one line naming the file.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        try:
            self._h5: Any = h5py.File(self._path, "r", swmr=True)
        except FileNotFoundError as exc:
            raise RunFileError(f"{self._path}: no such file") from exc
        except OSError as exc:
            raise RunFileError(f"{self._path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._attrs = {k: _attr(v) for k, v in self._h5.attrs.items()}
            self._check_format()
        except BaseException:
            self._h5.close()
            raise
        self._lengths: dict[str, int] = {}
        self.refresh()

    def _check_format(self) -> None:
        if self._attrs.get(layout.ATTR_FORMAT) != layout.FORMAT_NAME:
            raise RunFileError(
                f"{self._path}: not a chipctl run file "
                f"(root attribute {layout.ATTR_FORMAT!r} is not {layout.FORMAT_NAME!r})"
            )
        version = self._attrs.get(layout.ATTR_SCHEMA_VERSION)
        if not isinstance(version, int) or version > layout.SCHEMA_VERSION:
            raise RunFileError(
                f"{self._path}: run-file schema version {version!r} is not supported "
                f"(this chipctl reads up to {layout.SCHEMA_VERSION})"
            )

    def __enter__(self) -> RunFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._h5.close()

    @property
    def path(self) -> Path:
        """The run file's path."""
        return self._path

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as plain Python values (a copy)."""
        return dict(self._attrs)

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``aborted`` or ``failed`` (``running`` if killed)."""
        return str(self._attrs.get(layout.ATTR_STATUS, ""))

    @property
    def clock(self) -> str:
        """How the run's time ran: ``virtual``, ``real``, ``scaled x<speed>`` ("" if unsaid)."""
        return str(self._attrs.get(layout.ATTR_CLOCK, ""))

    @property
    def config_text(self) -> str:
        """The exact instrument config text of the run."""
        return self._scalar_text(layout.CONFIG_TEXT)

    @property
    def protocol_text(self) -> str:
        """The exact protocol text of the run."""
        return self._scalar_text(layout.PROTOCOL_SOURCE)

    @property
    def protocol_sha256(self) -> str:
        """The sha256 (hex) of the protocol text's UTF-8 bytes, as recorded by the writer."""
        return str(_attr(self._h5[layout.PROTOCOL_SOURCE].attrs[layout.ATTR_SHA256]))

    @property
    def protocol_name(self) -> str:
        """The protocol's name."""
        return str(_attr(self._h5[layout.PROTOCOL_GROUP].attrs[layout.ATTR_NAME]))

    def _scalar_text(self, path: str) -> str:
        return _text(self._h5[path][()])

    def refresh(self) -> None:
        """Take a new snapshot of every table's length, to follow a live run."""
        lengths: dict[str, int] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and layout.ATTR_COLUMNS in obj.attrs:
                n = None
                for column in obj.values():
                    column.refresh()
                    n = len(column) if n is None else min(n, len(column))
                lengths["/" + name] = n or 0

        self._h5.visititems(visit)
        self._lengths = lengths

    def tables(self) -> list[str]:
        """Return the paths of every table in the file (events, telemetry, analysis)."""
        return sorted(self._lengths)

    def table(self, path: str) -> dict[str, np.ndarray[Any, Any]]:
        """Return a table's columns (name -> 1-D array), cut to the snapshot's length.

        Text columns are returned as arrays of ``str``.

        Raises:
            KeyError: no such table.
        """
        n = self._table_length(path)
        group = self._h5[path]
        out: dict[str, np.ndarray[Any, Any]] = {}
        for name in self._columns(path):
            data = group[name][:n]
            if data.dtype.kind == "S":
                data = np.array([_text(v) for v in data], dtype=object)
            out[name] = data
        return out

    def table_units(self, path: str) -> dict[str, str]:
        """Return a table's units per column."""
        self._table_length(path)
        group = self._h5[path]
        return {
            name: str(_attr(group[name].attrs.get(layout.ATTR_UNITS, "")))
            for name in self._columns(path)
        }

    def _table_length(self, path: str) -> int:
        key = "/" + path.strip("/")
        if key not in self._lengths:
            raise KeyError(f"{self._path}: no table {path!r}")
        return self._lengths[key]

    def _columns(self, path: str) -> list[str]:
        return [str(c) for c in _attr(self._h5[path].attrs[layout.ATTR_COLUMNS])]

    def events(self) -> list[Event]:
        """Return every event of the snapshot, in the order they were recorded."""
        cols = self.table(layout.EVENTS)
        return [
            Event(float(t), str(s), str(k), str(m))
            for t, s, k, m in zip(cols["t_s"], cols["source"], cols["kind"], cols["message"])
        ]

    def telemetry_devices(self) -> list[str]:
        """Return the names of the devices with a telemetry table."""
        return sorted(self._h5[layout.TELEMETRY_GROUP].keys())

    def telemetry(self, device: str) -> dict[str, np.ndarray[Any, Any]]:
        """Return a device's telemetry: ``t_s`` and one float64 array per quantity.

        Raises:
            KeyError: no telemetry for ``device``.
        """
        return self.table(layout.telemetry_path(device))

    def units(self, device: str) -> dict[str, str]:
        """Return a device's telemetry units per column (``t_s`` is ``"s"``)."""
        return self.table_units(layout.telemetry_path(device))

    def frames(self, path: str) -> Any:
        """Return a frame stack as an ``h5py.Dataset`` (index it to read frames lazily)."""
        ds = self._h5[path]
        ds.refresh()
        return ds


def open_run(path: Path | str) -> RunFile:
    """Open a run file for reading (see :class:`RunFile`)."""
    return RunFile(path)
