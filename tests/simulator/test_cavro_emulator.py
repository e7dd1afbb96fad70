"""SimCavro: exact answers, busy/ready timing, volume bookkeeping and faults (hw-ref §3).

Expected bytes are written out by hand from hardware-reference §3.3-3.5: DT answers are
``/0`` + status byte + data + ETX CR LF; the status byte is 0x40 | ready 0x20 | error.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.devices.cavro import SPEED_CODES_HZ, SimCavro, oem_checksum
from simulator.faults import CommFaults
from simulator.world import World

READY = b"/0`\x03\r\n"  # 0x60: ready, no error
BUSY = b"/0@\x03\r\n"  # 0x40: busy, no error


def answer(status: int, data: bytes = b"") -> bytes:
    return b"/0" + bytes([status]) + data + b"\x03\r\n"


class Bench:
    """A pump on a hand-advanced timeline."""

    def __init__(self, pump: SimCavro) -> None:
        self.pump = pump
        self.t_s = 0.0
        pump.advance_to(0.0)

    def at(self, t_s: float) -> Bench:
        self.t_s = t_s
        self.pump.advance_to(t_s)
        return self

    def send(self, command: str) -> bytes:
        self.pump.receive(b"/1" + command.encode("ascii") + b"\r")
        return self.pump.take_output()

    def init(self) -> None:
        self.send("Q")  # read (and so clear) any pending error
        assert self.send("ZR") == READY
        self.at(self.t_s + 5.0)
        assert self.send("Q") == READY


def bench(**kwargs: object) -> Bench:
    return Bench(SimCavro(**kwargs))  # type: ignore[arg-type]


# -- DT answers per command family -------------------------------------------------------


def test_fresh_pump_is_ready_without_error() -> None:
    b = bench()
    assert b.send("Q") == READY
    assert b.send("?29") == READY


def test_move_before_initialisation_is_error_7() -> None:
    b = bench()
    assert b.send("A100R") == answer(0x67)  # ready | 7, in the answer
    assert b.send("Q") == answer(0x67)  # the error stays until Q reads it...
    assert b.send("Q") == READY  # ...which clears it (XLP manual §3.6)
    assert b.send("I2R") == answer(0x67)  # valve not initialised either


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("xR", 0x62),  # 2 invalid command
        ("?99", 0x62),  # unknown report
        ("A3000xR", 0x62),  # the whole string is refused: nothing runs
        ("BR", 0x62),  # no bypass on a distribution valve
        ("A3000E2000R", 0x62),  # XP 3000 manual Table 3-8 example
        ("A1,,2R", 0x62),
        ("G3R", 0x64),  # 4 invalid command sequence: G without g
        ("gP10R", 0x64),
        ("gP10G0R", 0x63),  # endless loops are not emulated [I]
    ],
)
def test_string_errors_are_answered_at_once_and_nothing_runs(command: str, status: int) -> None:
    b = bench()
    b.init()
    assert b.send(command) == answer(status)
    assert b.send("Q") == answer(status)
    assert b.send("Q") == READY
    assert not b.pump.executing
    assert b.pump.plunger_increments == 0 and b.pump.valve_port == 6


@pytest.mark.parametrize(
    "command",
    [
        "A6001R",  # beyond the XLP 6000 N0 stroke (cf. [A4000R] on a 3000-step pump)
        "D1R",  # would leave 0..max
        "AR",  # missing operand [I]
        "V4R",  # top speed 5..6000
        "v2000R",  # start speed 50..1000
        "c10R",  # cutoff 50..2700
        "S41R",  # speed code 0..40
        "L21R",  # slope 1..20
        "I7R",  # port 1..6
        "Z3R",  # force 0, 1, 2 or 10..40
    ],
)
def test_operand_errors_are_reported_by_q(command: str) -> None:
    # XP 3000 manual Table 3-8: [A4000R] "does not return an error immediately after the
    # command, but when queried ([Q] command)".
    b = bench()
    b.init()
    assert b.send(command) == READY
    assert b.send("Q") == answer(0x63)
    assert b.send("Q") == READY
    assert b.pump.plunger_increments == 0 and b.pump.valve_port == 6


def test_string_runs_up_to_the_failing_command() -> None:
    # XP 3000 manual Table 3-8: [A3000A3500R] "moves to position 3000, then stops".
    b = bench()
    b.init()
    assert b.send("A3000A6500A0R") == READY
    assert b.send("Q") == BUSY
    b.at(b.t_s + 5)
    assert b.send("Q") == answer(0x63)
    assert b.send("?") == answer(0x60, b"3000")


def test_error_stays_in_every_answer_until_q_reads_it() -> None:
    b = bench()
    b.init()
    assert b.send("xR") == answer(0x62)
    assert b.send("V1000R") == answer(0x62)  # accepted; the unread error still shows
    assert b.send("?2") == answer(0x62, b"1000")
    assert b.send("Q") == answer(0x62)
    assert b.send("Q") == READY


def test_reports() -> None:
    b = bench()
    b.init()
    assert b.send("?") == answer(0x60, b"0")
    assert b.send("?1") == answer(0x60, b"900")
    assert b.send("?2") == answer(0x60, b"1400")
    assert b.send("?3") == answer(0x60, b"900")
    assert b.send("?4") == answer(0x60, b"0")
    assert b.send("?6") == answer(0x60, b"6")  # Z leaves the valve on the out port [I]
    assert b.send("?10") == answer(0x60, b"0")
    assert b.send("?12") == answer(0x60, b"12")
    assert b.send("?23") == answer(0x60, b"XLP SIM V1.0")
    assert b.send("&") == answer(0x60, b"XLP SIM V1.0")
    assert b.send("?24") == answer(0x60, b"0")


def test_settings_are_reported_back() -> None:
    b = bench()
    b.init()
    assert b.send("V2500v100c500L10K20k5R") == READY
    assert b.send("?2") == answer(0x60, b"2500")
    assert b.send("?1") == answer(0x60, b"100")
    assert b.send("?3") == answer(0x60, b"500")
    assert b.send("?12") == answer(0x60, b"20")
    assert b.send("?24") == answer(0x60, b"5")
    assert b.send("S0R") == READY
    assert b.send("?2") == answer(0x60, b"6000")
    assert b.send("S40R") == READY
    assert b.send("?2") == answer(0x60, b"10")


def test_speed_code_table_ends() -> None:
    # §3.6: code 0 = 6000 Hz ... 40 = 10 Hz; code 11 is the 1400 Hz default.
    assert (SPEED_CODES_HZ[0], SPEED_CODES_HZ[11], SPEED_CODES_HZ[40]) == (6000, 1400, 10)
    assert len(SPEED_CODES_HZ) == 41
    assert all(a > b for a, b in itertools.pairwise(SPEED_CODES_HZ))


def test_three_port_valve_letters_and_bypass() -> None:
    b = bench(n_ports=3)
    b.init()
    assert b.send("?6") == answer(0x60, b"o")
    assert b.send("IR") == READY
    b.at(b.t_s + 1)
    assert b.send("?6") == answer(0x60, b"i")
    assert b.send("BR") == READY
    b.at(b.t_s + 1)
    assert b.send("?6") == answer(0x60, b"b")
    # Valve in bypass [A1000R]: no error in the answer, Q reports 11 (Table 3-8).
    assert b.send("P100R") == READY
    assert b.send("Q") == answer(0x6B)
    assert b.send("ER") == READY  # no E port on a 3-port valve [I]
    assert b.send("Q") == answer(0x63)
    assert b.send("E2R") == answer(0x62)  # a letter valve takes no operand


def test_address_filter_group_and_broadcast() -> None:
    pump = SimCavro(address="2")
    pump.advance_to(0.0)
    pump.receive(b"/1ZR\r")
    assert pump.take_output() == b""  # for pump 1
    pump.receive(b"/_ZR\r")  # every pump (§3.2): executes, no answer
    assert pump.take_output() == b""
    assert pump.busy
    pump.advance_to(5.0)
    pump.receive(b"/2?6\r")
    assert pump.take_output() == answer(0x60, b"6")


# -- busy / ready timing -------------------------------------------------------------------


def test_plunger_move_time_is_stroke_over_top_speed() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    # The answer goes out when the command is accepted: ready bit of the idle pump [I].
    assert b.send("A6000R") == READY
    full_stroke_s = 6000 / 1400
    assert b.at(t0 + full_stroke_s / 2).send("Q") == BUSY
    assert b.send("?") == answer(0x40, b"3000")
    assert b.at(t0 + full_stroke_s - 1e-6).send("Q") == BUSY
    assert b.at(t0 + full_stroke_s + 1e-6).send("Q") == READY
    assert b.send("?") == answer(0x60, b"6000")


def test_speed_code_changes_move_time() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    assert b.send("S0A3000R") == READY  # 6000 Hz: half a stroke in 0.5 s
    assert b.at(t0 + 0.49).send("Q") == BUSY
    assert b.at(t0 + 0.51).send("Q") == READY


def test_initialisation_takes_time_and_homes_the_plunger() -> None:
    b = bench()
    assert b.send("ZR") == READY
    assert b.at(0.5).send("Q") == BUSY
    assert b.at(1.3).send("Q") == READY  # overhead 1.0 s + valve 0.25 s [I]
    assert b.pump.plunger_initialised and b.pump.valve_initialised


def test_commands_while_busy_are_overflow_but_reports_and_terminate_work() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    b.send("A6000R")
    b.at(t0 + 1.0)
    assert b.send("A0R") == answer(0x4F)  # busy | 15 command overflow
    assert b.send("v100R") == answer(0x4F)  # set commands too, except V
    assert b.send("I1R") == answer(0x4F)  # and valve commands
    assert b.send("?") == answer(0x4F, b"1400")  # reports answer while busy
    assert b.send("Q") == answer(0x4F)
    assert b.send("T") == BUSY  # found busy; stops at once
    assert b.send("Q") == READY
    b.at(t0 + 10.0)
    assert b.send("?") == answer(0x60, b"1400")  # stopped where T found it


def test_stacked_string_runs_in_order() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    assert b.send("I1A600O2A0R") == READY
    assert b.at(t0 + 0.2).send("?6") == answer(0x40, b"6")  # valve still turning
    assert b.at(t0 + 0.3).send("?6") == answer(0x40, b"1")
    total_s = 0.25 + 600 / 1400 + 0.25 + 600 / 1400
    assert b.at(t0 + total_s - 0.01).send("Q") == BUSY
    assert b.at(t0 + total_s + 0.01).send("Q") == READY
    assert b.send("?6") == answer(0x60, b"2")


def test_delay_and_loops() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    assert b.send("gP60M100D60G3R") == READY
    cycle_s = 60 / 1400 * 2 + 0.1
    assert b.at(t0 + 3 * cycle_s - 0.01).send("Q") == BUSY
    assert b.at(t0 + 3 * cycle_s + 0.01).send("Q") == READY
    assert b.send("gP10G0R") == answer(0x63)  # endless loops are not emulated [I]


def test_buffered_string_runs_on_bare_r_and_repeats_with_x() -> None:
    b = bench()
    b.init()
    assert b.send("P100") == READY  # loaded, not run
    assert b.send("F") == answer(0x60, b"1")
    assert b.send("?") == answer(0x60, b"0")
    assert b.send("R") == READY
    assert b.send("F") == answer(0x40, b"0")
    b.at(b.t_s + 1)
    assert b.send("XR") == READY
    b.at(b.t_s + 1)
    assert b.send("?") == answer(0x60, b"200")


def test_non_busy_move_reports_ready_and_takes_speed_on_the_fly() -> None:
    b = bench()
    b.init()
    t0 = b.t_s
    assert b.send("a6000R") == READY
    b.at(t0 + 1.0)
    assert b.send("Q") == READY  # a/p/d report "not busy" (§3.6)
    assert b.pump.executing
    assert b.send("A0R") == answer(0x6F)  # the plunger moves: command overflow
    assert b.send("Q") == answer(0x6F)
    assert b.send("V6000R") == READY  # V is taken on the fly (XLP manual §3.6)
    remaining = 6000 - 1400
    b.at(t0 + 1.0 + remaining / 6000 + 0.01)
    assert b.send("?") == answer(0x60, b"6000")
    assert not b.pump.executing


def test_fine_resolution_rescales_positions() -> None:
    b = bench()
    b.init()
    b.send("A3000R")
    b.at(b.t_s + 5)
    assert b.send("N1R") == READY
    assert b.send("?") == answer(0x60, b"24000")  # XLP 6000: 0..48000 in N1 (§3.6)
    assert b.send("A48001R") == READY
    assert b.send("Q") == answer(0x63)
    assert b.send("N0R") == READY
    assert b.send("?") == answer(0x60, b"3000")


def test_xcalibur_stroke_is_3000_increments() -> None:
    b = bench(model="XCalibur")
    b.init()
    assert b.send("A3001R") == READY  # cf. [A4000R] in the XP 3000 manual, Table 3-8
    assert b.send("Q") == answer(0x63)
    assert b.send("A3000R") == READY
    b.at(b.t_s + 5)
    assert b.send("N1R") == READY
    assert b.send("?") == answer(0x60, b"24000")
    assert b.send("&") == answer(0x60, b"XC SIM V1.0")


# -- volume bookkeeping --------------------------------------------------------------------


def test_only_volume_through_the_chip_port_counts() -> None:
    world = World(max_step_s=0.1)
    pump = SimCavro(world, syringe_volume_ul=1000.0, chip_port=3)
    b = Bench(pump)
    b.init()
    assert b.send("I1A3000R") == READY  # aspirate 500 uL from the reservoir on port 1
    b.at(b.t_s + 5)
    assert pump.chip_displaced_ul == 0.0
    assert pump.plunger_volume_ul == pytest.approx(500.0)
    assert b.send("O3D1500R") == READY  # dispense 250 uL into the chip
    steps: list[float] = []
    t = b.t_s
    for _ in range(30):
        t += 0.1
        b.at(t)
        steps.append(pump.last_step_displaced_ul)
    assert sum(steps) == pytest.approx(250.0)
    assert max(steps) == pytest.approx(1400 / 6000 * 0.1 * 1000.0)  # full speed, 0.1 s
    assert pump.chip_displaced_ul == pytest.approx(250.0)
    assert b.send("P600R") == READY  # withdraw from the chip: negative
    b.at(b.t_s + 5)
    assert pump.chip_displaced_ul == pytest.approx(150.0)


def test_initialisation_homing_counts_if_the_out_port_is_the_chip() -> None:
    b = bench(chip_port=6)
    b.init()
    b.send("I1A6000R")
    b.at(b.t_s + 10)
    assert b.send("ZR") == READY  # homes through the out port (6) [I]
    b.at(b.t_s + 10)
    assert b.pump.chip_displaced_ul == pytest.approx(1000.0)


# -- faults --------------------------------------------------------------------------------


def test_back_pressure_above_limit_is_plunger_overload() -> None:
    world = World(max_step_s=0.05)
    pump = SimCavro(world, chip_port=6)
    b = Bench(pump)
    b.init()
    b.send("I1A6000R")
    b.at(b.t_s + 5)
    b.send("O6A0R")
    b.at(b.t_s + 0.5)
    pump.back_pressure_kpa = 1000.0  # the hydraulics reports an occluded outlet
    b.at(b.t_s + 0.05)
    assert b.send("Q") == answer(0x69)  # ready | 9 plunger overload
    stopped = pump.plunger_increments
    b.at(b.t_s + 5)
    assert pump.plunger_increments == stopped
    pump.back_pressure_kpa = 0.0
    # Until re-initialised, every move answers the overload again (XLP manual §3.6).
    assert b.send("A0R") == answer(0x69)
    assert b.send("Q") == answer(0x69)
    assert b.send("ZR") == READY
    b.at(b.t_s + 10)
    assert b.send("Q") == READY
    assert b.send("A0R") == READY


def test_half_force_init_halves_the_pressure_limit() -> None:
    pump = SimCavro(chip_port=6)
    b = Bench(pump)
    assert b.send("Z1R") == READY
    b.at(5)
    b.send("I1A6000R")
    b.at(10)
    b.send("O6A0R")
    pump.back_pressure_kpa = SimCavro.overload_pressure_kpa * 0.6
    b.at(10.5)
    assert b.send("Q") == answer(0x69)


def test_injected_overload_stops_a_moving_plunger() -> None:
    b = bench()
    b.init()
    b.send("A6000R")
    b.at(b.t_s + 1.0)
    b.pump.inject_overload()
    assert b.send("?") == answer(0x69, b"1400")
    assert b.send("Q") == answer(0x69)
    b.at(b.t_s + 5)
    assert b.send("?") == answer(0x60, b"1400")


def test_injected_overload_hits_the_next_move() -> None:
    b = bench()
    b.init()
    b.pump.inject_overload()
    assert b.send("A100R") == READY  # accepted; stalls as soon as it starts
    assert b.send("Q") == answer(0x69)


def test_valve_jam_is_valve_overload_until_a_valve_move_succeeds() -> None:
    b = bench()
    b.init()
    b.pump.jam_valve()
    assert b.send("I2R") == READY
    b.at(b.t_s + 1)
    assert b.send("?6") == answer(0x6A, b"6")  # 10 valve overload; the valve did not move
    assert b.send("Q") == answer(0x6A)
    b.pump.jam_valve(False)
    # The XLP 6000 manual (§3.6, "Overload Errors") asks for a re-initialisation; the
    # reference's "a new valve command re-inits the valve" (§3.5) is not followed.
    assert b.send("I2R") == answer(0x6A)
    assert b.send("P10R") == answer(0x6A)
    b.init()
    assert b.send("I2R") == READY
    b.at(b.t_s + 1)
    assert b.send("?6") == answer(0x60, b"2")


def test_power_on_reset_needs_reinitialisation() -> None:
    b = bench()
    b.init()
    b.send("V3000A1200R")
    b.at(b.t_s + 5)
    b.pump.power_on_reset()
    assert b.send("Q") == READY
    assert b.send("?") == answer(0x60, b"1200")  # the plunger has not moved
    assert b.send("?2") == answer(0x60, b"1400")  # settings back to defaults
    assert b.send("A0R") == answer(0x67)  # 7 not initialised
    b.init()
    assert b.send("A0R") == READY


def test_link_faults() -> None:
    faults = CommFaults(seed=3)
    b = bench(faults=faults)
    faults.garble = True
    assert b.send("Q") != READY
    faults.clear()
    faults.partial = True
    assert b.send("Q") == READY[:3]
    faults.clear()
    faults.no_reply = True
    assert b.send("ZR") == b""
    assert not b.pump.busy  # swallowed: not executed [I]
    faults.clear()
    faults.disconnected = True
    with pytest.raises(ConnectionError):
        b.pump.receive(b"/1Q\r")
    with pytest.raises(ConnectionError):
        b.pump.take_output()


def test_noise_and_lf_between_commands_are_ignored() -> None:
    pump = SimCavro()
    pump.advance_to(0.0)
    pump.receive(b"\n\xff/1Q\r\n/1")
    assert pump.take_output() == READY
    pump.receive(b"Q\r")
    assert pump.take_output() == READY


# -- OEM protocol ----------------------------------------------------------------------------


def test_oem_examples_from_the_reference() -> None:
    # §3.4: ZR to address 1 with sequence 1 -> 02 31 31 5a 52 03 09; repeat 02 31 39 ...
    assert oem_checksum(bytes.fromhex("02 31 31 5a 52 03")) == 0x09
    assert oem_checksum(bytes.fromhex("02 31 39 5a 52 03")) == 0x01
    # Answer "ready, data 3000" -> 02 30 60 33 30 30 30 03 52.
    assert oem_checksum(bytes.fromhex("02 30 60 33 30 30 30 03")) == 0x52


def oem(address: int, sequence: int, command: bytes) -> bytes:
    body = bytes([0x02, address, sequence]) + command + b"\x03"
    return body + bytes([oem_checksum(body)])


def test_oem_answer_frames_and_repeat_is_not_executed_twice() -> None:
    pump = SimCavro()
    b = Bench(pump)
    pump.receive(bytes.fromhex("02 31 31 5a 52 03 09"))
    assert pump.take_output() == bytes.fromhex("02 30 60 03 51")
    b.at(5)
    pump.receive(oem(0x31, 0x32, b"P3000R"))
    assert pump.take_output() == bytes.fromhex("02 30 60 03 51")
    # The host missed the answer and repeats with the repeat bit: acknowledged only.
    pump.receive(oem(0x31, 0x3A, b"P3000R"))
    assert pump.take_output() == bytes.fromhex("02 30 40 03 71")  # busy, from the 1st
    b.at(20)
    pump.receive(oem(0x31, 0x33, b"?"))
    assert pump.take_output() == bytes.fromhex("02 30 60 33 30 30 30 03 52")  # §3.4 example


def test_oem_bad_checksum_is_dropped_and_dt_is_ignored_after_oem() -> None:
    pump = SimCavro()
    pump.advance_to(0.0)
    frame = bytearray(oem(0x31, 0x31, b"Q"))
    frame[-1] ^= 0xFF
    pump.receive(bytes(frame))
    assert pump.take_output() == b""
    pump.receive(b"/1Q\r")
    assert pump.take_output() == READY  # not latched by a bad frame
    pump.receive(oem(0x31, 0x31, b"Q"))
    assert pump.take_output() == bytes.fromhex("02 30 60 03 51")
    pump.receive(b"/1Q\r")
    assert pump.take_output() == b""  # §3.1: DT ignored once OEM was seen
    pump.power_on_reset()
    pump.receive(b"/1Q\r")
    assert pump.take_output() == READY


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        SimCavro(address="0")
    with pytest.raises(ValueError):
        SimCavro(model="XP9000")
    with pytest.raises(ValueError):
        SimCavro(n_ports=6, chip_port=7)
    with pytest.raises(ValueError):
        SimCavro(syringe_volume_ul=0.0)


@given(st.lists(st.binary(max_size=40), max_size=8), st.floats(0, 100))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_crash_the_emulator(chunks: list[bytes], t_s: float) -> None:
    pump = SimCavro(n_ports=4, chip_port=2)
    pump.advance_to(0.0)
    pump.receive(b"/1ZR\r")
    for chunk in chunks:
        pump.receive(chunk)
        pump.receive(b"/1" + chunk.replace(b"\r", b"") + b"R\r")
        pump.advance_to(t_s)
    pump.take_output()
    assert 0 <= pump.plunger_increments <= pump.max_increments


def test_terminate_is_accepted_with_or_without_the_execute_suffix():
    from simulator.devices.cavro import SimCavro

    for command in (b"/1TR\r", b"/1T\r"):
        emulator = SimCavro()
        emulator.advance_to(0.0)
        emulator.receive(command)
        reply = emulator.take_output()
        assert reply.startswith(b"/0") and reply[2] & 0x0F == 0, (command, reply)
