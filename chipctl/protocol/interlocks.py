"""Interlocks: conditions on live telemetry that trip an action, checked on every poll.

Kinds (each scoped to one device, or to every device it applies to):

============== ============================================================ ================
kind           trips when                                                    scope
============== ============================================================ ================
pressure       a pressure signal exceeds ``limit`` for ``for``               pump (its inlet)
flow_deviation a flow sensor differs from the expected flow (the sum of      flow sensor
               the running pumps feeding the chip) by more than
               ``tolerance`` for ``for``
syringe_reserve a syringe's fill falls below ``reserve`` of its capacity     pump that
               (pumps that start empty and draw from reservoirs are exempt)  starts filled
pump_alarm     a pump reports a stall or an alarm                            pump
bubble         a flow sensor flags air in the line for ``for``               flow sensor
lost_device    a device has not answered for ``for``                         any device
============== ============================================================ ================

Actions: ``warn`` (an alarm event), ``pause`` (the run pauses under its pause policy),
``stop_pump`` (the pump concerned, or the one named by ``device``, stops for good; its step
ends early and the protocol goes on), ``abort`` (pumps stopped, valves to waste, run
aborted). Every trip is an ``alarm`` event in the run file from source
``interlock:<kind>``; a tripped interlock re-arms when its condition clears (recorded
as ``alarm_cleared``).

The rig's config gives defaults in ``[interlocks]`` (a table per kind); a protocol's
``[[interlock]]`` tables replace the config's defaults of the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chipctl.config import CHIP
from chipctl.errors import ConfigError
from chipctl.protocol.loader import parse_interlock
from chipctl.protocol.model import InterlockSpec, Protocol
from chipctl.rig import Rig
from chipctl.session import Session

__all__ = ["InterlockMonitor", "Trip", "effective_interlocks"]

#: Flow below which a deviation is measured against this instead (uL/min): a relative
#: tolerance of a tiny expected flow would trip on sensor noise.
FLOW_FLOOR_UL_MIN = 0.5


def effective_interlocks(protocol: Protocol, rig: Rig) -> tuple[InterlockSpec, ...]:
    """Return the protocol's interlocks plus the config defaults of the kinds it omits.

    Raises:
        ConfigError: a config default is malformed.
    """
    declared = {spec.kind for spec in protocol.interlocks}
    result = list(protocol.interlocks)
    for kind, table in rig.config.interlocks.items():
        if kind in declared:
            continue
        if not isinstance(table, Mapping):
            raise ConfigError(rig.config.source, f"interlocks.{kind}", "must be a table")
        try:
            result.append(parse_interlock(kind, table, kind=kind, origin="config"))
        except ValueError as exc:
            raise ConfigError(rig.config.source, f"interlocks.{kind}", str(exc)) from None
    return tuple(result)


@dataclass(frozen=True)
class Trip:
    """One interlock trip: which interlock, about which device, why."""

    spec: InterlockSpec
    device: str
    message: str


@dataclass
class _State:
    since_s: dict[str, float] = field(default_factory=dict)
    tripped: set[str] = field(default_factory=set)


class InterlockMonitor:
    """Checks interlocks against the session's latest telemetry.

    Args:
        specs: the interlocks in effect.
        session: the open session (``last_values``, ``lost_since``, events).
        act: carries out a trip's action (the run engine).
        syringe_start_ul: each pump's syringe fill at the start (from the preflight).
    """

    def __init__(
        self,
        specs: tuple[InterlockSpec, ...],
        session: Session,
        act: Callable[[Trip], None],
        syringe_start_ul: Mapping[str, float],
    ) -> None:
        """Prepare; :meth:`check` after every telemetry poll."""
        self.specs = specs
        self.session = session
        self.rig = session.rig
        self._act = act
        self._start_ul = dict(syringe_start_ul)
        self._states = {id(spec): _State() for spec in specs}
        self.trips: list[Trip] = []

    # -- helpers ------------------------------------------------------------------

    def _inlet(self, pump: str) -> str | None:
        device = self.rig.config.devices.get(pump)
        inlet = device.options.get("inlet") if device is not None else None
        return inlet if isinstance(inlet, str) else None

    def _expected_flow_ul_min(self) -> float:
        total = 0.0
        for name in self.rig.pumps():
            values = self.session.last_values.get(name)
            if values and values.get("running") and self._inlet(name) is not None:
                total += values.get("rate_ul_min", 0.0)
        return total

    def _observe(self, spec: InterlockSpec, key: str, bad: bool, message: str) -> None:
        """Track one condition; trip once after it held ``hold_s``, re-arm when it clears."""
        state = self._states[id(spec)]
        now_s = self.session.t_s()
        if not bad:
            state.since_s.pop(key, None)
            if key in state.tripped:
                state.tripped.discard(key)
                self.session.event(f"interlock:{spec.kind}", "alarm_cleared", f"{key}: cleared")
            return
        since = state.since_s.setdefault(key, now_s)
        if key in state.tripped or now_s - since < spec.hold_s:
            return
        state.tripped.add(key)
        self.trip(Trip(spec, key, message))

    def trip(self, trip: Trip) -> None:
        """Record a trip as an alarm and carry out its action."""
        self.trips.append(trip)
        self.session.event(
            f"interlock:{trip.spec.kind}",
            "alarm",
            f"{trip.device}: {trip.message} -> {trip.spec.action}",
        )
        self._act(trip)

    def _applies(self, spec: InterlockSpec, device: str) -> bool:
        return spec.scope is None or spec.scope == device

    def _watches_sensor(self, spec: InterlockSpec, sensor: str) -> bool:
        """Flow and bubble checks watch every sensor when ``device`` names the pump to stop."""
        if spec.action == "stop_pump" and spec.scope in self.rig.pumps():
            return True
        return self._applies(spec, sensor)

    # -- checks ------------------------------------------------------------------------

    def check(self) -> None:
        """Check every interlock against the latest telemetry (engine thread)."""
        for spec in self.specs:
            match spec.kind:
                case "pressure":
                    self._pressure(spec)
                case "flow_deviation":
                    self._flow(spec)
                case "syringe_reserve":
                    self._reserve(spec)
                case "bubble":
                    self._bubble(spec)
                case "lost_device":
                    self._lost(spec)
                case _:
                    pass  # pump_alarm: event-driven, see pump_alarm()

    def _pressure(self, spec: InterlockSpec) -> None:
        assert spec.limit is not None
        wanted_inlet = self._inlet(spec.scope) if spec.scope in self.rig.pumps() else None
        for device, values in self.session.last_values.items():
            for quantity, value in values.items():
                if not quantity.endswith("_kpa"):
                    continue
                if device == CHIP:
                    inlet = quantity.removeprefix("p_").removesuffix("_kpa")
                    if spec.scope is not None and inlet != wanted_inlet and spec.scope != CHIP:
                        continue
                elif not self._applies(spec, device):
                    continue
                key = f"{device}.{quantity}"
                self._observe(
                    spec,
                    key,
                    value > spec.limit,
                    f"{value:.3g} kPa over the {spec.limit:g} kPa limit",
                )

    def _flow(self, spec: InterlockSpec) -> None:
        assert spec.limit is not None
        expected = self._expected_flow_ul_min()
        for name, role in self.rig.roles.items():
            if role != "flow" or not self._watches_sensor(spec, name):
                continue
            values = self.session.last_values.get(name)
            if not values:
                continue
            measured = values.get("flow_ul_min", 0.0)
            allowed = spec.limit * max(expected, FLOW_FLOOR_UL_MIN)
            self._observe(
                spec,
                name,
                abs(measured - expected) > allowed,
                f"flow {measured:.3g} uL/min, expected {expected:.3g} uL/min "
                f"(tolerance {spec.limit:.0%})",
            )

    def _reserve(self, spec: InterlockSpec) -> None:
        assert spec.limit is not None
        for name in self.rig.pumps():
            if not self._applies(spec, name) or self._start_ul.get(name, 0.0) <= 0.0:
                continue  # a pump that fills from reservoirs (starts empty) has no reserve
            values = self.session.last_values.get(name)
            if not values:
                continue
            pump = self.session.pump(name)
            capacity = pump.syringe.volume_ul
            level = (
                self._start_ul[name]
                - values.get("infused_ul", 0.0)
                + values.get("withdrawn_ul", 0.0)
            )
            self._observe(
                spec,
                name,
                level < spec.limit * capacity,
                f"syringe at {level:.4g} uL, below the {spec.limit:.0%} reserve "
                f"({spec.limit * capacity:.4g} uL)",
            )

    def _bubble(self, spec: InterlockSpec) -> None:
        for name, role in self.rig.roles.items():
            if role != "flow" or not self._watches_sensor(spec, name):
                continue
            values = self.session.last_values.get(name)
            if values is not None:
                self._observe(spec, name, values.get("air_in_line", 0.0) > 0.5, "air in the line")

    def _lost(self, spec: InterlockSpec) -> None:
        now_s = self.session.t_s()
        lost = self.session.lost_since
        for name in self.rig.devices:
            if not self._applies(spec, name):
                continue
            since = lost.get(name)
            bad = since is not None and now_s - since >= spec.hold_s
            # the hold is measured from the loss itself, so observe without a second hold
            state = self._states[id(spec)]
            if not bad:
                if name in state.tripped:
                    state.tripped.discard(name)
                    self.session.event(
                        f"interlock:{spec.kind}", "alarm_cleared", f"{name}: answering again"
                    )
                continue
            if name not in state.tripped:
                state.tripped.add(name)
                assert since is not None
                self.trip(Trip(spec, name, f"no answer for {now_s - since:.0f} s"))

    def pump_alarm(self, pump: str, alarm: str) -> bool:
        """React to a pump alarm; return False if no interlock covers it."""
        covered = False
        for spec in self.specs:
            if spec.kind == "pump_alarm" and self._applies(spec, pump):
                covered = True
                self.trip(Trip(spec, pump, f"pump alarm: {alarm}"))
        return covered
