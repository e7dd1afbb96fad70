"""Codec tests for the Harvard / KDS pump-chain protocol.

Expected values come from the manual examples quoted in the shared hardware reference §1:
``12irat 3.2 u/m`` (Legato), ``12:irat 3.2 ul/min`` (PHD ULTRA), the prompt ``12>``, the Elite
``ver`` reply ``11 ELITE I/W Single 3.0.4``, the ``irate lim`` reply ``1.2 nl/min to 3.5 ml/min``,
the ``status`` fields and flags, and the error texts.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ReplyError
from drivers.harvard import codec
from drivers.harvard.codec import Direction, Model, Prompt, Reply

# -- commands --------------------------------------------------------------------------


def test_legato_example_has_no_address_separator() -> None:
    frame = codec.encode_command("irat 3.2 u/m", address=12, model=Model.LEGATO)
    assert frame == b"12irat 3.2 u/m\r"


def test_elite_frames_like_legato() -> None:
    assert codec.encode_command("irun", address=0, model=Model.ELITE) == b"0irun\r"


def test_phd_ultra_example_uses_a_colon_and_our_rate_format() -> None:
    command = f"irat {codec.format_rate(3.2)}"
    assert codec.encode_command(command, address=12, model=Model.PHD_ULTRA) == (
        b"12:irat 3.2 ul/min\r"
    )


def test_one_digit_address_has_no_leading_zero() -> None:
    assert codec.encode_command("ver", address=5, model=Model.PHD_ULTRA) == b"5:ver\r"


@pytest.mark.parametrize("address", [-1, 100])
def test_address_outside_0_99_is_refused(address: int) -> None:
    with pytest.raises(ValueError, match="0-99"):
        codec.encode_command("ver", address=address, model=Model.ELITE)


@pytest.mark.parametrize("command", ["", "irate 3 \u00b5l/min", "ver\r", "ver\n"])
def test_command_must_be_printable_ascii(command: str) -> None:
    with pytest.raises(ValueError):
        codec.encode_command(command, address=0, model=Model.ELITE)


# -- framing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buf", "complete"),
    [
        (b"\n:", True),
        (b"\n12>", True),  # the Legato manual's prompt example
        (b"\n<", True),
        (b"\n*", True),
        (b"\nT*", True),
        (b"\n12T*", True),
        (b"\n12T", False),  # half of "T*"
        (b"\n11 ELITE I/W Single 3.0.4\r", False),  # a text line, prompt still to come
        (b"\n11 ELITE I/W Single 3.0.4\r\n", False),
        (b"\n11 ELITE I/W Single 3.0.4\r\n:", True),
        (b":", False),  # prompts always follow a LF
        (b"", False),
        (b"\n1:", False),  # addresses are two digits in replies
    ],
)
def test_reply_complete(buf: bytes, complete: bool) -> None:
    assert codec.reply_complete(buf) is complete


def test_addressed_idle_prompt_is_flagged_as_ambiguous() -> None:
    assert codec.prompt_may_continue(b"\n12:")  # or the start of "\n12:text\r"
    assert codec.prompt_may_continue(b"\n12:1.5 ul\r\n12:")
    assert not codec.prompt_may_continue(b"\n:")
    assert not codec.prompt_may_continue(b"\n12>")


def test_parse_elite_ver_reply_unaddressed() -> None:
    reply = codec.parse_reply(b"\n11 ELITE I/W Single 3.0.4\r\n:", 0)
    assert reply == Reply(("11 ELITE I/W Single 3.0.4",), Prompt.IDLE, None)


def test_parse_addressed_reply_strips_the_line_prefix() -> None:
    reply = codec.parse_reply(b"\n12:11 ELITE I/W Single 3.0.4\r\n12>", 12)
    assert reply == Reply(("11 ELITE I/W Single 3.0.4",), Prompt.INFUSING, 12)


def test_parse_keeps_unprefixed_lines_of_an_addressed_reply() -> None:
    # Whether address 0 lines carry "00:" is unconfirmed (hardware-reference §11).
    reply = codec.parse_reply(b"\n1.234 ul\r\n00:", 0)
    assert reply.lines == ("1.234 ul",)
    assert reply.address == 0


@pytest.mark.parametrize("prompt", list(Prompt))
def test_every_prompt_parses(prompt: Prompt) -> None:
    assert codec.parse_reply(b"\n" + prompt.value.encode(), 0).prompt is prompt


def test_empty_lines_are_dropped() -> None:
    assert codec.parse_reply(b"\n\r\n5 ul\r\n:", 0).lines == ("5 ul",)


@pytest.mark.parametrize(
    ("buf", "why"),
    [
        (b"\n13>", "address 13"),
        (b"\n13:1.0 ul\r\n12:", "address 13"),
        (b"1.0 ul\r\n:", "LF"),
        (b"\n1.0 ul\r\n", "prompt"),
        (b"\n1.0 ul\r\n?", "prompt"),
        (b"\n1.0 ul\n:", "CR"),
        (b"\n1.0\x00ul\r\n:", "control"),
        (b"\n1.0 \xb5l\r\n:", "ASCII"),
    ],
)
def test_malformed_replies_raise_reply_error(buf: bytes, why: str) -> None:
    with pytest.raises(ReplyError, match=why) as info:
        codec.parse_reply(buf, 12, device="drug", sent=b"12ivolume\r")
    assert info.value.device == "drug"
    assert info.value.received == buf
    assert info.value.sent == b"12ivolume\r"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("Command error",), "Command error"),
        (("Unknown command",), "Unknown command"),
        (("Out of range",), "Out of range"),
        # KDS: error line then an indented explanation (Allegro manual p.57).
        (
            ("Argument error: 99 ml/min", "   Out of range"),
            "Argument error: 99 ml/min Out of range",
        ),
        # Pump 33 DDS manual.
        (
            ("Range error: 3", "   Syringe count out of range of 1 to 2"),
            "Range error: 3 Syringe count out of range of 1 to 2",
        ),
        (("11 ELITE I/W Single 3.0.4",), None),
        ((), None),
    ],
)
def test_error_text(lines: tuple[str, ...], expected: str | None) -> None:
    assert codec.error_text(Reply(lines, Prompt.IDLE, None)) == expected


def test_error_reply_decodes_from_bytes() -> None:
    reply = codec.parse_reply(b"\nArgument error: 5 x/y\r\n   Bad units\r\n:", 0)
    assert codec.error_text(reply) == "Argument error: 5 x/y Bad units"


# -- status ----------------------------------------------------------------------------


def test_legato_status_running_infuse() -> None:
    # 6 flags: direction I (running), limit ., stall ., trigger ., port I, target .
    status = codec.parse_status("83333333 60000 5000000000 I...I.", model=Model.LEGATO)
    assert status.direction is Direction.INFUSE
    assert status.running
    assert status.rate_ul_min == pytest.approx(5.0, rel=1e-7)  # fL/s -> uL/min
    assert status.volume_ul == pytest.approx(5.0)  # fL -> uL
    assert status.time_s == 60.0  # Legato: ms
    assert not (status.stalled or status.trigger or status.target_reached)
    assert status.limit_switch is None
    assert status.port_direction is Direction.INFUSE


def test_phd_ultra_status_has_five_flags_and_seconds() -> None:
    status = codec.parse_status("0 60 1000000000 w...W", model=Model.PHD_ULTRA)
    assert status.direction is Direction.WITHDRAW
    assert not status.running  # lowercase: idle
    assert status.time_s == 60.0  # PHD ULTRA manual p.88: seconds
    assert not status.target_reached


def test_status_flags_stall_limit_trigger_target() -> None:
    status = codec.parse_status("0 10 20 iiSTWT", model=Model.LEGATO)
    assert status.stalled
    assert status.limit_switch is Direction.INFUSE
    assert status.trigger
    assert status.port_direction is Direction.WITHDRAW
    assert status.target_reached


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1 2 3",
        "1 2 3 I....  extra",
        "-1 2 3 I...I.",
        "1.5 2 3 I...I.",
        "1 2 3 X...I.",  # direction
        "1 2 3 IX..I.",  # limit switch
        "1 2 3 I.X.I.",  # stall
        "1 2 3 I..XI.",  # trigger
        "1 2 3 I...X.",  # port
        "1 2 3 I...IX",  # target
        "1 2 3 I...",  # too few flags
        "1 2 3 I...I..",  # too many flags
    ],
)
def test_bad_status_raises_reply_error(text: str) -> None:
    with pytest.raises(ReplyError, match="status"):
        codec.parse_status(text, model=Model.LEGATO)


# -- quantities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "volume_ul"),
    [("1.234 ul", 1.234), ("2.5 ml", 2500.0), ("500 nl", 0.5), ("0 ul", 0.0), ("10 pl", 1e-5)],
)
def test_parse_volume(text: str, volume_ul: float) -> None:
    assert codec.parse_volume_ul(text) == pytest.approx(volume_ul)


@pytest.mark.parametrize("text", ["", "ul", "1.2", "1.2 kg", "1.2 ul/min", "Target volume not set"])
def test_parse_volume_rejects(text: str) -> None:
    with pytest.raises(ReplyError, match="not a volume"):
        codec.parse_volume_ul(text)


@pytest.mark.parametrize(
    ("text", "rate_ul_min"),
    [
        ("3.2 u/m", 3.2),  # Legato manual short form
        ("3.2 ul/min", 3.2),  # PHD ULTRA manual
        ("0.5000000000 m/m", 500.0),  # as flowchem sends it
        ("1.2 nl/min", 0.0012),
        ("3.5 ml/min", 3500.0),
        ("60 ul/hr", 1.0),
        ("1 ul/s", 60.0),
    ],
)
def test_parse_rate(text: str, rate_ul_min: float) -> None:
    assert codec.parse_rate_ul_min(text) == pytest.approx(rate_ul_min)


def test_parse_irate_lim_example() -> None:
    low, high = codec.parse_rate_limits_ul_min("1.2 nl/min to 3.5 ml/min")
    assert (low, high) == pytest.approx((0.0012, 3500.0))


@pytest.mark.parametrize(
    "text", ["1.2 nl/min", "3 ml/min to 1 ul/min", "a to b", "0 ul/min to 1 ul/min"]
)
def test_parse_irate_lim_rejects(text: str) -> None:
    with pytest.raises(ReplyError):
        codec.parse_rate_limits_ul_min(text)


@pytest.mark.parametrize(
    ("rate_ul_min", "text"),
    [
        (2.0, "2 ul/min"),
        (3.2, "3.2 ul/min"),
        (1500.0, "1.5 ml/min"),
        (0.05, "50 nl/min"),
        (1.23456789, "1.2346 ul/min"),  # 5 significant digits
        (0.000_012_345_67, "0.012346 nl/min"),
        (123_456.0, "123.46 ml/min"),
    ],
)
def test_format_rate(rate_ul_min: float, text: str) -> None:
    assert codec.format_rate(rate_ul_min) == text


@pytest.mark.parametrize(
    ("volume_ul", "text"), [(100.0, "100 ul"), (2500.0, "2.5 ml"), (0.5, "500 nl")]
)
def test_format_volume(volume_ul: float, text: str) -> None:
    assert codec.format_volume(volume_ul) == text


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_format_refuses_non_positive(bad: float) -> None:
    with pytest.raises(ValueError):
        codec.format_rate(bad)
    with pytest.raises(ValueError):
        codec.format_volume(bad)
    with pytest.raises(ValueError):
        codec.format_diameter_mm(bad)


def test_format_diameter() -> None:
    assert codec.format_diameter_mm(14.43) == "14.43"
    assert codec.format_diameter_mm(4.6) == "4.6"
    assert codec.format_diameter_mm(26.594999) == "26.595"


# -- properties ------------------------------------------------------------------------


@given(st.binary(max_size=200), st.integers(0, 99))
def test_random_bytes_only_ever_raise_reply_error(buf: bytes, address: int) -> None:
    codec.reply_complete(buf)
    codec.prompt_may_continue(buf)
    try:
        codec.parse_reply(buf, address)
    except ReplyError:
        pass


_REPLY_ALPHABET = st.sampled_from(list(b"\n\r:<>*T0123456789 abculmnI/.S\xff\x00"))


@given(st.lists(_REPLY_ALPHABET, max_size=60).map(bytes), st.integers(0, 99))
def test_reply_like_bytes_only_ever_raise_reply_error(buf: bytes, address: int) -> None:
    try:
        codec.parse_reply(buf, address)
    except ReplyError:
        pass


@given(st.text(max_size=60))
def test_random_text_only_ever_raises_reply_error(text: str) -> None:
    for parse in (codec.parse_volume_ul, codec.parse_rate_ul_min, codec.parse_rate_limits_ul_min):
        try:
            parse(text)
        except ReplyError:
            pass
    try:
        codec.parse_status(text, model=Model.LEGATO)
    except ReplyError:
        pass


_LINE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30
).filter(lambda line: line.strip() != "")


@given(st.lists(_LINE, max_size=4), st.sampled_from(list(Prompt)), st.integers(0, 99))
def test_addressed_reply_round_trip(lines: list[str], prompt: Prompt, address: int) -> None:
    wire = "".join(f"\n{address:02d}:{line}\r" for line in lines) + f"\n{address:02d}{prompt.value}"
    buf = wire.encode("ascii")
    assert codec.reply_complete(buf)
    assert codec.parse_reply(buf, address) == Reply(tuple(lines), prompt, address)


_POSITIVE = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(_POSITIVE)
def test_rate_round_trip(rate_ul_min: float) -> None:
    text = codec.format_rate(rate_ul_min)
    assert "e" not in text.split()[0].lower()  # never an exponent on the wire
    assert codec.parse_rate_ul_min(text) == pytest.approx(rate_ul_min, rel=5.1e-5)


@given(_POSITIVE)
def test_volume_round_trip(volume_ul: float) -> None:
    text = codec.format_volume(volume_ul)
    assert codec.parse_volume_ul(text) == pytest.approx(volume_ul, rel=5.1e-5)


@given(st.integers(0, 10**15), st.integers(0, 10**9), st.integers(0, 10**15), st.booleans())
def test_status_round_trip(rate_fl_s: int, time_raw: int, volume_fl: int, running: bool) -> None:
    flag = "I" if running else "i"
    status = codec.parse_status(
        f"{rate_fl_s} {time_raw} {volume_fl} {flag}...I.", model=Model.ELITE
    )
    assert (status.rate_fl_s, status.time_raw, status.volume_fl) == (rate_fl_s, time_raw, volume_fl)
    assert status.running is running
