"""The composition root: turn an instrument config into connected-ready devices.

This is the one module of ``chipctl`` that imports ``simulator`` (an import-linter contract
enforces it), and the one place that decides between hardware and simulation: a
``serial://`` link becomes a :class:`drivers.transport.SerialTransport`, a ``sim://`` link
an :class:`drivers.transport.EmulatorTransport` on an emulator living in a shared
:class:`simulator.world.World`. The drivers above are the same either way.

Devices whose links are the same URL share one transport (one bus, one lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chipctl.config import LINK_FAULTS, DeviceConfig, InstrumentConfig
from chipctl.errors import ConfigError
from drivers.clock import Clock
from drivers.roles import FlowSensor, SyringePump, Valve
from drivers.transport import (
    EmulatedDevice,
    EmulatorTransport,
    LoggingTransport,
    SerialTransport,
    Transport,
)

__all__ = [
    "DRIVERS",
    "Device",
    "DriverSpec",
    "Rig",
    "build_emulators",
    "build_rig",
    "check_fault",
    "serve_on_ptys",
]

logger = logging.getLogger(__name__)

Device = SyringePump | Valve | FlowSensor


@dataclass(frozen=True)
class DriverSpec:
    """How to build one kind of device.

    Args:
        role: ``"pump"``, ``"valve"`` or ``"flow"``.
        build: makes the driver from its config, transport and clock (no I/O).
        emulator: the ``sim://`` emulator name that speaks this driver's protocol.
        options: the driver-specific config keys it accepts.
    """

    role: str
    build: Callable[[DeviceConfig, Transport, Clock], Device]
    emulator: str
    options: frozenset[str] = frozenset()


def _need_syringe(cfg: DeviceConfig) -> Any:
    if cfg.syringe is None:
        raise ConfigError("", f"devices.{cfg.name}.syringe", "a pump needs a syringe")
    return cfg.syringe


def _int_address(cfg: DeviceConfig, default: int) -> int:
    if cfg.address is None:
        return default
    if not isinstance(cfg.address, int) or not 0 <= cfg.address <= 99:
        raise ConfigError("", f"devices.{cfg.name}.address", "must be an integer 0..99")
    return cfg.address


def _build_harvard(cfg: DeviceConfig, transport: Transport, clock: Clock) -> Device:
    from drivers.harvard.pump import HarvardPump

    return HarvardPump(
        transport,
        name=cfg.name,
        syringe=_need_syringe(cfg),
        address=_int_address(cfg, 0),
        model=cfg.model or "phd-ultra",
        clock=clock,
    )


def _positive_int(cfg: DeviceConfig, key: str, default: int) -> int:
    value = cfg.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("", f"devices.{cfg.name}.{key}", "must be a positive integer")
    return value


def _string_option(cfg: DeviceConfig, key: str, default: str) -> str:
    value = cfg.options.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError("", f"devices.{cfg.name}.{key}", "must be a non-empty string")
    return value


def port_names(cfg: DeviceConfig, n_positions: int) -> dict[str, int]:
    """Return the valve's named positions from its ``ports`` list (position = index + 1)."""
    ports = cfg.options.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, str) and p for p in ports):
        raise ConfigError("", f"devices.{cfg.name}.ports", "must be a list of port names")
    if len(ports) > n_positions:
        raise ConfigError(
            "",
            f"devices.{cfg.name}.ports",
            f"names {len(ports)} ports, the valve has {n_positions}",
        )
    if len(set(ports)) != len(ports):
        raise ConfigError("", f"devices.{cfg.name}.ports", "port names must be unique")
    return {name: position for position, name in enumerate(ports, start=1)}


def _build_idex(cfg: DeviceConfig, transport: Transport, clock: Clock) -> Device:
    from drivers.idex.valve import IdexValve

    n_positions = _positive_int(cfg, "n_positions", 10)
    port_names(cfg, n_positions)
    return IdexValve(transport, name=cfg.name, n_positions=n_positions, clock=clock)


def _build_sensirion(cfg: DeviceConfig, transport: Transport, clock: Clock) -> Device:
    from drivers.sensirion.flow import SensirionFlowSensor

    return SensirionFlowSensor(
        transport,
        name=cfg.name,
        clock=clock,
        sensor=cfg.model or "SLF3S-1300F",
        liquid=_string_option(cfg, "liquid", "water"),
    )


