"""Benchmark: one driver command round trip over a PTY, against a bare PTY echo, side by side.

For each serial driver, its emulator is served on a pseudo-terminal by
:class:`simulator.pty.PtyServer` in this process (``now_s`` from a :class:`RealClock`, as
``chipctl simulate serve`` runs it), the driver talks to it through
:class:`~drivers.transport.SerialTransport` (pyserial), and one idempotent query is timed:

========================  ===============================================================
device                    query (one command, one reply)
========================  ===============================================================
Harvard PHD ULTRA         ``read_status()``: ``status``
New Era NE-1000 (basic)   ``read_status()``: ``DIS``
Tecan Cavro XLP 6000      ``wait_until_ready()`` on an idle pump: one ``Q``
IDEX MX Series II         ``read_position()`` on an idle valve: one ``S``
Sensirion SLF3S-1300F     ``read()``: SCC1 0x35 "get last measurement" (SHDLC)
========================  ===============================================================

Next to each, in the same run and interleaved with it in blocks (so drifts of the machine
hit both alike), a bare PTY echo: ``os.openpty()``, a trivial responder thread on the
master end, and pyserial ``write`` + ``read(n)`` on the slave end, with the request and
reply sizes of that driver's exchange (measured on the wire during the warm-up). The
ratio of the medians is what the driver stack costs on top of the PTY itself: the
driver's encoding, parsing and checks, ``SerialTransport``'s flush and silence-timeout
reads, and on the device side ``PtyServer``'s select loop and the emulator. Figures are
printed, never asserted (CONTRIBUTING.md, "Tests"); the asserts are sanity bounds only.
perf-limits.md §4 measured the bare path here at about 24 us (``read(n)``).

Run with ``pytest -m slow tests/benchmarks/test_driver_roundtrip_bench.py -s``.
"""

from __future__ import annotations

import math
import os
import select
import statistics
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import serial

from drivers.cavro.pump import CavroPump
from drivers.clock import RealClock
from drivers.harvard.pump import HarvardPump
from drivers.idex.valve import IdexValve
from drivers.newera.pump import NewEraPump
from drivers.sensirion.flow import SensirionFlowSensor
from drivers.syringes import lookup_syringe
from drivers.transport import SerialTransport
from simulator.devices.cavro import SimCavro
from simulator.devices.harvard import SimHarvardPump
from simulator.devices.idex import SimIdexValve
from simulator.devices.newera import SimNewEraPump
from simulator.devices.sensirion import SimScc1Slf3s
from simulator.pty import PtyServer
from simulator.world import World

#: Untimed round trips before measuring (first-call caches, size measurement).
N_WARMUP = 50
#: Timed round trips per block, and blocks, for the driver and for the echo each.
N_PER_BLOCK = 1000
N_BLOCKS = 5
#: Silence timeout of every read (bounded waits only).
TIMEOUT_S = 1.0

clock = RealClock()
SYRINGE = lookup_syringe("BD Plastipak 10 mL")


