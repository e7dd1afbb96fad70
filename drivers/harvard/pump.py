"""Harvard Apparatus PHD ULTRA / Pump 11 Elite and KDS Legato syringe pumps.

One :class:`HarvardPump` per pump; pumps daisy-chained on one cable share one transport
(and so its lock). The byte format lives in :mod:`drivers.harvard.codec`; this module holds
the exchanges and the quirks:

- Volume totals. ``status`` reports only the volume in the current direction (§1.3), and
  targeted runs clear a counter first (see :meth:`HarvardPump._do_run`). The driver keeps,
  per direction, the last counter value seen plus the volume "banked" from cleared
  counters, so ``infused_ul``/``withdrawn_ul`` count everything since :meth:`connect`.
  A poll costs one ``status`` exchange; after each run command (or a direction change seen
  in ``status``) one ``ivolume``/``wvolume`` query settles the direction ``status`` no
  longer covers.
- Stall. The pump shows ``*`` as prompt and ``S`` in ``status`` until the stall is cleared
  on its front panel (§1.4; flowchem [I]). Run commands raise
  :class:`~drivers.errors.DeviceAlarm` so nothing is started on a stalled pump;
  :meth:`read_status` reports the stall without raising; :meth:`stop` never raises for it.
- Retries. Queries (``ver``, ``status``, volume and limit queries) and ``stp`` are retried
  after a timeout or a garbled reply; set, clear and run commands never are.
- Framing limits. The prompt has no terminator, so a reply is judged complete when a
  prompt ends the buffer; an addressed idle prompt (``12:``) also begins every text line
  of pump 12, so the reader waits :attr:`HarvardPump.PROMPT_SETTLE_S` for more bytes before
  trusting it. A reply that arrives after its read timed out is discarded by
  ``reset_input`` before the next command only if it has arrived by then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from drivers.clock import Clock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    ReplyError,
    TransportTimeout,
)
from drivers.harvard import codec
from drivers.harvard.codec import Direction, Model, Prompt
from drivers.roles import PumpDirection, PumpStatus, Syringe, SyringePump
from drivers.transport import MAX_FRAME_BYTES, Transport, read_frame

__all__ = ["HarvardPump", "LINEAR_SPEED_LIMITS_MM_MIN"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Plunger travel per motor microstep, from the Pump 11 Elite `metrics` printout quoted in
# flowchem's elite11.py docstring [I]: 400 steps/rev x 16 microsteps, 2.4:1 pulley, lead
# screw 24 threads per inch -> 25.4 / 24 / 2.4 / 6400 = 6.89e-5 mm per microstep.
_MM_PER_MICROSTEP = 25.4 / 24.0 / 2.4 / (400 * 16)

#: (min, max) linear plunger speed in mm/min per model, used for rate limits only when the
#: pump does not answer ``irate lim``. Elite: from its `metrics` "Low speed limit 27 seconds"
#: and "High speed limit 26 microseconds" per microstep -> 1.53e-4 .. 159 mm/min [I].
#: PHD ULTRA and Legato are assumed to share the Elite's drive [I: confirm with `metrics`].
_ELITE_SPEED_LIMITS_MM_MIN = (_MM_PER_MICROSTEP / 27.0 * 60.0, _MM_PER_MICROSTEP / 26e-6 * 60.0)
LINEAR_SPEED_LIMITS_MM_MIN: dict[Model, tuple[float, float]] = {
    Model.ELITE: _ELITE_SPEED_LIMITS_MM_MIN,
    Model.PHD_ULTRA: _ELITE_SPEED_LIMITS_MM_MIN,
    Model.LEGATO: _ELITE_SPEED_LIMITS_MM_MIN,
}

_DIRECTION_OF = {PumpDirection.INFUSE: Direction.INFUSE, PumpDirection.WITHDRAW: Direction.WITHDRAW}
_ROLE_DIRECTION_OF = {v: k for k, v in _DIRECTION_OF.items()}


def _completes_after(head: bytes) -> Callable[[bytes], bool]:
    """Return a completeness rule for the bytes that follow ``head``."""
    return lambda buf: codec.reply_complete(head + buf)


def _text(reply: codec.Reply) -> str:
    """Return all text lines as one (``ver`` may print more than one on some models [I])."""
    if not reply.lines:
        raise ReplyError("harvard", "expected text, got only a prompt")
    return " / ".join(line.strip() for line in reply.lines)


def _only_line(reply: codec.Reply) -> str:
    if len(reply.lines) != 1:
        raise ReplyError("harvard", f"expected one text line, got {len(reply.lines)}")
    return reply.lines[0]


class HarvardPump(SyringePump):
    """A PHD ULTRA, Pump 11 Elite or KDS Legato on a pump-chain link.

    Args:
        transport: the link (shared with the other pumps of a daisy chain).
        name: the device's name in the instrument config.
        syringe: the syringe mounted at start.
        address: the pump's chain address, 0-99 (0 for the pump cabled to the PC).
        model: ``"phd-ultra"``, ``"elite"`` or ``"legato"``; sets the command framing.
        clock: the run's clock (pauses before retries).
        timeout_s: silence timeout for each reply.
        retries: extra attempts for idempotent queries after a timeout or garbled reply.

    Raises:
        ValueError: bad address, model, timeout or retry count (before any I/O).
    """

    #: How long to wait for more bytes after a reply that ends in LF + ``NN:``, which is
    #: both an addressed idle prompt and the start of a text line (codec.prompt_may_continue).
    PROMPT_SETTLE_S = 0.02
    #: Pause before retrying a query, so that the rest of a garbled reply has arrived and
    #: is discarded by ``reset_input`` instead of being read as the next reply.
    RETRY_PAUSE_S = 0.05

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        syringe: Syringe,
        address: int = 0,
        model: str = "phd-ultra",
        clock: Clock,
        timeout_s: float = 0.5,
        retries: int = 2,
    ) -> None:
        """Check the arguments and remember them; no I/O (that is :meth:`connect`)."""
        super().__init__(name=name, syringe=syringe)
        if not 0 <= address <= 99:
            raise ValueError(f"{name}: pump-chain address must be 0-99, got {address}")
        try:
            self.model = Model(model)
        except ValueError:
            known = ", ".join(m.value for m in Model)
            raise ValueError(f"{name}: unknown Harvard model {model!r} (known: {known})") from None
        if not timeout_s > 0:
            raise ValueError(f"{name}: timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"{name}: retries must be >= 0, got {retries}")
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self._transport = transport
        self._clock = clock
        #: The ``ver`` reply, set by :meth:`connect`.
        self.version: str | None = None
        self._device_limits: tuple[Syringe, tuple[float, float]] | None = None
        self._counter_ul = dict.fromkeys(Direction, 0.0)
        self._banked_ul = dict.fromkeys(Direction, 0.0)
        self._unsettled: set[Direction] = set()
        self._last_direction: Direction | None = None

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Open the link, identify the pump, apply the syringe and clear the counters.

        Raises:
            DeviceNotFound: nothing, or something other than a pump-chain pump, answers.
        """
        self._transport.open()
        try:
            self.version = self._exchange("ver", retry=True, decode=_text)
        except (TransportTimeout, ReplyError, DeviceRejected) as exc:
            raise DeviceNotFound(
                self.name,
                f"no Harvard pump-chain pump answers at address {self.address} ({exc.message})",
                sent=exc.sent,
                received=exc.received,
            ) from exc
        logger.info("%s: %s at address %d", self.name, self.version, self.address)
        self._do_set_syringe(self._syringe)
        self._command("cvolume")  # clears infused and withdrawn volume (§1.3)
        self._counter_ul = dict.fromkeys(Direction, 0.0)
        self._banked_ul = dict.fromkeys(Direction, 0.0)
        self._unsettled.clear()
        self._last_direction = None

    def close(self) -> None:
        """Close the link (on a daisy chain, close it after the last pump is done)."""
        self._transport.close()

    def reconnect(self) -> None:
        """Re-open the link and re-read status and both volume counters; changes nothing."""
        self._transport.open()
        self._unsettled.update(Direction)
        self._do_read_status()

    # -- limits ----------------------------------------------------------------------

    def _rate_limits_ul_min(self, syringe: Syringe) -> tuple[float, float]:
        """Return what ``irate lim`` reported for ``syringe``, else the model's constants."""
        if self._device_limits is not None and self._device_limits[0] == syringe:
            return self._device_limits[1]
        low_mm_min, high_mm_min = LINEAR_SPEED_LIMITS_MM_MIN[self.model]
        return low_mm_min * syringe.area_mm2, high_mm_min * syringe.area_mm2

    # -- hooks -----------------------------------------------------------------------

    def _do_set_syringe(self, syringe: Syringe) -> None:
        """Send diameter and syringe volume, then ask the pump for its rate limits."""
        self._command(f"diameter {codec.format_diameter_mm(syringe.inner_diameter_mm)}")
        self._command(f"svolume {codec.format_volume(syringe.volume_ul)}")
        self._device_limits = None
        try:
            limits = self._exchange(
                "irate lim",
                retry=True,
                decode=lambda reply: codec.parse_rate_limits_ul_min(_only_line(reply)),
            )
        except (DeviceRejected, ReplyError) as exc:
            # PHD ULTRA takes rate commands only in Quick Start mode (§1.3) [I].
            logger.warning(
                "%s: no rate limits from the pump, using model constants: %s", self.name, exc
            )
            return
        self._device_limits = (syringe, limits)

    def _do_run(
        self, direction: PumpDirection, rate_ul_min: float, volume_ul: float | None
    ) -> None:
        """Set rate and target (or none), then start.

        With a volume, the direction's counter is banked and cleared first: the pump stops
        when its counter reaches the target, so a counter left over from an earlier run
        would end the new run early [I: Legato/Elite behaviour, confirm on hardware].
        """
        wire = _DIRECTION_OF[direction]
        self._command(f"{wire.value}rate {codec.format_rate(rate_ul_min)}", alarm=True)
        if volume_ul is None:
            self._command("ctvolume", alarm=True)  # no target: run until stopped
        else:
            self._bank_counter(wire)
            self._command(f"tvolume {codec.format_volume(volume_ul)}", alarm=True)
        # Marked before sending: if the reply is lost, the pump may be running anyway.
        self._unsettled.update(Direction)
        self._command(f"{wire.value}run", alarm=True)

    def _do_stop(self) -> None:
        """Send ``stp``; retried, since stopping twice is harmless and a lost stop is not."""
        self._exchange("stp", retry=True, decode=lambda reply: reply)

    def _do_read_status(self) -> PumpStatus:
        """Query ``status`` (and a volume counter only when one may be out of date)."""
        raw, prompt = self._exchange(
            "status",
            retry=True,
            decode=lambda reply: (
                codec.parse_status(_only_line(reply), model=self.model),
                reply.prompt,
            ),
        )
        previous = self._last_direction
        if previous is not None and previous is not raw.direction:
            self._unsettled.add(previous)  # it may have moved after our last look
        self._last_direction = raw.direction
        self._settle(raw.direction, raw.volume_ul)
        self._unsettled.discard(raw.direction)
        for other in sorted(self._unsettled, key=lambda d: d.value):
            self._settle(other, self._query_volume_ul(other))
        self._unsettled.clear()
        stalled = raw.stalled or prompt is Prompt.STALLED
        alarm = "stall" if stalled else ("end_of_travel" if raw.limit_switch else None)
        return PumpStatus(
            running=raw.running,
            direction=_ROLE_DIRECTION_OF[raw.direction],
            rate_ul_min=raw.rate_ul_min if raw.running else 0.0,
            infused_ul=self._total_ul(Direction.INFUSE),
            withdrawn_ul=self._total_ul(Direction.WITHDRAW),
            stalled=stalled,
            alarm=alarm,
        )

    # -- volume bookkeeping ----------------------------------------------------------

    def _total_ul(self, direction: Direction) -> float:
        return self._banked_ul[direction] + self._counter_ul[direction]

    def _settle(self, direction: Direction, counter_ul: float) -> None:
        """Take a fresh counter reading; a counter only grows until we clear it.

        A reading below half the last one means the counter was cleared behind our back
        (front panel, power cycle) and the last value is banked. The threshold is low on
        purpose: volume replies are rounded to a few digits [I], and taking rounding for a
        reset would count the same volume twice, which is worse than missing a reset that
        was followed by more than half the old volume before the next poll.
        """
        last_ul = self._counter_ul[direction]
        if counter_ul < 0.5 * last_ul:
            logger.warning(
                "%s: %s counter fell from %g to %g uL; keeping the earlier volume",
                self.name,
                direction.name.lower(),
                last_ul,
                counter_ul,
            )
            self._banked_ul[direction] += last_ul
        elif counter_ul < last_ul:
            counter_ul = last_ul  # the same count, rounded down in a shorter format
        self._counter_ul[direction] = counter_ul

    def _bank_counter(self, direction: Direction) -> None:
        """Read a direction's counter into the bank, then clear it on the pump."""
        self._settle(direction, self._query_volume_ul(direction))
        self._command(f"c{direction.value}volume")
        self._banked_ul[direction] += self._counter_ul[direction]
        self._counter_ul[direction] = 0.0

    def _query_volume_ul(self, direction: Direction) -> float:
        return self._exchange(
            f"{direction.value}volume",
            retry=True,
            decode=lambda reply: codec.parse_volume_ul(_only_line(reply)),
        )

    # -- exchanges -------------------------------------------------------------------

    def _command(self, command: str, *, alarm: bool = False) -> codec.Reply:
        """Send a non-idempotent command once; with ``alarm``, a stall prompt raises."""
        return self._exchange(command, retry=False, stall_raises=alarm, decode=lambda r: r)

    def _exchange(
        self,
        command: str,
        *,
        retry: bool,
        decode: Callable[[codec.Reply], _T],
        stall_raises: bool = False,
    ) -> _T:
        """Send ``command``, read the reply, check it for errors and decode it.

        Raises:
            DeviceAlarm: ``stall_raises`` and the prompt says the pump is stalled.
            TransportTimeout: no (whole) reply, after the retries if ``retry``.
            ReplyError: a malformed reply, after the retries if ``retry``.
            DeviceRejected: the pump answered with an error message (never retried).
        """
        frame = codec.encode_command(command, address=self.address, model=self.model)
        attempts = 1 + (self.retries if retry else 0)
        attempt = 1
        while True:
            try:
                with self._transport.lock:
                    self._transport.reset_input()
                    self._transport.write(frame)
                    raw = self._read_reply(frame)
                reply = codec.parse_reply(raw, self.address, device=self.name, sent=frame)
                rejected = codec.error_text(reply)
                if rejected is not None:
                    raise DeviceRejected(
                        self.name, f"{command!r} refused: {rejected}", sent=frame, received=raw
                    )
                if stall_raises and reply.prompt is Prompt.STALLED:
                    raise DeviceAlarm(
                        self.name,
                        f"pump is stalled, {command!r} not accepted; clear the stall on the pump",
                        alarm="stall",
                        sent=frame,
                        received=raw,
                    )
                try:
                    return decode(reply)
                except ReplyError as exc:
                    raise ReplyError(self.name, exc.message, sent=frame, received=raw) from exc
            except (TransportTimeout, ReplyError) as exc:
                if attempt >= attempts:
                    raise
                logger.warning("%s: %s; retry %d of %d", self.name, exc, attempt, self.retries)
                attempt += 1
                self._clock.sleep_s(self.RETRY_PAUSE_S)

    def _read_reply(self, frame: bytes) -> bytes:
        """Read one reply, waiting a moment more when its end is ambiguous."""
        raw = read_frame(
            self._transport,
            codec.reply_complete,
            timeout_s=self.timeout_s,
            device=self.name,
            sent=frame,
        )
        while codec.prompt_may_continue(raw):
            if len(raw) > MAX_FRAME_BYTES:
                # A line that keeps sending prompts (noise, a chain echoing) would keep
                # this loop reading for ever; no reply is this long.
                raise TransportTimeout(
                    self.name,
                    f"no complete reply in {len(raw)} bytes",
                    sent=frame,
                    received=raw[:64],
                )
            more = self._transport.read_some(self.PROMPT_SETTLE_S)
            if not more:
                break
            raw += more
            if not codec.reply_complete(raw):
                raw += read_frame(
                    self._transport,
                    _completes_after(raw),
                    timeout_s=self.timeout_s,
                    device=self.name,
                    sent=frame,
                )
        return raw