#: driver name in the config -> how to build it
DRIVERS: dict[str, DriverSpec] = {
    "harvard": DriverSpec("pump", _build_harvard, "harvard"),
    "idex": DriverSpec("valve", _build_idex, "idex", frozenset({"n_positions", "ports"})),
    "sensirion-flow": DriverSpec("flow", _build_sensirion, "sensirion-scc1", frozenset({"liquid"})),
}


@dataclass
class Rig:
    """The devices of one instrument, built but not yet connected.

    Args:
        config: the instrument config it was built from.
        clock: the clock every driver waits on.
        devices: the devices by name, in config order.
        roles: each device's role (``"pump"``, ``"valve"``, ``"flow"``).
        transports: the transports, one per link.
        world: the simulated world, when simulated.
        emulators: the emulators by link URL, when simulated (tests inject faults here).
    """

    config: InstrumentConfig
    clock: Clock
    devices: dict[str, Device]
    roles: dict[str, str]
    transports: dict[str, Transport]
    world: Any = None
    emulators: dict[str, EmulatedDevice] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """Tell whether every device is emulated."""
        return self.config.simulated

    def pumps(self) -> dict[str, SyringePump]:
        """Return the syringe pumps by name."""
        return {n: d for n, d in self.devices.items() if isinstance(d, SyringePump)}

    def valves(self) -> dict[str, Valve]:
        """Return the selector valves by name."""
        return {n: d for n, d in self.devices.items() if isinstance(d, Valve)}

    def valve_position(self, valve: str, position: int | str) -> int:
        """Resolve a position number or port name of ``valve`` to a position number.

        Raises:
            ValueError: no such port name, or a number out of range.
        """
        device = self.valves()[valve]
        if isinstance(position, str):
            names = port_names(self.config.devices[valve], device.n_positions)
            if position not in names:
                known = ", ".join(repr(n) for n in names) or "none (no 'ports' in the config)"
                raise ValueError(f"{valve} has no port {position!r}; named ports: {known}")
            return names[position]
        if not 1 <= position <= device.n_positions:
            raise ValueError(f"{valve} has positions 1..{device.n_positions}, not {position}")
        return position

    def emulator_of(self, device: str) -> Any:
        """Return the emulator behind ``device`` (simulated rigs only)."""
        return self.emulators[self.config.devices[device].link]

    def inject_fault(self, device: str, fault: str) -> None:
        """Inject ``fault`` into ``device``'s emulator at the clock's now.

        ``fault`` is a link fault (:data:`chipctl.config.LINK_FAULTS`) or the name of a
        fault method of the emulator (``inject_stall``, ``jam``...). Emulators are advanced
        lazily (at each exchange), so the world is first brought to the present; otherwise
        the fault would take effect at the time of the last exchange.

        Raises:
            ValueError: the emulator has no such fault.
        """
        emulator = self.emulator_of(device)
        check_fault(emulator, device, fault)
        emulator.advance_to(self.clock.now_s())
        if fault == "link_ok":
            emulator.faults.clear()
        elif fault in LINK_FAULTS:
            setattr(emulator.faults, fault, True)
        else:
            getattr(emulator, fault)()


def check_fault(emulator: Any, device: str, fault: str) -> None:
    """Raise ``ValueError`` unless ``fault`` can be injected into ``emulator``."""
    if fault in LINK_FAULTS:
        return
    method = getattr(emulator, fault, None) if not fault.startswith("_") else None
    if not callable(method) or fault in ("advance_to", "receive", "take_output", "step"):
        raise ValueError(f"{device}: the {type(emulator).__name__} emulator has no fault {fault!r}")


def _spec(cfg: DeviceConfig, source: str) -> DriverSpec:
    spec = DRIVERS.get(cfg.driver)
    if spec is None:
        raise ConfigError(
            source,
            f"devices.{cfg.name}.driver",
            f"unknown driver {cfg.driver!r} (known: {', '.join(sorted(DRIVERS))})",
        )
    unknown = sorted(set(cfg.options) - spec.options)
    if unknown:
        raise ConfigError(source, f"devices.{cfg.name}", f"unknown key(s) {', '.join(unknown)}")
    return spec