class WireProbe:
    """Serves an emulator and counts the bytes of each direction (constant cost per call)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.bytes_in = 0
        self.bytes_out = 0

    def advance_to(self, t_s: float) -> None:
        self.device.advance_to(t_s)

    def receive(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.device.receive(data)

    def take_output(self) -> bytes:
        out: bytes = self.device.take_output()
        self.bytes_out += len(out)
        return out


@dataclass(frozen=True)
class Case:
    """One driver, its emulator, and the query to time."""

    query: str
    make_emulator: Callable[[], Any]
    make_driver: Callable[[SerialTransport], Any]
    round_trip: Callable[[Any], object]
    baudrate: int = 9600


CASES: dict[str, Case] = {
    "harvard-phd-ultra": Case(
        "status",
        lambda: SimHarvardPump(World(seed=1), model="phd-ultra"),
        lambda transport: HarvardPump(
            transport, name="pump", syringe=SYRINGE, model="phd-ultra", clock=clock
        ),
        lambda pump: pump.read_status(),
    ),
    "newera-ne1000": Case(
        "DIS",
        lambda: SimNewEraPump(World(seed=1), model="NE-1000"),
        lambda transport: NewEraPump(transport, name="pump", syringe=SYRINGE, clock=clock),
        lambda pump: pump.read_status(),
    ),
    "cavro-xlp6000": Case(
        "Q",
        lambda: SimCavro(World(seed=1), model="XLP6000", syringe_volume_ul=1000.0),
        lambda transport: CavroPump(
            transport,
            name="pump",
            syringe=lookup_syringe("Hamilton Gastight 1 mL"),
            clock=clock,
            model="XLP6000",
        ),
        lambda pump: pump.wait_until_ready(TIMEOUT_S),
    ),
    "idex-mx2": Case(
        "S",
        lambda: SimIdexValve(World(seed=1), n_positions=10),
        lambda transport: IdexValve(transport, name="valve", n_positions=10, clock=clock),
        lambda valve: valve.read_position(),
        baudrate=19200,
    ),
    "sensirion-slf3s": Case(
        "0x35 read",
        lambda: SimScc1Slf3s(World(seed=1), noise_ul_min=0.0),
        lambda transport: SensirionFlowSensor(transport, name="flow", clock=clock),
        lambda sensor: sensor.read(),
        baudrate=115200,
    ),
}


class EchoPty:
    """A bare PTY responder: reads ``request_bytes``, answers ``reply_bytes``.

    The responder is a thread on the master end (as PtyServer is); the client is pyserial
    on the slave end, opened the way SerialTransport opens it, reading with ``read(n)``.
    """

    def __init__(self, request_bytes: int, reply_bytes: int) -> None:
        self.request = b"q" * (request_bytes - 1) + b"\r"
        self.reply = b"r" * (reply_bytes - 1) + b"\r"
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = serial.Serial(os.ttyname(self._slave), baudrate=9600, timeout=TIMEOUT_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="EchoPty", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = 0
        while not self._stop.is_set():
            readable, _, _ = select.select([self._master], [], [], 0.05)
            if not readable:
                continue
            pending += len(os.read(self._master, 4096))
            while pending >= len(self.request):
                pending -= len(self.request)
                os.write(self._master, self.reply)

    def round_trip(self) -> None:
        self.port.write(self.request)
        reply = self.port.read(len(self.reply))
        if len(reply) != len(self.reply):
            raise TimeoutError(f"echo: got {len(reply)} of {len(self.reply)} bytes")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.port.close()
        for fd in (self._master, self._slave):
            os.close(fd)


def _time_us(call: Callable[[], object], n: int) -> list[float]:
    samples_us = []
    for _ in range(n):
        t0_s = clock.now_s()
        call()
        samples_us.append((clock.now_s() - t0_s) * 1e6)
    return samples_us


@dataclass
class Result:
    device: str
    query: str
    request_bytes: int
    reply_bytes: int
    driver_us: list[float]
    echo_us: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.driver_us) / statistics.median(self.echo_us)


def _measure(name: str, case: Case) -> Result:
    probe = WireProbe(case.make_emulator())
    with PtyServer({"dev": probe}, clock.now_s) as server:
        transport = SerialTransport(server.paths["dev"], baudrate=case.baudrate, name=name)
        driver = case.make_driver(transport)
        driver.connect()
        try:
            in0, out0 = probe.bytes_in, probe.bytes_out
            for _ in range(N_WARMUP):
                case.round_trip(driver)
            request_bytes = round((probe.bytes_in - in0) / N_WARMUP)
            reply_bytes = round((probe.bytes_out - out0) / N_WARMUP)
            # One exchange per call, of a constant size: otherwise the echo is no baseline.
            assert (probe.bytes_in - in0) == request_bytes * N_WARMUP, "request size varies"
            assert (probe.bytes_out - out0) == reply_bytes * N_WARMUP, "reply size varies"
            echo = EchoPty(request_bytes, reply_bytes)
            try:
                for _ in range(N_WARMUP):
                    echo.round_trip()
                driver_us: list[float] = []
                echo_us: list[float] = []
                for _ in range(N_BLOCKS):
                    driver_us += _time_us(lambda: case.round_trip(driver), N_PER_BLOCK)
                    echo_us += _time_us(echo.round_trip, N_PER_BLOCK)
            finally:
                echo.close()
        finally:
            driver.close()
    return Result(name, case.query, request_bytes, reply_bytes, driver_us, echo_us)


def _p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


@pytest.mark.slow
@pytest.mark.pty
@pytest.mark.timeout(120)
def test_driver_roundtrip_vs_bare_pty_echo_bench() -> None:
    results = [_measure(name, case) for name, case in CASES.items()]
    n = N_BLOCKS * N_PER_BLOCK
    print()
    print(f"Command round trip over a PTY, median (p99) of {n} each, interleaved in blocks")
    header = (
        f"{'device':<18} {'query':<10} {'req B':>5} {'rep B':>5} "
        f"{'driver us':>16} {'bare echo us':>16} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        driver = f"{statistics.median(r.driver_us):7.1f} ({_p(r.driver_us, 99):6.1f})"
        echo = f"{statistics.median(r.echo_us):7.1f} ({_p(r.echo_us, 99):6.1f})"
        print(
            f"{r.device:<18} {r.query:<10} {r.request_bytes:>5} {r.reply_bytes:>5} "
            f"{driver:>16} {echo:>16} {r.ratio:>6.1f}"
        )
    for r in results:
        assert len(r.driver_us) == n and len(r.echo_us) == n  # every round trip completed
        assert r.request_bytes > 0 and r.reply_bytes > 0
        assert math.isfinite(r.ratio) and r.ratio > 0
