"""Instrument configs: which devices a rig has, how each is linked, what syringe it holds.

An instrument config is a TOML file::

    [instrument]
    name = "bench 2"
    telemetry_period = "10 s"          # how often every device is polled into the run file

    [devices.medium]
    driver = "harvard"                 # see chipctl.rig.DRIVERS
    model = "phd-ultra"
    link = "serial:///dev/ttyUSB0?baudrate=115200"
    address = 0
    syringe = "BD Plastipak 10 mL"     # or { inner_diameter = "14.43 mm", volume = "10 mL" }

Links are URLs: ``serial://PORT?baudrate=N`` for hardware, ``sim://EMULATOR`` for the
simulator. A config is either all hardware or all simulated: chipctl never mixes the two and
never falls back to a simulated device when hardware fails to open (DESIGN.md, "Safety").
Devices with the same link URL share one bus (daisy-chained pumps).

Keys a driver does not know are errors, not silently ignored: a typo in a safety-relevant
setting must not pass unnoticed.

A simulated config may schedule faults, to rehearse what the instrument does when things go
wrong (they are refused on hardware)::

    [[fault]]
    device = "medium"
    kind = "inject_stall"        # an emulator fault method, or a link fault:
    at = "2 h"                   # no_reply, garble, partial, disconnected, link_ok

The pseudo-device ``chip`` takes the simulated chip's faults: ``clog``, ``unclog``,
``leak``, ``bubble``. The simulated microscope has no serial link, so no link faults; it
takes ``drop_frame`` (the next frame is lost), ``camera_lost`` (every frame, until
``camera_ok``). Fault kinds are checked against the emulators when the rig is built.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chipctl.chip import ChipConfig, parse_chip
from chipctl.errors import ConfigError
from chipctl.units import DURATION, LENGTH, VOLUME, UnitError, parse_quantity
from drivers.roles import Syringe
from drivers.syringes import lookup_syringe

__all__ = [
    "CHIP",
    "LINK_FAULTS",
    "REFERENCE_RIG",
    "DeviceConfig",
    "FaultSpec",
    "InstrumentConfig",
    "load_config",
    "parse_config",
    "reference_rig_config",
]

#: Label of the built-in simulated reference rig in messages and run files.
REFERENCE_RIG = "<built-in simulated reference rig>"

_REFERENCE_RIG_FILE = Path(__file__).parent / "rigs" / "reference-sim.toml"

#: Default telemetry period when the config names none.
DEFAULT_TELEMETRY_PERIOD_S = 10.0

_COMMON_KEYS = {"driver", "link", "model", "address", "syringe"}


@dataclass(frozen=True)
class DeviceConfig:
    """One device of an instrument config.

    Args:
        name: the device's name (its key under ``[devices]``).
        driver: the driver kind (``"harvard"``, ``"newera"``...).
        link: the link URL.
        model: the model variant the driver should speak, if it has variants.
        address: the bus address, if the protocol has addresses.
        syringe: the mounted syringe, for pumps.
        options: the remaining driver-specific keys (checked by the rig assembly).
    """

    name: str
    driver: str
    link: str
    model: str | None = None
    address: int | str | None = None
    syringe: Syringe | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """Return the link's URL scheme (``"serial"`` or ``"sim"``)."""
        return urlsplit(self.link).scheme


#: The pseudo-device name of the simulated chip in fault schedules and telemetry.
CHIP = "chip"

#: Link faults every emulator supports (simulator.faults.CommFaults); ``link_ok`` clears them.
LINK_FAULTS = ("no_reply", "garble", "partial", "disconnected", "link_ok")


@dataclass(frozen=True)
class FaultSpec:
    """A fault the simulator injects into one device at a run time.

    Args:
        device: the device's name.
        kind: a link fault (:data:`LINK_FAULTS`) or the name of an emulator fault method.
        at_s: when, in seconds after the run starts.
    """

    device: str
    kind: str
    at_s: float


@dataclass(frozen=True)
class InstrumentConfig:
    """A parsed instrument config.

    Args:
        name: the instrument's name.
        source: the file it came from (or :data:`REFERENCE_RIG`).
        text: the exact text, stored in every run file.
        telemetry_period_s: the device polling period.
        devices: the devices by name, in file order.
        faults: faults to inject (simulated rigs only), in time order.
        chip: the chip description (``[chip]``), if the config has one.
        interlocks: the ``[interlocks]`` table: the rig's default interlock settings, checked
            by :mod:`chipctl.protocol.interlocks` (kept raw here: protocols override them).
    """

    name: str
    source: str
    text: str
    telemetry_period_s: float
    devices: dict[str, DeviceConfig]
    faults: tuple[FaultSpec, ...] = ()
    chip: ChipConfig | None = None
    interlocks: dict[str, Any] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """Tell whether this is a simulated rig (all links ``sim://``)."""
        return all(d.scheme == "sim" for d in self.devices.values())


