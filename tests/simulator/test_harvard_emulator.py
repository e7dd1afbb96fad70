"""Byte-level tests of the Harvard / KDS pump-chain emulator (hardware-reference §1).

Every exchange checks the exact bytes: reply lines are ``\\n[NN:]text\\r`` and the reply
ends with ``\\n[NN]prompt`` (§1.4).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.devices.harvard import (
    MAX_LINEAR_SPEED_MM_MIN,
    MIN_LINEAR_SPEED_MM_MIN,
    SimHarvardPump,
)
from simulator.faults import CommFaults
from simulator.world import World


def make_pump(**kwargs: object) -> SimHarvardPump:
    pump = SimHarvardPump(**kwargs)  # type: ignore[arg-type]
    pump.advance_to(0.0)
    return pump


def exchange(pump: SimHarvardPump, command: bytes) -> bytes:
    pump.receive(command)
    return pump.take_output()


def reply(*lines: str, prompt: str = ":") -> bytes:
    return "".join(f"\n{line}\r" for line in lines).encode() + f"\n{prompt}".encode()


@pytest.fixture
def pump() -> SimHarvardPump:
    return make_pump()


# ------------------------------------------------------------------------ framing


def test_bare_cr_answers_only_the_prompt(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"\r") == b"\n:"


def test_crlf_terminator_gives_one_reply(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"ver\r\n") == reply("PHD ULTRA I/W 3.0.4")
    assert exchange(pump, b"ver\r\nver\r\n") == reply("PHD ULTRA I/W 3.0.4") * 2


def test_bytes_may_arrive_in_pieces(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"ve") == b""
    assert exchange(pump, b"r") == b""
    assert exchange(pump, b"\r") == reply("PHD ULTRA I/W 3.0.4")


def test_overlong_line_is_discarded_as_noise(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"x" * 300 + b"ver\rver\r") == reply("PHD ULTRA I/W 3.0.4")


PROMPT_ENDINGS = (b"\n:", b"\n>", b"\n<", b"\n*", b"\nT*")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\r", b"irun", b"irate ", b"@1:"])))
def test_random_input_never_crashes(chunks: list[bytes]) -> None:
    pump = make_pump()
    for chunk in chunks:
        pump.receive(chunk)
        pump.advance_to(pump.infused_ul + 1.0)
    out = pump.take_output()
    out.decode("ascii")  # replies are plain ASCII
    if out:
        assert out.endswith(PROMPT_ENDINGS)


# ----------------------------------------------------------------------- addressing


@pytest.mark.parametrize("command", [b"ver\r", b"0ver\r", b"0:ver\r", b"00ver\r", b"@ver\r"])
def test_address_zero_forms(pump: SimHarvardPump, command: bytes) -> None:
    assert exchange(pump, command) == reply("PHD ULTRA I/W 3.0.4")


@pytest.mark.parametrize("command", [b"12ver\r", b"12:ver\r", b"@12ver\r", b"12:@ver\r", b"ver\r"])
def test_nonzero_address_prefixes_lines_and_prompt(command: bytes) -> None:
    pump = make_pump(model="legato", address=12)
    assert exchange(pump, command) == b"\n12:LEGATO 100 I/W 3.0.4\r\n12:"


def test_other_address_is_ignored() -> None:
    pump = make_pump(address=3)
    assert exchange(pump, b"4irun\r") == b""
    assert not pump.running
    assert exchange(pump, b"3irun\r") == b"\n03>"
    assert pump.running


def test_address_command_changes_the_address(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"address\r") == reply("0")
    assert exchange(pump, b"address 7\r") == b"\n07:"
    assert exchange(pump, b"7addr\r") == b"\n07:7\r\n07:"
    assert exchange(pump, b"0ver\r") == b""
    assert exchange(pump, b"address 100\r") == b"\n07:Argument error: 100\r" + (
        b"\n07:   Out of range: 0 to 99\r\n07:"
    )


# -------------------------------------------------------------- command names


@pytest.mark.parametrize("command", [b"IRATE\r", b"irat\r", b"IrAtE\r", b"irate\r"])
def test_abbreviations_and_case(pump: SimHarvardPump, command: bytes) -> None:
    assert exchange(pump, command) == reply("1 ml/min")


def test_unknown_command(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"frobnicate\r") == reply(
        "Command error: frobnicate", "   Unknown command"
    )
    # Fewer than 4 letters is not an abbreviation.
    assert exchange(pump, b"ira\r") == reply("Command error: ira", "   Unknown command")


def test_version_per_model() -> None:
    assert exchange(make_pump(model="elite"), b"ver\r") == reply("11 ELITE I/W Single 3.0.4")
    assert exchange(make_pump(model="elite"), b"version\r") == reply("11 ELITE I/W Single 3.0.4")
    with pytest.raises(ValueError, match="unknown Harvard model"):
        SimHarvardPump(model="pump22")


# ------------------------------------------------------------------- syringe, rates


def test_diameter_set_query_and_range(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"diameter 4.78\r") == reply()
    assert exchange(pump, b"diam\r") == reply("4.7800 mm")
    assert exchange(pump, b"diameter 60\r") == reply(
        "Argument error: 60", "   Out of range: 0.1000 mm to 50.0000 mm"
    )
    assert exchange(pump, b"diameter abc\r") == reply("Argument error: abc", "   Invalid argument")
    elite = make_pump(model="elite")
    assert exchange(elite, b"diameter 40\r") == reply(
        "Argument error: 40", "   Out of range: 0.1000 mm to 33.0000 mm"
    )


def test_svolume(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"svolume\r") == reply("10 ml")
    assert exchange(pump, b"svolume 500 ul\r") == reply()
    assert exchange(pump, b"svol\r") == reply("500 ul")
    assert pump.contents_ul == 500.0  # the liquid cannot exceed the new syringe
    assert exchange(pump, b"svolume 5 gallons\r") == reply(
        "Argument error: gallons", "   Invalid argument"
    )


@pytest.mark.parametrize(
    ("sent", "shown", "ul_min"),
    [
        ("3.2 u/m", "3.2 ul/min", 3.2),
        ("0.5 m/m", "0.5 ml/min", 500.0),
        ("12 ul/min", "12 ul/min", 12.0),
        ("6 ml/hr", "6 ml/hr", 100.0),
        ("6 m/h", "6 ml/hr", 100.0),
        ("250 nl/min", "250 nl/min", 0.25),
        ("2 ul/s", "2 ul/s", 120.0),
        ("3 UL/MIN", "3 ul/min", 3.0),
    ],
)
def test_rate_units(pump: SimHarvardPump, sent: str, shown: str, ul_min: float) -> None:
    assert exchange(pump, f"irate {sent}\r".encode()) == reply()
    assert exchange(pump, b"irate\r") == reply(shown)
    assert pump.rate_ul_min == pytest.approx(ul_min)


def test_withdraw_rate_is_separate(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"wrate 7 u/m\r") == reply()
    assert exchange(pump, b"wrat\r") == reply("7 ul/min")
    assert exchange(pump, b"irat\r") == reply("1 ml/min")


def test_rate_limits_follow_the_diameter(pump: SimHarvardPump) -> None:
    # A BD 1 mL syringe reproduces the manual's example "1.2 nl/min to 3.5 ml/min".
    exchange(pump, b"diameter 4.78\r")
    assert exchange(pump, b"irate lim\r") == reply("1.202 nl/min to 3.499 ml/min")
    area_mm2 = math.pi / 4 * 4.78**2
    assert pump.rate_limits_ul_min() == pytest.approx(
        (area_mm2 * MIN_LINEAR_SPEED_MM_MIN, area_mm2 * MAX_LINEAR_SPEED_MM_MIN)
    )
    exchange(pump, b"diameter 9.54\r")
    assert exchange(pump, b"wrate lim\r") == reply("4.789 nl/min to 13.94 ml/min")


def test_rate_out_of_range_and_bad_units(pump: SimHarvardPump) -> None:
    exchange(pump, b"diameter 4.78\r")
    assert exchange(pump, b"irate 10 ml/min\r") == reply(
        "Argument error: 10", "   Out of range: 1.202 nl/min to 3.499 ml/min"
    )
    assert exchange(pump, b"irate 1 furlong/min\r") == reply(
        "Argument error: furlong/min", "   Invalid argument"
    )
    assert exchange(pump, b"irate 5\r") == reply("Argument error: 5", "   Invalid argument")
    assert exchange(pump, b"irate 1 ul/min extra\r") == reply(
        "Argument error: 1 ul/min extra", "   Invalid argument"
    )
    assert exchange(pump, b"irat\r") == reply("1 ml/min")  # unchanged


def test_rate_max_and_min(pump: SimHarvardPump) -> None:
    exchange(pump, b"diameter 4.78\r")
    low_ul_min, high_ul_min = pump.rate_limits_ul_min()
    assert exchange(pump, b"irate max\r") == reply()
    assert pump.rate_ul_min == pytest.approx(high_ul_min)
    assert exchange(pump, b"irate\r") == reply("3499 ul/min")
    assert exchange(pump, b"irate min\r") == reply()
    assert pump.rate_ul_min == pytest.approx(low_ul_min)
    # The 4-digit display of the limit can be sent back (and is clamped to the limit).
    assert exchange(pump, b"irate 3.5 ml/min\r") == reply()
    assert pump.rate_ul_min == pytest.approx(high_ul_min)


def test_force(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"force\r") == reply("100%")
    assert exchange(pump, b"force 30\r") == reply()
    assert exchange(pump, b"forc\r") == reply("30%")
    assert exchange(pump, b"force 0\r") == reply("Argument error: 0", "   Out of range: 1 to 100")
    assert exchange(pump, b"force 2.5\r") == reply("Argument error: 2.5", "   Invalid argument")


def test_nvram_and_echo(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"nvram\r") == reply("NVRAM on")
    assert exchange(pump, b"nvram none\r") == reply()
    assert exchange(pump, b"nvram\r") == reply("NVRAM none")
    assert exchange(pump, b"nvram maybe\r") == reply("Argument error: maybe", "   Invalid argument")
    assert exchange(pump, b"echo\r") == reply("Echo off")
    assert exchange(pump, b"echo on\r") == reply()
    assert exchange(pump, b"ver\r") == b"ver\r" + reply("PHD ULTRA I/W 3.0.4")
    assert exchange(pump, b"echo off\r") == b"echo off\r" + reply()
    assert exchange(pump, b"ver\r") == reply("PHD ULTRA I/W 3.0.4")


# ----------------------------------------------------------------- volumes, targets


def test_target_volume(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"tvolume\r") == reply("Target volume not set")
    assert exchange(pump, b"tvolume 2.5 ml\r") == reply()
    assert exchange(pump, b"tvol\r") == reply("2.5 ml")
    assert exchange(pump, b"tvolume -1 ml\r") == reply(
        "Argument error: -1", "   Out of range: 0 to syringe volume"
    )
    assert exchange(pump, b"ctvolume\r") == reply()
    assert exchange(pump, b"tvolume\r") == reply("Target volume not set")


def test_counters_and_clearing(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"wrate 30 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(2.0)
    exchange(pump, b"wrun\r")
    pump.advance_to(4.0)
    exchange(pump, b"stop\r")
    assert exchange(pump, b"ivolume\r") == reply("2 ul")
    assert exchange(pump, b"wvolume\r") == reply("1 ul")
    assert exchange(pump, b"itime\r") == reply("2 s")
    assert exchange(pump, b"wtime\r") == reply("2 s")
    assert exchange(pump, b"civolume\r") == reply()
    assert (pump.infused_ul, pump.withdrawn_ul) == (0.0, 1.0)
    exchange(pump, b"irun\r")
    pump.advance_to(5.0)
    exchange(pump, b"stp\r")
    assert exchange(pump, b"cwvolume\r") == reply()
    assert (pump.infused_ul, pump.withdrawn_ul) == (1.0, 0.0)
    exchange(pump, b"wrun\r")
    pump.advance_to(6.0)
    exchange(pump, b"stop\r")
    assert exchange(pump, b"cvolume\r") == reply()
    assert (pump.infused_ul, pump.withdrawn_ul) == (0.0, 0.0)
    assert exchange(pump, b"citime\r") == reply()
    assert exchange(pump, b"itime\r") == reply("0 s")
    assert exchange(pump, b"wtime\r") == reply("3 s")
    assert exchange(pump, b"ctime\r") == reply()
    assert exchange(pump, b"wtime\r") == reply("0 s")
    assert exchange(pump, b"ivolume 3 ul\r") == reply("Argument error: 3", "   Invalid argument")
    assert exchange(pump, b"cvolume now\r") == reply("Argument error: now", "   Invalid argument")


def test_volume_display_units(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 1.5 m/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(120.0)
    assert exchange(pump, b"ivol\r") == reply("3 ml", prompt=">")
    exchange(pump, b"stop\r")
    exchange(pump, b"cvolume\r")
    exchange(pump, b"irate 30 nl/min\r")
    exchange(pump, b"irun\r")
    pump.advance_to(121.0)
    assert exchange(pump, b"ivol\r") == reply("500 pl", prompt=">")


# ----------------------------------------------------------------- prompts, status


def test_prompts_in_each_state(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"irun\r") == b"\n>"
    assert exchange(pump, b"\r") == b"\n>"
    assert exchange(pump, b"wrun\r") == b"\n<"
    assert exchange(pump, b"rrun\r") == b"\n>"
    assert exchange(pump, b"rrun\r") == b"\n<"
    assert exchange(pump, b"stop\r") == b"\n:"
    assert exchange(pump, b"run\r") == b"\n<"  # run keeps the last direction
    pump.inject_stall()
    assert exchange(pump, b"\r") == b"\n*"
    pump.clear_stall()
    assert exchange(pump, b"\r") == b"\n:"
    exchange(pump, b"tvolume 1 ul\r")
    exchange(pump, b"irun\r")
    pump.advance_to(1.0)
    assert exchange(pump, b"\r") == b"\nT*"


def test_status_phd_ultra_has_five_flags(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"status\r") == reply("0 0 0 i...I")
    exchange(pump, b"irate 6 u/s\r")  # 6 uL/s = 6e9 fL/s
    exchange(pump, b"wrate 6 u/s\r")
    exchange(pump, b"irun\r")
    pump.advance_to(2.5)
    # PHD ULTRA counts time in seconds (manual p.88).
    assert exchange(pump, b"status\r") == reply("6000000000 2 15000000000 I...I", prompt=">")
    exchange(pump, b"wrun\r")
    assert exchange(pump, b"stat\r") == reply("6000000000 0 0 W...W", prompt="<")
    exchange(pump, b"stop\r")
    pump.inject_stall()
    assert exchange(pump, b"status\r") == reply("0 0 0 w.S.W", prompt="*")


@pytest.mark.parametrize("model", ["elite", "legato"])
def test_status_elite_legato_have_six_flags(model: str) -> None:
    pump = make_pump(model=model)
    assert exchange(pump, b"status\r") == reply("0 0 0 i...I.")
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"tvolume 2 ul\r")
    exchange(pump, b"irun\r")
    pump.advance_to(1.25)
    # Time in ms on Legato/Elite.
    assert exchange(pump, b"status\r") == reply("1000000000 1250 1250000000 I...I.", prompt=">")
    pump.advance_to(10.0)
    assert exchange(pump, b"status\r") == reply("0 2000 2000000000 i...IT", prompt="T*")


def test_status_limit_flag_on_legato() -> None:
    pump = make_pump(model="legato")
    exchange(pump, b"svolume 10 ul\r")
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(20.0)
    assert exchange(pump, b"status\r") == reply("0 10000 10000000000 ii..I.")


def test_status_takes_no_arguments(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"status 1\r") == reply("Argument error: 1", "   Invalid argument")


def test_crate(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"crate\r") == reply("0 ul/min")
    exchange(pump, b"wrate 4 m/h\r")
    exchange(pump, b"wrun\r")
    assert exchange(pump, b"crate\r") == reply("4 ml/hr", prompt="<")


# ------------------------------------------------------------------------- kinetics


def test_two_ul_min_for_a_day_is_exactly_2880_ul(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 2 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(24 * 3600.0)
    assert pump.infused_ul == 2880.0
    assert pump.contents_ul == 10_000.0 - 2880.0
    assert exchange(pump, b"ivolume\r") == reply("2.88 ml", prompt=">")


def test_stops_exactly_at_target_volume(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 7 u/m\r")
    exchange(pump, b"tvolume 100 ul\r")
    assert exchange(pump, b"irun\r") == b"\n>"
    for t_s in range(1, 2000):  # many uneven steps accumulate rounding error
        pump.advance_to(t_s * 0.731)
    assert pump.infused_ul == 100.0
    assert not pump.running
    assert pump.target_reached
    assert exchange(pump, b"\r") == b"\nT*"
    assert exchange(pump, b"itime\r") == reply(f"{100 / 7 * 60:.4g} s", prompt="T*")
    # Running again with the target already reached stops at once.
    assert exchange(pump, b"irun\r") == b"\nT*"
    # A new target clears T*, and the run goes on to it.
    assert exchange(pump, b"tvolume 200 ul\r") == b"\n:"
    assert exchange(pump, b"irun\r") == b"\n>"


def test_stops_at_target_in_the_withdraw_direction(pump: SimHarvardPump) -> None:
    pump.load_syringe(0.0)
    exchange(pump, b"wrate 1 m/m\r")
    exchange(pump, b"tvolume 0.25 ml\r")
    exchange(pump, b"wrun\r")
    pump.advance_to(60.0)
    assert pump.withdrawn_ul == 250.0
    assert pump.contents_ul == 250.0
    assert exchange(pump, b"wvol\r") == reply("250 ul", prompt="T*")


def test_stops_at_target_time(pump: SimHarvardPump) -> None:
    assert exchange(pump, b"ttime\r") == reply("Target time not set")
    exchange(pump, b"irate 60 u/m\r")
    assert exchange(pump, b"ttime 1.5 min\r") == reply()
    assert exchange(pump, b"ttim\r") == reply("90 s")
    exchange(pump, b"irun\r")
    pump.advance_to(1000.0)
    assert pump.infused_ul == 90.0
    assert exchange(pump, b"\r") == b"\nT*"
    assert exchange(pump, b"cttime\r") == reply()
    assert exchange(pump, b"ttime 1 fortnight\r") == reply(
        "Argument error: fortnight", "   Invalid argument"
    )


def test_rate_change_while_running(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(10.0)
    exchange(pump, b"irate 120 u/m\r")
    pump.advance_to(20.0)
    assert pump.infused_ul == pytest.approx(30.0)


def test_stop_halts_motion(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(10.0)
    exchange(pump, b"stop\r")
    pump.advance_to(100.0)
    assert pump.infused_ul == 10.0
    assert pump.last_step_displaced_ul == 0.0


def test_time_going_backwards_does_nothing(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(10.0)
    pump.advance_to(5.0)
    assert pump.infused_ul == 10.0


def test_displaced_volume_is_signed_per_step(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"wrate 30 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(2.0)
    assert pump.last_step_displaced_ul == 2.0
    exchange(pump, b"wrun\r")
    pump.advance_to(4.0)
    assert pump.last_step_displaced_ul == -1.0


# ------------------------------------------------------------------ end of travel


def test_infusing_an_empty_syringe_stops_at_the_end(pump: SimHarvardPump) -> None:
    exchange(pump, b"svolume 50 ul\r")
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(100.0)
    assert pump.infused_ul == 50.0
    assert pump.contents_ul == 0.0
    assert not pump.running
    assert pump.alarm == "infuse end of travel"
    assert exchange(pump, b"\r") == b"\n:"
    assert exchange(pump, b"itime\r") == reply("50 s")
    # PHD ULTRA's limit flag is always "." (manual p.88).
    assert exchange(pump, b"status\r") == reply("0 50 50000000000 i...I")
    # It cannot infuse further, but it can withdraw.
    assert exchange(pump, b"irun\r") == b"\n:"
    assert exchange(pump, b"wrun\r") == b"\n<"
    assert pump.alarm is None


def test_withdrawing_into_a_full_syringe_stops(pump: SimHarvardPump) -> None:
    exchange(pump, b"svolume 100 ul\r")
    pump.load_syringe(90.0)
    exchange(pump, b"wrate 60 u/m\r")
    exchange(pump, b"wrun\r")
    pump.advance_to(60.0)
    assert pump.withdrawn_ul == 10.0
    assert pump.contents_ul == 100.0
    assert not pump.running
    assert pump.alarm == "withdraw end of travel"


def test_syringe_empty_fault_stops_an_infusion() -> None:
    pump = make_pump(model="elite")
    exchange(pump, b"irun\r")
    pump.advance_to(1.0)
    pump.syringe_empty()
    pump.advance_to(2.0)
    assert not pump.running
    assert exchange(pump, b"status\r") == reply("0 1000 16666666667 ii..I.")


# --------------------------------------------------------------------------- stall


def test_stall_by_force_limit() -> None:
    pump = make_pump(max_force_n=100.0)
    exchange(pump, b"diameter 10\r")  # 78.54 mm^2
    exchange(pump, b"force 50\r")  # limit 50 N = 636.6 kPa on this plunger
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.back_pressure_kpa = 600.0
    pump.advance_to(1.0)
    assert pump.running
    assert pump.infused_ul == pytest.approx(1.0)
    pump.back_pressure_kpa = 650.0
    pump.advance_to(2.0)
    assert pump.stalled
    assert not pump.running
    assert pump.last_step_displaced_ul == 0.0
    assert pump.infused_ul == pytest.approx(1.0)
    assert exchange(pump, b"\r") == b"\n*"
    assert exchange(pump, b"status\r") == reply("0 1 1000000000 i.S.I", prompt="*")
    # Run commands do nothing until the stall is cleared.
    assert exchange(pump, b"irun\r") == b"\n*"
    pump.clear_stall()
    pump.back_pressure_kpa = 0.0
    assert exchange(pump, b"irun\r") == b"\n>"


def test_back_pressure_does_not_stall_a_withdrawal() -> None:
    pump = make_pump(max_force_n=100.0)
    pump.load_syringe(0.0)
    exchange(pump, b"wrun\r")
    pump.back_pressure_kpa = 10_000.0  # pushes the plunger the way it is moving
    pump.advance_to(1.0)
    assert pump.running
    pump.back_pressure_kpa = -10_000.0
    pump.advance_to(2.0)
    assert pump.stalled


def test_inject_stall_stops_motion(pump: SimHarvardPump) -> None:
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(1.0)
    pump.inject_stall()
    pump.advance_to(5.0)
    assert pump.infused_ul == 1.0
    assert exchange(pump, b"stop\r") == b"\n*"  # stop does not clear a stall


# ---------------------------------------------------------------------- world mode


def test_pump_in_a_world_is_stepped_by_it() -> None:
    world = World(max_step_s=0.5)
    pump = SimHarvardPump(world, model="legato")
    steps: list[float] = []

    class Hydraulics:
        def step(self, t0_s: float, t1_s: float) -> None:
            steps.append(pump.last_step_displaced_ul)

    world.add(Hydraulics())
    pump.advance_to(100.0)
    assert world.t_s == 100.0
    exchange(pump, b"irate 60 u/m\r")
    exchange(pump, b"irun\r")
    pump.advance_to(102.0)
    assert steps == [0.5, 0.5, 0.5, 0.5]
    assert pump.infused_ul == 2.0


# ------------------------------------------------------------------- comm faults


def test_no_reply_swallows_the_command() -> None:
    faults = CommFaults(no_reply=True)
    pump = make_pump(faults=faults)
    assert exchange(pump, b"irun\r") == b""
    assert not pump.running
    faults.clear()
    assert exchange(pump, b"irun\r") == b"\n>"


def test_garble_corrupts_one_byte() -> None:
    pump = make_pump(faults=CommFaults(garble=True, seed=1))
    clean = reply("PHD ULTRA I/W 3.0.4")
    garbled = exchange(pump, b"ver\r")
    assert len(garbled) == len(clean)
    assert sum(a != b for a, b in zip(garbled, clean)) == 1


def test_partial_cuts_the_reply() -> None:
    pump = make_pump(faults=CommFaults(partial=True))
    clean = reply("PHD ULTRA I/W 3.0.4")
    assert exchange(pump, b"ver\r") == clean[: len(clean) // 2]


def test_disconnected_raises_and_loses_input() -> None:
    faults = CommFaults()
    pump = make_pump(faults=faults)
    pump.receive(b"ver\r")
    faults.disconnected = True
    with pytest.raises(ConnectionError):
        pump.take_output()
    with pytest.raises(ConnectionError):
        pump.receive(b"irun\r")
    faults.clear()
    assert not pump.running
    assert pump.take_output() == reply("PHD ULTRA I/W 3.0.4")


# ------------------------------------------------------------------ power-on reset


def test_power_on_reset_loses_settings_and_counters() -> None:
    pump = make_pump(model="elite", address=4)
    exchange(pump, b"diameter 4.78\r")
    exchange(pump, b"irate 5 u/m\r")
    exchange(pump, b"tvolume 1 ml\r")
    exchange(pump, b"force 40\r")
    exchange(pump, b"irun\r")
    pump.advance_to(60.0)
    pump.receive(b"ver")  # half a line, lost in the reset
    pump.power_on_reset()
    assert (pump.running, pump.infused_ul, pump.stalled) == (False, 0.0, False)
    assert pump.contents_ul == pytest.approx(10_000.0 - 5.0)  # the plunger did not move
    assert exchange(pump, b"\r") == b"\n04:"  # the address survives
    assert exchange(pump, b"diameter\r") == b"\n04:14.4300 mm\r\n04:"
    assert exchange(pump, b"irate\r") == b"\n04:1 ml/min\r\n04:"
    assert exchange(pump, b"tvolume\r") == b"\n04:Target volume not set\r\n04:"
    assert exchange(pump, b"force\r") == b"\n04:100%\r\n04:"
    assert exchange(pump, b"status\r") == b"\n04:0 0 0 i...I.\r\n04:"
