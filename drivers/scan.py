"""Find instruments on serial ports with read-only identification queries.

Each probe opens the port at one of its protocol's usual baud rates, sends one query that
changes nothing on the device (Harvard ``ver``, New Era ``VER``, Cavro ``&`` firmware
report, IDEX ``S`` status, SHDLC "device information"), and closes the port again.
Probes run one after the other and stop at the first protocol that answers; a silent
port costs a few short timeouts. Nothing is ever started, stopped or configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivers.clock import Clock
from drivers.errors import DeviceError
from drivers.transport import SerialTransport, Transport, read_frame

__all__ = ["PROBES", "Found", "Probe", "list_serial_ports", "scan_port"]

logger = logging.getLogger(__name__)

#: Silence timeout of one probe read; short, since a device answers in milliseconds.
PROBE_TIMEOUT_S = 0.25


@dataclass(frozen=True, slots=True)
class Found:
    """A device that answered a probe.

    Args:
        port: the serial port.
        driver: the chipctl driver that speaks its protocol (for the instrument config).
        model: what it says it is.
        address: its bus address, where the protocol has one.
        firmware: its firmware version, where the protocol tells it.
        baudrate: the line speed it answered at.
    """

    port: str
    driver: str
    model: str
    address: str
    firmware: str
    baudrate: int


def _exchange(transport: Transport, frame: bytes, complete: Callable[[bytes], bool]) -> bytes:
    with transport.lock:
        transport.reset_input()
        transport.write(frame)
        return read_frame(transport, complete, timeout_s=PROBE_TIMEOUT_S, sent=frame)


def _flush_line(transport: Transport) -> None:
    """End any partial line a previous probe left in a line-based device's input buffer.

    A bare CR is harmless to the ASCII protocols here (a Harvard pump answers it with its
    prompt, a New Era pump with its status, a Cavro or an IDEX valve drops an empty or
    malformed line); whatever comes back is discarded.
    """
    with transport.lock:
        transport.write(b"\r")
        while transport.read_some(PROBE_TIMEOUT_S / 5):
            pass
        transport.reset_input()


def _probe_harvard(transport: Transport, clock: Clock) -> tuple[str, str, str] | None:
    from drivers.harvard import codec

    _flush_line(transport)
    frame = codec.encode_command("ver", address=0, model=codec.Model.ELITE)
    reply = codec.parse_reply(_exchange(transport, frame, codec.reply_complete), 0)
    text = " ".join(reply.lines).strip()
    if not text or codec.error_text(reply) is not None:
        return None
    return text, "0", text.split()[-1]


def _probe_newera(transport: Transport, clock: Clock) -> tuple[str, str, str] | None:
    from drivers.newera import codec

    # VER in safe framing: a pump in either mode answers it (NE manual §2.3) [I]. A pending
    # power-on alarm is answered first; ask once more then.
    _flush_line(transport)
    frame = codec.encode_safe(0, "VER")
    for _ in range(2):
        reply = codec.decode_reply(_exchange(transport, frame, codec.reply_complete))
        if reply.status != "A":
            version = codec.parse_version(reply.data)
            return f"New Era NE-{version.model}", str(reply.address), version.firmware
    return None


def _probe_cavro(transport: Transport, clock: Clock) -> tuple[str, str, str] | None:
    from drivers.cavro import codec

    _flush_line(transport)
    frame = codec.build_dt_command("1", "&", execute=False)
    reply = codec.parse_dt_reply(_exchange(transport, frame, codec.dt_reply_complete))
    firmware = reply.data.strip()
    return ("Tecan Cavro", "1", firmware) if firmware else None


def _probe_idex(transport: Transport, clock: Clock) -> tuple[str, str, str] | None:
    from drivers.idex import codec

    _flush_line(transport)
    status = codec.decode_status_reply(
        _exchange(transport, codec.encode_status(), codec.reply_complete)
    )
    where = f"position {status.position}" if status.position else "status answered"
    return f"IDEX MX Series II / Titan EZ ({where})", "-", ""


def _probe_sensirion(transport: Transport, clock: Clock) -> tuple[str, str, str] | None:
    from sensirion_shdlc_driver import ShdlcConnection, ShdlcDevice

    from drivers.sensirion.shdlc_port import TransportShdlcPort

    device = ShdlcDevice(ShdlcConnection(TransportShdlcPort(transport)), slave_address=0)
    name = str(device.get_product_name()).strip()
    version = device.get_version()
    firmware = str(getattr(version, "firmware", version))
    return f"Sensirion {name}" if name else "Sensirion SHDLC device", "0", firmware


@dataclass(frozen=True)
class Probe:
    """One protocol's read-only probe and the baud rates to try it at."""

    driver: str
    baudrates: tuple[int, ...]
    run: Callable[[Transport, Clock], tuple[str, str, str] | None]


#: Probes in the order they are tried on each port.
PROBES: tuple[Probe, ...] = (
    Probe("sensirion-flow", (115200,), _probe_sensirion),
    Probe("harvard", (115200, 9600, 19200, 38400, 57600), _probe_harvard),
    Probe("newera", (19200, 9600), _probe_newera),
    Probe("cavro", (9600, 38400), _probe_cavro),
    Probe("idex", (19200,), _probe_idex),
)


def scan_port(port: str, clock: Clock, probes: Iterable[Probe] = PROBES) -> Found | None:
    """Return the first device that answers a probe on ``port``, or None."""
    for probe in probes:
        for baudrate in probe.baudrates:
            transport = SerialTransport(port, baudrate=baudrate)
            try:
                transport.open()
            except DeviceError as exc:
                logger.info("%s: cannot open: %s", port, exc)
                return None
            try:
                answer = probe.run(transport, clock)
            except Exception as exc:  # any failure of a probe means "not this protocol"
                logger.debug("%s: %s at %d: %s", port, probe.driver, baudrate, exc)
                answer = None
            finally:
                transport.close()
            if answer is not None:
                model, address, firmware = answer
                return Found(port, probe.driver, model, address, firmware, baudrate)
    return None


def list_serial_ports() -> list[str]:
    """Return the serial ports the operating system knows."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())
