"""Tecan Cavro XCalibur / XLP 6000 syringe pump with a distribution valve, over the DT protocol.

A Cavro is a *stroke* pump: the plunger travels a finite stroke between position 0 (top,
syringe empty) and the full stroke (bottom, syringe full), and a distribution valve on top
connects the syringe to one of ``n_ports`` ports. It maps onto the
:class:`~drivers.roles.SyringePump` role like this:

* ``infuse(rate, volume)`` dispenses through :attr:`CavroPump.output_port` (or, when that
  is None, through whatever port the valve is on). Without a volume it dispenses what is
  left in the syringe: a Cavro cannot infuse "until stopped".
* ``withdraw(rate, volume)`` aspirates through :attr:`CavroPump.input_port` (or the current
  port); without a volume it fills the syringe.
* ``read_status()`` queries ``Q`` and the plunger position ``?`` and turns position changes
  into the infused/withdrawn counters, so the counters also see moves started by
  :meth:`CavroPump.aspirate`/:meth:`CavroPump.dispense` and moves the pump finished on its own.

``connect()`` never moves anything: a Cavro must be initialised (``Z``) before it accepts
moves (error 7 otherwise, hardware-reference §3.5), and initialisation drives the plunger to
the top and pushes the syringe's contents out of the valve, so it is the explicit
:meth:`CavroPump.initialize`.

Only report commands (``Q``, ``?``, ``?6``, ``&``) are retried after a timeout or a garbled
answer: a move or valve command whose answer was lost may already be running, and sending
it again would move the plunger twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

from drivers.cavro import codec
from drivers.cavro.codec import CavroReply, CavroStatus
from drivers.clock import Clock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    IncompatibleStateError,
    ReplyError,
    StrokeLimitError,
    TransportTimeout,
)
from drivers.roles import PumpDirection, PumpStatus, Syringe, SyringePump
from drivers.transport import Transport, read_frame

__all__ = ["CavroPump"]

logger = logging.getLogger(__name__)

#: Status errors that are alarms: something is wrong with the hardware or the fluidics
#: (§3.5: overloads persist until re-initialisation).
_ALARMS: Final[dict[int, str]] = {
    codec.CavroErrorCode.INIT_ERROR: "init_error",
    codec.CavroErrorCode.FLUID_DETECTION: "fluid_detection",
    codec.CavroErrorCode.EEPROM_FAILURE: "eeprom_failure",
    codec.CavroErrorCode.PLUNGER_OVERLOAD: "occlusion",
    codec.CavroErrorCode.VALVE_OVERLOAD: "valve_overload",
}

#: Status errors that say the command is not valid in the pump's present state.
_STATE_ERRORS: Final = frozenset(
    {codec.CavroErrorCode.NOT_INITIALISED, codec.CavroErrorCode.COMMAND_OVERFLOW}
)

#: How long a valve move may take before :meth:`CavroPump.select_port` gives up [I: valve
#: moves take a fraction of a second; generous so a slow valve is not reported as stuck].
DEFAULT_VALVE_TIMEOUT_S: Final = 5.0
#: How long initialisation may take (the plunger travels a full stroke at init speed).
DEFAULT_INIT_TIMEOUT_S: Final = 60.0

MODELS: Final = ("XCalibur", "XLP6000")


class CavroPump(SyringePump):
    """A Tecan Cavro XCalibur or XLP 6000 with a distribution valve, on the DT protocol.

    Args:
        transport: the link (RS-232/RS-485 at 9600 8N1 by default, §3.1); may be shared by
            several pumps on one RS-485 bus, whose lock serialises exchanges.
        name: the device's name in the instrument config.
        syringe: the syringe mounted; its nominal volume is one full stroke.
        address: the pump's address character, ``"1"`` for address switch 0 up to ``"?"``
            for switch E (§3.2). Group addresses cannot be queried and are refused.
        clock: the clock to poll on.
        n_ports: number of distribution-valve ports.
        model: ``"XCalibur"`` or ``"XLP6000"``; sets the increments per stroke.
        timeout_s: silence timeout for one answer.
        retries: extra attempts for report commands after a timeout or garbled answer.
        poll_interval_s: time between ``Q`` polls while waiting for the pump to be ready.
        resolution: positioning mode ``N`` (0 standard, 1 fine, 2 microstep) that
            :meth:`initialize` puts the pump in and conversions assume.
        output_port: the port :meth:`infuse` dispenses through; None = the valve's port.
        input_port: the port :meth:`withdraw` aspirates from; None = the valve's port.
        protocol: ``"dt"`` (ASCII, default) or ``"oem"`` (checksummed frames with sequence
            numbers, §3.4). A pump that has seen one OEM frame ignores DT until it is
            power-cycled (§3.1), so all drivers on a bus must use the same protocol.

    Raises:
        ValueError: an argument is out of range (no I/O happens in the constructor).
    """

    #: How long a stopped plunger may take to report ready (deceleration, one poll).
    STOP_CONFIRM_S = 1.0

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        syringe: Syringe,
        address: str = "1",
        clock: Clock,
        n_ports: int = 6,
        model: str = "XLP6000",
        timeout_s: float = 0.5,
        retries: int = 2,
        poll_interval_s: float = 0.05,
        resolution: int = 0,
        output_port: int | None = None,
        input_port: int | None = None,
        protocol: str = "dt",
    ) -> None:
        """Check and store the settings; no I/O (that is :meth:`connect`)."""
        super().__init__(name=name, syringe=syringe)
        if len(address) != 1 or not 0x31 <= ord(address) <= 0x3F:
            raise ValueError(f"{name}: Cavro address must be one of '1'..'?', got {address!r}")
        if model not in MODELS:
            raise ValueError(f"{name}: Cavro model must be one of {MODELS}, got {model!r}")
        if n_ports < 2:
            raise ValueError(f"{name}: a distribution valve needs >= 2 ports, got {n_ports}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{name}: timeout_s must be > 0, got {timeout_s}")
        if not (math.isfinite(poll_interval_s) and poll_interval_s > 0):
            raise ValueError(f"{name}: poll_interval_s must be > 0, got {poll_interval_s}")
        if retries < 0:
            raise ValueError(f"{name}: retries must be >= 0, got {retries}")
        if resolution not in (0, 1, 2):
            raise ValueError(f"{name}: resolution mode must be 0, 1 or 2, got {resolution}")
        if protocol not in ("dt", "oem"):
            raise ValueError(f"{name}: protocol must be 'dt' or 'oem', got {protocol!r}")
        self.transport = transport
        self.address = address
        self.clock = clock
        self.n_ports = n_ports
        self.model = model
        self.resolution = resolution
        self.full_stroke_increments = codec.full_stroke_increments(model, resolution)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.poll_interval_s = float(poll_interval_s)
        self.protocol = protocol
        self._sequence = 0
        self._last_sent = b""
        self.output_port = self._checked_port(output_port)
        self.input_port = self._checked_port(input_port)
        #: Firmware version string read by :meth:`connect` (``&`` report), or None.
        self.firmware_version: str | None = None
        self._position_inc: int | None = None
        self._port: int | None = None
        self._infused_ul = 0.0
        self._withdrawn_ul = 0.0
        self._direction = PumpDirection.INFUSE
        self._rate_ul_min = 0.0

    # -- cached state (no I/O) ---------------------------------------------------------

    @property
    def plunger_position_increments(self) -> int | None:
        """Get the plunger position from the last query (None before :meth:`connect`)."""
        return self._position_inc

    @property
    def port(self) -> int | None:
        """Get the valve port from the last query or valve command (None if unknown)."""
        return self._port

    def _checked_port(self, port: int | None) -> int | None:
        if port is not None and not 1 <= port <= self.n_ports:
            raise ValueError(f"{self.name}: valve port must be 1..{self.n_ports}, got {port}")
        return port

    # -- exchanges ---------------------------------------------------------------------

    def _exchange(
        self,
        command: str,
        *,
        execute: bool,
        retry: bool,
        validate: Callable[[CavroReply], object] | None = None,
    ) -> CavroReply:
        """Send one command string and return the parsed answer.

        ``validate`` checks the answer's data inside the retry loop, so an answer whose
        framing survived line noise but whose data did not is retried like any other.

        Raises:
            TransportTimeout: no (complete) answer, after the retries if ``retry``.
            ReplyError: a malformed answer, after the retries if ``retry``.
            TransportError: the link is gone (never retried).
        """
        attempts = 1 + (self.retries if retry else 0)
        sequence = self._next_sequence()
        for attempt in range(1, attempts + 1):
            if self.protocol == "oem":
                # §3.4: a resent block keeps its sequence number and sets the repeat bit,
                # so a pump that already ran it only acknowledges it.
                frame = codec.build_oem_command(
                    self.address, command, sequence=sequence, repeat=attempt > 1, execute=execute
                )
                complete, parse = codec.oem_reply_complete, codec.parse_oem_reply
            else:
                frame = codec.build_dt_command(self.address, command, execute=execute)
                complete, parse = codec.dt_reply_complete, codec.parse_dt_reply
            self._last_sent = frame
            try:
                with self.transport.lock:
                    self.transport.reset_input()
                    self.transport.write(frame)
                    raw = read_frame(
                        self.transport,
                        complete,
                        timeout_s=self.timeout_s,
                        device=self.name,
                        sent=frame,
                    )
                reply = parse(raw, device=self.name, sent=frame)
                if validate is not None:
                    validate(reply)
                return reply
            except (TransportTimeout, ReplyError) as exc:
                if attempt == attempts:
                    raise
                logger.warning("%s: %s; retrying (%d of %d)", self.name, exc, attempt, attempts - 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 7 + 1
        return self._sequence

    def _query(
        self, command: str, validate: Callable[[CavroReply], object] | None = None
    ) -> CavroReply:
        """Send a report command (runs without ``R``, idempotent, so retried)."""
        return self._exchange(command, execute=False, retry=True, validate=validate)

    def _command(self, command: str, *, tolerate: frozenset[int] = frozenset()) -> CavroReply:
        """Send an executing command (``...R``), once, and raise on the error it reports."""
        reply = self._exchange(command, execute=True, retry=False)
        self._raise_for_error(reply, self._last_sent, tolerate=tolerate)
        return reply

    def _raise_for_error(
        self, reply: CavroReply, sent: bytes, *, tolerate: frozenset[int] = frozenset()
    ) -> None:
        """Raise the typed error for the status error in ``reply`` (§3.5 error classes)."""
        code = reply.error
        if code == codec.CavroErrorCode.NONE or code in tolerate:
            return
        message = f"pump reports error {code}: {codec.error_name(code)}"
        if code in _ALARMS:
            raise DeviceAlarm(
                self.name, message, alarm=_ALARMS[code], sent=sent, received=reply.raw
            )
        if code in _STATE_ERRORS:
            raise IncompatibleStateError(self.name, message, sent=sent, received=reply.raw)
        raise DeviceRejected(self.name, message, sent=sent, received=reply.raw)

    def _read_position(self) -> int:
        """Query ``?`` and return the plunger position in increments."""
        return self._parse_position(self._query("?", self._parse_position))

    def _parse_position(self, reply: CavroReply) -> int:
        position = codec.parse_plunger_position(reply, device=self.name)
        if position > self.full_stroke_increments:
            raise ReplyError(
                self.name,
                f"plunger position {position} is beyond the full stroke "
                f"{self.full_stroke_increments} of a {self.model} in mode N{self.resolution} "
                "(wrong model or resolution mode?)",
                received=reply.raw,
            )
        return position

    def _read_port_or_none(self) -> int | None:
        """Query ``?6``; None when the valve reports no distribution port."""
        return self._parse_port(self._query("?6", self._parse_port))

    def _parse_port(self, reply: CavroReply) -> int | None:
        port = codec.parse_valve_port(reply, device=self.name)
        if port == 0:
            # An uninitialised valve has no port yet [I: tecancavro reads a non-port
            # answer as "not initialised"].
            return None
        if port is not None and port > self.n_ports:
            raise ReplyError(
                self.name,
                f"valve reports port {port} of a {self.n_ports}-port valve",
                received=reply.raw,
            )
        return port

    def _account(self, position_inc: int) -> None:
        """Turn the plunger's move since the last reading into the volume counters."""
        if self._position_inc is not None:
            delta_inc = position_inc - self._position_inc
            volume_ul = self._inc_to_ul(abs(delta_inc))
            if delta_inc > 0:
                self._withdrawn_ul += volume_ul
            elif delta_inc < 0:
                self._infused_ul += volume_ul
        self._position_inc = position_inc

    def _inc_to_ul(self, increments: int) -> float:
        return codec.increments_to_ul(
            increments, self._syringe.volume_ul, self.model, self.resolution
        )

    # -- lifecycle ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the link, check a Cavro answers, read firmware, plunger and valve; clear counters.

        Nothing moves: call :meth:`initialize` before the first move of a power cycle.

        Raises:
            DeviceNotFound: nothing (or nothing intelligible) answers the status query.
        """
        self.transport.open()
        try:
            self._query("Q")
        except (TransportTimeout, ReplyError) as exc:
            raise DeviceNotFound(
                self.name,
                f"no Cavro pump answers at address {self.address!r}: {exc.message}",
                sent=exc.sent,
                received=exc.received,
            ) from exc
        self.firmware_version = self._query("&").data
        self._position_inc = self._read_position()
        self._port = self._read_port_or_none()
        self._infused_ul = self._withdrawn_ul = 0.0
        self._rate_ul_min = 0.0
        logger.info(
            "%s: Cavro %s firmware %r, plunger at %d, valve port %s",
            self.name,
            self.model,
            self.firmware_version,
            self._position_inc,
            self._port,
        )

    def close(self) -> None:
        """Release the link (a running move continues: :meth:`stop` first)."""
        self.transport.close()

    def reconnect(self) -> None:
        """Re-open the link and re-read status, plunger and valve; moves made meanwhile are counted.

        Raises:
            TransportError: the link is still gone or the pump does not answer.
        """
        self.transport.close()
        self.transport.open()
        self._query("Q")
        self._account(self._read_position())
        self._port = self._read_port_or_none()

    # -- Cavro-specific operations -------------------------------------------------------

    def initialize(
        self,
        force: int = codec.FORCE_FULL,
        *,
        counterclockwise: bool = False,
        timeout_s: float = DEFAULT_INIT_TIMEOUT_S,
    ) -> None:
        """Initialise plunger and valve (``Z``/``Y``), wait for it, and set the resolution mode.

        Initialisation drives the plunger to the top, pushing the syringe's contents out of
        the initialisation output port (§3.6); that volume goes to waste by design and is not
        counted as infused (the plunger is read before ``Z`` so earlier moves still count).
        It also clears overload errors 9 and 10 (§3.5).

        Args:
            force: 0 full, 1 half, 2 one third (for syringes of 500 uL and less), or a
                speed code 10..40.
            counterclockwise: home the valve counter-clockwise (``Y``) instead of ``Z``.
            timeout_s: how long initialisation may take.

        Raises:
            DeviceAlarm: initialisation failed (error 1) or an overload persists.
        """
        command = codec.initialize_plunger_and_valve(force, counterclockwise=counterclockwise)
        # Count what the plunger did since the last reading before init moves it.
        self._account(self._read_position())
        # The errors initialisation exists to clear may still be in its own answer.
        self._command(
            command,
            tolerate=frozenset(
                {
                    codec.CavroErrorCode.NOT_INITIALISED,
                    codec.CavroErrorCode.PLUNGER_OVERLOAD,
                    codec.CavroErrorCode.VALVE_OVERLOAD,
                }
            ),
        )
        status = self.wait_until_ready(timeout_s)
        if status.error == codec.CavroErrorCode.NOT_INITIALISED:
            raise DeviceAlarm(
                self.name, "pump still not initialised after initialisation", alarm="init_error"
            )
        self._command(codec.set_resolution(self.resolution))
        self._position_inc = self._read_position()
        self._port = self._read_port_or_none()
        self._rate_ul_min = 0.0

    def wait_until_ready(self, timeout_s: float) -> CavroStatus:
        """Poll ``Q`` every :attr:`poll_interval_s` on the clock until the pump is ready.

        Returns:
            The status that reported ready.

        Raises:
            DeviceAlarm: the pump reports an alarm (overload ``"occlusion"``,
                ``"valve_overload"``, ``"init_error"``...), or ``"busy_timeout"`` if it is
                still busy after ``timeout_s``.
        """
        deadline_s = self.clock.now_s() + timeout_s
        while True:
            reply = self._query("Q")
            if reply.error in _ALARMS:
                self._raise_for_error(reply, self._last_sent)
            if reply.ready:
                return reply.status
            now_s = self.clock.now_s()
            if now_s >= deadline_s:
                raise DeviceAlarm(
                    self.name,
                    f"still busy after {timeout_s:g} s",
                    alarm="busy_timeout",
                    sent=self._last_sent,
                    received=reply.raw,
                )
            self.clock.sleep_s(min(self.poll_interval_s, deadline_s - now_s))

    def select_port(self, port: int, *, timeout_s: float = DEFAULT_VALVE_TIMEOUT_S) -> None:
        """Turn the distribution valve to ``port`` (1..n_ports) and wait until it is there.

        Raises:
            ValueError: ``port`` is out of range (before any I/O).
            IncompatibleStateError: the pump is busy (error 15) or not initialised (7).
            DeviceAlarm: valve overload.
        """
        command = codec.valve_to_port(port, self.n_ports)
        self._command(command)
        self.wait_until_ready(timeout_s)
        self._port = port

    def read_port(self) -> int:
        """Query the valve port (``?6``).

        Raises:
            IncompatibleStateError: the valve reports no port number (a non-distribution
                valve, or a pump that is not initialised).
        """
        port = self._read_port_or_none()
        if port is None:
            raise IncompatibleStateError(
                self.name, "valve reports no distribution port (not initialised?)"
            )
        self._port = port
        return port

    def read_plunger_position_ul(self) -> float:
        """Query the plunger position and return the volume in the syringe (uL)."""
        position = self._read_position()
        self._account(position)
        return self._inc_to_ul(position)

    def aspirate(self, volume_ul: float, rate_ul_min: float, from_port: int | None = None) -> None:
        """Start aspirating ``volume_ul`` at ``rate_ul_min``, through ``from_port`` if given.

        Returns once the pump accepted the move; :meth:`wait_until_ready` waits for the end.

        Raises:
            ValueError: bad rate, volume or port (before any I/O).
            StrokeLimitError: the stroke left is too short (also a ValueError).
        """
        self._move(PumpDirection.WITHDRAW, volume_ul, rate_ul_min, from_port)

    def dispense(self, volume_ul: float, rate_ul_min: float, to_port: int | None = None) -> None:
        """Start dispensing ``volume_ul`` at ``rate_ul_min``, through ``to_port`` if given.

        Returns once the pump accepted the move; :meth:`wait_until_ready` waits for the end.

        Raises:
            ValueError: bad rate, volume or port (before any I/O).
            StrokeLimitError: the syringe holds less than that (also a ValueError).
        """
        self._move(PumpDirection.INFUSE, volume_ul, rate_ul_min, to_port)

    def _move(
        self,
        direction: PumpDirection,
        volume_ul: float | None,
        rate_ul_min: float,
        port: int | None,
    ) -> None:
        """Validate, read the plunger (for the counters and the stroke check), start the move."""
        self.check_rate(rate_ul_min)
        if volume_ul is not None:
            self.check_volume(volume_ul)
        self._checked_port(port)
        speed_hz = min(
            max(
                codec.rate_ul_min_to_hz(
                    rate_ul_min, self._syringe.volume_ul, self.model, self.resolution
                ),
                codec.MIN_TOP_SPEED_HZ,
            ),
            codec.MAX_TOP_SPEED_HZ,
        )
        position = self._read_position()
        self._account(position)
        full = self.full_stroke_increments
        if direction is PumpDirection.WITHDRAW:
            available_inc = full - position
            verb, limit = "aspirate", "stroke left"
        else:
            available_inc = position
            verb, limit = "dispense", "liquid in the syringe"
        if volume_ul is None:
            increments = available_inc
            if increments == 0:
                raise StrokeLimitError(self.name, f"nothing to {verb}: no {limit}")
        else:
            increments = codec.ul_to_increments(
                volume_ul, self._syringe.volume_ul, self.model, self.resolution
            )
            if increments > available_inc:
                raise StrokeLimitError(
                    self.name,
                    f"cannot {verb} {volume_ul:g} uL: only "
                    f"{self._inc_to_ul(available_inc):g} uL of {limit}",
                )
            if increments == 0:
                raise ValueError(
                    f"{self.name}: cannot {verb} {volume_ul:g} uL: less than one plunger "
                    f"increment ({self._inc_to_ul(1):.4g} uL)"
                )
        parts = [] if port is None else [codec.valve_to_port(port, self.n_ports)]
        parts.append(codec.top_speed(speed_hz))
        if direction is PumpDirection.WITHDRAW:
            parts.append(codec.pickup_relative(increments, full))
        else:
            parts.append(codec.dispense_relative(increments, full))
        self._command("".join(parts))
        self._direction = direction
        self._rate_ul_min = codec.hz_to_rate_ul_min(
            speed_hz, self._syringe.volume_ul, self.model, self.resolution
        )
        if port is not None:
            self._port = port

    # -- SyringePump hooks -------------------------------------------------------------

    def _rate_limits_ul_min(self, syringe: Syringe) -> tuple[float, float]:
        """Return the rates of the slowest and fastest top speed (5 and 6000 Hz, §3.6)."""
        return (
            codec.hz_to_rate_ul_min(
                codec.MIN_TOP_SPEED_HZ, syringe.volume_ul, self.model, self.resolution
            ),
            codec.hz_to_rate_ul_min(
                codec.MAX_TOP_SPEED_HZ, syringe.volume_ul, self.model, self.resolution
            ),
        )

    def _do_set_syringe(self, syringe: Syringe) -> None:
        """Nothing to send: a Cavro has no syringe setting; the volume sets the conversions."""
        logger.info(
            "%s: syringe %s (%g uL per full stroke)", self.name, syringe.name, syringe.volume_ul
        )

    def _do_run(
        self, direction: PumpDirection, rate_ul_min: float, volume_ul: float | None
    ) -> None:
        """Dispense through :attr:`output_port` or aspirate from :attr:`input_port`."""
        port = self.output_port if direction is PumpDirection.INFUSE else self.input_port
        self._move(direction, volume_ul, rate_ul_min, port)

    def _do_stop(self) -> None:
        """Send ``T`` (terminate), then confirm with ``Q`` that the plunger has stopped.

        tecancavro sends ``TR`` [I]; the manual lists ``T`` among the control commands (§3.6).
        An error code in the answer is logged (a terminate sent to an idle pump may be
        refused as having nothing to do); what counts is that the pump reports ready
        within :attr:`STOP_CONFIRM_S`, else the stop failed and that is raised: every way out
        of a run must leave the pumps stopped, and a failed stop must not look like one.

        Raises:
            DeviceAlarm: ``"stop_failed"``, the pump still reports busy.
        """
        reply = self._exchange(codec.terminate(), execute=True, retry=False)
        if reply.error:
            logger.warning(
                "%s: stop answered with error %d: %s",
                self.name,
                reply.error,
                codec.error_name(reply.error),
            )
        deadline_s = self.clock.now_s() + self.STOP_CONFIRM_S
        while True:
            status = self._query("Q")
            if status.error:
                logger.warning(
                    "%s: status after stop reports error %d: %s",
                    self.name,
                    status.error,
                    codec.error_name(status.error),
                )
            if status.ready:
                self._rate_ul_min = 0.0
                return
            if self.clock.now_s() >= deadline_s:
                raise DeviceAlarm(
                    self.name,
                    f"still moving {self.STOP_CONFIRM_S:g} s after terminate",
                    alarm="stop_failed",
                    sent=self._last_sent,
                    received=status.raw,
                )
            self.clock.sleep_s(self.poll_interval_s)

    def _do_read_status(self) -> PumpStatus:
        """Query ``Q`` and ``?``; count the plunger's move since the last reading."""
        status = self._query("Q").status
        self._account(self._read_position())
        alarm: str | None = None
        if status.error in _ALARMS:
            alarm = _ALARMS[status.error]
        elif status.error == codec.CavroErrorCode.NOT_INITIALISED:
            alarm = "not_initialised"
        running = not status.ready
        return PumpStatus(
            running=running,
            direction=self._direction,
            rate_ul_min=self._rate_ul_min if running else 0.0,
            infused_ul=self._infused_ul,
            withdrawn_ul=self._withdrawn_ul,
            stalled=status.error == codec.CavroErrorCode.PLUNGER_OVERLOAD,
            alarm=alarm,
        )
