"""The instrument session: open every device, poll telemetry, and always stop the pumps.

A :class:`Session` is what a run (or a Python script) holds while it uses a rig. It connects
every device, records each command and alarm as an event, polls every device into the run
file's telemetry at the configured period, notices a lost link and reconnects (announcing
both as events), and on every way out (normal end, exception, Ctrl-C) stops every pump
before it closes anything (DESIGN.md, "Safety").

All device I/O happens on the thread that owns the session: the engine thread during a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from chipctl.errors import ChipctlError
from chipctl.rig import CHIP, Device, Rig
from drivers.errors import DeviceAlarm, DeviceError, TransportError
from drivers.roles import FlowReading, FlowSensor, PumpStatus, SyringePump, Valve

__all__ = [
    "TELEMETRY_UNITS",
    "MemoryRecorder",
    "Recorder",
    "Session",
    "telemetry_spec",
]

logger = logging.getLogger(__name__)

#: role -> quantity -> units, for every device of that role in the run file.
TELEMETRY_UNITS: dict[str, dict[str, str]] = {
    "pump": {
        "rate_ul_min": "uL/min",
        "infused_ul": "uL",
        "withdrawn_ul": "uL",
        "delivered_ul": "uL",
        "running": "1",
        "stalled": "1",
    },
    "valve": {"position": "1"},
    "flow": {
        "flow_ul_min": "uL/min",
        "temperature_c": "degC",
        "air_in_line": "1",
        "high_flow": "1",
    },
}


def telemetry_spec(rig: Rig) -> dict[str, dict[str, str]]:
    """Return device -> quantity -> units for every device of ``rig``.

    A simulated rig with a chip also gets a ``chip`` table: the simulator's ground truth
    (pressures, flows, chamber concentrations) that no instrument on a real bench measures.
    """
    spec = {
        name: dict(TELEMETRY_UNITS[rig.roles[name]])
        for name in rig.devices
        if rig.roles[name] in TELEMETRY_UNITS
    }
    if rig.bench is not None:
        spec[CHIP] = dict(rig.bench.truth_units())
    return spec


class Recorder(Protocol):
    """Where a session sends events and telemetry (the run file writer, or memory)."""

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Record one event."""
        ...

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Record one telemetry sample of ``device``."""
        ...


class MemoryRecorder:
    """A recorder that keeps everything in lists (for scripts and tests)."""

    def __init__(self) -> None:
        """Start empty."""
        self.events: list[tuple[float, str, str, str]] = []
        self.samples: list[tuple[str, float, dict[str, float]]] = []

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Keep the event."""
        self.events.append((t_s, source, kind, message))

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Keep the sample."""
        self.samples.append((device, t_s, dict(values)))


def _pump_values(status: PumpStatus) -> dict[str, float]:
    return {
        "rate_ul_min": status.rate_ul_min,
        "infused_ul": status.infused_ul,
        "withdrawn_ul": status.withdrawn_ul,
        "delivered_ul": status.delivered_ul,
        "running": float(status.running),
        "stalled": float(status.stalled),
    }


def _flow_values(reading: FlowReading) -> dict[str, float]:
    return {
        "flow_ul_min": reading.flow_ul_min,
        "temperature_c": reading.temperature_c,
        "air_in_line": float(reading.air_in_line),
        "high_flow": float(reading.high_flow),
    }


class Session:
    """Holds a rig's devices open for a run or a script.

    Args:
        rig: the built rig.
        recorder: receives events and telemetry.

    Times in events and telemetry are seconds since :meth:`open` (``t_s``).
    """

    def __init__(self, rig: Rig, recorder: Recorder) -> None:
        """Prepare; no I/O until :meth:`open`."""
        self.rig = rig
        self.clock = rig.clock
        self.recorder = recorder
        self.t0_s = rig.clock.now_s()
        self._connected: list[str] = []
        self._lost: set[str] = set()
        #: When each device that is not answering was first found silent (run time).
        self.lost_since: dict[str, float] = {}
        self._alarms: dict[str, str] = {}
        #: Called with (pump, alarm) when a pump reports a new alarm; the run engine fails
        #: the run then (the safe default until protocol interlocks choose other actions).
        self.on_pump_alarm: Callable[[str, str], None] | None = None
        self._new_alarms: list[tuple[str, str]] = []
        #: The position each valve was last commanded to (checked against its telemetry).
        self.commanded_positions: dict[str, int] = {}
        self._moved_alarm: set[str] = set()
        #: The recorder's failure (a full disk), once it failed: nothing more is recorded.
        self.recorder_error: ChipctlError | None = None
        #: The latest telemetry of each device (what the run file got last).
        self.last_values: dict[str, dict[str, float]] = {}

    # -- time and events -------------------------------------------------------------

    def t_s(self) -> float:
        """Return the run-relative time."""
        return self.clock.now_s() - self.t0_s

    def event(self, source: str, kind: str, message: str) -> None:
        """Record an event now.

        If the recorder has failed (a full disk), the failure is kept in
        :attr:`recorder_error` and logged instead of raised: recording must never keep a
        safety action (stopping the next pump) from happening. The run engine checks
        :attr:`recorder_error` and ends the run.
        """
        self._record(self.recorder.event, self.t_s(), source, kind, message)

    def _record(self, method: Callable[..., None], *args: object) -> None:
        if self.recorder_error is not None:
            logger.debug("not recorded (the run file failed): %s", args)
            return
        try:
            method(*args)
        except ChipctlError as exc:
            self.recorder_error = exc
            logger.error("the run file failed: %s", exc)

    # -- devices ---------------------------------------------------------------------

    def device(self, name: str) -> Device:
        """Return the device called ``name``."""
        return self.rig.devices[name]

    def pump(self, name: str) -> SyringePump:
        """Return the pump called ``name`` (``KeyError``/``TypeError`` if it is none)."""
        device = self.rig.devices[name]
        if not isinstance(device, SyringePump):
            raise TypeError(f"{name} is a {self.rig.roles[name]}, not a pump")
        return device

    def open(self) -> None:
        """Connect every device, in config order; on a failure close those already open.

        Raises:
            DeviceError: a device did not answer or refused its set-up.
        """
        self.t0_s = self.clock.now_s()
        mode = "simulated" if self.rig.simulated else "hardware"
        self.event("session", "open", f"{self.rig.config.name} ({mode})")
        for name, device in self.rig.devices.items():
            try:
                device.connect()
            except DeviceError as exc:
                self.event(name, "error", f"connect failed: {exc}")
                self.close()
                raise
            self._connected.append(name)
            self.event(name, "connected", type(device).__name__)
            setup = self.rig.after_connect.get(name)
            if setup is not None:
                try:
                    setup()
                except DeviceError as exc:
                    self.event(name, "error", f"set-up after connect failed: {exc}")
                    self.close()
                    raise
                self.event(name, "initialized", "set-up after connect done")

    def stop_all_pumps(self, reason: str) -> list[str]:
        """Send stop to every connected pump, whatever happens; return the pumps that failed.

        Every attempt and every failure is recorded; one pump failing to stop does not keep
        the others from being stopped. Pumps whose link is known to be lost go last, and
        the slow recovery (reconnect, then stop again) happens only after every pump has
        had its first stop, so a dead link cannot delay the pumps that can be reached.
        """
        pumps = [
            name for name in self._connected if isinstance(self.rig.devices[name], SyringePump)
        ]
        pumps.sort(key=lambda name: name in self._lost)
        retry: list[tuple[str, DeviceError]] = []
        for name in pumps:
            try:
                self.rig.devices[name].stop()  # type: ignore[attr-defined]
                self.event(name, "command", f"stop ({reason})")
            except DeviceError as exc:
                retry.append((name, exc))
        failed: list[str] = []
        for name, first_error in retry:
            device = self.rig.devices[name]
            try:
                device.reconnect()
                device.stop()  # type: ignore[attr-defined]
                self.event(name, "command", f"stop after reconnect ({reason})")
            except DeviceError:
                failed.append(name)
                self.event(name, "alarm", f"could not stop pump: {first_error}")
                logger.error("could not stop pump %s: %s", name, first_error)
        return failed

    def close(self, *, stop_pumps: bool = True) -> None:
        """Stop every pump, then release every link (idempotent).

        Args:
            stop_pumps: False only when the caller has just stopped them itself (the run
                engine does, to record why); never skip it otherwise.
        """
        if not self._connected:
            return
        if stop_pumps:
            self.stop_all_pumps("session closing")
        for name in self._connected:
            try:
                self.rig.devices[name].close()
            except DeviceError as exc:
                self.event(name, "error", f"close failed: {exc}")
        self._connected.clear()
        for transport in self.rig.transports.values():
            transport.close()
        self.event("session", "closed", "")

    # -- telemetry -------------------------------------------------------------------

    def _read(self, name: str, device: Device) -> dict[str, float]:
        if isinstance(device, SyringePump):
            status = device.read_status()
            alarm = status.alarm or ("stall" if status.stalled else None)
            new = bool(alarm) and self._alarms.get(name) != alarm
            if alarm:
                self._alarms[name] = alarm
            else:
                self._alarms.pop(name, None)
            if new and alarm:
                self.event(name, "alarm", alarm)
                self._new_alarms.append((name, alarm))
            return _pump_values(status)
        if isinstance(device, Valve):
            return {"position": float(device.read_position())}
        if isinstance(device, FlowSensor):
            return _flow_values(device.read())
        raise TypeError(f"{name}: unknown device role")

    def poll(self) -> None:
        """Read every device once into the recorder.

        A lost link is announced once, then reconnection is tried at every poll; its
        return is announced too, and the driver re-reads its state (no silent drift).
        Device alarms are recorded as events, never swallowed.
        """
        t_s = self.t_s()
        for name in self._connected:
            device = self.rig.devices[name]
            if self.rig.roles[name] not in TELEMETRY_UNITS:
                continue  # a microscope: its data are images, taken by the engine
            if name in self._lost:
                try:
                    device.reconnect()
                except DeviceError:
                    continue
                self._lost.discard(name)
                self.lost_since.pop(name, None)
                self.event(name, "reconnected", "link is back; state re-read from the device")
            try:
                values = self._read(name, device)
            except TransportError as exc:
                self._lost.add(name)
                self.lost_since.setdefault(name, t_s)
                self.event(name, "link_lost", str(exc))
                continue
            except DeviceAlarm as exc:
                self.event(name, "alarm", str(exc))
                continue
            except DeviceError as exc:
                # garbage or refusals instead of answers: the device is not answering
                # sensibly, so it counts as silent (lost_device) and is reconnected, which
                # re-reads its state (a sensor that reset restarts measuring)
                self._lost.add(name)
                self.lost_since.setdefault(name, t_s)
                self.event(name, "error", f"{exc}; will reconnect")
                continue
            self.last_values[name] = values
            self._check_position(name, values)
            self._record(self.recorder.telemetry, name, t_s, values)
        if self.rig.bench is not None:
            self.rig.world.advance_to(self.clock.now_s())
            truth = self.rig.bench.truth()
            self.last_values[CHIP] = truth
            self._record(self.recorder.telemetry, CHIP, t_s, truth)
        # reported after every device was read and recorded, so the callback (which may
        # end the run) never leaves a device unread or an alarm unrecorded
        alarms, self._new_alarms = self._new_alarms, []
        if self.on_pump_alarm is not None:
            for name, alarm in alarms:
                self.on_pump_alarm(name, alarm)

    def commanded(self, valve: str, position: int) -> None:
        """Note the position a valve was told to take (checked at every poll)."""
        self.commanded_positions[valve] = position
        self._moved_alarm.discard(valve)

    def _check_position(self, name: str, values: Mapping[str, float]) -> None:
        """Alarm once when a valve is not where it was last told to be (power cycle, jam)."""
        wanted = self.commanded_positions.get(name)
        if wanted is None or "position" not in values or name in self._moved_alarm:
            return
        if int(values["position"]) != wanted:
            self._moved_alarm.add(name)
            self.event(
                name,
                "alarm",
                f"valve at position {int(values['position'])}, commanded {wanted} "
                "(moved by itself: power cycle or jam?)",
            )

    def heartbeat(self) -> None:
        """Keep every device's communication watchdog alive."""
        for name in self._connected:
            device = self.rig.devices[name]
            if device.heartbeat_period_s is not None and name not in self._lost:
                try:
                    device.heartbeat()
                except DeviceError as exc:
                    self.event(name, "error", f"heartbeat failed: {exc}")