def _make_emulator(world: Any, emulator: str, cfgs: list[DeviceConfig], source: str) -> Any:
    """Create the emulator serving the devices ``cfgs`` that share one sim:// link."""
    first = cfgs[0]
    if emulator == "harvard":
        from simulator.devices.harvard import SimHarvardPump

        if len(cfgs) > 1:
            raise ConfigError(
                source,
                f"devices.{cfgs[1].name}.link",
                "a simulated Harvard link serves one pump; give each pump its own link",
            )
        return SimHarvardPump(
            world, model=first.model or "phd-ultra", address=_int_address(first, 0)
        )
    if len(cfgs) > 1:
        raise ConfigError(
            source,
            f"devices.{cfgs[1].name}.link",
            f"a simulated {emulator} link serves one device; give each its own link",
        )
    if emulator == "idex":
        from simulator.devices.idex import SimIdexValve

        return SimIdexValve(world, n_positions=_positive_int(first, "n_positions", 10))
    if emulator == "sensirion-scc1":
        from simulator.devices.sensirion import SimScc1Slf3s

        return SimScc1Slf3s(world, sensor=first.model or "SLF3S-1300F", seed=world.seed)
    raise ConfigError(source, f"devices.{first.name}.link", f"no emulator named {emulator!r}")


def _links(config: InstrumentConfig) -> dict[str, list[DeviceConfig]]:
    links: dict[str, list[DeviceConfig]] = {}
    for cfg in config.devices.values():
        links.setdefault(cfg.link, []).append(cfg)
    return links


def build_emulators(config: InstrumentConfig, *, seed: int) -> tuple[Any, dict[str, Any]]:
    """Build the simulated world and one emulator per ``sim://`` link.

    Returns:
        ``(world, emulators)`` with emulators keyed by link URL.

    Raises:
        ConfigError: the config is not simulated, or names an unknown emulator.
    """
    if not config.simulated:
        raise ConfigError(config.source, "devices", "not a simulated config (links are not sim://)")
    from simulator.world import World

    world = World(seed)
    emulators: dict[str, Any] = {}
    for link, cfgs in _links(config).items():
        for cfg in cfgs:
            _spec(cfg, config.source)
        emulator_name = urlsplit(link).netloc
        expected = _spec(cfgs[0], config.source).emulator
        if emulator_name != expected:
            raise ConfigError(
                config.source,
                f"devices.{cfgs[0].name}.link",
                f"driver {cfgs[0].driver!r} talks to the {expected!r} emulator, "
                f"not {emulator_name!r} (use sim://{expected}/NAME)",
            )
        emulators[link] = _make_emulator(world, emulator_name, cfgs, config.source)
    for number, fault in enumerate(config.faults, start=1):
        emulator = emulators[config.devices[fault.device].link]
        try:
            check_fault(emulator, fault.device, fault.kind)
        except ValueError as exc:
            raise ConfigError(config.source, f"fault[{number}].kind", str(exc)) from None
    return world, emulators


def build_rig(config: InstrumentConfig, *, clock: Clock, seed: int = 0) -> Rig:
    """Build every device of ``config`` on ``clock`` (nothing is opened or sent yet).

    Raises:
        ConfigError: unknown driver or option, bad address, missing syringe, bad link.
    """
    for cfg in config.devices.values():
        _spec(cfg, config.source)
    world: Any = None
    emulators: dict[str, Any] = {}
    if config.simulated:
        world, emulators = build_emulators(config, seed=seed)
    transports: dict[str, Transport] = {}
    devices: dict[str, Device] = {}
    roles: dict[str, str] = {}
    for link, cfgs in _links(config).items():
        if config.simulated:
            inner: Transport = EmulatorTransport(emulators[link], clock, name=link)
        else:
            try:
                inner = SerialTransport.from_url(link, name=link)
            except ValueError as exc:
                raise ConfigError(config.source, f"devices.{cfgs[0].name}.link", str(exc)) from None
        transports[link] = LoggingTransport(inner)
        for cfg in cfgs:
            spec = _spec(cfg, config.source)
            try:
                devices[cfg.name] = spec.build(cfg, transports[link], clock)
            except ConfigError as exc:
                raise ConfigError(config.source, exc.where, exc.message) from None
            except ValueError as exc:
                raise ConfigError(config.source, f"devices.{cfg.name}", str(exc)) from None
            roles[cfg.name] = spec.role
    return Rig(config, clock, devices, roles, transports, world, emulators)


def serve_on_ptys(emulators: dict[str, Any], now_s: Callable[[], float]) -> Any:
    """Start serving ``emulators`` (keyed by link) on pseudo-terminals in real time.

    Returns the started :class:`simulator.pty.PtyServer`; its ``paths`` map each link to
    the PTY path a program opens, and ``stop()`` ends it.
    """
    from simulator.pty import PtyServer

    server = PtyServer(emulators, now_s)
    server.start()
    return server
