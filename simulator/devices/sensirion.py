"""Byte-level emulator of a Sensirion SCC1-USB sensor cable with an SLF3x liquid flow sensor.

The SCC1 speaks SHDLC (hardware-reference §6.1): the host sends MOSI frames
``7E | addr | cmd | len | data | chk | 7E`` and the cable answers with MISO frames
``7E | addr | cmd | state | len | data | chk | 7E``. ``chk`` is the bitwise NOT of the low
byte of the sum of the bytes between the delimiters, computed before byte stuffing; the
bytes 0x7E, 0x7D, 0x11 and 0x13 are sent as ``0x7D, byte ^ 0x20``. The state byte carries
the device error flag (bit 7) and the command's error code (bits 6..0, 0 = success).

This module is an independent implementation written from that description: it imports
nothing of ``drivers`` (DESIGN.md, "Dependency direction"), so the driver, which uses
Sensirion's own SHDLC client, is checked against a second implementation of the protocol.

Emulated commands (generic SHDLC, then SCC1): 0xD0 device information, 0xD1 version,
0xD2 error state, 0xD3 device reset, 0x24 sensor type, 0x25 sensor I2C address, 0x33
start continuous measurement (or, without data, its status), 0x34 stop, 0x35 last
measurement, 0x36 extended buffer, 0x37..0x39 totaliser, 0x50 sensor product id and serial,
0x53 flow scale factor and unit, 0x54 sensor serial, 0x65 sensor reset. These are the
commands sensirion-uart-scc1 2.0.0 sends for an SLF3x (its ``Scc1ShdlcDevice`` and
``Scc1Slf3x`` classes).

The emulator owns no clock (DESIGN.md, "Time"): it is advanced with :meth:`advance_to`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.faults import CommFaults
from simulator.world import FlowSource, World

__all__ = ["SLF3X_MODELS", "SimScc1Slf3s", "Slf3xModel"]

_FRAME_DELIMITER = 0x7E
_ESCAPE = 0x7D
_ESCAPE_XOR = 0x20
_ESCAPED_BYTES = frozenset({0x7E, 0x7D, 0x11, 0x13})

# SHDLC execution error codes (bits 6..0 of the state byte), as named by Sensirion's
# SHDLC driver: 1 data size, 2 unknown command, 3 access right, 4 parameter, 5 checksum.
_ERR_DATA_SIZE = 1
_ERR_UNKNOWN_COMMAND = 2
_ERR_PARAMETER = 4
_ERR_CHECKSUM = 5
_STATE_ERROR_FLAG = 0x80

#: SCC1 sensor type of the SF06-based flow sensors (SLF3x), used in 0x24/0x35/0x36/0x50.
SENSOR_TYPE_SF06 = 3
#: The SLF3x's fixed I2C address (datasheet, digital interface section).
SLF3X_I2C_ADDRESS = 0x08
#: SLF3x measurement commands (16-bit I2C commands): water ("Liquid 1") and IPA ("Liquid 2").
MEASURE_WATER = 0x3608
MEASURE_IPA = 0x3615
#: Raw temperature counts per degree Celsius (SLF3x datasheet, "Sensor Output Signal").
TEMPERATURE_SCALE_PER_C = 200.0
#: Time after a start command until the first measurement is available (SLF3x datasheet:
#: the first reading is ready about 12 ms after the start command).
FIRST_SAMPLE_DELAY_S = 0.012
#: Flag bits of the SLF3x signalling word.
FLAG_AIR_IN_LINE = 0x0001
FLAG_HIGH_FLOW = 0x0002
#: Bit set in the 0xD2 device-state word after an unexpected sensor reset (emulator's own
#: convention: the SCC1 manual's bit assignment is not public).
DEVICE_STATE_SENSOR_RESET = 0x0000_0001
#: Longest SHDLC data field.
_MAX_DATA_BYTES = 255
#: Samples kept in the extended buffer; older ones are counted as lost.
_BUFFER_CAPACITY_SAMPLES = 200


@dataclass(frozen=True, slots=True)
class Slf3xModel:
    """Datasheet facts about one SLF3x model.

    Args:
        part_name: the catalogue name.
        product_id: the 32-bit product identifier the sensor reports (the SCC1 reports it
            as 8 hex digits; Sensirion's driver ignores the last byte).
        scale_per_unit: raw flow counts per flow unit (datasheet scale factor).
        unit_code: the flow unit word returned by 0x53 (prefix, time base and volume
            nibbles; 0x0845 = ml/min, 0x0844 = ul/min).
        ul_min_per_unit: how many uL/min one flow unit is.
        full_scale_ul_min: the calibrated range; above it the high-flow flag is set.
    """

    part_name: str
    product_id: int
    scale_per_unit: float
    unit_code: int
    ul_min_per_unit: float
    full_scale_ul_min: float

    @property
    def counts_per_ul_min(self) -> float:
        """Raw flow counts per uL/min."""
        return self.scale_per_unit / self.ul_min_per_unit


_ML_MIN = 0x0845
_UL_MIN = 0x0844

#: The SLF3x models the emulator knows, by part name (SLF3x datasheets; the product ids are
#: those listed by sensirion-uart-scc1, with a revision byte appended).
SLF3X_MODELS: dict[str, Slf3xModel] = {
    "SLF3S-1300F": Slf3xModel("SLF3S-1300F", 0x07030201, 500.0, _ML_MIN, 1000.0, 40_000.0),
    "SLF3S-0600F": Slf3xModel("SLF3S-0600F", 0x07030301, 10.0, _UL_MIN, 1.0, 2_000.0),
    "SLF3C-1300F": Slf3xModel("SLF3C-1300F", 0x07030401, 500.0, _ML_MIN, 1000.0, 40_000.0),
    "SLF3S-4000B": Slf3xModel("SLF3S-4000B", 0x07030501, 32.0, _ML_MIN, 1000.0, 600_000.0),
}

#: Default flow noise (1 sigma), uL/min: one count of the SLF3S-1300F (1/500 ml/min), the
#: order of its datasheet repeatability at microfluidic flow rates.
DEFAULT_NOISE_UL_MIN = 2.0


def _checksum(content: bytes) -> int:
    return ~sum(content) & 0xFF


def _stuff(content: bytes) -> bytes:
    out = bytearray()
    for byte in content:
        if byte in _ESCAPED_BYTES:
            out += bytes((_ESCAPE, byte ^ _ESCAPE_XOR))
        else:
            out.append(byte)
    return bytes(out)


def _unstuff(stuffed: bytes) -> bytes | None:
    """Undo byte stuffing; None if an escape byte ends the frame (a broken frame)."""
    out = bytearray()
    escaped = False
    for byte in stuffed:
        if escaped:
            out.append(byte ^ _ESCAPE_XOR)
            escaped = False
        elif byte == _ESCAPE:
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


def encode_miso(address: int, command: int, state: int, data: bytes) -> bytes:
    """Build one stuffed MISO (device to host) frame."""
    content = bytes((address, command, state, len(data))) + data
    return bytes((_FRAME_DELIMITER,)) + _stuff(content + bytes((_checksum(content),))) + b"\x7e"


class _CommandError(Exception):
    """A command failed; the reply carries ``code`` in its state byte."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class SimScc1Slf3s:
    """An SCC1-USB cable with an SLF3x liquid flow sensor, at the byte level.

    Satisfies the emulator interface (``advance_to``/``receive``/``take_output``). The
    measured flow is the true flow (from ``flow_source``, or the settable
    :attr:`true_flow_ul_min` when there is none) plus seeded Gaussian noise, quantised to
    the sensor's counts and saturated at the int16 range.

    Args:
        world: the shared world; advanced with the device when given.
        flow_source: where the true flow and the air-in-line state come from.
        slave_address: the SHDLC address the cable answers to.
        sensor: the SLF3x model (a key of :data:`SLF3X_MODELS`).
        noise_ul_min: standard deviation of the flow noise.
        faults: link faults; a fresh :class:`CommFaults` when None.
        seed: seeds the noise, so the same seed gives the same readings.

    Attributes:
        true_flow_ul_min: the flow used when there is no ``flow_source``.
        temperature_c: the liquid temperature the sensor reports.
        air_in_line: injected bubble (ORed with the flow source's).
        serial_number: the cable's serial number (0xD0 sub-command 3).
        sensor_serial: the sensor's 64-bit serial number (0x50, 0x54).
        product_name, article_code: what 0xD0 reports.
        firmware_version: (major, minor) reported by 0xD1.
        sensor_type: the SCC1's configured sensor type (0x24; 3 = SF06/SLF3x).
        i2c_address: the SCC1's configured sensor I2C address (0x25).
        unsupported_commands: command ids answered with "unknown command", to emulate
            older firmware (e.g. ``{0x53}`` for a cable without the scale query).
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        flow_source: FlowSource | None = None,
        slave_address: int = 0,
        sensor: str = "SLF3S-1300F",
        noise_ul_min: float = DEFAULT_NOISE_UL_MIN,
        faults: CommFaults | None = None,
        seed: int = 0,
    ) -> None:
        """Build the emulator in its power-on state (idle, no measurement)."""
        if sensor not in SLF3X_MODELS:
            known = ", ".join(sorted(SLF3X_MODELS))
            raise ValueError(f"unknown SLF3x model {sensor!r}; known: {known}")
        if not 0 <= slave_address <= 254:
            raise ValueError(f"SHDLC slave address must be 0..254, got {slave_address}")
        if noise_ul_min < 0:
            raise ValueError(f"noise_ul_min must be >= 0, got {noise_ul_min}")
        self.world = world
        self.flow_source = flow_source
        self.slave_address = slave_address
        self.model = SLF3X_MODELS[sensor]
        self.noise_ul_min = noise_ul_min
        self.faults = faults if faults is not None else CommFaults()
        self._rng = np.random.default_rng(seed)
        self.true_flow_ul_min = 0.0
        self.temperature_c = 23.0
        self.air_in_line = False
        self.serial_number = "SCC1-EMU-0001"
        self.sensor_serial = 0x0000_0001_2345_6789
        self.product_name = "SCC1"
        self.article_code = "1-101745-01"
        self.firmware_version = (1, 9)
        self.unsupported_commands: set[int] = set()
        self.t_s = 0.0
        self._rx = bytearray()
        self._in_frame = False
        self._out = bytearray()
        self._device_state = 0
        self._last_error = 0
        self.sensor_type = SENSOR_TYPE_SF06
        self.i2c_address = SLF3X_I2C_ADDRESS
        self._reset_measurement()
        self._totaliser_enabled = False
        self._totaliser_counts = 0.0

    # --- emulator interface ---------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Bring the device (and its world) to ``t_s``; samples accumulate meanwhile."""
        if self.world is not None:
            self.world.advance_to(t_s)
        if t_s <= self.t_s:
            return
        t0_s, self.t_s = self.t_s, t_s
        self._accumulate_totaliser(t0_s, t_s)

    def receive(self, data: bytes) -> None:
        """Accept host bytes; each complete frame is answered (replies queue for output).

        Raises:
            ConnectionError: the emulated port is unplugged (the bytes are lost).
        """
        self.faults.check_connected()
        for byte in data:
            if byte == _FRAME_DELIMITER:
                if self._in_frame and self._rx:
                    frame = bytes(self._rx)
                    self._rx.clear()
                    self._in_frame = False
                    self._handle_frame(frame)
                else:
                    # A start delimiter (or an end immediately followed by a start).
                    self._rx.clear()
                    self._in_frame = True
            elif self._in_frame:
                self._rx.append(byte)
                if len(self._rx) > 2 * (4 + _MAX_DATA_BYTES):
                    self._rx.clear()
                    self._in_frame = False

    def take_output(self) -> bytes:
        """Return and clear the bytes the device has sent.

        Raises:
            ConnectionError: the emulated port is unplugged.
        """
        self.faults.check_connected()
        out = bytes(self._out)
        self._out.clear()
        return out

    # --- device faults ----------------------------------------------------------------

    def inject_sensor_reset(self) -> None:
        """Simulate an unexpected sensor reset (power glitch, ESD).

        Continuous measurement stops, the last measurement is lost, and the device raises
        its error flag (state bit 7) until the host reads and clears the error state
        (0xD2), so the host can notice and restart measurement.
        """
        self._reset_measurement()
        self._device_state |= DEVICE_STATE_SENSOR_RESET

    @property
    def is_measuring(self) -> bool:
        """Tell whether continuous measurement is running."""
        return self._interval_ms is not None

    @property
    def measurement_command(self) -> int | None:
        """The SLF3x measurement command in use (the liquid calibration), or None."""
        return self._measure_command if self.is_measuring else None

    # --- measurement model ------------------------------------------------------------

    def _reset_measurement(self) -> None:
        self._interval_ms: int | None = None
        self._measure_command = MEASURE_WATER
        self._started_s = 0.0
        self._next_buffer_sample_s = math.inf
        self._pending_samples = 0
        self._bytes_lost = 0

    def _true_flow(self) -> tuple[float, bool]:
        if self.flow_source is not None:
            return self.flow_source.true_flow_ul_min(), self.flow_source.air_in_line()
        return self.true_flow_ul_min, False

    def _sample(self) -> tuple[int, int, int]:
        """Take one measurement now: raw flow, raw temperature, flags."""
        flow_ul_min, air = self._true_flow()
        measured_ul_min = flow_ul_min
        if self.noise_ul_min > 0:
            measured_ul_min += float(self._rng.normal(0.0, self.noise_ul_min))
        raw_flow = _saturate_i16(round(measured_ul_min * self.model.counts_per_ul_min))
        raw_temp = _saturate_i16(round(self.temperature_c * TEMPERATURE_SCALE_PER_C))
        flags = 0
        if air or self.air_in_line:
            flags |= FLAG_AIR_IN_LINE
        if abs(flow_ul_min) > self.model.full_scale_ul_min:
            flags |= FLAG_HIGH_FLOW
        return raw_flow, raw_temp, flags

    def _sample_ready(self) -> bool:
        return self.is_measuring and self.t_s >= self._started_s + FIRST_SAMPLE_DELAY_S

    def _sample_period_s(self) -> float:
        # The SLF3x's fastest rate is about 2 kHz; an interval of 0 means "as fast as it can".
        return max(self._interval_ms or 0, 0.5) / 1000.0

    def _samples_due(self, since_s: float) -> tuple[int, float]:
        """Count the samples taken on the sampling grid from ``since_s`` up to now.

        Returns:
            The number of samples, and the time of the next sample after them.
        """
        if self.t_s < since_s:
            return 0, since_s
        period_s = self._sample_period_s()
        due = int((self.t_s - since_s) // period_s) + 1
        return due, since_s + due * period_s

    def _accumulate_totaliser(self, t0_s: float, t1_s: float) -> None:
        """Add the flow between ``t0_s`` and ``t1_s`` to the totaliser, in raw counts.

        The totaliser is the sum of the raw flow samples; it is integrated from the true
        flow (noise averages out) so that long runs cost no per-sample work.
        """
        if not (self._totaliser_enabled and self._sample_ready()):
            return
        flow_ul_min, _ = self._true_flow()
        samples = (t1_s - t0_s) / self._sample_period_s()
        self._totaliser_counts += flow_ul_min * self.model.counts_per_ul_min * samples

    # --- SHDLC ------------------------------------------------------------------------

    def _handle_frame(self, stuffed: bytes) -> None:
        content = _unstuff(stuffed)
        if content is None or len(content) < 4:
            return  # too short to know who it was for: a real slave stays silent
        address, command, length = content[0], content[1], content[2]
        if address != self.slave_address:
            return  # another device on the bus
        data = content[3:-1]
        if _checksum(content[:-1]) != content[-1]:
            self._reply(command, b"", _ERR_CHECKSUM)
            return
        if length != len(data):
            self._reply(command, b"", _ERR_DATA_SIZE)
            return
        # The error flag shows the state the command found, so the reply to the 0xD2
        # "read and clear" that clears it still carries it.
        error_flag = _STATE_ERROR_FLAG if self._device_state else 0
        try:
            reply = self._execute(command, data)
        except _CommandError as exc:
            self._last_error = exc.code
            self._reply(command, b"", exc.code | error_flag)
            return
        self._reply(command, reply, error_flag)

    def _reply(self, command: int, data: bytes, state: int) -> None:
        if not state & _STATE_ERROR_FLAG and self._device_state:
            state |= _STATE_ERROR_FLAG
        frame = encode_miso(self.slave_address, command, state, data)
        self._out += self.faults.filter_reply(frame)

    def _execute(self, command: int, data: bytes) -> bytes:
        handler = self._HANDLERS.get(command)
        if handler is None or command in self.unsupported_commands:
            raise _CommandError(_ERR_UNKNOWN_COMMAND)
        return handler(self, data)

    def _device_information(self, data: bytes) -> bytes:
        _expect_length(data, 1)
        texts = {
            0x00: "SCC1",  # product type
            0x01: self.product_name,
            0x02: self.article_code,
            0x03: self.serial_number,
        }
        if data[0] not in texts:
            raise _CommandError(_ERR_PARAMETER)
        return texts[data[0]].encode("ascii") + b"\x00"

    def _version(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        major, minor = self.firmware_version
        # firmware major, minor, debug flag; hardware major, minor; SHDLC protocol major, minor
        return bytes((major, minor, 0, 1, 0, 1, 0))

    def _error_state(self, data: bytes) -> bytes:
        _expect_length(data, 0, 1)
        reply = struct.pack(">IB", self._device_state, self._last_error)
        if not data or data[0] == 1:
            self._device_state = 0
            self._last_error = 0
        return reply

    def _device_reset(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        self._reset_measurement()
        self._device_state = 0
        self._last_error = 0
        return b""

    def _sensor_type_cmd(self, data: bytes) -> bytes:
        _expect_length(data, 0, 1)
        if not data:
            return bytes((self.sensor_type,))
        if data[0] > 4:
            raise _CommandError(_ERR_PARAMETER)
        self.sensor_type = data[0]
        return b""

    def _sensor_address_cmd(self, data: bytes) -> bytes:
        _expect_length(data, 0, 1)
        if not data:
            return bytes((self.i2c_address,))
        if data[0] > 127:
            raise _CommandError(_ERR_PARAMETER)
        self.i2c_address = data[0]
        return b""

    def _start_measurement(self, data: bytes) -> bytes:
        _expect_length(data, 0, 4)
        if not data:
            # Without data the command reports the running interval (empty when idle).
            if self._interval_ms is None:
                return b""
            return struct.pack(">H", self._interval_ms)
        interval_ms, measure_command = struct.unpack(">HH", data)
        if measure_command not in (MEASURE_WATER, MEASURE_IPA):
            raise _CommandError(_ERR_PARAMETER)
        self._reset_measurement()
        self._interval_ms = interval_ms
        self._measure_command = measure_command
        self._started_s = self.t_s
        self._next_buffer_sample_s = self.t_s + FIRST_SAMPLE_DELAY_S
        return b""

    def _stop_measurement(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        self._reset_measurement()
        return b""

    def _check_sensor_type(self, data: bytes) -> None:
        _expect_length(data, 1)
        if data[0] != self.sensor_type:
            raise _CommandError(_ERR_PARAMETER)

    def _last_measurement(self, data: bytes) -> bytes:
        self._check_sensor_type(data)
        if not self._sample_ready():
            return b""  # no measurement yet: the client reads this as "not ready"
        return struct.pack(">hhH", *self._sample())

    def _extended_buffer(self, data: bytes) -> bytes:
        # The buffer is filled lazily: samples are counted on the sampling grid and drawn
        # only when read (all at the current true flow), so a long run costs nothing.
        self._check_sensor_type(data)
        if self.is_measuring:
            due, self._next_buffer_sample_s = self._samples_due(self._next_buffer_sample_s)
            self._pending_samples += due
        overflow = self._pending_samples - _BUFFER_CAPACITY_SAMPLES
        if overflow > 0:
            self._bytes_lost += 6 * overflow
            self._pending_samples = _BUFFER_CAPACITY_SAMPLES
        header_bytes = 8
        n_sent = min(self._pending_samples, (_MAX_DATA_BYTES - header_bytes) // 6)
        self._pending_samples -= n_sent
        samples = [self._sample() for _ in range(n_sent)]
        payload = b"".join(struct.pack(">hhH", *sample) for sample in samples)
        remaining_bytes = min(6 * self._pending_samples, 0xFFFF)
        header = struct.pack(">IHH", self._bytes_lost, remaining_bytes, 3)
        self._bytes_lost = 0
        return header + payload

    def _totaliser_status(self, data: bytes) -> bytes:
        _expect_length(data, 0, 1)
        if not data:
            return bytes((int(self._totaliser_enabled),))
        if data[0] > 1:
            raise _CommandError(_ERR_PARAMETER)
        self._totaliser_enabled = bool(data[0])
        return b""

    def _totaliser_value(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        return struct.pack(">q", round(self._totaliser_counts))

    def _totaliser_reset(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        self._totaliser_counts = 0.0
        return b""

    def _sensor_id(self, data: bytes) -> bytes:
        # sensirion-uart-scc1 sends 0x50 both without data and with the sensor type.
        _expect_length(data, 0, 1)
        text = f"{self.model.product_id:08X}{self.sensor_serial:016X}"
        return text.encode("ascii") + b"\x00"

    def _sensor_serial(self, data: bytes) -> bytes:
        self._check_sensor_type(data)
        return f"{self.sensor_serial:016X}".encode("ascii") + b"\x00"

    def _scale_and_unit(self, data: bytes) -> bytes:
        _expect_length(data, 2)
        (measure_command,) = struct.unpack(">H", data)
        if measure_command not in (MEASURE_WATER, MEASURE_IPA):
            raise _CommandError(_ERR_PARAMETER)
        sanity = 0  # 0 = the sensor's self-check passed
        return struct.pack(">HHH", int(self.model.scale_per_unit), self.model.unit_code, sanity)

    def _sensor_reset(self, data: bytes) -> bytes:
        _expect_length(data, 0)
        self._reset_measurement()
        return b""

    _HANDLERS: ClassVar[dict[int, Callable[[SimScc1Slf3s, bytes], bytes]]] = {
        0xD0: _device_information,
        0xD1: _version,
        0xD2: _error_state,
        0xD3: _device_reset,
        0x24: _sensor_type_cmd,
        0x25: _sensor_address_cmd,
        0x33: _start_measurement,
        0x34: _stop_measurement,
        0x35: _last_measurement,
        0x36: _extended_buffer,
        0x37: _totaliser_status,
        0x38: _totaliser_value,
        0x39: _totaliser_reset,
        0x50: _sensor_id,
        0x53: _scale_and_unit,
        0x54: _sensor_serial,
        0x65: _sensor_reset,
    }


def _expect_length(data: bytes, *allowed: int) -> None:
    if len(data) not in allowed:
        raise _CommandError(_ERR_DATA_SIZE)


def _saturate_i16(value: int) -> int:
    return max(-32768, min(32767, value))
