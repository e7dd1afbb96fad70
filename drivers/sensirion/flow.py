"""Sensirion SLF3x liquid flow sensor on the SCC1-USB cable, as a chipctl flow sensor.

The SHDLC protocol and the SCC1 command set are Sensirion's own code
(``sensirion_uart_scc1.Scc1ShdlcDevice`` and ``Scc1Slf3x``); they run over the injected
transport through :class:`~drivers.sensirion.shdlc_port.TransportShdlcPort`. This class
adds what the role needs: identification and a model check on :meth:`connect`, unit
conversion to uL/min and degrees Celsius, flag decoding, and chipctl's error types carrying
the device name and the bytes of the failed exchange.

Scale factor and unit are read from the sensor (SCC1 command 0x53) because they differ
between SLF3x models and the datasheet values are only a fallback (hardware-reference §11).

Real-time waits inside Sensirion's client: ``Scc1Slf3x.start_continuous_measurement``
sleeps 15 ms of real time after the start command, and ``ShdlcConnection.execute`` sleeps
for a command's post-processing time (only the generic device reset 0xD3 has one, 2 s,
which this driver never sends). So :meth:`connect` and :meth:`reconnect` block for 15 ms
of real time even on a virtual clock; that changes no simulated time and no result, and the
driver then waits the same delay on its own clock so the first sample is due in the
device's time too. All reads wait on the transport, hence on the driver's clock.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from sensirion_shdlc_driver import ShdlcConnection
from sensirion_shdlc_driver.errors import (
    ShdlcDeviceError,
    ShdlcError,
    ShdlcResponseError,
    ShdlcTimeoutError,
)
from sensirion_uart_scc1.drivers.scc1_slf3x import Scc1Slf3x
from sensirion_uart_scc1.drivers.slf_common import SlfMode, get_flow_unit_label
from sensirion_uart_scc1.scc1_exceptions import Scc1InvalidProductId
from sensirion_uart_scc1.scc1_shdlc_device import Scc1ShdlcDevice

from drivers.clock import Clock
from drivers.errors import (
    DeviceAlarm,
    DeviceError,
    DeviceNotFound,
    DeviceRejected,
    IncompatibleStateError,
    ReplyError,
    TransportError,
    TransportTimeout,
)
from drivers.roles import FlowReading, FlowSensor
from drivers.sensirion.shdlc_port import TransportShdlcPort
from drivers.transport import Transport

__all__ = [
    "SLF3X_DATASHEET",
    "SensirionFlowSensor",
    "Slf3xDatasheet",
    "Slf3xIdentity",
    "flow_unit_ul_min",
]

logger = logging.getLogger(__name__)

#: SCC1 sensor type for SF06-based flow sensors, which include the SLF3x family.
_SENSOR_TYPE_SF06 = 3
#: Raw temperature counts per degree Celsius (SLF3x datasheets, "Sensor Output Signal").
_TEMPERATURE_COUNTS_PER_C = 200.0
#: Bits of the SLF3x signalling flags word (SLF3x datasheets).
_FLAG_AIR_IN_LINE = 0x0001
_FLAG_HIGH_FLOW = 0x0002
#: How many times :meth:`SensirionFlowSensor.read` asks again when the cable has no sample
#: yet (one sampling interval apart) before it reports that measurement is not running.
_NOT_READY_RETRIES = 3
#: SCC1 "stop continuous measurement" and its nominal response time (the values
#: sensirion-uart-scc1 uses; its own stop method only acts on a measurement it started).
_SCC1_STOP_MEASUREMENT = 0x34
_SCC1_RESPONSE_TIME_S = 0.01
#: SHDLC error code "unknown command" (firmware without the 0x53 scale query).
_SHDLC_UNKNOWN_COMMAND = 2


@dataclass(frozen=True, slots=True)
class Slf3xDatasheet:
    """Datasheet values of one SLF3x model, used to check the model and as a fallback.

    Args:
        product_id_prefix: the product id without its last (revision) byte.
        scale_per_unit: raw flow counts per flow unit.
        ul_min_per_unit: the flow unit in uL/min (1000 for ml/min).
    """

    product_id_prefix: int
    scale_per_unit: float
    ul_min_per_unit: float


#: The SLF3x models this driver supports (product ids as listed by sensirion-uart-scc1;
#: scale factors from the datasheets: 500 per ml/min for the 1300F, 10 per ul/min for the
#: 0600F, 32 per ml/min for the 4000B).
SLF3X_DATASHEET: dict[str, Slf3xDatasheet] = {
    "SLF3S-1300F": Slf3xDatasheet(0x070302, 500.0, 1000.0),
    "SLF3S-0600F": Slf3xDatasheet(0x070303, 10.0, 1.0),
    "SLF3C-1300F": Slf3xDatasheet(0x070304, 500.0, 1000.0),
    "SLF3S-4000B": Slf3xDatasheet(0x070305, 32.0, 1000.0),
}

#: Liquid names accepted by the constructor, mapped to the SLF3x calibrations.
_LIQUIDS: dict[str, SlfMode] = {
    "water": SlfMode.LIQUI_1,
    "h2o": SlfMode.LIQUI_1,
    "ipa": SlfMode.LIQUI_2,
    "isopropanol": SlfMode.LIQUI_2,
    "isopropyl alcohol": SlfMode.LIQUI_2,
}

# Flow unit word (0x53 reply): bits 0-3 prefix, 4-7 time base, 8-11 volume.
_UNIT_PREFIX = {3: 1e-9, 4: 1e-6, 5: 1e-3, 6: 1e-2, 7: 1e-1, 8: 1.0, 9: 10.0, 10: 1e2, 11: 1e3}
_UNIT_PER_MINUTE = {1: 60e6, 2: 60e3, 3: 60.0, 4: 1.0, 5: 1 / 60, 6: 1 / 1440}
_UNIT_VOLUME_LITRE = 8


def flow_unit_ul_min(unit_code: int) -> float:
    """Return how many uL/min one unit of the SF06 flow unit word ``unit_code`` is.

    Raises:
        ValueError: the unit is not a volumetric flow in litres (gas or mass units).
    """
    prefix = _UNIT_PREFIX.get(unit_code & 0xF)
    per_minute = _UNIT_PER_MINUTE.get((unit_code >> 4) & 0xF)
    volume = (unit_code >> 8) & 0xF
    if prefix is None or per_minute is None or volume != _UNIT_VOLUME_LITRE:
        raise ValueError(f"flow unit 0x{unit_code:04X} is not a liquid volume flow")
    return prefix * 1e6 * per_minute


@dataclass(frozen=True, slots=True)
class Slf3xIdentity:
    """What the cable and sensor reported on :meth:`SensirionFlowSensor.connect`.

    Args:
        cable_serial: the SCC1's serial number.
        firmware_version: the SCC1's firmware version.
        sensor_product_id: the sensor's 32-bit product id.
        sensor_serial: the sensor's serial number.
        scale_per_unit: raw flow counts per flow unit.
        flow_unit: the flow unit label (``"ml/min"``).
        ul_min_per_count: uL/min per raw flow count (the conversion applied).
        scale_from_device: False if the datasheet value was used (old firmware).
    """

    cable_serial: str
    firmware_version: str
    sensor_product_id: int
    sensor_serial: int
    scale_per_unit: float
    flow_unit: str
    ul_min_per_count: float
    scale_from_device: bool


class SensirionFlowSensor(FlowSensor):
    """An SLF3x liquid flow sensor on a Sensirion SCC1-USB cable.

    Args:
        transport: the link to the cable (115200 baud, 8N1 on hardware).
        name: the device's name in the instrument config.
        clock: the run's clock; the driver waits on it.
        sensor: the SLF3x model expected on the cable (a key of :data:`SLF3X_DATASHEET`).
        liquid: the calibration: ``"water"`` or ``"ipa"``.
        timeout_s: extra time allowed beyond each command's nominal response time
            before a reply counts as missing (USB-serial latency, OS scheduling).
        slave_address: the cable's SHDLC address (0 unless several share a port).
        sampling_interval_ms: the cable's continuous-measurement interval (0 = fastest).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        clock: Clock,
        sensor: str = "SLF3S-1300F",
        liquid: str = "water",
        timeout_s: float = 0.5,
        slave_address: int = 0,
        sampling_interval_ms: int = 20,
    ) -> None:
        """Check the settings; no I/O until :meth:`connect`."""
        super().__init__(name=name)
        if sensor not in SLF3X_DATASHEET:
            known = ", ".join(sorted(SLF3X_DATASHEET))
            raise ValueError(f"{name}: unsupported sensor {sensor!r}; supported: {known}")
        if liquid.lower() not in _LIQUIDS:
            known = ", ".join(sorted(_LIQUIDS))
            raise ValueError(f"{name}: unknown liquid {liquid!r}; known: {known}")
        if not timeout_s > 0:
            raise ValueError(f"{name}: timeout_s must be > 0, got {timeout_s}")
        if not 0 <= slave_address <= 254:
            raise ValueError(f"{name}: SHDLC address must be 0..254, got {slave_address}")
        if not 0 <= sampling_interval_ms <= 0xFFFF:
            raise ValueError(f"{name}: sampling_interval_ms must be 0..65535")
        self.transport = transport
        self.clock = clock
        self.sensor = sensor
        self.liquid_mode = _LIQUIDS[liquid.lower()]
        self.timeout_s = float(timeout_s)
        self.slave_address = slave_address
        self.sampling_interval_ms = sampling_interval_ms
        self.identity: Slf3xIdentity | None = None
        self._port: TransportShdlcPort | None = None
        self._scc1: Any = None
        self._slf: Any = None

    # --- role interface ---------------------------------------------------------------

    def connect(self) -> None:
        """Open the link, identify cable and sensor, and start continuous measurement.

        Raises:
            TransportError: the link cannot be opened or does not answer.
            DeviceNotFound: no sensor, or a different model than ``sensor``, is attached.
            DeviceRejected, ReplyError: the cable refused a command or garbled a reply.
        """
        with self.transport.lock:
            self._start(expect_same_sensor=False)

    def reconnect(self) -> None:
        """Re-open the link, check it is the same sensor, and restart measurement.

        Continuous measurement is restarted with the same liquid and interval, because a
        cable that lost power or reset its sensor has stopped measuring. The cable's
        configuration (sensor type, addresses) is checked, not changed. The transport is
        re-opened, not closed first: a transport that failed has already dropped its port,
        and one that still works may be shared with other devices on the bus.

        Raises:
            TransportError: the link is still gone.
            DeviceNotFound: a different cable or sensor answers.
        """
        with self.transport.lock:
            self._start(expect_same_sensor=True)

    def close(self) -> None:
        """Stop continuous measurement (if the link still works) and close the link."""
        with self.transport.lock:
            slf, self._slf, self._scc1 = self._slf, None, None
            try:
                if slf is not None and self.transport.is_open:
                    with self._errors("stop measurement"):
                        slf.stop_continuous_measurement()
            except DeviceError as exc:
                logger.warning("%s: could not stop measurement on close: %s", self.name, exc)
            finally:
                self.transport.close()

    def read(self) -> FlowReading:
        """Return the cable's latest sample.

        Raises:
            IncompatibleStateError: not connected, or the cable has no sample (measurement
                not running, e.g. after a sensor reset; :meth:`reconnect` restarts it).
            DeviceAlarm: the cable reports its error flag (alarm ``"device_error"``).
            TransportError, ReplyError: the link failed or the reply was garbled.
        """
        with self.transport.lock:
            slf, identity = self._slf, self.identity
            if slf is None or identity is None:
                raise IncompatibleStateError(
                    self.name, "not connected: connect() or reconnect() has not succeeded"
                )
            for _attempt in range(_NOT_READY_RETRIES):
                with self._errors("read last measurement"):
                    sample = slf.get_last_measurement()
                if self._scc1.last_error_flag:
                    self._raise_device_error_state()
                if sample is not None:
                    break
                self.clock.sleep_s(max(self.sampling_interval_ms, 1) / 1000.0)
            else:
                self._raise(
                    IncompatibleStateError,
                    "no measurement available: continuous measurement is not running "
                    "(sensor reset?); reconnect() restarts it",
                    None,
                )
        raw_flow, raw_temperature, flags = sample
        return FlowReading(
            flow_ul_min=raw_flow * identity.ul_min_per_count,
            temperature_c=raw_temperature / _TEMPERATURE_COUNTS_PER_C,
            air_in_line=bool(flags & _FLAG_AIR_IN_LINE),
            high_flow=bool(flags & _FLAG_HIGH_FLOW),
        )

    # --- internals --------------------------------------------------------------------

    def _start(self, *, expect_same_sensor: bool) -> None:
        """Open, identify, configure and start measuring (transport lock held)."""
        previous = self.identity
        self._slf = self._scc1 = None
        port = TransportShdlcPort(
            self.transport, additional_response_time_s=self.timeout_s, name=self.name
        )
        self._port = port
        with self._errors("open link"):
            port.open()
        with self._errors("identify SCC1 cable"):
            # The constructor queries version, serial number, sensor type and I2C address.
            scc1 = Scc1ShdlcDevice(ShdlcConnection(port), self.slave_address)
        self._scc1 = scc1
        with self._errors("read sensor type"):
            sensor_type = scc1.get_sensor_type()
        if sensor_type != _SENSOR_TYPE_SF06:
            if expect_same_sensor:
                raise DeviceNotFound(
                    self.name, "the SCC1 is no longer configured for an SLF3x (sensor type 3)"
                )
            with self._errors("configure sensor type"):
                scc1.set_sensor_type(_SENSOR_TYPE_SF06)
        with self._errors("identify sensor"):
            slf = Scc1Slf3x(scc1, self.liquid_mode)
        identity = self._identify(scc1, slf)
        if expect_same_sensor and previous is not None:
            if (identity.cable_serial, identity.sensor_serial) != (
                previous.cable_serial,
                previous.sensor_serial,
            ):
                raise DeviceNotFound(
                    self.name,
                    f"a different cable or sensor answers (serial {identity.sensor_serial}, "
                    f"expected {previous.sensor_serial})",
                )
        with self._errors("clear error state"):
            scc1.get_error_state(clear=True)
        with self._errors("start continuous measurement"):
            if scc1.get_continuous_measurement_status() is not None:
                # Still measuring from an earlier session: restart with our settings.
                scc1.transceive(_SCC1_STOP_MEASUREMENT, [], _SCC1_RESPONSE_TIME_S)
            slf.sampling_interval_ms = self.sampling_interval_ms
            slf.start_continuous_measurement(interval_ms=self.sampling_interval_ms)
        # The first sample is due this long after the start command (the client waited in
        # real time; wait in the clock's time, which is the one the device lives in).
        self.clock.sleep_s(Scc1Slf3x.START_MEASUREMENT_DELAY_S)
        self.identity = identity
        self._slf = slf
        logger.info(
            "%s: SCC1 %s (firmware %s), %s serial %d, %s, %s",
            self.name,
            identity.cable_serial,
            identity.firmware_version,
            self.sensor,
            identity.sensor_serial,
            self.liquid_mode.value,
            identity.flow_unit,
        )

    def _identify(self, scc1: Any, slf: Any) -> Slf3xIdentity:
        """Check the sensor model and read its scale factor and unit."""
        datasheet = SLF3X_DATASHEET[self.sensor]
        product_id, serial = slf.product_id, slf.serial_number
        if product_id is None:
            raise DeviceNotFound(self.name, "no sensor answers on the SCC1 cable")
        if product_id >> 8 != datasheet.product_id_prefix:
            raise DeviceNotFound(
                self.name,
                f"expected an {self.sensor}, the cable reports product 0x{product_id:08X}",
            )
        scale_from_device = True
        try:
            with self._errors("read scale factor"):
                scale_and_unit = slf.get_flow_unit_and_scale()
        except DeviceRejected as exc:
            if not isinstance(exc.__cause__, ShdlcDeviceError) or (
                exc.__cause__.error_code != _SHDLC_UNKNOWN_COMMAND
            ):
                raise
            scale_and_unit = None
        if scale_and_unit is None:
            scale_from_device = False
            scale = datasheet.scale_per_unit
            ul_min_per_unit = datasheet.ul_min_per_unit
            unit_label = "ml/min" if ul_min_per_unit == 1000.0 else "ul/min"
            logger.info("%s: firmware has no scale query; using datasheet values", self.name)
        else:
            scale, unit_code = scale_and_unit
            try:
                ul_min_per_unit = flow_unit_ul_min(unit_code)
            except ValueError as exc:
                self._raise(ReplyError, str(exc), exc)
            if scale <= 0:
                raise ReplyError(self.name, f"scale factor {scale} is not positive")
            unit_label = get_flow_unit_label(unit_code)
            expected = datasheet.scale_per_unit / datasheet.ul_min_per_unit
            if abs(scale / ul_min_per_unit - expected) > 1e-9 * expected:
                logger.warning(
                    "%s: device scale %s per %s differs from the %s datasheet; using the device's",
                    self.name,
                    scale,
                    unit_label,
                    self.sensor,
                )
        return Slf3xIdentity(
            cable_serial=str(scc1.serial_number),
            firmware_version=str(scc1.firmware_version),
            sensor_product_id=int(product_id),
            sensor_serial=int(serial),
            scale_per_unit=float(scale),
            flow_unit=unit_label,
            ul_min_per_count=ul_min_per_unit / float(scale),
            scale_from_device=scale_from_device,
        )

    def _raise_device_error_state(self) -> NoReturn:
        """Read and clear the cable's error state, and raise it as an alarm."""
        port = self._port
        sent = port.last_sent if port is not None else None
        received = port.last_received if port is not None else None
        with self._errors("read error state"):
            device_state, last_error = self._scc1.get_error_state(clear=True)
        raise DeviceAlarm(
            self.name,
            f"cable reports an error (state 0x{device_state:08X}, last error {last_error}); "
            "the sensor may have reset: reconnect() restarts measurement",
            alarm="device_error",
            sent=sent,
            received=received,
        )

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate Sensirion's and the transport's exceptions into chipctl's errors."""
        try:
            yield
        except ShdlcTimeoutError as exc:
            self._raise(TransportTimeout, f"{what}: no reply within the timeout", exc)
        except ShdlcDeviceError as exc:
            self._raise(
                DeviceRejected,
                f"{what}: device error {exc.error_code}: {exc.error_message}",
                exc,
            )
        except ShdlcResponseError as exc:
            self._raise(ReplyError, f"{what}: {exc}", exc, received=exc.received_data)
        except ShdlcError as exc:
            self._raise(DeviceError, f"{what}: {exc}", exc)
        except Scc1InvalidProductId as exc:
            self._raise(DeviceNotFound, f"{what}: {exc}", exc)
        except TransportError as exc:
            if exc.device == self.name:
                raise
            error = type(exc)(
                self.name, f"{what}: {exc.message}", sent=exc.sent, received=exc.received
            )
            raise error from exc
        except (struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
            self._raise(ReplyError, f"{what}: unexpected reply ({exc})", exc)

    def _raise(
        self,
        kind: type[DeviceError],
        message: str,
        cause: BaseException | None,
        *,
        received: bytes | None = None,
    ) -> NoReturn:
        port = self._port
        sent = port.last_sent if port is not None else None
        if received is None and port is not None:
            received = port.last_received
        raise kind(self.name, message, sent=sent, received=received) from cause
