"""The Cavro's distribution valve seen through the :class:`~drivers.roles.Valve` role.

A Cavro is one device with two jobs: a syringe pump and a selector valve in front of the
syringe. :class:`CavroValve` is a view of the same :class:`~drivers.cavro.pump.CavroPump`
(same link, same state), so protocols can turn the Cavro's valve with the same step that
turns any other valve. The pump owns the link: connecting or closing the view does
nothing.
"""

from __future__ import annotations

from drivers.cavro.pump import CavroPump
from drivers.roles import Valve

__all__ = ["CavroValve"]


class CavroValve(Valve):
    """The valve of ``pump``, as a Valve.

    Args:
        pump: the Cavro whose valve this is.
    """

    def __init__(self, pump: CavroPump) -> None:
        """Wrap ``pump``; no I/O."""
        super().__init__(name=pump.name, n_positions=pump.n_ports)
        self.pump = pump

    def connect(self) -> None:
        """Nothing to do: the pump connects the link."""

    def close(self) -> None:
        """Nothing to do: the pump closes the link."""

    def reconnect(self) -> None:
        """Reconnect the pump (re-reads plunger and valve position)."""
        self.pump.reconnect()

    def _do_select(self, position: int) -> None:
        self.pump.select_port(position)

    def _do_read_position(self) -> int:
        return self.pump.read_port()