def _names(keys: Iterable[object]) -> str:
    """List config keys for a message, quoted: an empty key or a control character shows."""
    return ", ".join(repr(key) for key in sorted(keys, key=str))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _check_keys(source: str, data: dict[str, Any]) -> None:
    """Refuse keys with control characters anywhere in the file.

    Keys are echoed in error messages and stored in run files; a quoted TOML key may hold
    a newline or a NUL, which would split the one-line message a user sees.
    """
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{where}[{i}]", value) for i, value in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if isinstance(key, str) and not key.isprintable():
                raise ConfigError(source, where or None, f"key {key!r} holds control characters")
            name = key if _BARE_KEY.fullmatch(key) else repr(key)
            stack.append((f"{where}.{name}" if where else name, value))


def _check_device_name(source: str, name: str) -> None:
    """Refuse a device name that cannot be one word in messages, protocols and run files.

    The name becomes the run file's ``/telemetry/<name>`` group, so a ``/`` (a subgroup),
    ``.`` or ``..`` would put telemetry elsewhere in the file; a control character would
    break the one-line messages; ``chip`` is the simulated chip's pseudo-device.
    """
    where = f"devices.{name!r}"
    if not name.strip() or not name.isprintable() or name != name.strip():
        raise ConfigError(source, where, "a device name must be printable text without edge spaces")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(source, where, "a device name must not contain / or \\ or be . or ..")
    if name == CHIP:
        raise ConfigError(source, where, f"{CHIP!r} is reserved for the simulated chip")


def _parse_syringe(source: str, where: str, value: object) -> Syringe:
    if isinstance(value, str):
        try:
            return lookup_syringe(value)
        except KeyError as exc:
            raise ConfigError(source, where, str(exc.args[0])) from None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"name", "inner_diameter", "volume"})
        if unknown:
            raise ConfigError(source, where, f"unknown key(s) {_names(unknown)}")
        for key in ("inner_diameter", "volume"):
            if key not in value:
                raise ConfigError(source, f"{where}.{key}", "missing")
        try:
            diameter_mm = parse_quantity(value["inner_diameter"], LENGTH)
        except UnitError as exc:
            raise ConfigError(source, f"{where}.inner_diameter", str(exc)) from None
        try:
            volume_ul = parse_quantity(value["volume"], VOLUME)
        except UnitError as exc:
            raise ConfigError(source, f"{where}.volume", str(exc)) from None
        name = value.get("name", f"custom {diameter_mm:g} mm / {volume_ul:g} uL")
        try:
            return Syringe(name=str(name), inner_diameter_mm=diameter_mm, volume_ul=volume_ul)
        except ValueError as exc:
            raise ConfigError(source, where, str(exc)) from None
    raise ConfigError(
        source, where, "must be a syringe name or { inner_diameter = ..., volume = ... }"
    )


def _parse_device(source: str, name: str, table: object) -> DeviceConfig:
    _check_device_name(source, name)
    where = f"devices.{name}"
    if not isinstance(table, dict):
        raise ConfigError(source, where, "must be a table")
    for key in ("driver", "link"):
        if key not in table:
            raise ConfigError(source, f"{where}.{key}", "missing")
        if not isinstance(table[key], str) or not table[key].strip():
            raise ConfigError(source, f"{where}.{key}", "must be a non-empty string")
    link = table["link"].strip()
    try:
        scheme = urlsplit(link).scheme
    except ValueError:  # e.g. an unclosed "[" (urllib reads it as an IPv6 host)
        scheme = ""
    if not link.isprintable() or any(char.isspace() for char in link):
        # urllib silently drops tabs and newlines inside URLs: refuse them instead.
        raise ConfigError(source, f"{where}.link", f"{link!r} holds spaces or control characters")
    if scheme not in ("serial", "sim"):
        raise ConfigError(
            source,
            f"{where}.link",
            f"{link!r} is not a serial://PORT or sim://EMULATOR URL",
        )
    model = table.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(source, f"{where}.model", "must be a string")
    address = table.get("address")
    if address is not None and (isinstance(address, bool) or not isinstance(address, int | str)):
        raise ConfigError(source, f"{where}.address", "must be an integer or a string")
    syringe = None
    if "syringe" in table:
        syringe = _parse_syringe(source, f"{where}.syringe", table["syringe"])
    options = {k: v for k, v in table.items() if k not in _COMMON_KEYS}
    return DeviceConfig(
        name=name,
        driver=table["driver"].strip(),
        link=link,
        model=model,
        address=address,
        syringe=syringe,
        options=options,
    )


