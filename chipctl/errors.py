"""Errors of the application layer.

Everything a user can get wrong (a protocol, an instrument config, a command-line value)
raises a subclass of :class:`ChipctlError` whose ``str()`` is one line naming what and
where. The CLI prints that line and exits with :attr:`ChipctlError.exit_code`; nobody sees
a traceback for bad input. Device faults come from :mod:`drivers.errors` and are reported
the same way.
"""

from __future__ import annotations

__all__ = [
    "ChipctlError",
    "RunFileError",
    "ConfigError",
    "InputError",
    "ProtocolError",
    "RunAborted",
    "RunFailed",
    "RunStateError",
]


class ChipctlError(Exception):
    """Base class; ``exit_code`` is what the CLI returns for it."""

    exit_code = 1


class InputError(ChipctlError):
    """Raised for bad input of any kind (exit code 2)."""

    exit_code = 2


class ConfigError(InputError):
    """Raised when an instrument config is unreadable or invalid.

    Args:
        source: the config file (or ``"<built-in reference rig>"``).
        where: the table or key concerned, e.g. ``"devices.medium.syringe"``.
        message: what is wrong.
    """

    def __init__(self, source: str, where: str | None, message: str) -> None:
        """Build the one-line message ``source: where: message``."""
        self.source = source
        self.where = where
        self.message = message
        parts = [source] + ([where] if where else []) + [message]
        super().__init__(": ".join(parts))


class ProtocolError(InputError):
    """Raised when a protocol is unreadable, invalid, or does not fit the instrument.

    Args:
        source: the protocol file (path or built-in name).
        message: what is wrong.
        line: the 1-based line in the file, where known.
        step_index: the step's number (1-based) or path (``"3/2.1"``), for errors in a step.
        step_name: the step's name, if it has one.
        field: the field concerned (``"rate"``, ``"pump"``...).
    """

    def __init__(
        self,
        source: str,
        message: str,
        *,
        line: int | None = None,
        step_index: int | str | None = None,
        step_name: str | None = None,
        field: str | None = None,
    ) -> None:
        """Build ``file:line: step N 'name': field 'x': message``."""
        self.source = source
        self.message = message
        self.line = line
        self.step_index = step_index
        self.step_name = step_name
        self.field = field
        where = source if line is None else f"{source}:{line}"
        parts = [where]
        if step_index is not None:
            parts.append(f"step {step_index}" + (f" ({step_name!r})" if step_name else ""))
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(message)
        super().__init__(": ".join(parts))


class RunStateError(ChipctlError):
    """Raised when a run is asked for something its state does not allow (exit 1).

    For example: manual control while the protocol is running, or resuming a run that is
    not paused.
    """


class RunFailed(ChipctlError):
    """Raised when a run stops because of a device fault or an internal error (exit 1)."""


class RunAborted(ChipctlError):
    """Raised when the operator aborted the run (exit 1)."""


class RunFileError(ChipctlError):
    """Raised when a run file cannot be created, written or read (exit 1).

    Raised by the writer from the next call after its thread failed (disk full, I/O
    error), and by the reader for a file that is missing or not a chipctl run file.
    """
