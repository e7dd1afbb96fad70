"""Cavro codec: manual examples (hardware-reference §3), status table, conversions, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cavro import codec
from drivers.errors import ReplyError

# -- framing: examples from the manual (§3.3, §3.4) -----------------------------------


def test_dt_initialise_example_from_manual() -> None:
    # §3.3: "/1ZR<CR>" initialises the pump at address switch 0.
    assert codec.build_dt_command("1", "Z") == b"/1ZR\r"


def test_dt_report_commands_run_without_r() -> None:
    assert codec.build_dt_command("1", "?6", execute=False) == b"/1?6\r"
    assert codec.build_dt_command("1", "Q", execute=False) == b"/1Q\r"


def test_dt_stacked_string_example() -> None:
    # §3.6: commands are stacked into one string that runs on R.
    assert codec.build_dt_command("1", "IA3000OA0") == b"/1IA3000OA0R\r"


@pytest.mark.parametrize(("switch", "address"), [(0, "1"), (8, "9"), (14, "?")])
def test_address_switch_maps_to_0x31_plus_n(switch: int, address: str) -> None:
    assert codec.address_for_switch(switch) == address


@pytest.mark.parametrize("switch", [-1, 15])
def test_address_switch_out_of_range(switch: int) -> None:
    with pytest.raises(ValueError):
        codec.address_for_switch(switch)


@pytest.mark.parametrize("address", ["0", "@", "P", "^", "12", ""])
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        codec.build_dt_command(address, "Q", execute=False)


def test_group_and_broadcast_addresses_frame() -> None:
    assert codec.build_dt_command("_", "Z") == b"/_ZR\r"
    assert codec.build_dt_command("A", "Z") == b"/AZR\r"


@pytest.mark.parametrize("commands", ["", "A1\r", "A/1", "Aé"])
def test_bad_command_strings_are_refused(commands: str) -> None:
    with pytest.raises(ValueError):
        codec.build_dt_command("1", commands)


def test_parse_dt_reply_ready_with_data() -> None:
    reply = codec.parse_dt_reply(b"/0`3000\x03\r\n")
    assert reply.ready and reply.error == 0 and reply.data == "3000"


def test_parse_dt_reply_busy_without_data() -> None:
    reply = codec.parse_dt_reply(b"/0@\x03\r\n")
    assert not reply.ready and reply.error == 0 and reply.data == ""


def test_parse_dt_reply_skips_leading_line_noise() -> None:
    reply = codec.parse_dt_reply(b"\xff/0c\x03\r\n")
    assert reply.ready and reply.error == codec.CavroErrorCode.INVALID_OPERAND


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"/0`3000\r\n",  # no ETX
        b"/0`3000\x03\r",  # no LF
        b"/0`3000\x03\r\nX",  # trailing byte
        b"/0\x003000\x03\r\n",  # not a status byte
        b"/0\xe03000\x03\r\n",  # bits 7-6 are 11
        b"/0p3000\x03\r\n",  # bit 4 set
        b"/0`30\x0100\x03\r\n",  # control byte in data
        b"/0\x03\r\n",  # no status byte
        b"/1`\x03\r\n",  # not from the master address
    ],
)
def test_malformed_dt_replies_raise_reply_error(frame: bytes) -> None:
    with pytest.raises(ReplyError) as info:
        codec.parse_dt_reply(frame, device="pump", sent=b"/1?\r")
    assert info.value.device == "pump"
    assert info.value.sent == b"/1?\r"
    assert info.value.received == frame


def test_dt_reply_complete() -> None:
    assert not codec.dt_reply_complete(b"")
    assert not codec.dt_reply_complete(b"/0`30")
    assert not codec.dt_reply_complete(b"/0`3000\x03\r")
    assert codec.dt_reply_complete(b"/0`3000\x03\r\n")
    assert codec.dt_reply_complete(b"\xff/0`\x03\r\n")
    # An ETX CR LF before the start of a reply does not complete it.
    assert not codec.dt_reply_complete(b"\x03\r\n/0`")


def test_oem_examples_from_reference() -> None:
    # §3.4 (computed in the reference): ZR to address 1, sequence 1, then repeated.
    assert codec.build_oem_command("1", "Z") == bytes.fromhex("0231315a520309")
    assert codec.build_oem_command("1", "Z", repeat=True) == bytes.fromhex("0231395a520301")
    reply = codec.parse_oem_reply(bytes.fromhex("0230603330303003 52".replace(" ", "")))
    assert reply.ready and reply.error == 0 and reply.data == "3000"


def test_oem_checksum_is_xor_from_stx_to_etx() -> None:
    assert codec.oem_checksum(bytes.fromhex("0231315a5203")) == 0x09
    assert codec.oem_checksum(b"") == 0
    assert codec.oem_checksum(bytes.fromhex("0230603330303003")) == 0x52


def test_oem_sequence_byte() -> None:
    assert codec.oem_sequence_byte(1) == 0x31
    assert codec.oem_sequence_byte(7, repeat=True) == 0x3F
    with pytest.raises(ValueError):
        codec.oem_sequence_byte(0)
    with pytest.raises(ValueError):
        codec.oem_sequence_byte(8)


def test_oem_bad_checksum_raises() -> None:
    with pytest.raises(ReplyError, match="checksum"):
        codec.parse_oem_reply(bytes.fromhex("023060333030300353"))


def test_oem_reply_complete() -> None:
    frame = bytes.fromhex("023060333030300352")
    assert codec.oem_reply_complete(frame)
    assert not codec.oem_reply_complete(frame[:-1])
    assert not codec.oem_reply_complete(b"")


# -- status byte (§3.5) -----------------------------------------------------------------

STATUS_TABLE = [
    # (byte, ready, error, name fragment) per the XP 3000 App. G table.
    (0x60, True, 0, "no error"),
    (0x40, False, 0, "no error"),
    (0x61, True, 1, "initialisation error"),
    (0x62, True, 2, "invalid command"),
    (0x63, True, 3, "invalid operand"),
    (0x64, True, 4, "invalid command sequence"),
    (0x65, True, 5, "fluid detection"),
    (0x66, True, 6, "EEPROM"),
    (0x67, True, 7, "not initialised"),
    (0x69, True, 9, "plunger overload"),
    (0x4A, False, 10, "valve overload"),
    (0x6B, True, 11, "plunger move not allowed"),
    (0x4F, False, 15, "command overflow"),
]


@pytest.mark.parametrize(("byte", "ready", "error", "name"), STATUS_TABLE)
def test_status_byte_table(byte: int, ready: bool, error: int, name: str) -> None:
    status = codec.decode_status(byte)
    assert (status.ready, status.error) == (ready, error)
    assert name in status.error_name
    assert codec.encode_status(ready, error) == byte


def test_error_codes_enum_matches_table() -> None:
    assert codec.CavroErrorCode.PLUNGER_OVERLOAD == 9
    assert codec.CavroErrorCode.NOT_INITIALISED == 7
    assert "occlusion" in codec.error_name(9)
    assert codec.error_name(12) == "unknown error 12"


@given(st.integers(0, 255))
def test_decode_status_accepts_exactly_the_status_bytes(byte: int) -> None:
    if byte & 0xD0 == 0x40:
        status = codec.decode_status(byte)
        assert codec.encode_status(status.ready, status.error) == byte
    else:
        with pytest.raises(ReplyError):
            codec.decode_status(byte)


# -- command builders (§3.6) -------------------------------------------------------------


def test_initialisation_commands() -> None:
    assert codec.initialize_plunger_and_valve() == "Z0"
    assert codec.initialize_plunger_and_valve(codec.FORCE_HALF, counterclockwise=True) == "Y1"
    assert codec.initialize_plunger_and_valve(2, input_port=1, output_port=6) == "Z2,1,6"
    assert codec.initialize_plunger_and_valve(25) == "Z25"
    assert codec.initialize_plunger(codec.FORCE_THIRD) == "W2"
    for force in (3, 9, 41, -1):
        with pytest.raises(ValueError):
            codec.initialize_plunger_and_valve(force)
    with pytest.raises(ValueError):
        codec.initialize_plunger_and_valve(0, input_port=1)


def test_valve_and_plunger_commands() -> None:
    assert codec.valve_to_port(3, 6) == "I3"
    assert codec.valve_to_port(6, 6, clockwise=False) == "O6"
    assert codec.absolute_move(3000, 3000) == "A3000"
    assert codec.pickup_relative(300, 3000) == "P300"
    assert codec.dispense_relative(0, 3000) == "D0"
    for bad in (
        lambda: codec.valve_to_port(0, 6),
        lambda: codec.valve_to_port(7, 6),
        lambda: codec.absolute_move(3001, 3000),
        lambda: codec.pickup_relative(-1, 3000),
    ):
        with pytest.raises(ValueError):
            bad()


def test_speed_and_mode_commands() -> None:
    assert codec.top_speed(1400) == "V1400"
    assert codec.start_speed(900) == "v900"
    assert codec.cutoff_speed(2700) == "c2700"
    assert codec.slope(7) == "L7"
    assert codec.set_resolution(1) == "N1"
    assert codec.terminate() == "T"
    for bad in (
        lambda: codec.top_speed(4),
        lambda: codec.top_speed(6001),
        lambda: codec.start_speed(49),
        lambda: codec.cutoff_speed(2701),
        lambda: codec.slope(21),
        lambda: codec.set_resolution(3),
    ):
        with pytest.raises(ValueError):
            bad()


def test_report_parsers() -> None:
    position = codec.parse_dt_reply(b"/0`1500\x03\r\n")
    assert codec.parse_plunger_position(position) == 1500
    with pytest.raises(ReplyError):
        codec.parse_plunger_position(codec.parse_dt_reply(b"/0`-5\x03\r\n"))
    assert codec.parse_valve_port(codec.parse_dt_reply(b"/0`4\x03\r\n")) == 4
    assert codec.parse_valve_port(codec.parse_dt_reply(b"/0`i\x03\r\n")) is None
    with pytest.raises(ReplyError):
        codec.parse_valve_port(codec.parse_dt_reply(b"/0`\x03\r\n"))


# -- conversions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "mode", "increments"),
    [
        ("XCalibur", 0, 3000),
        ("XCalibur", 1, 24000),
        ("XCalibur", 2, 24000),
        ("XLP6000", 0, 6000),
        ("XLP6000", 1, 48000),
        ("XLP6000", 2, 48000),
    ],
)
def test_full_stroke_increments(model: str, mode: int, increments: int) -> None:
    assert codec.full_stroke_increments(model, mode) == increments


def test_unknown_model_or_mode() -> None:
    with pytest.raises(ValueError):
        codec.full_stroke_increments("XP3000")
    with pytest.raises(ValueError):
        codec.full_stroke_increments("XCalibur", 3)


def test_volume_conversions() -> None:
    # XCalibur N0, 1 mL syringe: 3000 increments per 1000 uL, so 3 increments per uL.
    assert codec.ul_to_increments(250.0, 1000.0, "XCalibur") == 750
    assert codec.increments_to_ul(750, 1000.0, "XCalibur") == pytest.approx(250.0)
    # XLP 6000 N0, 5 mL syringe: 6000 increments per 5000 uL.
    assert codec.ul_to_increments(5000.0, 5000.0, "XLP6000") == 6000
    assert codec.ul_to_increments(100.0, 5000.0, "XLP6000", 1) == 960
    with pytest.raises(ValueError):
        codec.ul_to_increments(-1.0, 1000.0, "XCalibur")
    with pytest.raises(ValueError):
        codec.ul_to_increments(1.0, 0.0, "XCalibur")


def test_speed_conversions() -> None:
    # 6000 half-steps per stroke in N0: 6000 Hz moves a 1 mL syringe in 1 s = 60 mL/min;
    # 5 Hz takes 20 min per stroke (the XCalibur's slowest speed).
    assert codec.hz_to_rate_ul_min(6000, 1000.0, "XCalibur") == pytest.approx(60000.0)
    assert codec.hz_to_rate_ul_min(5, 1000.0, "XCalibur") == pytest.approx(50.0)
    assert codec.rate_ul_min_to_hz(1000.0, 1000.0, "XLP6000") == 100
    assert codec.rate_ul_min_to_hz(1000.0, 1000.0, "XLP6000", 2) == 800
    with pytest.raises(ValueError):
        codec.rate_ul_min_to_hz(float("nan"), 1000.0, "XLP6000")


# -- property-based ----------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_dt_parser(data: bytes) -> None:
    try:
        reply = codec.parse_dt_reply(data)
    except ReplyError:
        return
    assert codec.dt_reply_complete(data)
    assert reply.raw == data


@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_oem_parser(data: bytes) -> None:
    try:
        codec.parse_oem_reply(data)
    except ReplyError:
        return
    assert codec.oem_reply_complete(data)


_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@given(st.booleans(), st.integers(0, 15), _printable)
def test_dt_reply_round_trip(ready: bool, error: int, data: str) -> None:
    frame = b"/0" + bytes([codec.encode_status(ready, error)]) + data.encode() + b"\x03\r\n"
    assert codec.dt_reply_complete(frame)
    reply = codec.parse_dt_reply(frame)
    assert (reply.ready, reply.error, reply.data) == (ready, error, data)


@given(st.booleans(), st.integers(0, 15), _printable)
def test_oem_reply_round_trip(ready: bool, error: int, data: str) -> None:
    block = b"\x020" + bytes([codec.encode_status(ready, error)]) + data.encode() + b"\x03"
    frame = block + bytes([codec.oem_checksum(block)])
    assert codec.oem_reply_complete(frame)
    reply = codec.parse_oem_reply(frame)
    assert (reply.ready, reply.error, reply.data) == (ready, error, data)


@given(
    st.integers(1, 7),
    st.booleans(),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="/"),
        min_size=1,
        max_size=20,
    ),
)
def test_oem_command_checksum_closes_the_block(sequence: int, repeat: bool, commands: str) -> None:
    frame = codec.build_oem_command("1", commands, sequence=sequence, repeat=repeat)
    assert frame[0] == codec.STX and frame[-2] == codec.ETX
    # XOR over the block including its checksum is zero.
    assert codec.oem_checksum(frame) == 0
    assert frame[2] & 0x08 == (0x08 if repeat else 0)


@given(st.integers(0, 48000), st.sampled_from([250.0, 1000.0, 5000.0]))
def test_increments_round_trip(increments: int, syringe_ul: float) -> None:
    volume_ul = codec.increments_to_ul(increments, syringe_ul, "XLP6000", 1)
    assert codec.ul_to_increments(volume_ul, syringe_ul, "XLP6000", 1) == increments


@given(st.integers(5, 6000), st.sampled_from(["XCalibur", "XLP6000"]), st.sampled_from([0, 1, 2]))
def test_speed_round_trip(speed_hz: int, model: str, mode: int) -> None:
    rate_ul_min = codec.hz_to_rate_ul_min(speed_hz, 500.0, model, mode)
    assert codec.rate_ul_min_to_hz(rate_ul_min, 500.0, model, mode) == speed_hz
