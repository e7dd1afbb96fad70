"""Selector-valve driver for IDEX / Rheodyne MX Series II modules and Titan EZ boards.

One valve per serial port (the protocol has no addresses; hardware-reference §5.1), 19200
8N1 by default. The driver moves with ``P<hh>`` and then polls ``S`` on its clock until
the valve reports the target position: while the motor turns the board answers every byte
with ``*``, so "busy" is not an error but the signal to keep waiting. A move that does not
end within ``move_timeout_s`` of clock time raises the ``valve_jam`` alarm.

Retries: only the ``S`` status query is repeated after a lost or garbled reply (it changes
nothing on the valve); a move command is sent again only when the valve answered busy,
i.e. provably did not take it.
"""

from __future__ import annotations

from drivers.clock import Clock
from drivers.errors import (
    DeviceAlarm,
    DeviceError,
    DeviceNotFound,
    DeviceRejected,
    ReplyError,
    TransportTimeout,
)
from drivers.idex.codec import (
    MAX_POSITION,
    ValveStatus,
    decode_move_reply,
    decode_status_reply,
    encode_move,
    encode_status,
    reply_complete,
)
from drivers.roles import Valve
from drivers.transport import Transport, read_frame

__all__ = ["IdexValve"]

#: Machine-readable alarm names for the ``S`` error codes (§5.1). 77 is not here: a
#: configuration/command-mode error means the board refuses serial commands, which is a
#: rejection, not a fault of the valve (:class:`DeviceRejected`).
_ALARMS: dict[int, str] = {
    99: "valve_failure",
    88: "nvram_error",
    66: "positioning_error",
    55: "data_integrity_error",
    44: "data_crc_error",
}