def parse_config(text: str, source: str) -> InstrumentConfig:
    """Parse and validate config ``text`` read from ``source``.

    Raises:
        ConfigError: malformed TOML or an invalid value, naming file and key.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, f"not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: a file nested about a
        # thousand levels deep (never a real config) exhausts the interpreter's stack.
        raise ConfigError(
            source, None, "not valid TOML: arrays or tables nested too deep"
        ) from None
    _check_keys(source, data)
    unknown = sorted(set(data) - {"instrument", "devices", "fault", "chip", "interlocks"})
    if unknown:
        raise ConfigError(source, None, f"unknown table(s) {_names(unknown)}")
    instrument = data.get("instrument", {})
    if not isinstance(instrument, dict):
        raise ConfigError(source, "instrument", "must be a table")
    unknown = sorted(set(instrument) - {"name", "telemetry_period"})
    if unknown:
        raise ConfigError(source, "instrument", f"unknown key(s) {_names(unknown)}")
    name = instrument.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.isprintable():
        raise ConfigError(source, "instrument.name", "must be a string of printable text")
    period_s = DEFAULT_TELEMETRY_PERIOD_S
    if "telemetry_period" in instrument:
        try:
            period_s = parse_quantity(instrument["telemetry_period"], DURATION)
        except UnitError as exc:
            raise ConfigError(source, "instrument.telemetry_period", str(exc)) from None
        if period_s < 0.05:
            raise ConfigError(source, "instrument.telemetry_period", "must be at least 50 ms")
    devices_table = data.get("devices")
    if not isinstance(devices_table, dict) or not devices_table:
        raise ConfigError(source, "devices", "the config names no devices")
    devices = {n: _parse_device(source, n, t) for n, t in devices_table.items()}
    schemes = {d.scheme for d in devices.values()}
    if len(schemes) > 1:
        raise ConfigError(
            source,
            "devices",
            "mixes serial:// and sim:// links; a rig is either all hardware or all simulated",
        )
    faults = _parse_faults(source, data.get("fault", []), devices)
    if faults and "sim" not in schemes:
        raise ConfigError(source, "fault", "faults can only be scheduled on a simulated rig")
    chip = parse_chip(source, data["chip"]) if "chip" in data else None
    interlocks = data.get("interlocks", {})
    if not isinstance(interlocks, dict):
        raise ConfigError(source, "interlocks", "must be a table")
    return InstrumentConfig(
        name=name,
        source=source,
        text=text,
        telemetry_period_s=period_s,
        devices=devices,
        faults=faults,
        chip=chip,
        interlocks=interlocks,
    )


def _parse_faults(
    source: str, tables: object, devices: dict[str, DeviceConfig]
) -> tuple[FaultSpec, ...]:
    if not isinstance(tables, list):
        raise ConfigError(source, "fault", "must be an array of tables ([[fault]])")
    faults: list[FaultSpec] = []
    for number, table in enumerate(tables, start=1):
        where = f"fault[{number}]"
        if not isinstance(table, dict):
            raise ConfigError(source, where, "must be a table")
        unknown = sorted(set(table) - {"device", "kind", "at"})
        if unknown:
            raise ConfigError(source, where, f"unknown key(s) {_names(unknown)}")
        for key in ("device", "kind", "at"):
            if key not in table:
                raise ConfigError(source, f"{where}.{key}", "missing")
        device, kind = table["device"], table["kind"]
        if not isinstance(device, str) or (device not in devices and device != CHIP):
            known = ", ".join([*devices, CHIP])
            raise ConfigError(source, f"{where}.device", f"no device {device!r} (known: {known})")
        if not isinstance(kind, str) or not kind.isidentifier() or kind.startswith("_"):
            raise ConfigError(source, f"{where}.kind", f"not a fault name: {kind!r}")
        try:
            at_s = parse_quantity(table["at"], DURATION)
        except UnitError as exc:
            raise ConfigError(source, f"{where}.at", str(exc)) from None
        if at_s < 0:
            raise ConfigError(source, f"{where}.at", "must not be negative")
        faults.append(FaultSpec(device, kind, at_s))
    return tuple(sorted(faults, key=lambda f: f.at_s))


def load_config(path: str | Path) -> InstrumentConfig:
    """Read and parse the config file at ``path``.

    Raises:
        ConfigError: the file is missing or unreadable, or invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(str(path), None, f"cannot read: {exc}") from None
    return parse_config(text, str(path))


def reference_rig_config() -> InstrumentConfig:
    """Return the built-in simulated reference rig."""
    return parse_config(_REFERENCE_RIG_FILE.read_text(encoding="utf-8"), REFERENCE_RIG)
