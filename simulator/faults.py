"""Communication faults shared by every emulator.

Each emulator owns one :class:`CommFaults` and passes its replies through
:meth:`CommFaults.filter_reply`. Tests and the instrument config switch faults on and
off; device-specific faults (stall, occlusion, end of travel, valve jam, power-on reset)
are methods of the emulator itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CommFaults"]


@dataclass
class CommFaults:
    """Switchable faults on the link between host and device.

    Attributes:
        no_reply: the device swallows commands and answers nothing.
        garble: every reply has one byte corrupted (a different byte value each time).
        partial: every reply is cut to its first half.
        disconnected: the port has gone (USB unplugged): reads and writes raise
            ``ConnectionError``, and input is lost.
        seed: seeds which byte is garbled, so faulty runs are reproducible.
    """

    no_reply: bool = False
    garble: bool = False
    partial: bool = False
    disconnected: bool = False
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the garbling generator."""
        self._rng = np.random.default_rng(self.seed)

    def check_connected(self) -> None:
        """Raise ``ConnectionError`` if the port has disappeared."""
        if self.disconnected:
            raise ConnectionError("emulated port disappeared")

    def filter_reply(self, reply: bytes) -> bytes:
        """Return ``reply`` as the host would receive it under the active faults."""
        if self.no_reply or not reply:
            return b""
        out = bytearray(reply)
        if self.garble:
            index = int(self._rng.integers(len(out)))
            out[index] ^= int(self._rng.integers(1, 256))
        if self.partial:
            out = out[: max(1, len(out) // 2)]
        return bytes(out)

    def clear(self) -> None:
        """Switch every fault off."""
        self.no_reply = self.garble = self.partial = self.disconnected = False
