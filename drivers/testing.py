"""Transports for exact byte-exchange tests, shipped so users can test their drivers too.

:class:`ScriptedTransport` plays the device side of a script of ``(expected_write,
reply)`` pairs, in the manner of pymeasure's ``expected_protocol`` (aesthetics-anchors
§5.3): every write must match the next expected bytes exactly, and :meth:`assert_done`
fails if a pair was not used or a reply was left unread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from drivers.errors import TransportError

__all__ = ["ScriptedTransport", "ScriptMismatch"]


class ScriptMismatch(AssertionError):
    """Raised when the driver wrote something other than the script expected."""


class ScriptedTransport:
    """A transport that expects exact writes and answers with scripted replies.

    Args:
        script: ``(expected_write, reply)`` pairs in order. A reply of ``b""`` means the
            device stays silent (the driver's read will time out).
        name: the link name.
    """

    def __init__(self, script: Iterable[tuple[bytes, bytes]], *, name: str = "scripted") -> None:
        """Load the script; nothing is open yet."""
        self.name = name
        self.lock = threading.RLock()
        self._script = list(script)
        self._index = 0
        self._pending = bytearray()
        self._written = bytearray()
        self._open = False
        self.writes: list[bytes] = []

    @property
    def is_open(self) -> bool:
        """Tell whether the link is open."""
        return self._open

    def open(self) -> None:
        """Open (always succeeds)."""
        self._open = True

    def close(self) -> None:
        """Close."""
        self._open = False

    def write(self, data: bytes) -> None:
        """Match ``data`` against the script; queue the scripted reply once a write is whole."""
        if not self._open:
            raise TransportError(self.name, "port is not open", sent=data)
        self.writes.append(bytes(data))
        self._written += data
        while self._index < len(self._script):
            expected, reply = self._script[self._index]
            if len(self._written) < len(expected):
                if not expected.startswith(bytes(self._written)):
                    break
                return
            if not self._written.startswith(expected):
                break
            del self._written[: len(expected)]
            self._pending += reply
            self._index += 1
            if not self._written:
                return
        expected_next = self._script[self._index][0] if self._index < len(self._script) else None
        raise ScriptMismatch(
            f"step {self._index}: driver wrote {bytes(self._written)!r}, expected {expected_next!r}"
        )

    def read_some(self, timeout_s: float) -> bytes:
        """Return the pending reply bytes (``b""`` if none: a timeout)."""
        if not self._open:
            raise TransportError(self.name, "port is not open")
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def reset_input(self) -> None:
        """Discard pending reply bytes."""
        self._pending.clear()

    def assert_done(self) -> None:
        """Fail unless every scripted pair was used and every reply was read."""
        if self._index != len(self._script):
            raise ScriptMismatch(
                f"only {self._index} of {len(self._script)} scripted exchanges happened; "
                f"next expected {self._script[self._index][0]!r}"
            )
        if self._written:
            raise ScriptMismatch(f"unmatched trailing write {bytes(self._written)!r}")
        if self._pending:
            raise ScriptMismatch(f"reply left unread: {bytes(self._pending)!r}")
