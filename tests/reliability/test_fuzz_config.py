"""Broken instrument configs: always one ConfigError line naming the file and the field.

Property: take a valid instrument config, break it in one to three places, write it as a
TOML file, and load it the way ``chipctl`` does (:func:`chipctl.config.load_config`, then
:func:`chipctl.rig.build_rig`, which checks every driver's own keys). The result is a rig,
or a :class:`chipctl.errors.ConfigError` whose one-line message starts with the file's path
and names the table or key that is wrong. Never another exception, never a hang.

Breakages: a value replaced by one of the wrong type or unit (integers beyond 64 bits,
NaN and infinite floats, dates, unicode and control characters, nested arrays and tables,
quantity strings that overflow, have no number, or hide arithmetic such as ``9**9**9 uL``),
a key deleted, an unknown key added (``__class__``, ``../x``, empty, NUL...), and nesting a
thousand levels deep.

The valid starting points are the built-in reference rig (its file, so the test follows it
as it changes) and two variants that are cheaper to build: the same devices on hardware
links (``serial://``, nothing is opened), and on simulated links without the simulated
chip, with faults scheduled.

Once, end to end: ``python -m chipctl check perfusion-check --config BAD.toml`` exits with 2
and prints one line on stderr, without a traceback.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipctl.config import load_config
from chipctl.errors import ConfigError
from chipctl.rig import build_rig
from drivers.clock import VirtualClock
from tests.tomltext import toml_scalar, toml_string

REFERENCE_RIG_FILE = Path(__file__).resolve().parents[2] / "chipctl" / "rigs" / "reference-sim.toml"

EXAMPLES = int(os.environ.get("CHIPCTL_FUZZ_EXAMPLES", "60"))


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- a minimal TOML writer (every value inline, so the document is one key per line) -------


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` levels deep in arrays (or inline tables), written as text.

    Kept symbolic: building and writing a structure thousands of levels deep recursively
    would hit Python's recursion limit in the test itself.
    """

    depth: int
    tables: bool


_toml_string = toml_string


def _toml_value(value: Any) -> str:
    if isinstance(value, Deep):
        if value.tables:
            return "{a = " * value.depth + "1" + "}" * value.depth
        return "[" * value.depth + "1" + "]" * value.depth
    scalar = toml_scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def dumps(document: dict[str, Any]) -> str:
    """Write ``document`` as TOML, one top-level key per line, every table inline."""
    return "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in document.items())


# -- the valid starting points -------------------------------------------------------------


def _reference() -> dict[str, Any]:
    return tomllib.loads(REFERENCE_RIG_FILE.read_text(encoding="utf-8"))


def _hardware() -> dict[str, Any]:
    """The reference rig's serial devices on hardware links (devices sharing a link still do)."""
    document = _reference()
    document.pop("fault", None)
    links: dict[str, str] = {}
    devices = {}
    for name, table in document["devices"].items():
        if table["driver"] == "sim-microscope":
            continue
        link = links.setdefault(table["link"], f"serial:///dev/ttyFUZZ{len(links)}?baudrate=9600")
        devices[name] = {**table, "link": link}
    document["devices"] = devices
    return document


def _sim_without_chip() -> dict[str, Any]:
    """The reference rig's serial devices, simulated but feeding no chip, with faults."""
    document = _reference()
    devices = {}
    for name, table in document["devices"].items():
        if table["driver"] == "sim-microscope":
            continue
        devices[name] = {
            k: v for k, v in table.items() if k not in ("inlet", "location", "contents")
        }
    document["devices"] = devices
    document["fault"] = [
        {"device": "medium", "kind": "inject_stall", "at": "2 h"},
        {"device": "outlet", "kind": "no_reply", "at": "90 min"},
    ]
    return document


BASES = {"hardware": _hardware(), "sim-no-chip": _sim_without_chip(), "reference": _reference()}


def test_the_starting_points_are_valid(tmp_path: Path) -> None:
    for label, document in BASES.items():
        path = tmp_path / f"{label}.toml"
        path.write_text(dumps(document), encoding="utf-8")
        rig = build_rig(load_config(path), clock=VirtualClock())
        assert set(rig.devices) == set(document["devices"]), label


# -- breakages -----------------------------------------------------------------------------

DocPath = tuple[str | int, ...]

QUANTITY_JUNK = [
    "9**9**9 uL",
    "10**400 mL",
    "2**10 uL",
    "(1+1) s",
    "1e999 mL",
    "1e308 L",
    "-5 mL",
    "0 mL",
    "nan s",
    "-inf s",
    "uL",
    "10 blorps",
    "10 uL/min",
    "1 h",
    "30 %",
    "2 uL\nmin",
    "\u0000",
    "\uff11\uff10 mL",  # full-width digits
    "10 \uff4dL",  # full-width m
    "10 mL" * 200,
    "",
    " ",
]
KEY_JUNK = [
    "driver",
    "link",
    "syringe",
    "model",
    "address",
    "inlet",
    "__class__",
    "__import__",
    "../x",
    "/abs",
    "a\\b",
    "",
    "\x00",
    "a\nb",
    "\r",
    "é",
]

_SCALARS = st.one_of(
    st.sampled_from(QUANTITY_JUNK),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=24),
    st.sampled_from(
        [dt.datetime(1979, 5, 27, 7, 32), dt.date(2026, 1, 1), dt.time(7, 32), "os.system"]
    ),
)
_KEYS = st.one_of(st.sampled_from(KEY_JUNK), st.text(max_size=12))
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=6,
)
_DEEP = st.builds(Deep, st.integers(2, 3000), st.booleans())


def _paths(node: Any, prefix: DocPath = ()) -> Iterator[DocPath]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(document: dict[str, Any], path: DocPath) -> Any:
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    return node


