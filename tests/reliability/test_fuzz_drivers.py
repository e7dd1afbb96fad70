"""Serial garbage into every driver: a typed DeviceError naming the device, or a true answer.

Each driver is connected to its independent emulator (the driver/emulator pairs of the role
contracts, ``tests/contracts/``), in-process on a virtual clock. Then its link is *armed*:
from that moment every read the driver makes gets a reply that hypothesis picks among

- the emulator's true reply (so an operation of many exchanges meets garbage late as well
  as early), or silence;
- the true reply truncated, with a byte changed, with its high bit set, with NUL, framing
  or noise bytes inserted, doubled, or made overlong (up to thousands of bytes);
- random bytes;
- a forged frame in the vendor's framing with wrong fields: another address, unknown status
  and error codes, numbers that overflow a float, data of the wrong length;
- for checksummed protocols (New Era safe mode, Cavro OEM, Sensirion SHDLC), the true reply
  with its payload changed and its checksum recomputed, so the garbage gets past the
  framing and reaches the parsers.

The operation must then return a result that keeps the role's promises (finite,
non-negative volumes and rates; a valve position that exists; a finite flow), or raise a
:class:`drivers.errors.DeviceError` whose ``device`` is the driver's name (not the link's,
not a codec's default) and whose message is one line. Any other exception (IndexError,
ValueError, UnicodeDecodeError, struct.error, KeyError...) fails the test, and hypothesis
shrinks it to the shortest reply sequence that causes it.

A second family of tests feeds each driver an endless stream of one pattern (a prompt, a
busy byte, a start-of-frame byte, another pump's valid frame...), advancing the clock by
the bytes' transmission time: the driver must give up with a DeviceError before it has
read :data:`ENDLESS_LIMIT_BYTES`.

Runs are seeded (``derandomize``), so CI is repeatable. ``CHIPCTL_FUZZ_EXAMPLES=N`` runs N
examples per operation instead of :data:`DEFAULT_EXAMPLES`; the module prints how many
examples each driver got.
"""

from __future__ import annotations

import binascii
import collections
import functools
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.cavro.pump import CavroPump
from drivers.cavro.valve import CavroValve
from drivers.clock import Clock, VirtualClock
from drivers.errors import DeviceError, ReplyError, StrokeLimitError
from drivers.harvard import codec as harvard_codec
from drivers.harvard.pump import HarvardPump
from drivers.idex.valve import IdexValve
from drivers.newera import codec as newera_codec
from drivers.newera.pump import NewEraPump
from drivers.roles import Device, FlowReading, FlowSensor, PumpStatus, SyringePump, Valve
from drivers.sensirion.flow import SensirionFlowSensor
from drivers.syringes import lookup_syringe
from drivers.testing import ScriptedTransport
from drivers.transport import EmulatorTransport, Transport
from simulator.devices.cavro import SimCavro
from simulator.world import World
from tests.contracts.flow_sensors import FLOW_SENSOR_IMPLS
from tests.contracts.pumps import PUMP_IMPLS
from tests.contracts.valves import VALVE_IMPLS

