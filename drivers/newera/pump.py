"""New Era NE-300/500/1000/4000 syringe pump driver (basic and safe mode, daisy chain).

Section numbers refer to ``hardware-reference.md`` §2 (New Era manuals); [I] marks
behaviour inferred from public driver code or chosen here, to confirm on hardware.

Bus sharing. Up to 100 pumps share one RS-232 daisy chain (§2.1), so several
:class:`NewEraPump` objects may share one transport. Each exchange holds
``transport.lock``. State that belongs to the bus rather than to one pump (bytes read
past a reply, alarms addressed to other pumps) lives in a small per-bus record keyed by
that lock, so a frame read by pump 1 but addressed to pump 2 reaches pump 2.

Alarms. A reply ``A?<type>`` (§2.4) reports an alarm and acknowledges it; the command it
answered was not executed ("an alarm must be acknowledged before data can change or the
pump can start"). In safe mode the pump also sends an alarm packet unsolicited. The
driver:

- queues every alarm it sees (unsolicited frames read before an exchange, alarm replies
  to queries) and reports it, once, in the next :meth:`NewEraPump.read_status`;
- raises :class:`DeviceAlarm` from :meth:`infuse`/:meth:`withdraw` when an alarm is queued
  or a command of the run sequence is answered with an alarm;
- re-sends a query answered with an alarm (the alarm reply acknowledged it).

Safe-mode watchdog. ``SAF<n>`` makes the pump stop and raise ``A?T`` when no valid packet
arrived for n seconds (§2.3). The driver has no thread: it sets
:attr:`NewEraPump.heartbeat_period_s` to n/2 and the engine calls
:meth:`NewEraPump.heartbeat` that often while a run is in progress. Between connect and
the run, a pump left alone for n seconds raises the watchdog alarm; it is reported by the
next status read and acknowledged by it.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from drivers.clock import Clock
from drivers.errors import (
    DeviceAlarm,
    DeviceError,
    DeviceNotFound,
    DeviceRejected,
    ReplyError,
    TransportTimeout,
)
from drivers.newera import codec
from drivers.roles import PumpDirection, PumpStatus, Syringe, SyringePump
from drivers.transport import MAX_FRAME_BYTES, Transport

__all__ = ["MODEL_SPEED_LIMITS_MM_MIN", "NewEraPump"]

logger = logging.getLogger(__name__)

#: Plunger speed range (min, max) in mm/min per model. [I] Derived from the vendor's
#: published rate limits (NE-1000: 0.73 uL/h with a 1 mL, 4.699 mm syringe; about
#: 1690 mL/h with a 60 mL, 26.59 mm syringe; NE-300 about 1500 mL/h max), not read from
#: the device, which does not report them: the pump's own ``?OOR`` stays the final word.
MODEL_SPEED_LIMITS_MM_MIN: Final[dict[str, tuple[float, float]]] = {
    "NE-300": (0.00073, 45.0),
    "NE-500": (0.00073, 50.7),
    "NE-1000": (0.00073, 50.7),
    "NE-4000": (0.00073, 50.7),
}

#: Syringe inner diameters the pump accepts in ``DIA`` (mm). [I] nesp-lib's limits.
DIAMETER_MIN_MM: Final = 0.1
DIAMETER_MAX_MM: Final = 80.0

#: Safe-mode watchdog timeouts ``SAF<n>`` accepts, in s (0 means basic mode, §2.3).
SAFE_TIMEOUT_MAX_S: Final = 255

#: How many alarm replies in a row a query tolerates before giving up.
_MAX_ALARM_REPLIES: Final = 3

_OnAlarm = Literal["raise", "resend"]
_T = TypeVar("_T")


@dataclass
class _Bus:
    """What pumps sharing one transport share besides the lock.

    Attributes:
        alarms: address -> alarm names seen but not yet reported to that pump.
        unacknowledged: addresses whose alarm arrived as an auto-alarm packet, which does
            not clear the alarm on the pump (§2.4): a reply must still acknowledge it.
        users: addresses of connected pumps, so the last :meth:`NewEraPump.close`
            closes the link.
    """

    alarms: dict[int, list[str]] = field(default_factory=dict)
    unacknowledged: set[int] = field(default_factory=set)
    users: set[int] = field(default_factory=set)


_BUSES: weakref.WeakKeyDictionary[object, _Bus] = weakref.WeakKeyDictionary()
_BUSES_GUARD = threading.Lock()


def _bus_for(transport: Transport) -> _Bus:
    # Keyed by the lock, not the transport: a LoggingTransport wrapper shares its inner
    # transport's lock, and so is the same bus.
    with _BUSES_GUARD:
        bus = _BUSES.get(transport.lock)
        if bus is None:
            bus = _BUSES[transport.lock] = _Bus()
        return bus


def _model_key(model: str) -> str:
    digits = "".join(ch for ch in model if ch.isdigit())
    key = f"NE-{digits}"
    if key not in MODEL_SPEED_LIMITS_MM_MIN:
        known = ", ".join(MODEL_SPEED_LIMITS_MM_MIN)
        raise ValueError(f"unknown New Era model {model!r}; known: {known}")
    return key


class NewEraPump(SyringePump):
    """One New Era pump (NE-300/500/1000/4000) at one address on a (shared) link.

    Args:
        transport: the link; may be shared with other pumps on the same daisy chain.
        name: the device's name in the instrument config.
        syringe: the syringe mounted at start.
        address: the pump's network address, 0-99 (§2.1).
        clock: the run's clock (heartbeat bookkeeping).
        safe_mode: use safe-mode framing (CRC, length byte) and the communication
            watchdog; recommended for long perfusions because the pump stops on its own
            if the host dies.
        timeout_s: silence timeout for each reply.
        retries: extra attempts for idempotent commands after a timeout, a garbled reply
            or ``?COM``.
        model: ``"NE-300"``, ``"NE-500"``, ``"NE-1000"`` or ``"NE-4000"``; ``connect()``
            checks that the pump's ``VER`` reply names the same model.
        safe_timeout_s: the watchdog timeout sent with ``SAF`` in safe mode, 1-255 s.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        syringe: Syringe,
        address: int = 0,
        clock: Clock,
        safe_mode: bool = False,
        timeout_s: float = 0.5,
        retries: int = 2,
        model: str = "NE-1000",
        safe_timeout_s: int = 10,
    ) -> None:
        """Validate and remember the settings; no I/O (that is :meth:`connect`)."""
        super().__init__(name=name, syringe=syringe)
        if not 0 <= address <= codec.MAX_ADDRESS:
            raise ValueError(f"{name}: New Era address must be 0..{codec.MAX_ADDRESS}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{name}: timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"{name}: retries must be >= 0, got {retries}")
        if not 1 <= safe_timeout_s <= SAFE_TIMEOUT_MAX_S:
            raise ValueError(f"{name}: safe_timeout_s must be 1..{SAFE_TIMEOUT_MAX_S}")
        self.model = _model_key(model)
        self.address = address
        self.safe_mode = safe_mode
        self.safe_timeout_s = safe_timeout_s
        self.heartbeat_period_s = safe_timeout_s / 2.0 if safe_mode else None
        #: The pump's ``VER`` reply, once connected.
        self.version: codec.Version | None = None
        self._transport = transport
        self._clock = clock
        self._timeout_s = timeout_s
        self._retries = retries
        self._bus = _bus_for(transport)
        # Framing of the next command. Until the mode is set in connect(), commands go
        # safe-framed: a pump accepts them in either mode (§2.3).
        self._safe_framing = True
        self._direction = PumpDirection.INFUSE
        self._rate_ul_min = 0.0
        self._maybe_running = False
        self._last_reply_s: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Open the link, identify the pump, set the mode and syringe, clear counters.

        Raises:
            DeviceNotFound: nothing answers at this address, or another model does.
            DeviceError: any other failure of the setup exchanges.
        """
        dia_command = self._dia_command(self._syringe)  # ValueError before any I/O
        self._transport.open()
        with self._transport.lock:
            self._safe_framing = True
            answered_safe = self._identify(not_found_on_silence=True)
            # A power-on reset is expected when the pump was just switched on.
            self._discard_alarm("reset")
            self._apply_mode(answered_safe)
            self._command(dia_command, on_alarm="resend")
            self._command("CLDINF", on_alarm="resend")
            self._command("CLDWDR", on_alarm="resend")
            self._rate_ul_min = 0.0
            self._maybe_running = False
            self._bus.users.add(self.address)

    def close(self) -> None:
        """Release the link; the last pump on a shared link closes it."""
        with self._transport.lock:
            self._bus.users.discard(self.address)
            if not self._bus.users:
                self._transport.close()

    def reconnect(self) -> None:
        """Re-open the link and re-read the pump's state without changing counters.

        After a power-on reset (``A?R``) the syringe diameter is sent again (and the safe
        mode, if it was lost); the reset is reported by the next :meth:`read_status`.

        Raises:
            TransportError: the link is still gone (or the pump does not answer).
            DeviceNotFound: another model answers.
        """
        self._transport.open()
        with self._transport.lock:
            self._safe_framing = True
            answered_safe = self._identify(not_found_on_silence=False)
            if answered_safe != self.safe_mode:
                self._apply_mode(answered_safe)
            else:
                self._safe_framing = self.safe_mode
            if "reset" in self._pending():
                self._command(self._dia_command(self._syringe), on_alarm="resend")
            self._resync_rate()
            self._bus.users.add(self.address)

    def heartbeat(self) -> None:
        """Keep the safe-mode watchdog fed with a status query (no-op in basic mode).

        Skipped when another exchange with this pump happened within half a period, which
        any valid packet does as well (§2.3). Alarms it sees go to the next status read.
        """
        if self.heartbeat_period_s is None:
            return
        now_s = self._clock.now_s()
        if self._last_reply_s is not None and now_s - self._last_reply_s < (
            self.heartbeat_period_s / 2.0
        ):
            return
        self._query("")
        self._acknowledge()

    # -- role hooks ------------------------------------------------------------------

    def _rate_limits_ul_min(self, syringe: Syringe) -> tuple[float, float]:
        """Scale the model's plunger speed range by the syringe's area (mm^3 = uL)."""
        low_mm_min, high_mm_min = MODEL_SPEED_LIMITS_MM_MIN[self.model]
        return low_mm_min * syringe.area_mm2, high_mm_min * syringe.area_mm2

    def _do_set_syringe(self, syringe: Syringe) -> None:
        """Send ``DIA`` (mm); the pump derives volumes from it, there is no volume command."""
        self._command(self._dia_command(syringe))

    def _do_run(
        self, direction: PumpDirection, rate_ul_min: float, volume_ul: float | None
    ) -> None:
        """Send DIR, RAT, VOL and RUN; raise :class:`DeviceAlarm` if an alarm is pending.

        Only the setters are retried on a lost reply (they are idempotent); ``RUN`` never
        is, so a pump cannot be started twice by the driver.
        """
        # Build every command before the first byte goes out, so a value the pump's
        # 4 digits cannot carry raises ValueError without touching the pump.
        rate_text, rate_unit = codec.format_rate(rate_ul_min)
        volume_commands = ["VOL0"]  # 0 = pump until stopped (§2.5)
        if volume_ul is not None:
            volume_text, volume_unit = codec.format_volume(volume_ul)
            volume_commands = [f"VOL{volume_unit}", f"VOL{volume_text}"]
        dir_command = "DIRINF" if direction is PumpDirection.INFUSE else "DIRWDR"
        with self._transport.lock:
            self._collect_unsolicited()
            self._acknowledge()
            pending = self._pop_alarms()
            if pending:
                raise DeviceAlarm(
                    self.name, f"pump reported alarm {pending[0]!r}", alarm=pending[0]
                )
            if self._maybe_running:
                # [I] Volume and rate units cannot change while pumping (NE-500 manual
                # §5.4), so a new run starts from a stopped pump.
                self._do_stop()
            self._command(dir_command)
            self._command(f"RAT{rate_text}{rate_unit}")
            for command in volume_commands:
                self._command(command)
            self._command("RUN", retry=False)
            self._direction = direction
            self._rate_ul_min = float(rate_text) * codec.RATE_UNITS_UL_MIN[rate_unit]
            self._maybe_running = True

    def _do_stop(self) -> None:
        """Send ``STP`` until the pump reports stopped; alarms do not prevent it."""
        with self._transport.lock:
            reply = self._command("STP", on_alarm="resend")
            if reply.status == "P":
                # [I] STP on a running pump pauses the pumping program (status P) and a
                # second STP stops it, so that the next RUN starts afresh.
                self._command("STP", on_alarm="resend")
            self._rate_ul_min = 0.0
            self._maybe_running = False

    def _do_read_status(self) -> PumpStatus:
        """Read ``DIS``: its status character and both volume totals in one exchange.

        The rate is the one this driver commanded (the pump reports no measured rate);
        queued alarms are reported once and then forgotten.
        """
        with self._transport.lock:
            reply, (infused_ul, withdrawn_ul) = self._query_data("DIS", codec.parse_dispensed)
            self._acknowledge()
            alarms = self._pop_alarms()
            running = reply.running
            if reply.status == "I":
                self._direction = PumpDirection.INFUSE
            elif reply.status == "W":
                self._direction = PumpDirection.WITHDRAW
            if not running:
                self._rate_ul_min = 0.0
                self._maybe_running = False
            if len(alarms) > 1:
                logger.warning("%s: several alarms at once: %s", self.name, ", ".join(alarms))
            return PumpStatus(
                running=running,
                direction=self._direction,
                rate_ul_min=self._rate_ul_min if running else 0.0,
                infused_ul=infused_ul,
                withdrawn_ul=withdrawn_ul,
                stalled="stall" in alarms,
                alarm=alarms[0] if alarms else None,
            )

    # -- setup steps -----------------------------------------------------------------

    def _identify(self, *, not_found_on_silence: bool) -> bool:
        """Send ``VER``, check the model, and tell whether the pump answered safe-framed.

        Args:
            not_found_on_silence: turn a timeout or garbage into :class:`DeviceNotFound`
                (at connect, "nothing answers" is a configuration error; at reconnect it
                means the link is still down and stays a transport error).
        """
        try:
            reply = self._query("VER")
        except (TransportTimeout, ReplyError) as exc:
            if not not_found_on_silence:
                raise
            raise DeviceNotFound(
                self.name,
                f"no New Era pump answers at address {self.address}: {exc.message}",
                sent=exc.sent,
                received=exc.received,
            ) from exc
        try:
            version = codec.parse_version(reply.data, device=self.name)
        except ReplyError as exc:
            raise DeviceNotFound(
                self.name, f"not a New Era pump: {exc.message}", received=exc.received
            ) from exc
        if f"NE-{version.model}" != self.model:
            raise DeviceNotFound(
                self.name,
                f"expected an {self.model} at address {self.address}, found NE-{version.model}",
            )
        self.version = version
        return reply.safe

    def _apply_mode(self, answered_safe: bool) -> None:
        """Put the pump in the configured mode with ``SAF`` (§2.3).

        ``SAF`` is stored in non-volatile memory, so basic mode is only re-sent when the
        pump was found in safe mode; safe mode is always sent, as it also sets the
        watchdog timeout this driver's heartbeat period is derived from.
        """
        if self.safe_mode:
            self._safe_framing = True
            self._command(f"SAF{self.safe_timeout_s}", on_alarm="resend")
        else:
            if answered_safe:
                self._safe_framing = True
                self._command("SAF0", on_alarm="resend")
            self._safe_framing = False

    def _resync_rate(self) -> None:
        """Read running state and, if running, the rate, so status reports stay true."""
        reply = self._query("")
        self._maybe_running = reply.running
        if not reply.running:
            self._rate_ul_min = 0.0
            return
        self._direction = PumpDirection.INFUSE if reply.status == "I" else PumpDirection.WITHDRAW
        rate = self._query("RAT")
        # [I] The RAT query answers <number><unit>, e.g. "250.0UM".
        unit = rate.data[-2:]
        if unit not in codec.RATE_UNITS_UL_MIN:
            raise ReplyError(self.name, f"unexpected RAT reply {rate.data!r}")
        self._rate_ul_min = (
            codec.parse_number(rate.data[:-2], device=self.name) * codec.RATE_UNITS_UL_MIN[unit]
        )

    def _dia_command(self, syringe: Syringe) -> str:
        diameter_mm = syringe.inner_diameter_mm
        if not DIAMETER_MIN_MM <= diameter_mm <= DIAMETER_MAX_MM:
            raise ValueError(
                f"{self.name}: syringe diameter {diameter_mm:g} mm is outside "
                f"{DIAMETER_MIN_MM:g}..{DIAMETER_MAX_MM:g} mm"
            )
        return "DIA" + codec.format_number(diameter_mm)

    # -- alarms ----------------------------------------------------------------------

    def _pending(self) -> list[str]:
        return self._bus.alarms.setdefault(self.address, [])

    def _note_alarm(self, address: int, alarm: str) -> None:
        queue = self._bus.alarms.setdefault(address, [])
        if alarm not in queue:
            queue.append(alarm)

    def _pop_alarms(self) -> list[str]:
        return self._bus.alarms.pop(self.address, [])

    def _acknowledge(self) -> None:
        """Acknowledge an alarm that so far only arrived as an auto-alarm packet.

        The packet does not clear the alarm on the pump (§2.4), which would then refuse
        the next run; a status query's reply returns (and so clears) it.
        """
        if self.address in self._bus.unacknowledged:
            self._query("")
            self._bus.unacknowledged.discard(self.address)

    def _discard_alarm(self, alarm: str) -> None:
        queue = self._pending()
        if alarm in queue:
            queue.remove(alarm)

    # -- exchanges -------------------------------------------------------------------

    def _query(self, command: str) -> codec.Reply:
        """Send an idempotent query; alarm replies are queued and the query re-sent."""
        return self._command(command, on_alarm="resend")

    def _query_data(self, command: str, parse: Callable[..., _T]) -> tuple[codec.Reply, _T]:
        """Send a query and parse its data, asking again if the data is unreadable.

        In basic mode there is no CRC, so a corrupted byte can still make a well-framed
        reply; the data parser is then the only check, and a retry its remedy.
        """
        for attempt in range(self._retries + 1):
            reply = self._query(command)
            try:
                return reply, parse(reply.data, device=self.name)
            except ReplyError:
                if attempt == self._retries:
                    raise
                logger.info(
                    "%s: unreadable %s data %r, asking again", self.name, command, reply.data
                )
        raise AssertionError("unreachable")

    def _command(
        self,
        command: str,
        *,
        retry: bool = True,
        on_alarm: _OnAlarm = "raise",
    ) -> codec.Reply:
        """Send one command and check its reply.

        Args:
            command: command and data, without address or framing.
            retry: the command is idempotent: re-send after a timeout, a garbled reply
                or ``?COM``. Never set for ``RUN``.
            on_alarm: ``"raise"`` raises :class:`DeviceAlarm` on an alarm reply;
                ``"resend"`` queues the alarm and sends the command again (it was not
                executed).

        Raises:
            DeviceRejected: ``?``, ``?NA`` or ``?OOR``.
            DeviceAlarm: an alarm reply, with ``on_alarm="raise"``.
        """
        attempts = _MAX_ALARM_REPLIES if on_alarm == "resend" else 1
        for _ in range(attempts):
            frame, raw, reply = self._exchange(command, retry=retry)
            if reply.alarm is None:
                self._raise_for_error(reply, frame, raw)
                return reply
            # The alarm reply acknowledged the alarm on the pump (§2.4).
            self._bus.unacknowledged.discard(self.address)
            if on_alarm == "raise":
                raise DeviceAlarm(
                    self.name,
                    f"pump answered {command or 'status'} with alarm {reply.alarm!r}",
                    alarm=reply.alarm,
                    sent=frame,
                    received=raw,
                )
            self._note_alarm(self.address, reply.alarm)
        raise DeviceAlarm(
            self.name,
            f"pump keeps answering {command} with alarm {reply.alarm!r}",
            alarm=reply.alarm or "unknown",
            sent=frame,
            received=raw,
        )

    def _raise_for_error(self, reply: codec.Reply, frame: bytes, raw: bytes) -> None:
        if reply.error is None:
            return
        if reply.error == "IGN":
            # ?IGN: ignored because a program phase started at the same moment (§2.4);
            # nesp-lib treats it as harmless as well [I].
            logger.warning("%s: pump ignored %r (?IGN)", self.name, frame)
            return
        meaning = codec.ERROR_MEANINGS[reply.error]
        raise DeviceRejected(
            self.name, f"pump rejected the command: {meaning}", sent=frame, received=raw
        )

    def _exchange(self, command: str, *, retry: bool) -> tuple[bytes, bytes, codec.Reply]:
        """Write one command and read this pump's reply, retrying if allowed.

        Returns:
            ``(frame sent, frame received, decoded reply)``.
        """
        frame = codec.encode_command(self.address, command, safe=self._safe_framing)
        attempts = 1 + (self._retries if retry else 0)
        last_error: DeviceError | None = None
        with self._transport.lock:
            for attempt in range(attempts):
                self._collect_unsolicited()
                self._transport.write(frame)
                try:
                    raw, reply = self._read_reply(frame)
                except (TransportTimeout, ReplyError) as exc:
                    last_error = exc
                    logger.info(
                        "%s: attempt %d of %r failed: %s", self.name, attempt + 1, frame, exc
                    )
                    continue
                if reply.error == "COM":
                    # The pump saw a damaged packet and did nothing (§2.4).
                    last_error = ReplyError(
                        self.name, "pump received a damaged packet (?COM)", sent=frame, received=raw
                    )
                    continue
                self._last_reply_s = self._clock.now_s()
                return frame, raw, reply
        assert last_error is not None
        raise last_error

    def _read_reply(self, frame: bytes) -> tuple[bytes, codec.Reply]:
        """Read frames until one comes from this pump; route the others.

        The bytes read are bounded in total, not only per frame: a bus flooded with other
        pumps' frames (a babbling pump, crosstalk) must end in an error, not a loop.
        """
        buf = bytearray()
        total = 0
        while True:
            span = codec.find_frame(bytes(buf))
            while span is not None:
                start, end = span
                raw = bytes(buf[start:end])
                del buf[:end]
                try:
                    reply = codec.decode_reply(raw, device=self.name)
                except ReplyError as exc:
                    raise ReplyError(self.name, exc.message, sent=frame, received=raw) from None
                if reply.address == self.address:
                    # Whatever came with the reply (an auto-alarm packet, §2.3) is
                    # handled as if it arrived between exchanges.
                    self._route_all(bytes(buf))
                    return raw, reply
                self._route(reply, raw)
                span = codec.find_frame(bytes(buf))
            chunk = self._transport.read_some(self._timeout_s)
            if not chunk:
                what = "no reply" if not buf else "incomplete reply"
                raise TransportTimeout(
                    self.name,
                    f"{what} within {self._timeout_s:g} s",
                    sent=frame,
                    received=bytes(buf),
                )
            buf += chunk
            total += len(chunk)
            if total > MAX_FRAME_BYTES:  # also bounds buf, which holds fewer
                raise TransportTimeout(
                    self.name,
                    f"no reply from address {self.address} in {total} bytes",
                    sent=frame,
                    received=bytes(buf[:64]),
                )

    def _collect_unsolicited(self) -> None:
        """Read what arrived outside an exchange and queue the alarms in it.

        In safe mode a pump sends an alarm packet on its own (§2.3, "auto-alarm"); in
        basic mode anything found here is a stale reply to an earlier, timed-out command
        and is dropped. A partial frame is dropped too: it cannot be the answer to the
        command about to be sent.
        """
        self._route_all(self._transport.read_some(0.0))

    def _route_all(self, data: bytes) -> None:
        """Route every complete frame in ``data``; drop noise and a trailing partial frame."""
        while data:
            span = codec.find_frame(data)
            if span is None:
                logger.debug("%s: dropping %r", self.name, data)
                return
            start, end = span
            raw, data = data[start:end], data[end:]
            try:
                reply = codec.decode_reply(raw, device=self.name)
            except ReplyError as exc:
                logger.info("%s: unreadable frame outside a reply: %s", self.name, exc)
                continue
            self._route(reply, raw)

    def _route(self, reply: codec.Reply, raw: bytes) -> None:
        """Queue an alarm frame for the pump it is addressed to; drop anything else."""
        if reply.alarm is not None:
            logger.info("%s: alarm %r from address %d", self.name, reply.alarm, reply.address)
            self._note_alarm(reply.address, reply.alarm)
            self._bus.unacknowledged.add(reply.address)
        else:
            logger.debug("%s: dropping stale frame %r", self.name, raw)