class IdexValve(Valve):
    """An IDEX MX Series II / Titan EZ selector valve.

    Args:
        transport: the valve's serial link (19200 8N1 by default, §5.1).
        name: the device's name in the instrument config.
        n_positions: positions of the fitted valve (2..12, set by the valve mode).
        clock: the clock the driver polls on.
        timeout_s: silence timeout for one reply.
        move_timeout_s: clock time a move may take before it counts as jammed.
        poll_interval_s: clock time between two status polls during a move.
        status_retries: extra attempts of a status query after a timeout or bad reply.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        n_positions: int,
        clock: Clock,
        timeout_s: float = 0.5,
        move_timeout_s: float = 5.0,
        poll_interval_s: float = 0.05,
        status_retries: int = 2,
    ) -> None:
        """Remember the link and the timing; no I/O (the valve is opened by :meth:`connect`)."""
        super().__init__(name=name, n_positions=n_positions)
        if n_positions > MAX_POSITION:
            raise ValueError(f"{name}: an IDEX valve has at most {MAX_POSITION} positions")
        if timeout_s <= 0 or move_timeout_s <= 0 or poll_interval_s <= 0:
            raise ValueError(f"{name}: timeouts and poll interval must be > 0")
        self.transport = transport
        self.clock = clock
        self.timeout_s = timeout_s
        self.move_timeout_s = move_timeout_s
        self.poll_interval_s = poll_interval_s
        self.status_retries = status_retries
        self._position: int | None = None

    @property
    def last_position(self) -> int | None:
        """The position last reported by the valve (None before :meth:`connect`)."""
        return self._position

    # ----------------------------------------------------------------- lifecycle
    def connect(self) -> None:
        """Open the link and read the position (waiting out a homing move after power-up).

        Raises:
            DeviceNotFound: nothing answers the status query.
            DeviceAlarm: the valve reports an error code.
        """
        with self.transport.lock:
            self.transport.open()
            self.transport.reset_input()
            try:
                self._position = self._wait_settled(self.clock.now_s() + self.move_timeout_s)
            except (TransportTimeout, ReplyError) as exc:
                raise DeviceNotFound(
                    self.name,
                    f"no IDEX valve answers the status query: {exc.message}",
                    sent=exc.sent,
                    received=exc.received,
                ) from exc

    def close(self) -> None:
        """Release the link; the valve stays where it is."""
        self.transport.close()

    def reconnect(self) -> None:
        """Re-open the link and re-read the position; nothing is sent that moves the valve."""
        with self.transport.lock:
            self.transport.close()
            self.transport.open()
            self.transport.reset_input()
            self._position = self._wait_settled(self.clock.now_s() + self.move_timeout_s)

    # ------------------------------------------------------------------- role hooks
    def _do_read_position(self) -> int:
        with self.transport.lock:
            self._position = self._wait_settled(self.clock.now_s() + self.move_timeout_s)
            return self._position

    def _do_select(self, position: int) -> None:
        command = encode_move(position)
        with self.transport.lock:
            deadline_s = self.clock.now_s() + self.move_timeout_s
            self._send_move(command, position, deadline_s)
            while True:
                self.clock.sleep_s(self.poll_interval_s)
                status, reply = self._query_status()
                if status.error_code is not None:
                    raise self._error(status, sent=command, received=reply)
                if status.position == position:
                    self._position = position
                    return
                if status.position is not None:
                    self._position = status.position
                if self.clock.now_s() >= deadline_s:
                    where = "still moving" if status.busy else f"at position {status.position}"
                    raise DeviceAlarm(
                        self.name,
                        f"valve did not reach position {position} within "
                        f"{self.move_timeout_s:g} s ({where})",
                        alarm="valve_jam",
                        sent=command,
                        received=reply,
                    )

    # -------------------------------------------------------------------- exchanges
    def _exchange(self, command: bytes) -> bytes:
        """Write ``command`` and read one reply (stray ``*`` from before are dropped)."""
        self.transport.reset_input()
        self.transport.write(command)
        return read_frame(
            self.transport, reply_complete, timeout_s=self.timeout_s, device=self.name, sent=command
        )

    def _query_status(self) -> tuple[ValveStatus, bytes]:
        """Ask ``S``, retrying a lost or garbled reply (the query changes nothing)."""
        command = encode_status()
        for attempt in range(self.status_retries + 1):
            try:
                reply = self._exchange(command)
                status = decode_status_reply(reply, device=self.name)
                if status.position is not None and status.position > self.n_positions:
                    # Two hex digits reach 0x0C; noise (or a valve of another mode than
                    # configured) can name a position this valve does not have.
                    raise ReplyError(
                        self.name,
                        f"status reply names position {status.position} of a "
                        f"{self.n_positions}-position valve",
                        sent=command,
                        received=reply,
                    )
                return status, reply
            except (TransportTimeout, ReplyError):
                if attempt == self.status_retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_settled(self, deadline_s: float) -> int:
        """Poll ``S`` until the valve is idle; return its position."""
        command = encode_status()
        while True:
            status, reply = self._query_status()
            if status.error_code is not None:
                raise self._error(status, sent=command, received=reply)
            if status.position is not None:
                return status.position
            if self.clock.now_s() >= deadline_s:
                raise DeviceAlarm(
                    self.name,
                    f"valve still busy after {self.move_timeout_s:g} s",
                    alarm="valve_jam",
                    sent=command,
                    received=reply,
                )
            self.clock.sleep_s(self.poll_interval_s)

    def _send_move(self, command: bytes, position: int, deadline_s: float) -> None:
        """Send ``P<hh>`` until the valve takes it (it answers ``*`` while still moving)."""
        while True:
            try:
                reply = self._exchange(command)
            except TransportTimeout as exc:
                self._explain_silent_move(exc, position)
                raise
            if decode_move_reply(reply, device=self.name):
                return
            if self.clock.now_s() >= deadline_s:
                raise DeviceAlarm(
                    self.name,
                    f"valve busy for {self.move_timeout_s:g} s; move to {position} not taken",
                    alarm="valve_jam",
                    sent=command,
                    received=reply,
                )
            self._wait_settled(deadline_s)

    def _explain_silent_move(self, exc: TransportTimeout, position: int) -> None:
        """Tell an ignored move from a dead link (§5.1: an invalid ``P`` gets no reply).

        Raises:
            DeviceRejected: the valve answers a status query, so it ignored the move: the
                position does not exist in the valve's mode.
        """
        try:
            self._query_status()
        except DeviceError:
            return  # the link is silent too: let the caller raise the original timeout
        raise DeviceRejected(
            self.name,
            f"valve ignored the move to position {position}: not a position of its valve mode",
            sent=exc.sent,
            received=exc.received,
        ) from exc

    def _error(self, status: ValveStatus, *, sent: bytes, received: bytes) -> DeviceError:
        code = status.error_code
        message = f"valve reports error {code}: {status.error_text}"
        if code is not None and code in _ALARMS:
            return DeviceAlarm(
                self.name, message, alarm=_ALARMS[code], sent=sent, received=received
            )
        return DeviceRejected(self.name, message, sent=sent, received=received)