DEFAULT_EXAMPLES = 40
EXAMPLES = int(os.environ.get("CHIPCTL_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
#: Garbled reads per example; after that the link tells the truth again, so every operation
#: can finish and the example's cost stays bounded.
MAX_GARBLED_READS = 40
#: An endless stream must end in an error before the driver has read this much.
ENDLESS_LIMIT_BYTES = 200_000

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Examples run per subject, printed at the end of the module.
EXAMPLES_RUN: collections.Counter[str] = collections.Counter()


# -- byte helpers written from the manuals (independent of driver and emulator code) -------

STX, ETX = 0x02, 0x03
_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _newera_basic(data: bytes) -> bytes:
    return bytes([STX]) + data + bytes([ETX])


def _newera_safe(data: bytes) -> bytes:
    """Safe-mode packet: STX, len(data) + 4, data, CRC-16/XModem (big endian), ETX."""
    crc = binascii.crc_hqx(data, 0)
    return bytes([STX, (len(data) + 4) & 0xFF]) + data + crc.to_bytes(2, "big") + bytes([ETX])


def _cavro_oem(body: bytes) -> bytes:
    """OEM answer: STX, body (``0`` + status + data), ETX, XOR of STX..ETX."""
    block = bytes([STX]) + body + bytes([ETX])
    checksum = 0
    for byte in block:
        checksum ^= byte
    return block + bytes([checksum])


_SHDLC_ESCAPED = {0x7E, 0x7D, 0x11, 0x13}


def _shdlc_stuff(content: bytes) -> bytes:
    out = bytearray()
    for byte in content:
        out += bytes([0x7D, byte ^ 0x20]) if byte in _SHDLC_ESCAPED else bytes([byte])
    return bytes(out)


def _shdlc_unstuff(frame: bytes) -> bytes | None:
    """Return the content between the delimiters of one frame, unstuffed (None if malformed)."""
    if len(frame) < 2 or frame[0] != 0x7E or frame[-1] != 0x7E:
        return None
    out, escaped = bytearray(), False
    for byte in frame[1:-1]:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


def _shdlc_checksum(content: bytes) -> int:
    return ~sum(content) & 0xFF


def _shdlc_miso(
    address: int, command: int, state: int, data: bytes, length: int | None = None
) -> bytes:
    """MISO frame ``7E addr cmd state len data chk 7E`` (stuffed), with a valid checksum."""
    content = bytes([address, command, state, len(data) if length is None else length]) + data
    return b"\x7e" + _shdlc_stuff(content + bytes([_shdlc_checksum(content)])) + b"\x7e"


# -- reply strategies ----------------------------------------------------------------------
#
# Strategies are built once (module constants, or cached per command sent): building them
# per read made hypothesis spend most of each example validating new strategy objects.

_NOISE = st.sampled_from(
    [b"\x00", b"\xff", b"\x80", b"\r", b"\n", b"\r\n", b"\x02", b"\x03", b"~", b"}", b"*", b"/0"]
)
_NUMBERS = st.sampled_from(
    [
        "0",
        "1",
        "1.5",
        ".5",
        "5.",
        "1e999",
        "1e308",
        "9e-999",
        "9" * 400,
        "99999999999999999999999",
        "0.0000001",
        "-1",
        "nan",
        "inf",
        "1,5",
        "١٢",
    ]
)
_INDEX = st.integers(0, 2**16)
_XOR = st.integers(1, 255)
_ANY_BYTE = st.integers(0, 255)
_INSERT = _NOISE | st.binary(min_size=1, max_size=8)
_REPEAT = st.integers(64, 6000)
_RANDOM = st.binary(min_size=1, max_size=48)
_PAYLOAD_KIND = st.sampled_from(["truncated", "byte-changed", "inserted", "nines", "random"])
_NINES = st.integers(1, 30)
_SHORT_RANDOM = st.binary(max_size=24)

#: What a garbled read returns; repeated entries are drawn more often. hypothesis shrinks
#: toward the first, the true reply, so a failure shrinks to the fewest garbled reads.
REPLY_KINDS = (
    "true",
    "silence",
    "random",
    "truncated",
    "byte-changed",
    "high-bit",
    "inserted",
    "noise-first",
    "doubled",
    "overlong",
    "forged",
    "forged",
    "forged",
    "resigned",
    "resigned",
)
_REPLY_KIND = st.sampled_from(REPLY_KINDS)


def _mutated_payload(data: Any, payload: bytes) -> bytes:
    """A change to a frame's payload; the caller rebuilds the framing around it."""
    kind = data.draw(_PAYLOAD_KIND, label="payload change")
    if kind == "random" or not payload:
        return bytes(data.draw(_SHORT_RANDOM))
    if kind == "nines":
        return payload + b"9" * data.draw(_NINES)
    i = data.draw(_INDEX) % len(payload)
    if kind == "truncated":
        return payload[:i]
    if kind == "byte-changed":
        return payload[:i] + bytes([data.draw(_ANY_BYTE)]) + payload[i + 1 :]
    return payload[:i] + bytes(data.draw(_INSERT)) + payload[i:]


def _damaged(data: Any, kind: str, real: bytes) -> bytes:
    """A damaged copy of a true reply (``real`` is not empty)."""
    i = data.draw(_INDEX) % len(real)
    if kind == "truncated":
        return real[:i]
    if kind == "byte-changed":
        return real[:i] + bytes([real[i] ^ data.draw(_XOR)]) + real[i + 1 :]
    if kind == "high-bit":
        return real[:i] + bytes([real[i] | 0x80]) + real[i + 1 :]
    if kind == "inserted":
        return real[:i] + bytes(data.draw(_INSERT)) + real[i:]
    if kind == "noise-first":
        return bytes(data.draw(_INSERT)) + real
    if kind == "doubled":
        return real + real
    assert kind == "overlong"
    return real[:i] + bytes(data.draw(_NOISE)) * data.draw(_REPEAT) + real[i:]


Forger = Callable[[bytes], st.SearchStrategy[bytes]]
Resigner = Callable[[Any, bytes], bytes | None]


def _address_in(sent: bytes, default: int) -> int:
    match = re.search(rb"\d{1,2}", sent)
    return int(match[0]) if match else default


def _harvard_line(sent: bytes) -> st.SearchStrategy[str]:
    volume = st.builds(
        lambda x, unit: f"{x} {unit}",
        _NUMBERS,
        st.sampled_from(["ul", "ml", "nl", "l", "pl", "xx"]),
    )
    rate = st.builds(
        lambda x, unit: f"{x} {unit}",
        _NUMBERS,
        st.sampled_from(["ul/min", "ml/hr", "u/m", "nl/sec", "l/h", "xx"]),
    )
    status = st.builds(
        lambda r, t, v, flags: f"{r} {t} {v} {flags}",
        st.integers(0, 10**19),
        st.integers(0, 10**19),
        st.integers(0, 10**19),
        st.text("iwIW.ST*x", min_size=4, max_size=7),
    )
    general = st.one_of(
        st.sampled_from(
            [
                "Command error",
                "Argument error: rate",
                "   Out of range",
                "Unknown command",
                "ELITE I/W Single 3.0.4",
                "5 ml/min to 1 ul/min",
                "0 ul/min to 0 ul/min",
            ]
        ),
        st.text(_PRINTABLE, max_size=30),
    )
    if b"status" in sent:
        return st.one_of(status, general)
    if b"lim" in sent:
        return st.one_of(st.builds(lambda a, b: f"{a} to {b}", rate, rate), general)
    if b"volume" in sent:
        return st.one_of(volume, general)
    return st.one_of(general, status, volume, rate)


@functools.cache
def _harvard_forge(sent: bytes) -> st.SearchStrategy[bytes]:
    address = _address_in(sent, 0)
    prefix = st.sampled_from(["", f"{address:02d}:", "00:", "07:", f"{address:02d}>"])
    prompt = st.tuples(
        st.sampled_from(["", f"{address:02d}", "13"]),
        st.sampled_from([":", ">", "<", "*", "T*", "?"]),
    )
    return st.builds(
        lambda lines, p: (
            "\n" + "".join(a + text + "\r\n" for a, text in lines) + p[0] + p[1]
        ).encode("utf-8"),
        st.lists(st.tuples(prefix, _harvard_line(sent)), min_size=1, max_size=3),
        prompt,
    )


def _newera_data(sent: bytes) -> st.SearchStrategy[str]:
    dispensed = st.builds(
        lambda a, b, u: f"I{a}W{b}{u}", _NUMBERS, _NUMBERS, st.sampled_from(["UL", "ML", "XX"])
    )
    version = st.sampled_from(
        ["NE1000V3.928", "NE1000X5V3.928", "NE500V1.0", "NEV", "NE1000V", "NE1000X.V3.9", "NEV1."]
    )
    rate = st.builds(
        lambda x, u: f"{x}{u}", _NUMBERS, st.sampled_from(["UM", "MM", "UH", "MH", "XX", ""])
    )
    general = st.one_of(
        st.sampled_from(["", "?", "?OOR", "?NA", "?COM", "?IGN", "?XYZ", "?S", "?R", "?T", "?Q"]),
        st.text(_PRINTABLE, max_size=20),
    )
    if b"DIS" in sent:
        return st.one_of(dispensed, general)
    if b"VER" in sent:
        return st.one_of(version, general)
    if b"RAT" in sent:
        return st.one_of(rate, general)
    return st.one_of(general, dispensed, version, rate)


@functools.cache
def _newera_forge(sent: bytes) -> st.SearchStrategy[bytes]:
    address = _address_in(sent[2:] if sent[:1] == b"\x02" else sent, 0)
    data = st.builds(
        lambda a, s, r: f"{a:02d}{s}{r}".encode(),
        st.sampled_from([address, address, 0, 99, 42]),
        st.sampled_from([*"IWSPTUXA?Z", "\x00", "\xe9"]),
        _newera_data(sent),
    )
    return st.one_of(data.map(_newera_basic), data.map(_newera_safe))


def _newera_resign(data: Any, real: bytes) -> bytes | None:
    if len(real) < 6 or real[0] != STX or 0x30 <= real[1] <= 0x39:
        return None  # not a safe-mode packet: a changed byte is a damaged reply already
    return _newera_safe(_mutated_payload(data, real[2:-3]))


@functools.cache
def _cavro_forge(sent: bytes) -> st.SearchStrategy[bytes]:
    status = st.one_of(
        st.sampled_from([0x60, 0x40, 0x67, 0x69, 0x6A, 0x4F, 0x47, 0x6F, 0x50]),
        st.integers(0, 255),
    )
    numbers = st.sampled_from(
        [b"0", b"3000", b"6000", b"6001", b"48000", b"9" * 400, b"-5", b"\xb2", b"1", b"6", b"7"]
    )
    general = st.one_of(
        st.sampled_from([b"", b"12", b"i", b"o", b"XLP6000 v1.0", b"\x00"]),
        st.binary(max_size=12),
    )
    data = st.one_of(numbers, general) if b"?" in sent else st.one_of(general, numbers)
    body = st.builds(lambda s, d: b"0" + bytes([s]) + d, status, data)
    dt = st.builds(
        lambda noise, b: noise + b"/" + b + b"\x03\r\n", st.sampled_from([b"", b"\xff"]), body
    )
    return st.one_of(dt, body.map(_cavro_oem))


def _cavro_resign(data: Any, real: bytes) -> bytes | None:
    start = real.find(bytes([STX]))
    if start < 0 or len(real) < start + 5:
        return None  # a DT answer has no checksum: a changed byte is a damaged reply already
    return _cavro_oem(_mutated_payload(data, real[start + 1 : -2]))


@functools.cache
def _idex_forge(sent: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(
            [
                b"\r",
                b"*",
                b"**",
                b"*\r",
                b"00\r",
                b"01\r",
                b"0A\r",
                b"0C\r",
                b"0D\r",
                b"10\r",
                b"FF\r",
                b"99\r",
                b"66\r",
                b"44\r",
                b"12\r",
                b"1\r",
                b"123\r",
                b"\r\r",
                b"0g\r",
                b"\xb9\xb9\r",
            ]
        ),
        st.text("0123456789ABCDEFabcdef*", max_size=4).map(lambda t: t.encode("ascii") + b"\r"),
    )


def _shdlc_request(sent: bytes) -> tuple[int, int]:
    content = _shdlc_unstuff(sent)
    if content is None or len(content) < 2:
        return 0, 0
    return content[0], content[1]


@functools.cache
def _sensirion_forge(sent: bytes) -> st.SearchStrategy[bytes]:
    address, command = _shdlc_request(sent)
    data = st.one_of(
        st.binary(max_size=40),
        st.integers(0, 12).map(lambda n: b"\x00" * n),
        st.integers(0, 12).map(lambda n: b"\xff" * n),
        st.sampled_from([b"\x00\x00\x00\x03", b"\x07\x03\x02\x01", b"SCC1\x00", b"\xff\xfe\x80"]),
    )
    return st.builds(
        _shdlc_miso,
        st.sampled_from([address, address, 1, 0xFF]),
        st.sampled_from([command, command, 0x00, 0xD0]),
        st.sampled_from([0x00, 0x00, 0x80, 0x02, 0x04, 0x7F, 0xFF]),
        data,
        st.none() | st.integers(0, 255),
    )


def _sensirion_resign(data: Any, real: bytes) -> bytes | None:
    start = real.find(b"\x7e")
    end = real.find(b"\x7e", start + 1)
    content = _shdlc_unstuff(real[start : end + 1]) if start >= 0 and end > start else None
    if content is None or len(content) < 5:
        return None
    address, command, state = content[0], content[1], content[2]
    return _shdlc_miso(address, command, state, _mutated_payload(data, content[4:-1]))


# -- the garbling link ---------------------------------------------------------------------


class GarbledLink:
    """An in-process link to an emulator whose replies hypothesis rewrites once armed.

    Args:
        emulator: the device side.
        clock: the virtual clock of the example.
        name: the link's name (deliberately not the device's, so an error naming the link
            instead of the device is caught).
        forge: forged replies to the bytes last sent.
        resign: re-checksummed variants of a true reply (None if the protocol has none).
    """

    def __init__(
        self,
        emulator: Any,
        clock: Clock,
        *,
        name: str,
        forge: Forger,
        resign: Resigner | None = None,
    ) -> None:
        self.inner = EmulatorTransport(emulator, clock, name=name)
        self.name = name
        self.lock = self.inner.lock
        self._forge = forge
        self._resign = resign
        self._data: Any = None
        self.garbled_reads = 0
        self.last_sent = b""

    def arm(self, data: Any) -> None:
        """From now on, let ``data`` (hypothesis's ``st.data()``) choose every reply."""
        self._data = data

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def reset_input(self) -> None:
        self.inner.reset_input()

    def write(self, data: bytes) -> None:
        self.last_sent = bytes(data)
        self.inner.write(data)

    def read_some(self, timeout_s: float) -> bytes:
        real = self.inner.read_some(timeout_s)
        if self._data is None or self.garbled_reads >= MAX_GARBLED_READS:
            return real
        self.garbled_reads += 1
        return self._garble(self._data, real)

    def _garble(self, data: Any, real: bytes) -> bytes:
        kind = data.draw(_REPLY_KIND, label="reply kind")
        if kind == "true":
            return real
        if kind == "silence":
            return b""
        if kind == "random":
            return bytes(data.draw(_RANDOM))
        if kind == "forged":
            return bytes(data.draw(self._forge(self.last_sent), label="forged"))
        if kind == "resigned":
            resigned = self._resign(data, real) if self._resign is not None and real else None
            return real if resigned is None else resigned
        return _damaged(data, kind, real) if real else b""


# -- subjects: driver + emulator + the operations to fuzz ----------------------------------


@dataclass
class Bench:
    """A driver on a garbling link to its emulator."""

    device: Device
    link: GarbledLink
    clock: VirtualClock
    emulator: Any
    params: dict[str, Any] = field(default_factory=dict)


Operation = Callable[[Bench], object]


@dataclass(frozen=True)
class Subject:
    """One driver/emulator pair and its public operations.

    Attributes:
        build: makes a bench with an unconnected driver.
        prepare: brings a connected driver to "ready to pump / turn / read" (clean link).
        operations: name -> what to call once the link is armed. ``connect`` is armed
            before the driver ever connected.
    """

    build: Callable[[], Bench]
    prepare: Callable[[Bench], None]
    operations: dict[str, Operation]


def _pump_bench(impl_name: str, forge: Forger, resign: Resigner | None) -> Callable[[], Bench]:
    impl = PUMP_IMPLS[impl_name]

    def build() -> Bench:
        clock = VirtualClock()
        emulator = impl.make_emulator(World(seed=1))
        link = GarbledLink(emulator, clock, name=f"link-{impl_name}", forge=forge, resign=resign)
        pump = impl.make_driver(link, clock, impl.syringe)
        return Bench(pump, link, clock, emulator, {"prepare": impl.prepare})

    return build


def _prepare_pump(bench: Bench) -> None:
    pump = bench.device
    assert isinstance(pump, SyringePump)
    pump.connect()
    bench.params["prepare"](pump)
    low, high = pump.rate_range_ul_min()
    bench.params["rate_ul_min"] = math.sqrt(low * high)
    bench.params["volume_ul"] = 0.1 * pump.syringe.volume_ul


def _pump(bench: Bench) -> SyringePump:
    assert isinstance(bench.device, SyringePump)
    return bench.device


PUMP_OPERATIONS: dict[str, Operation] = {
    "connect": lambda b: _pump(b).connect(),
    "read_status": lambda b: _pump(b).read_status(),
    "infuse": lambda b: _pump(b).infuse(b.params["rate_ul_min"], b.params["volume_ul"]),
    "infuse_then_status": lambda b: (
        _pump(b).infuse(b.params["rate_ul_min"]),
        _pump(b).read_status(),
    )[1],
    "stop": lambda b: _pump(b).stop(),
    "reconnect_then_status": lambda b: (_pump(b).reconnect(), _pump(b).read_status())[1],
}


def _cavro(bench: Bench) -> CavroPump:
    assert isinstance(bench.device, CavroPump)
    return bench.device


def _dispense_and_wait(pump: CavroPump, params: dict[str, Any]) -> None:
    pump.dispense(params["volume_ul"], params["rate_ul_min"], 2)
    pump.wait_until_ready(60.0)


CAVRO_OPERATIONS: dict[str, Operation] = {
    **PUMP_OPERATIONS,
    "select_port": lambda b: CavroValve(_cavro(b)).select(3),
    "read_port": lambda b: CavroValve(_cavro(b)).read_position(),
    "initialize": lambda b: _cavro(b).initialize(),
    "dispense_and_wait": lambda b: _dispense_and_wait(_cavro(b), b.params),
}


def _cavro_oem_bench() -> Bench:
    clock = VirtualClock()
    syringe = lookup_syringe("Hamilton Gastight 1 mL")
    emulator = SimCavro(
        World(seed=1), model="XLP6000", n_ports=6, syringe_volume_ul=syringe.volume_ul, chip_port=2
    )
    link = GarbledLink(
        emulator, clock, name="link-cavro-oem", forge=_cavro_forge, resign=_cavro_resign
    )
    pump = CavroPump(
        link,
        name="oem-pump",
        syringe=syringe,
        clock=clock,
        model="XLP6000",
        n_ports=6,
        output_port=2,
        input_port=1,
        protocol="oem",
    )
    return Bench(pump, link, clock, emulator, {"prepare": PUMP_IMPLS["cavro-xlp6000"].prepare})


def _valve_bench(impl_name: str, forge: Forger, resign: Resigner | None) -> Callable[[], Bench]:
    impl = VALVE_IMPLS[impl_name]

    def build() -> Bench:
        clock = VirtualClock()
        emulator = impl.make_emulator(World(seed=1))
        link = GarbledLink(emulator, clock, name=f"link-{impl_name}", forge=forge, resign=resign)
        valve = impl.make_driver(link, clock)
        return Bench(valve, link, clock, emulator, {"prepare": impl.prepare})

    return build


def _prepare_valve(bench: Bench) -> None:
    valve = bench.device
    assert isinstance(valve, Valve)
    valve.connect()
    bench.params["prepare"](valve)


def _valve(bench: Bench) -> Valve:
    assert isinstance(bench.device, Valve)
    return bench.device


VALVE_OPERATIONS: dict[str, Operation] = {
    "connect": lambda b: _valve(b).connect(),
    "read_position": lambda b: _valve(b).read_position(),
    "select": lambda b: _valve(b).select(4),
    "reconnect": lambda b: _valve(b).reconnect(),
}


def _flow_bench(impl_name: str) -> Callable[[], Bench]:
    impl = FLOW_SENSOR_IMPLS[impl_name]

    def build() -> Bench:
        clock = VirtualClock()
        emulator = impl.make_emulator(World(seed=1))
        link = GarbledLink(
            emulator,
            clock,
            name=f"link-{impl_name}",
            forge=_sensirion_forge,
            resign=_sensirion_resign,
        )
        sensor = impl.make_driver(link, clock)
        return Bench(sensor, link, clock, emulator)

    return build


def _prepare_flow(bench: Bench) -> None:
    bench.device.connect()


def _flow(bench: Bench) -> FlowSensor:
    assert isinstance(bench.device, SensirionFlowSensor)
    return bench.device


FLOW_OPERATIONS: dict[str, Operation] = {
    "connect": lambda b: _flow(b).connect(),
    "read": lambda b: _flow(b).read(),
    "reconnect": lambda b: _flow(b).reconnect(),
    "close": lambda b: _flow(b).close(),
}


SUBJECTS: dict[str, Subject] = {
    "harvard-phd-ultra": Subject(
        _pump_bench("harvard-phd-ultra", _harvard_forge, None), _prepare_pump, PUMP_OPERATIONS
    ),
    "harvard-legato": Subject(
        _pump_bench("harvard-legato", _harvard_forge, None), _prepare_pump, PUMP_OPERATIONS
    ),
    "newera-basic": Subject(
        _pump_bench("newera-ne1000-basic", _newera_forge, _newera_resign),
        _prepare_pump,
        PUMP_OPERATIONS,
    ),
    "newera-safe": Subject(
        _pump_bench("newera-ne1000-safe", _newera_forge, _newera_resign),
        _prepare_pump,
        {**PUMP_OPERATIONS, "heartbeat": lambda b: _pump(b).heartbeat()},
    ),
    "cavro-dt": Subject(
        _pump_bench("cavro-xlp6000", _cavro_forge, _cavro_resign), _prepare_pump, CAVRO_OPERATIONS
    ),
    "cavro-oem": Subject(_cavro_oem_bench, _prepare_pump, PUMP_OPERATIONS),
    "idex": Subject(
        _valve_bench("idex-mx2-10", _idex_forge, None), _prepare_valve, VALVE_OPERATIONS
    ),
    "sensirion": Subject(_flow_bench("sensirion-slf3s-0600f"), _prepare_flow, FLOW_OPERATIONS),
}

CASES = [
    pytest.param(subject, operation, id=f"{subject}-{operation}")
    for subject, spec in SUBJECTS.items()
    for operation in spec.operations
]


# -- the verdict ---------------------------------------------------------------------------


def _check_result(bench: Bench, result: object) -> None:
    """Fail unless ``result`` keeps the promises of the role that returned it."""
    if isinstance(result, PumpStatus):
        for label, value in (
            ("infused_ul", result.infused_ul),
            ("withdrawn_ul", result.withdrawn_ul),
            ("rate_ul_min", result.rate_ul_min),
        ):
            assert math.isfinite(value) and value >= 0, f"status {label} = {value!r}"
        assert result.alarm is None or isinstance(result.alarm, str)
    elif isinstance(result, FlowReading):
        assert math.isfinite(result.flow_ul_min), f"flow = {result.flow_ul_min!r}"
        assert math.isfinite(result.temperature_c), f"temperature = {result.temperature_c!r}"
    elif isinstance(result, int):
        valve = bench.device
        n_positions = valve.n_positions if isinstance(valve, Valve) else _cavro(bench).n_ports
        assert 1 <= result <= n_positions, f"position {result} of a {n_positions}-position valve"
    else:
        assert result is None, f"unexpected result {result!r}"


def _check_error(bench: Bench, error: DeviceError) -> None:
    """Fail unless ``error`` names the device, in one line."""
    name = bench.device.name
    assert error.device == name, f"error names {error.device!r}, not the device {name!r}"
    line = str(error)
    assert line.startswith(f"{name}: ") and "\n" not in line and "\r" not in line, line


def outcome(bench: Bench, operation: Operation) -> DeviceError | None:
    """Run ``operation``; check its result or its error; return the error (if any)."""
    try:
        result = operation(bench)
    except DeviceError as error:
        _check_error(bench, error)
        return error
    _check_result(bench, result)
    return None


@FUZZ_SETTINGS
@given(data=st.data())
@pytest.mark.parametrize(("subject", "operation"), CASES)
def test_garbled_replies_give_a_typed_error_or_a_true_result(
    subject: str, operation: str, data: st.DataObject
) -> None:
    spec = SUBJECTS[subject]
    bench = spec.build()
    if operation != "connect":
        spec.prepare(bench)
    bench.link.arm(data)
    EXAMPLES_RUN[subject] += 1
    outcome(bench, spec.operations[operation])


# -- endless streams -----------------------------------------------------------------------


class EndlessLink:
    """A link on which the device side repeats ``pattern`` for ever.

    Each read returns the pattern and advances the clock by its transmission time at
    ``baudrate`` (10 bits a byte), so deadlines kept on the clock pass as on a real line.

    Raises:
        AssertionError: the driver read more than :data:`ENDLESS_LIMIT_BYTES`.
    """

    def __init__(self, pattern: bytes, clock: VirtualClock, *, baudrate: int = 9600) -> None:
        self.name = "endless-link"
        self.lock = threading.RLock()
        self.pattern = pattern
        self.clock = clock
        self.byte_s = 10.0 / baudrate
        self.bytes_read = 0
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def reset_input(self) -> None:
        return

    def write(self, data: bytes) -> None:
        return

    def read_some(self, timeout_s: float) -> bytes:
        chunk = self.pattern * max(1, 64 // len(self.pattern))  # what a UART buffer holds
        self.bytes_read += len(chunk)
        assert self.bytes_read <= ENDLESS_LIMIT_BYTES, (
            f"driver read {self.bytes_read} bytes of {self.pattern!r} without giving up"
        )
        self.clock.sleep_s(len(chunk) * self.byte_s)
        return chunk


ENDLESS_PATTERNS: dict[str, bytes] = {
    "nul": b"\x00",
    "high-bit": b"\xff\x80",
    "busy-star": b"*",
    "harvard-idle-prompt": b"\n00:",
    "harvard-prompt-addr-3": b"\n03:",
    "newera-stx": b"\x02",
    "newera-other-pump-basic": b"\x0200S\x03",
    "newera-other-pump-safe": _newera_safe(b"00S"),
    "cavro-start": b"/0",
    "cavro-busy": b"/0@\x03\r\n",
    "shdlc-delimiter": b"~",
    "shdlc-other-address": _shdlc_miso(9, 0xD0, 0, b""),
    "cr-lf": b"\r\n",
}


_BD_10ML = lookup_syringe("BD Plastipak 10 mL")
_HAMILTON_1ML = lookup_syringe("Hamilton Gastight 1 mL")

#: Driver name -> the driver on a link and a clock (default settings, as a rig builds it).
ENDLESS_DRIVERS: dict[str, Callable[[Transport, VirtualClock], Device]] = {
    "harvard": lambda t, c: HarvardPump(
        t, name="harvard", syringe=_BD_10ML, clock=c, model="legato"
    ),
    "newera": lambda t, c: NewEraPump(t, name="newera", syringe=_BD_10ML, clock=c, address=3),
    "newera-safe": lambda t, c: NewEraPump(
        t, name="newera-safe", syringe=_BD_10ML, clock=c, address=3, safe_mode=True
    ),
    "cavro": lambda t, c: CavroPump(t, name="cavro", syringe=_HAMILTON_1ML, clock=c),
    "idex": lambda t, c: IdexValve(t, name="idex", n_positions=10, clock=c),
    "sensirion": lambda t, c: SensirionFlowSensor(
        t, name="sensirion", clock=c, sensor="SLF3S-0600F"
    ),
}


@pytest.mark.parametrize("pattern", list(ENDLESS_PATTERNS), ids=list(ENDLESS_PATTERNS))
@pytest.mark.parametrize("driver", list(ENDLESS_DRIVERS))
def test_an_endless_stream_ends_in_a_typed_error(driver: str, pattern: str) -> None:
    clock = VirtualClock()
    link = EndlessLink(ENDLESS_PATTERNS[pattern], clock)
    device = ENDLESS_DRIVERS[driver](link, clock)
    with pytest.raises(DeviceError) as info:
        device.connect()
    assert info.value.device == driver
    assert "\n" not in str(info.value)
    assert link.bytes_read <= ENDLESS_LIMIT_BYTES


# -- the faults these tests found, pinned by exact exchanges --------------------------------


@pytest.mark.parametrize(
    "text", ["1e999 ul", "1e308 ml", "9" * 400 + " nl", "1e306 l/min", "1e308 ml/sec"]
)
def test_harvard_numbers_beyond_a_float_are_reply_errors(text: str) -> None:
    """Found: ``"1e999 ul"`` parsed to an infinite volume counter (harvard codec)."""
    parse = harvard_codec.parse_rate_ul_min if "/" in text else harvard_codec.parse_volume_ul
    with pytest.raises(ReplyError, match="out of range"):
        parse(text, device="medium")


def test_newera_numbers_beyond_a_float_are_reply_errors() -> None:
    """Found: a 400-digit number in a ``DIS`` reply parsed to infinity (newera codec)."""
    with pytest.raises(ReplyError, match="out of range"):
        newera_codec.parse_number("9" * 400, device="drug")
    with pytest.raises(ReplyError):
        newera_codec.parse_dispensed("I" + "9" * 400 + "W0UL", device="drug")


def test_idex_position_beyond_the_valve_is_a_reply_error() -> None:
    """Found: a status reply ``0D`` made a 10-position valve report position 13."""
    transport = ScriptedTransport([(b"S\r", b"01\r"), *[(b"S\r", b"0D\r")] * 3], name="port")
    valve = IdexValve(transport, name="outlet", n_positions=10, clock=VirtualClock())
    valve.connect()
    with pytest.raises(ReplyError, match="position 13 of a 10-position valve") as info:
        valve.read_position()
    assert info.value.device == "outlet"
    transport.assert_done()


def test_cavro_stroke_limits_are_device_errors_too() -> None:
    """Found: an empty syringe read from the pump raised a bare ValueError mid-run."""
    ready = b"/0`\x03\r\n"
    script = [
        (b"/1Q\r", ready),
        (b"/1&\r", b"/0`XLP6000\x03\r\n"),
        (b"/1?\r", b"/0`0\x03\r\n"),
        (b"/1?6\r", b"/0`1\x03\r\n"),
        (b"/1?\r", b"/0`0\x03\r\n"),
    ]
    transport = ScriptedTransport(script, name="bus")
    pump = CavroPump(transport, name="exchanger", syringe=_HAMILTON_1ML, clock=VirtualClock())
    pump.connect()
    with pytest.raises(StrokeLimitError, match="nothing to dispense") as info:
        pump.infuse(100.0)
    assert isinstance(info.value, DeviceError) and isinstance(info.value, ValueError)
    assert info.value.device == "exchanger"
    transport.assert_done()


# -- the report ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _report_example_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many fuzz examples each driver got (the brief asks for the counts)."""
    yield
    if not EXAMPLES_RUN:
        return
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    counts = ", ".join(f"{name} {count}" for name, count in sorted(EXAMPLES_RUN.items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\ndriver fuzz examples run: {counts} (total {sum(EXAMPLES_RUN.values())})"
        )
