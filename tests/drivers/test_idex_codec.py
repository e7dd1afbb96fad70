"""IDEX MX Series II / Titan EZ codec, against the protocol document's examples (hw-ref §5.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ReplyError
from drivers.idex.codec import (
    ERROR_CODES,
    CommandMode,
    ValveStatus,
    decode_command_mode_reply,
    decode_move_reply,
    decode_status_reply,
    encode_move,
    encode_read_command_mode,
    encode_set_command_mode,
    encode_set_profile,
    encode_status,
    is_busy,
    reply_complete,
)


@pytest.mark.parametrize(
    ("position", "command"),
    [(1, b"P01\r"), (5, b"P05\r"), (9, b"P09\r"), (10, b"P0A\r"), (12, b"P0C\r")],
)
def test_move_command_is_P_and_two_hex_digits(position: int, command: bytes) -> None:
    assert encode_move(position) == command


@pytest.mark.parametrize("position", [0, 13, -1, 255])
def test_move_outside_1_to_12_is_refused_before_sending(position: int) -> None:
    with pytest.raises(ValueError):
        encode_move(position)


def test_other_commands() -> None:
    assert encode_status() == b"S\r"
    assert encode_read_command_mode() == b"D\r"
    assert encode_set_command_mode(CommandMode.SINGLE_PULSE) == b"F02\r"
    assert encode_set_profile(0x1A) == b"O1A\r"
    with pytest.raises(ValueError):
        encode_set_profile(256)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (b"05\r", ValveStatus(position=5)),  # the document's example status reply
        (b"01\r", ValveStatus(position=1)),
        (b"0A\r", ValveStatus(position=10)),
        (b"0c\r", ValveStatus(position=12)),
        (b"*", ValveStatus(busy=True)),
        (b"**", ValveStatus(busy=True)),  # one '*' per byte of "S\r"
        (b"99\r", ValveStatus(error_code=99)),
        (b"88\r", ValveStatus(error_code=88)),
        (b"77\r", ValveStatus(error_code=77)),
        (b"66\r", ValveStatus(error_code=66)),
        (b"55\r", ValveStatus(error_code=55)),
        (b"44\r", ValveStatus(error_code=44)),
    ],
)
def test_status_replies(reply: bytes, status: ValveStatus) -> None:
    assert decode_status_reply(reply) == status


def test_error_codes_have_their_meanings() -> None:
    assert set(ERROR_CODES) == {99, 88, 77, 66, 55, 44}
    assert ValveStatus(error_code=66).error_text == "positioning error"
    assert ValveStatus(error_code=99).error_text == "valve failure (cannot find home)"
    assert ValveStatus(position=3).error_text is None


@pytest.mark.parametrize(
    "reply", [b"05", b"5\r", b"005\r", b"0G\r", b"00\r", b"05\r05\r", b"\r", b"*5\r", b""]
)
def test_malformed_status_replies_raise_reply_error(reply: bytes) -> None:
    with pytest.raises(ReplyError) as info:
        decode_status_reply(reply, device="valve")
    assert info.value.device == "valve"
    assert info.value.received == reply


def test_move_reply_is_a_bare_cr_or_busy() -> None:
    assert decode_move_reply(b"\r") is True
    assert decode_move_reply(b"*") is False
    for bad in (b"05\r", b"", b"x"):
        with pytest.raises(ReplyError):
            decode_move_reply(bad)


def test_command_mode_reply() -> None:
    assert decode_command_mode_reply(b"02\r") is CommandMode.SINGLE_PULSE
    with pytest.raises(ReplyError):
        decode_command_mode_reply(b"09\r")


def test_reply_complete() -> None:
    assert not reply_complete(b"")
    assert not reply_complete(b"0")
    assert not reply_complete(b"05")
    assert reply_complete(b"05\r")
    assert reply_complete(b"\r")
    assert reply_complete(b"*")
    assert is_busy(b"***")
    assert not is_busy(b"*5")
    assert not is_busy(b"")


@given(st.integers(min_value=1, max_value=12))
def test_position_round_trip(position: int) -> None:
    # The valve answers S with the same two hex digits the move command carried.
    digits = encode_move(position)[1:]
    assert decode_status_reply(digits) == ValveStatus(position=position)


@given(st.binary(max_size=12))
def test_garbage_never_crashes_the_decoders(garbage: bytes) -> None:
    for decode in (decode_status_reply, decode_move_reply, decode_command_mode_reply):
        try:
            decode(garbage)
        except ReplyError:
            pass
    assert isinstance(reply_complete(garbage), bool)