@dataclass
class Breakage:
    """What was done, for the error-message check and hypothesis's report."""

    action: str
    path: DocPath


def _break(data: st.DataObject, document: dict[str, Any]) -> Breakage:
    action = data.draw(st.sampled_from(["replace", "delete", "add key", "nest"]), label="what")
    paths = list(_paths(document))
    if action == "add key":
        tables = [p for p in paths if isinstance(_parent(document, (*p, "")), dict)]
        path = data.draw(st.sampled_from(tables), label="where")
        key = data.draw(_KEYS, label="key")
        _parent(document, (*path, key))[key] = data.draw(_VALUES, label="value")
        return Breakage(action, (*path, key))
    path = data.draw(st.sampled_from(paths[1:]), label="where")
    parent = _parent(document, path)
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace":
        parent[path[-1]] = data.draw(_VALUES, label="value")
    else:
        parent[path[-1]] = data.draw(_DEEP, label="nesting")
    return Breakage(action, path)


def _loaded(path: Path) -> None:
    """Load and build the config the way the CLI does (nothing is opened)."""
    build_rig(load_config(path), clock=VirtualClock())


# -- faults found here in files this test's author does not own, reported to the lead ------


def _raised_in(error: BaseException, fragment: str) -> bool:
    """Tell whether ``error`` was raised in a file whose path contains ``fragment``."""
    tb = error.__traceback__
    last = None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return last is not None and fragment in last.replace(os.sep, "/")


def _check_config_error(error: ConfigError, path: Path, breakages: list[Breakage]) -> None:
    line = str(error)
    assert "\n" not in line and "\r" not in line, f"more than one line: {line!r}"
    assert line.startswith(f"{path}: "), f"does not start with the file: {line!r}"
    if error.where is None:
        # Only a file-level problem may leave out the key: the file is no TOML at all (the
        # nesting breakage), or a top-level table is unknown (and then it is named).
        named = [str(part) for b in breakages for part in b.path if isinstance(part, str)]
        nested = any(b.action == "nest" for b in breakages)
        assert nested or any(repr(part) in error.message for part in named), (
            f"names no table or key: {line!r}"
        )


@pytest.mark.parametrize(
    ("base", "examples"),
    [("hardware", EXAMPLES), ("sim-no-chip", EXAMPLES), ("reference", max(5, EXAMPLES // 6))],
)
def test_a_broken_config_is_one_clear_line(
    base: str, examples: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("configs")

    @_settings(examples)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        document = copy.deepcopy(BASES[base])
        breakages = [
            _break(data, document) for _ in range(data.draw(st.integers(1, 3), label="breaks"))
        ]
        path = folder / "bench ü 2.toml"
        path.write_text(dumps(document), encoding="utf-8")
        try:
            _loaded(path)
        except Exception as error:
            if not isinstance(error, ConfigError):
                raise
            _check_config_error(error, path, breakages)

    check()


# -- files that are not TOML at all --------------------------------------------------------


@_settings(EXAMPLES)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_file_content_is_a_config_or_one_clear_line(
    content: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("raw") / "raw.toml"
    path.write_bytes(content)
    try:
        _loaded(path)
    except ConfigError as error:
        line = str(error)
        assert line.startswith(f"{path}: ") and "\n" not in line, line


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a = " + "[" * 5000 + "]" * 5000, "not valid TOML"),
        ("a = " + "{b = " * 5000 + "1" + "}" * 5000, "not valid TOML"),
        (
            '[devices.p]\ndriver = "harvard"\nlink = "serial:///dev/x"\n'
            'syringe = { inner_diameter = "9**9**9 mm", volume = "1 mL" }\n',
            "devices.p.syringe.inner_diameter",
        ),
        (
            '[instrument]\ntelemetry_period = "10**400 s"\n'
            '[devices.p]\ndriver = "idex"\nlink = "serial:///dev/x"\n',
            "instrument.telemetry_period",
        ),
        (
            '[devices.p]\ndriver = "idex"\nlink = "serial:///dev/x"\n'
            '[[fault]]\ndevice = "p"\nkind = "no_reply"\nat = "uL"\n',
            "fault",
        ),
        (
            '[devices.p]\ndriver = "idex"\nlink = "serial:///dev/x"\n"a\\nb" = 1\n',
            "devices.p: key 'a\\nb' holds control characters",
        ),
        ("\ufeff[devices]\n", None),
        (b"\xff\xfe[devices]".decode("latin-1"), None),
    ],
    ids=[
        "deep-arrays",
        "deep-tables",
        "power-tower",
        "overflow",
        "no-number",
        "newline-in-key",
        "bom",
        "latin1",
    ],
)
def test_known_traps_are_one_clear_line(text: str, where: str | None, tmp_path: Path) -> None:
    path = tmp_path / "trap.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        _loaded(path)
    line = str(info.value)
    assert line.startswith(f"{path}: ") and "\n" not in line, line
    if where is not None:
        assert where in line, line


# -- end to end through the CLI ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 3000 + "]" * 3000,
        '[devices.p]\ndriver = "harvard"\nlink = "serial:///dev/x"\n'
        'syringe = { inner_diameter = "9**9**9 mm", volume = "1 mL" }\n',
        '[devices.p]\ndriver = "os.system"\nlink = "serial:///dev/x"\n',
    ],
    ids=["deep-nesting", "power-tower", "driver-is-a-python-name"],
)
def test_the_cli_reports_a_bad_config_in_one_line(
    text: str, tmp_path: Path, chipctl_cmd: list[str]
) -> None:
    path = tmp_path / "BAD.toml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [*chipctl_cmd, "check", "perfusion-check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0]
    assert done.stdout == ""
