"""IDEX MX Series II emulator: exact bytes per command (hardware-reference §5.1), busy, faults."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from simulator.devices import idex
from simulator.devices.idex import SimIdexValve
from simulator.faults import CommFaults
from simulator.world import World


def exchange(valve: SimIdexValve, data: bytes) -> bytes:
    valve.receive(data)
    return valve.take_output()


@pytest.fixture
def valve() -> SimIdexValve:
    v = SimIdexValve(switch_time_s=0.25)
    v.advance_to(0.0)
    return v


# -- command families -----------------------------------------------------------------


def test_status_reports_position_as_two_hex_digits(valve: SimIdexValve) -> None:
    assert exchange(valve, b"S\r") == b"01\r"


def test_move_replies_bare_cr_then_is_busy_until_switch_time(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P05\r") == b"\r"
    assert valve.is_switching and valve.target_position == 5
    assert valve.position == 1  # the outlet has not reached port 5 yet
    valve.advance_to(0.2)
    # §5.1: while moving, every byte is answered with '*' and the command is lost.
    assert exchange(valve, b"S\r") == b"**"
    valve.advance_to(0.25)
    assert not valve.is_switching
    assert valve.position == 5
    assert exchange(valve, b"S\r") == b"05\r"


def test_positions_above_nine_are_hex(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P0A\r") == b"\r"
    valve.advance_to(1.0)
    assert exchange(valve, b"S\r") == b"0A\r"
    assert valve.position == 10


def test_lower_case_hex_digits_are_accepted(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P0a\r") == b"\r"


@pytest.mark.parametrize("command", [b"P00\r", b"P0B\r", b"P0C\r", b"P5\r", b"P005\r", b"PXZ\r"])
def test_invalid_positions_are_ignored_without_reply(valve: SimIdexValve, command: bytes) -> None:
    assert exchange(valve, command) == b""
    assert not valve.is_switching
    assert exchange(valve, b"S\r") == b"01\r"


@pytest.mark.parametrize("command", [b"Z\r", b"+03\r", b"-03\r", b"S1\r", b"s\r", b"\xff\r", b"\r"])
def test_unknown_commands_are_ignored_without_reply(valve: SimIdexValve, command: bytes) -> None:
    assert exchange(valve, command) == b""


def test_move_to_current_position_replies_and_does_not_turn(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P01\r") == b"\r"
    assert not valve.is_switching


def test_command_split_across_writes_and_crlf(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P0") == b""
    # The LF of a CR LF host arrives after the switch began, so it is answered with '*'.
    assert exchange(valve, b"3\r\n") == b"\r*"
    valve.advance_to(0.25)
    assert exchange(valve, b"S\r\n") == b"03\r"


def test_bytes_after_a_move_in_the_same_write_get_busy_replies(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P02\rS\r") == b"\r**"


def test_command_mode_read_and_set_applies_after_power_on(valve: SimIdexValve) -> None:
    assert exchange(valve, b"D\r") == b"02\r"
    assert exchange(valve, b"F03\r") == b"\r"
    assert exchange(valve, b"D\r") == b"02\r"
    assert exchange(valve, b"F06\r") == b""  # no such mode
    valve.power_on_reset()
    valve.advance_to(1.0)
    assert exchange(valve, b"D\r") == b"03\r"


def test_profile_applies_after_power_on(valve: SimIdexValve) -> None:
    assert exchange(valve, b"O06\r") == b"\r"
    assert exchange(valve, b"O05\r") == b""  # not a valve profile
    assert exchange(valve, b"P08\r") == b"\r"  # still 10 positions until reset
    valve.advance_to(1.0)
    valve.power_on_reset()
    valve.advance_to(2.0)
    assert valve.n_positions == 6
    assert exchange(valve, b"P08\r") == b""


# -- errors and faults --------------------------------------------------------------------


def test_jam_keeps_busy_then_reports_positioning_error(valve: SimIdexValve) -> None:
    valve.jam()
    assert exchange(valve, b"P04\r") == b"\r"
    valve.advance_to(idex.DEFAULT_JAM_TIMEOUT_S - 0.01)
    assert exchange(valve, b"S\r") == b"**"
    valve.advance_to(idex.DEFAULT_JAM_TIMEOUT_S)
    assert exchange(valve, b"S\r") == b"66\r"
    assert valve.position == 1 and valve.error_code == idex.ERROR_POSITIONING
    valve.clear_jam()
    assert exchange(valve, b"S\r") == b"66\r"  # sticky until a move completes
    assert exchange(valve, b"P04\r") == b"\r"
    valve.advance_to(idex.DEFAULT_JAM_TIMEOUT_S + 0.25)
    assert exchange(valve, b"S\r") == b"04\r"


def test_jam_during_a_move_fails_that_move(valve: SimIdexValve) -> None:
    assert exchange(valve, b"P07\r") == b"\r"
    valve.advance_to(0.1)
    valve.jam()
    valve.advance_to(0.3)
    assert valve.is_switching
    valve.advance_to(idex.DEFAULT_JAM_TIMEOUT_S)
    assert exchange(valve, b"S\r") == b"66\r"
    assert valve.position == 1


def test_power_on_reset_homes_to_position_one(valve: SimIdexValve) -> None:
    exchange(valve, b"P06\r")
    valve.advance_to(0.25)
    exchange(valve, b"P0")  # half a command in the buffer is lost at reset
    valve.power_on_reset()
    assert valve.is_switching
    assert exchange(valve, b"S\r") == b"**"
    valve.advance_to(0.5)
    assert exchange(valve, b"S\r") == b"01\r"


def test_power_on_reset_of_a_jammed_valve_reports_valve_failure(valve: SimIdexValve) -> None:
    valve.jam()
    valve.power_on_reset()
    valve.advance_to(idex.DEFAULT_JAM_TIMEOUT_S)
    assert exchange(valve, b"S\r") == b"99\r"


@pytest.mark.parametrize("code", sorted(idex.ERROR_CODES))
def test_injected_error_codes_are_reported_by_status(valve: SimIdexValve, code: int) -> None:
    valve.inject_error(code)
    assert exchange(valve, b"S\r") == f"{code}\r".encode()


def test_inject_unknown_error_is_refused(valve: SimIdexValve) -> None:
    with pytest.raises(ValueError):
        valve.inject_error(12)


def test_no_reply_fault_swallows_commands() -> None:
    faults = CommFaults()
    valve = SimIdexValve(faults=faults)
    faults.no_reply = True
    assert exchange(valve, b"P03\r") == b""
    assert not valve.is_switching
    faults.clear()
    assert exchange(valve, b"S\r") == b"01\r"


def test_garble_and_partial_faults_change_replies() -> None:
    faults = CommFaults(garble=True, seed=3)
    valve = SimIdexValve(faults=faults)
    garbled = exchange(valve, b"S\r")
    assert len(garbled) == 3 and garbled != b"01\r"
    faults.clear()
    faults.partial = True
    assert exchange(valve, b"S\r") == b"0"


def test_disconnected_port_raises_connection_error() -> None:
    faults = CommFaults()
    valve = SimIdexValve(faults=faults)
    faults.disconnected = True
    with pytest.raises(ConnectionError):
        valve.receive(b"S\r")
    with pytest.raises(ConnectionError):
        valve.take_output()
    faults.disconnected = False
    assert exchange(valve, b"S\r") == b"01\r"


# -- world and construction ---------------------------------------------------------------


def test_world_timeline_completes_a_switch_whoever_advances_it() -> None:
    world = World()
    valve = SimIdexValve(world, switch_time_s=0.3)
    valve.advance_to(10.0)
    assert exchange(valve, b"P02\r") == b"\r"
    world.advance_to(10.29)
    assert valve.is_switching
    world.advance_to(10.31)  # another device moved the world on
    assert not valve.is_switching and valve.position == 2


@pytest.mark.parametrize(
    "kwargs", [{"n_positions": 5}, {"switch_time_s": 0.0}, {"jam_timeout_s": float("nan")}]
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimIdexValve(**kwargs)  # type: ignore[arg-type]


def test_link_parameters() -> None:
    assert (SimIdexValve.baudrate, SimIdexValve.bytesize, SimIdexValve.parity) == (19200, 8, "N")
    assert SimIdexValve.stopbits == 1


def test_emulator_imports_neither_drivers_nor_chipctl() -> None:
    tree = ast.parse(Path(idex.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"drivers", "chipctl"}


def test_serves_the_in_process_transport_on_a_virtual_clock() -> None:
    # The structural seam (drivers.transport.EmulatedDevice); the test may import drivers,
    # the emulator may not.
    from drivers.clock import VirtualClock
    from drivers.transport import EmulatedDevice, EmulatorTransport, read_until

    clock = VirtualClock(start_s=100.0)
    valve = SimIdexValve(World(), switch_time_s=0.3)
    assert isinstance(valve, EmulatedDevice)
    link = EmulatorTransport(valve, clock, name="valve")
    link.open()
    link.write(b"P04\r")
    assert read_until(link, b"\r", timeout_s=0.1) == b"\r"
    link.write(b"S\r")
    assert link.read_some(0.1) == b"**"
    clock.advance_s(0.3)
    link.write(b"S\r")
    assert read_until(link, b"\r", timeout_s=0.1) == b"04\r"
