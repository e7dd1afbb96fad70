"""New Era codec: manual examples (hardware-reference §2.3-2.6), CRC check values, grammar."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ReplyError
from drivers.newera import codec

# -- CRC -------------------------------------------------------------------------------


def test_crc_check_value_of_the_xmodem_variant() -> None:
    # The catalogue check value of CRC-16/XModem (poly 0x1021, init 0, no reflection).
    assert codec.crc16_xmodem(b"123456789") == 0x31C3


def test_crc_of_empty_data_is_zero() -> None:
    assert codec.crc16_xmodem(b"") == 0


@given(st.binary(max_size=64))
def test_crc_matches_binascii_crc_hqx(data: bytes) -> None:
    assert codec.crc16_xmodem(data) == binascii.crc_hqx(data, 0)


# -- framing: examples printed in the reference ----------------------------------------


def test_safe_frame_of_manual_saf0_example() -> None:
    # hardware-reference §2.3: the manual's example for leaving safe mode, CRC 0x5543.
    assert codec.encode_safe(None, "SAF0") == bytes.fromhex("02 08 53 41 46 30 55 43 03")


@pytest.mark.parametrize(
    ("address", "command", "frame_hex"),
    [
        (0, "VER", "02 08 30 56 45 52 48 09 03"),  # §2.3
        (0, "STP", "02 08 30 53 54 50 b3 f9 03"),  # §2.3
        (0, "DIA", "02 08 30 44 49 41 02 35 03"),  # §2.6, nesp-lib on the wire
    ],
)
def test_safe_frames_printed_in_reference(address: int, command: str, frame_hex: str) -> None:
    assert codec.encode_safe(address, command) == bytes.fromhex(frame_hex)


def test_basic_frames_as_nesp_lib_sends_them() -> None:
    # §2.6: every command is str(address) + NAME + args + CR; a bare address is a status query.
    assert codec.encode_basic(0, "DIA14.5") == b"0DIA14.5\r"
    assert codec.encode_basic(0, "RAT250UM") == b"0RAT250UM\r"
    assert codec.encode_basic(12, "") == b"12\r"
    assert codec.encode_basic(None, "VER") == b"VER\r"


def test_encode_command_chooses_framing() -> None:
    assert codec.encode_command(3, "RUN", safe=False) == b"3RUN\r"
    assert codec.encode_command(3, "RUN", safe=True) == codec.encode_safe(3, "RUN")


@pytest.mark.parametrize("address", [-1, 100])
def test_address_out_of_range_is_rejected(address: int) -> None:
    with pytest.raises(ValueError, match="address"):
        codec.encode_basic(address, "VER")


def test_decode_safe_frame_of_manual_example() -> None:
    data, safe = codec.decode_frame(bytes.fromhex("02 08 53 41 46 30 55 43 03"))
    assert (data, safe) == (b"SAF0", True)


def test_bad_crc_is_a_reply_error() -> None:
    with pytest.raises(ReplyError, match="CRC"):
        codec.decode_frame(bytes.fromhex("02 08 53 41 46 30 55 44 03"), device="p")


def test_decode_basic_frame() -> None:
    assert codec.decode_frame(b"\x0200S\x03") == (b"00S", False)


# -- frame detection (reply_complete / find_frame) -------------------------------------


def test_reply_complete_basic() -> None:
    assert not codec.reply_complete(b"")
    assert not codec.reply_complete(b"\x0200S")
    assert codec.reply_complete(b"\x0200S\x03")
    assert codec.reply_complete(b"noise\x0200S\x03")


def test_reply_complete_safe_uses_length_not_etx() -> None:
    frame = codec.encode_safe(0, "0S")
    # A CRC byte of 0x03 must not end the frame early: search for one.
    tricky = next(
        codec.encode_safe(None, f"00SI{n}.0W0.0UL")
        for n in range(1000)
        if 0x03 in codec.encode_safe(None, f"00SI{n}.0W0.0UL")[-3:-1]
    )
    assert codec.find_frame(tricky[:-1]) is None
    assert codec.find_frame(tricky) == (0, len(tricky))
    assert codec.reply_complete(frame)
    assert not codec.reply_complete(frame[:-1])


def test_find_frame_skips_noise_and_reports_span() -> None:
    buf = b"\xff\x00\x0201S\x03\x0202I\x03"
    assert codec.find_frame(buf) == (2, 7)


# -- reply grammar (§2.4) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"00S", codec.Reply(0, "S")),
        (b"01I", codec.Reply(1, "I")),
        (b"99W", codec.Reply(99, "W")),
        (b"00X", codec.Reply(0, "X")),
        (b"00P", codec.Reply(0, "P")),
        (b"00S14.50", codec.Reply(0, "S", data="14.50")),
        (b"00SNE1000V3.928", codec.Reply(0, "S", data="NE1000V3.928")),
        (b"00A?R", codec.Reply(0, "A", alarm="reset")),
        (b"00A?S", codec.Reply(0, "A", alarm="stall")),
        (b"00A?T", codec.Reply(0, "A", alarm="watchdog")),
        (b"00A?E", codec.Reply(0, "A", alarm="program_error")),
        (b"00A?O", codec.Reply(0, "A", alarm="phase_out_of_range")),
        (b"00S?", codec.Reply(0, "S", error="")),
        (b"00S?NA", codec.Reply(0, "S", error="NA")),
        (b"00I?OOR", codec.Reply(0, "I", error="OOR")),
        (b"00S?COM", codec.Reply(0, "S", error="COM")),
        (b"00S?IGN", codec.Reply(0, "S", error="IGN")),
    ],
)
def test_parse_reply_grammar(data: bytes, expected: codec.Reply) -> None:
    assert codec.parse_reply(data) == expected


@pytest.mark.parametrize(
    "data", [b"", b"0S", b"AAS", b"00Q", b"00A?Z", b"00A", b"00S?XYZ", b"00S\x01", b"\xff\xfeS"]
)
def test_parse_reply_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ReplyError):
        codec.parse_reply(data)


def test_running_status() -> None:
    assert codec.Reply(0, "I").running and codec.Reply(0, "W").running
    assert not codec.Reply(0, "S").running and not codec.Reply(0, "P").running


def test_parse_dispensed_example() -> None:
    # §2.5 / §2.6: DIS answers I<float>W<float><UL|ML>.
    assert codec.parse_dispensed("I1.234W0.500ML") == (1234.0, 500.0)
    assert codec.parse_dispensed("I12.50W0.000UL") == (12.5, 0.0)
    with pytest.raises(ReplyError):
        codec.parse_dispensed("I1.2X0.5ML")


def test_parse_version_examples() -> None:
    # §2.5: NE<model>V<major>.<minor>, optionally X<upgrade> before V.
    assert codec.parse_version("NE1000V3.928") == codec.Version("1000", None, "3.928")
    assert codec.parse_version("NE500X5V3.919") == codec.Version("500", "5", "3.919")
    for bad in ("NE1000", "XX1000V3.9", "NEV3.9", "NE1000V39"):
        with pytest.raises(ReplyError):
            codec.parse_version(bad)


# -- numbers (§2.5) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (250.0, "250"),
        (14.5, "14.5"),
        (4.699, "4.699"),
        (26.594, "26.59"),
        (1234.5, "1234"),  # round half to even at the 4th digit ("1234.5" -> 1234)
        (999.96, "1000"),
        (0.0126, "0.013"),
        (0.001, "0.001"),
        (9999.4, "9999"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert codec.format_number(value) == text


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 9999.5, 1e6, 0.0004])
def test_format_number_rejects(value: float) -> None:
    with pytest.raises(ValueError):
        codec.format_number(value)


@given(st.floats(min_value=0.001, max_value=9999.0))
def test_format_number_respects_digit_limits(value: float) -> None:
    text = codec.format_number(value)
    digits = text.replace(".", "")
    assert len(digits) <= 4 and digits.isdigit()
    if "." in text:
        assert len(text.split(".")[1]) <= 3
    assert float(text) > 0


@pytest.mark.parametrize(
    ("rate_ul_min", "expected"),
    [
        (250.0, ("250", "UM")),
        (0.5, ("0.5", "UM")),  # exact in UM and UH: ties prefer UM
        (0.0125, ("0.75", "UH")),  # 0.0125 uL/min only fits 4 digits exactly in uL/h
        (5000.0, ("5000", "UM")),
        (12345.0, ("740.7", "MH")),  # too big for UM; exact in mL/h
        (1.0 / 60.0, ("1", "UH")),
    ],
)
def test_format_rate_unit_choice(rate_ul_min: float, expected: tuple[str, str]) -> None:
    assert codec.format_rate(rate_ul_min) == expected


@given(st.floats(min_value=1e-3, max_value=1e5))
def test_format_rate_keeps_four_significant_digits(rate_ul_min: float) -> None:
    number, unit = codec.format_rate(rate_ul_min)
    sent = float(number) * codec.RATE_UNITS_UL_MIN[unit]
    assert sent == pytest.approx(rate_ul_min, rel=6e-4)


def test_format_volume() -> None:
    assert codec.format_volume(500.0) == ("500", "UL")
    assert codec.format_volume(12500.0) == ("12.5", "ML")
    assert codec.format_volume(0.25) == ("0.25", "UL")
    with pytest.raises(ValueError):
        codec.format_volume(0.0)


# -- property tests --------------------------------------------------------------------

_commands = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.", max_size=40)


@given(st.one_of(st.none(), st.integers(0, 99)), _commands)
def test_safe_frame_round_trip(address: int | None, command: str) -> None:
    if address is None and not command:
        with pytest.raises(ValueError):
            codec.encode_safe(address, command)
        return
    frame = codec.encode_safe(address, command)
    assert codec.find_frame(frame) == (0, len(frame))
    data, safe = codec.decode_frame(frame)
    assert safe
    assert data.decode("ascii") == ("" if address is None else str(address)) + command


@given(
    st.integers(0, 99),
    st.sampled_from(sorted(codec.STATUS_MEANINGS)),
    st.sampled_from(["", "14.50", "NE1000V3.928", "I1.0W0.0UL"]),
    st.booleans(),
)
def test_reply_round_trip_through_both_framings(
    address: int, status: str, data: str, safe: bool
) -> None:
    payload = f"{address:02d}{status}{data}"
    frame = codec.encode_safe(None, payload) if safe else b"\x02" + payload.encode() + b"\x03"
    reply = codec.decode_reply(frame)
    assert (reply.address, reply.status, reply.data, reply.safe) == (address, status, data, safe)


@given(st.binary(max_size=80))
def test_random_bytes_only_ever_raise_reply_error(data: bytes) -> None:
    codec.reply_complete(data)
    span = codec.find_frame(data)
    if span is not None:
        assert 0 <= span[0] < span[1] <= len(data)
    for candidate in (data, b"\x02" + data, b"\x02" + data + b"\x03"):
        try:
            codec.decode_reply(candidate)
        except ReplyError:
            pass
    for text in (data.decode("latin-1"),):
        for parse in (codec.parse_dispensed, codec.parse_version, codec.parse_number):
            try:
                parse(text)
            except ReplyError:
                pass
