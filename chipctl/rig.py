"""The composition root: turn an instrument config into devices ready to connect.

This is the one module of ``chipctl`` that imports ``simulator`` (an import-linter contract
enforces it), and the one place that decides between hardware and simulation: a
``serial://`` link becomes a :class:`drivers.transport.SerialTransport`, a ``sim://`` link
an :class:`drivers.transport.EmulatorTransport` on an emulator living in a shared
:class:`simulator.world.World`. The drivers above are the same either way.

Devices whose links are the same URL share one transport (one bus, one lock): New Era
pumps daisy-chained on one cable, for example. On a simulated rig, pumps that declare the
chip ``inlet`` they feed are connected to the simulated chip (hydraulics, drug transport,
tumoroids, microscope: :mod:`simulator.bench`), and a flow sensor with ``location =
"outlet"`` reads the chip's outlet flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chipctl.chip import field_name
from chipctl.config import CHIP, LINK_FAULTS, DeviceConfig, InstrumentConfig
from chipctl.errors import ConfigError
from chipctl.microscope import MicroscopeDevice, MicroscopeSetup
from chipctl.units import CONCENTRATION, DURATION, LENGTH, UnitError, parse_quantity
from drivers.camera.roles import Camera
from drivers.clock import Clock
from drivers.roles import Device, Syringe, SyringePump, Valve
from drivers.transport import (
    EmulatorTransport,
    LoggingTransport,
    SerialTransport,
    Transport,
)

__all__ = [
    "CHIP",
    "DRIVERS",
    "Device",
    "DriverSpec",
    "Rig",
    "build_emulators",
    "build_rig",
    "check_fault",
    "port_names",
    "serve_on_ptys",
]

logger = logging.getLogger(__name__)


#: Config keys about how a device sits in the fluidics (used by the simulator; on hardware
#: they document the wiring): the chip inlet a pump feeds, what its syringe holds, where a
#: flow sensor sits.
_PUMP_WIRING = frozenset({"inlet", "contents"})
_SENSOR_WIRING = frozenset({"location"})
#: Noise of a simulated flow sensor: about one count of an SLF3S-0600F (0.1 uL/min); the
#: emulator still quantises to the model's count, so a coarser sensor reads coarser.
SIM_FLOW_NOISE_UL_MIN = 0.1


@dataclass(frozen=True)
class BuildContext:
    """What a driver builder may use besides its config.

    Args:
        clock: the clock every driver waits on.
        transport: the device's link, or None for a device without a serial link.
        bench: the simulated chip, on a simulated rig that has one.
    """

    clock: Clock
    transport: Transport | None = None
    bench: Any = None

    def link(self, cfg: DeviceConfig) -> Transport:
        """Return the transport of a serial device."""
        if self.transport is None:
            raise ConfigError("", f"devices.{cfg.name}.link", "this device needs a serial link")
        return self.transport


@dataclass(frozen=True)
class DriverSpec:
    """How to build one kind of device.

    Args:
        role: ``"pump"``, ``"valve"``, ``"flow"`` or ``"microscope"``.
        build: makes the device from its config and the build context (no I/O).
        emulator: the ``sim://`` emulator name that speaks this driver's protocol.
        options: the driver-specific config keys it accepts.
        serial: whether the device talks over a serial link (a transport is made for it).
        after_build: registers what the device adds beyond its role on the rig.
    """

    role: str
    build: Callable[[DeviceConfig, BuildContext], Device]
    emulator: str
    options: frozenset[str] = frozenset()
    serial: bool = True
    after_build: Callable[[Rig, DeviceConfig, Device], None] | None = None


# -- option helpers ------------------------------------------------------------------


def _need_syringe(cfg: DeviceConfig) -> Syringe:
    if cfg.syringe is None:
        raise ConfigError("", f"devices.{cfg.name}.syringe", "a pump needs a syringe")
    return cfg.syringe


def _int_address(cfg: DeviceConfig, default: int) -> int:
    if cfg.address is None:
        return default
    if not isinstance(cfg.address, int) or not 0 <= cfg.address <= 99:
        raise ConfigError("", f"devices.{cfg.name}.address", "must be an integer 0..99")
    return cfg.address


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


def _bool_option(cfg: DeviceConfig, key: str, default: bool) -> bool:
    value = cfg.options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError("", f"devices.{cfg.name}.{key}", "must be true or false")
    return value


def port_names(cfg: DeviceConfig, n_positions: int) -> dict[str, int]:
    """Return the valve's named positions from its ``ports`` list (position = index + 1)."""
    ports = cfg.options.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, str) and p for p in ports):
        raise ConfigError("", f"devices.{cfg.name}.ports", "must be a list of port names")
    if len(ports) > n_positions:
        message = f"names {len(ports)} ports, the valve has {n_positions}"
        raise ConfigError("", f"devices.{cfg.name}.ports", message)
    if len(set(ports)) != len(ports):
        raise ConfigError("", f"devices.{cfg.name}.ports", "port names must be unique")
    return {name: position for position, name in enumerate(ports, start=1)}


def contents_nm(cfg: DeviceConfig) -> dict[str, float]:
    """Return what the device's syringe holds: species -> stock concentration (nM)."""
    table = cfg.options.get("contents", {})
    if not isinstance(table, dict):
        raise ConfigError(
            "", f"devices.{cfg.name}.contents", 'must be a table like { x = "10 nM" }'
        )
    result: dict[str, float] = {}
    for species, text in table.items():
        try:
            result[species] = parse_quantity(text, CONCENTRATION)
        except UnitError as exc:
            raise ConfigError("", f"devices.{cfg.name}.contents.{species}", str(exc)) from None
    return result


# -- driver builders -----------------------------------------------------------------


def _build_harvard(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    from drivers.harvard.pump import HarvardPump

    return HarvardPump(
        ctx.link(cfg),
        name=cfg.name,
        syringe=_need_syringe(cfg),
        address=_int_address(cfg, 0),
        model=cfg.model or "phd-ultra",
        clock=ctx.clock,
    )


def _build_newera(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    from drivers.newera.pump import NewEraPump

    timeout_s = 10
    if "safe_timeout" in cfg.options:
        where = f"devices.{cfg.name}.safe_timeout"
        try:
            seconds = parse_quantity(cfg.options["safe_timeout"], DURATION)
        except UnitError as exc:
            raise ConfigError("", where, str(exc)) from None
        if seconds != round(seconds) or not 1 <= seconds <= 255:
            raise ConfigError("", where, "the pump takes whole seconds, 1 s to 255 s")
        timeout_s = round(seconds)
    return NewEraPump(
        ctx.link(cfg),
        name=cfg.name,
        syringe=_need_syringe(cfg),
        address=_int_address(cfg, 0),
        clock=ctx.clock,
        safe_mode=_bool_option(cfg, "safe_mode", False),
        safe_timeout_s=timeout_s,
        model=cfg.model or "NE-1000",
    )


def _cavro_address(cfg: DeviceConfig) -> str:
    address = "1" if cfg.address is None else str(cfg.address)
    if len(address) != 1:
        raise ConfigError("", f"devices.{cfg.name}.address", "a Cavro address is one character")
    return address


def _build_cavro(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    from drivers.cavro.pump import CavroPump

    n_ports = _positive_int(cfg, "n_ports", 6)
    names = port_names(cfg, n_ports)
    output = cfg.options.get("output_port", "chip" if "chip" in names else None)
    output_port = names.get(output) if isinstance(output, str) else output
    if output is not None and output_port is None:
        raise ConfigError("", f"devices.{cfg.name}.output_port", f"no port named {output!r}")
    return CavroPump(
        ctx.link(cfg),
        name=cfg.name,
        syringe=_need_syringe(cfg),
        address=_cavro_address(cfg),
        clock=ctx.clock,
        n_ports=n_ports,
        model=cfg.model or "XLP6000",
        output_port=output_port,
    )


def _build_idex(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    from drivers.idex.valve import IdexValve

    n_positions = _positive_int(cfg, "n_positions", 10)
    port_names(cfg, n_positions)
    return IdexValve(ctx.link(cfg), name=cfg.name, n_positions=n_positions, clock=ctx.clock)


def _build_sensirion(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    from drivers.sensirion.flow import SensirionFlowSensor

    return SensirionFlowSensor(
        ctx.link(cfg),
        name=cfg.name,
        clock=ctx.clock,
        sensor=cfg.model or "SLF3S-1300F",
        liquid=_string_option(cfg, "liquid", "water"),
    )


#: Default exposure of each simulated channel preset.
SIM_CHANNEL_EXPOSURE = {"brightfield": "2 ms", "live": "20 ms", "dead": "200 ms"}


def _vendor_camera(cfg: DeviceConfig, table: object, pitch_um: float) -> Camera:
    """A vendor camera in place of the simulated microscope's rendered one.

    ``camera = { driver = "basler", serial = "0815-0000", emulated = true }``: with
    ``emulated``, pylon's own camera emulation (``PYLON_CAMEMU``) is used, so a simulated
    rig exercises the real Basler driver and SDK (the images are pylon's test patterns).
    """
    where = f"devices.{cfg.name}.camera"
    if not isinstance(table, dict):
        raise ConfigError("", where, 'must be a table like { driver = "basler", serial = "..." }')
    unknown = sorted(set(table) - {"driver", "serial", "emulated"})
    if unknown:
        raise ConfigError("", where, f"unknown key(s) {', '.join(unknown)}")
    if table.get("driver") != "basler":
        raise ConfigError("", f"{where}.driver", 'only "basler" can replace the simulated camera')
    serial = table.get("serial")
    if serial is not None and not isinstance(serial, str):
        raise ConfigError("", f"{where}.serial", "must be a string")
    emulated = table.get("emulated", False)
    if not isinstance(emulated, bool):
        raise ConfigError("", f"{where}.emulated", "must be true or false")
    from drivers.camera.basler import BaslerCamera

    if emulated:
        import os

        # pylon reads this when its transport layers load: before the first enumeration
        os.environ.setdefault("PYLON_CAMEMU", "2")
    return BaslerCamera(
        name=f"{cfg.name}-camera",
        serial_number=serial,
        device_class="BaslerCamEmu" if emulated else None,
        sensor_pixel_size_um=pitch_um,
    )


def _compression_option(cfg: DeviceConfig) -> str | None:
    """The microscope's ``compression`` option, checked (and its packages present)."""
    value = cfg.options.get("compression")
    if value is None:
        return None
    from chipctl.acquisition import parse_compression

    try:
        return parse_compression(value).value if isinstance(value, str) else None
    except ValueError as exc:
        raise ConfigError("", f"devices.{cfg.name}.compression", str(exc)) from None


def _field_positions(cfg: DeviceConfig, scope: Any, height_um: float) -> dict[str, Any]:
    """The stage positions of the simulated microscope: ``fields_per_chamber`` per chamber.

    A 10 mm chamber is longer than a 3.3 mm field of view; imaging one field would measure a
    third of its tumoroids, whose spread then sets the readout's error. The fields are laid
    along the chamber at the chamber's length over their number apart (at least one field
    height, so that fields never overlap and no tumoroid is counted twice), centred on the
    chamber, named by :func:`chipctl.chip.field_name`.
    """
    from drivers.camera.roles import StagePosition

    n_fields = _positive_int(cfg, "fields_per_chamber", 1)
    if n_fields > 26:
        raise ConfigError("", f"devices.{cfg.name}.fields_per_chamber", "must be at most 26")
    step_um = max(scope.biology.layout.length_um / n_fields, height_um)
    positions: dict[str, Any] = {}
    for k, (x, y, z) in enumerate(scope.chamber_positions_um(), start=1):
        for i in range(1, n_fields + 1):
            dy_um = (i - (n_fields + 1) / 2.0) * step_um
            positions[field_name(k, i, n_fields)] = StagePosition(x, y + dy_um, z)
    return positions


def _build_sim_microscope(cfg: DeviceConfig, ctx: BuildContext) -> Device:
    """The simulated microscope over the simulated chip: camera, stage, channel lights."""
    bench, clock = ctx.bench, ctx.clock
    from drivers.camera.rendered import ChannelLight, RenderedCamera, RenderedStage
    from drivers.camera.roles import ChannelPreset, Microscope

    if bench is None:
        message = "the simulated microscope needs the simulated chip (pumps feeding inlets)"
        raise ConfigError("", f"devices.{cfg.name}", message)
    scope = bench.microscope
    binning = _positive_int(cfg, "binning", 1)
    width_um, height_um = scope.field_of_view_um()
    sensor_px = (round(height_um / scope.pixel_size_um), round(width_um / scope.pixel_size_um))
    if sensor_px[0] % binning or sensor_px[1] % binning:
        raise ConfigError("", f"devices.{cfg.name}.binning", f"must divide {sensor_px}")

    def sync() -> None:
        bench.world.advance_to(clock.now_s())

    stage = RenderedStage(scope, name=f"{cfg.name}-stage", speed_um_s=5000.0, clock=clock)
    exposures = cfg.options.get("channels", SIM_CHANNEL_EXPOSURE)
    if not isinstance(exposures, dict) or not exposures:
        message = 'must be a table of channel = exposure, e.g. { brightfield = "20 ms" }'
        raise ConfigError("", f"devices.{cfg.name}.channels", message)
    camera_cfg = cfg.options.get("camera")
    vendor: Camera | None = None
    if camera_cfg is not None:
        vendor = _vendor_camera(cfg, camera_cfg, scope.camera.pixel_pitch_um)
    rendered = RenderedCamera(scope, clock=clock, name=f"{cfg.name}-camera", sync=sync)
    camera: Camera = vendor or rendered
    presets: list[ChannelPreset] = []
    lights: list[ChannelLight] = []
    for channel, text in exposures.items():
        try:
            exposure_ms = parse_quantity(text, DURATION) * 1000.0
            # the rendered camera shows a channel while its light is on; a vendor camera
            # (an emulator's test pattern) has no lights to switch
            light = (
                None if vendor else ChannelLight(rendered, channel, name=f"{cfg.name}-{channel}")
            )
        except (UnitError, ValueError) as exc:
            raise ConfigError("", f"devices.{cfg.name}.channels.{channel}", str(exc)) from None
        if light is not None:
            lights.append(light)
        presets.append(ChannelPreset(channel, exposure_ms, None, light))
    positions = _field_positions(cfg, scope, height_um)
    # every background of one imaging round stays cached (fields x channels, ~4 MB each at
    # 1024 x 1024): a smaller cache would rebuild each one, 0.1-0.4 s per frame
    scope.cache_size = max(scope.cache_size, len(positions) * len(exposures))
    microscope = Microscope(
        name=cfg.name,
        camera=camera,
        stage=stage,
        clock=clock,
        channels=presets,
        positions=positions,
    )
    setup = MicroscopeSetup(
        binning=binning,
        frame_shape=(sensor_px[0] // binning, sensor_px[1] // binning),
        pixel_format="Mono16" if vendor else None,
        compression=_compression_option(cfg),
        pixel_size_um=scope.pixel_size_um * binning,
        magnification=scope.objective.magnification,
        objective=f"{scope.objective.magnification:g}x / NA {scope.objective.numerical_aperture:g}",
    )
    return MicroscopeDevice(name=cfg.name, microscope=microscope, setup=setup, lights=lights)


def _cavro_extras(rig: Rig, cfg: DeviceConfig, device: Device) -> None:
    """A Cavro is also a valve (its distribution valve), and may home after connecting."""
    from drivers.cavro.pump import CavroPump
    from drivers.cavro.valve import CavroValve

    assert isinstance(device, CavroPump)
    rig.valve_views[cfg.name] = CavroValve(device)
    if _bool_option(cfg, "initialize", False):
        rig.after_connect[cfg.name] = device.initialize


#: driver name in the config -> how to build it
DRIVERS: dict[str, DriverSpec] = {
    "sim-microscope": DriverSpec(
        "microscope",
        _build_sim_microscope,
        "microscope",
        frozenset(
            {
                "binning",
                "channels",
                "sensor_px",
                "pixel_pitch",
                "full_well_e",
                "read_noise_e",
                "camera",
                "compression",
                "fields_per_chamber",
            }
        ),
        serial=False,
    ),
    "harvard": DriverSpec("pump", _build_harvard, "harvard", _PUMP_WIRING),
    "newera": DriverSpec(
        "pump", _build_newera, "newera", _PUMP_WIRING | {"safe_mode", "safe_timeout"}
    ),
    "cavro": DriverSpec(
        "pump",
        _build_cavro,
        "cavro",
        _PUMP_WIRING | {"n_ports", "ports", "output_port", "initialize"},
        after_build=_cavro_extras,
    ),
    "idex": DriverSpec("valve", _build_idex, "idex", frozenset({"n_positions", "ports"})),
    "sensirion-flow": DriverSpec(
        "flow", _build_sensirion, "sensirion-scc1", _SENSOR_WIRING | {"liquid"}
    ),
}


# -- the rig -------------------------------------------------------------------------


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
        bench: the simulated chip and tumoroids, when simulated pumps feed chip inlets.
        valve_views: valves that are part of another device (a Cavro's valve), by name.
        after_connect: set-up to run once each device has connected (by device name).
    """

    config: InstrumentConfig
    clock: Clock
    devices: dict[str, Device]
    roles: dict[str, str]
    transports: dict[str, Transport]
    world: Any = None
    emulators: dict[str, Any] = field(default_factory=dict)
    bench: Any = None
    valve_views: dict[str, Valve] = field(default_factory=dict)
    after_connect: dict[str, Callable[[], None]] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """Tell whether every device is emulated."""
        return self.config.simulated

    def microscopes(self) -> dict[str, MicroscopeDevice]:
        """Return the microscopes by name."""
        return {n: d for n, d in self.devices.items() if isinstance(d, MicroscopeDevice)}

    def pumps(self) -> dict[str, SyringePump]:
        """Return the syringe pumps by name."""
        return {n: d for n, d in self.devices.items() if isinstance(d, SyringePump)}

    def valves(self) -> dict[str, Valve]:
        """Return the selector valves by name (including valves built into pumps)."""
        valves = {n: d for n, d in self.devices.items() if isinstance(d, Valve)}
        valves.update(self.valve_views)
        return valves

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
        """Return the emulator behind ``device``.

        That is the pump itself on a shared bus, and for the simulated microscope its
        :class:`simulator.microscope.SimMicroscope` (which has faults but no serial link).

        Raises:
            ValueError: a device with nothing simulated to fault (a vendor camera).
        """
        return _device_emulator(self.emulators, self.config, device, self.bench)

    def inject_fault(self, device: str, fault: str) -> None:
        """Inject ``fault`` into ``device``'s emulator (or the chip) at the clock's now.

        ``fault`` is a link fault (:data:`chipctl.config.LINK_FAULTS`), the name of a fault
        method of the emulator (``inject_stall``, ``jam``...), for the simulated microscope
        one of ``SimMicroscope.FAULTS`` (``drop_frame``, ``camera_lost``, ``camera_ok``),
        or for the pseudo-device ``chip`` one of :class:`simulator.bench.SimulatedBench`'s
        (``clog``, ``leak``, ``bubble``...). Emulators are advanced lazily (at each
        exchange), so the world is first brought to the present; otherwise the fault would
        date from the last exchange.

        Raises:
            ValueError: no such fault for that device.
        """
        if self.world is not None:
            self.world.advance_to(self.clock.now_s())
        if device == CHIP:
            check_fault(self.bench, CHIP, fault)
            getattr(self.bench, fault)()
            return
        emulator = self.emulator_of(device)
        check_fault(emulator, device, fault)
        link_emulator = self.emulators.get(self.config.devices[device].link)
        if link_emulator is None:  # the simulated microscope: no serial link, no clock
            getattr(emulator, fault)()
            return
        emulator.advance_to(self.clock.now_s())
        if fault == "link_ok":
            link_emulator.faults.clear()
        elif fault in LINK_FAULTS:
            setattr(link_emulator.faults, fault, True)
        else:
            getattr(emulator, fault)()


def _device_emulator(
    emulators: dict[str, Any], config: InstrumentConfig, device: str, bench: Any = None
) -> Any:
    """Return the emulator of ``device`` on a simulated rig.

    That is its link's emulator, its own pump on a daisy-chain bus, or for the
    ``sim-microscope`` (no serial link) the simulated chip's microscope.

    Raises:
        ValueError: a microscope with nothing simulated to fault.
    """
    cfg = config.devices[device]
    if cfg.driver == "sim-microscope":
        if "camera" in cfg.options:
            raise ValueError(
                f"{device}: its camera is a vendor camera (devices.{device}.camera), "
                "which has no simulated faults"
            )
        if bench is None:
            raise ValueError(f"{device}: no simulated microscope (no pump feeds a chip inlet)")
        return bench.microscope
    emulator = emulators[cfg.link]
    pumps = getattr(emulator, "pumps", None)
    if isinstance(pumps, dict):
        return pumps[_int_address(config.devices[device], 0)]
    return emulator


def check_fault(emulator: Any, device: str, fault: str) -> None:
    """Raise ``ValueError`` unless ``fault`` can be injected into ``emulator``."""
    if emulator is None:
        raise ValueError(f"{device}: this rig has no simulated chip (no pump feeds an inlet)")
    # the chip and the microscope list their faults; a serial emulator's are its methods
    listed: tuple[str, ...] | None = (
        CHIP_FAULTS if device == CHIP else getattr(emulator, "FAULTS", None)
    )
    if listed is None and fault in LINK_FAULTS:
        return
    method = getattr(emulator, fault, None) if not fault.startswith("_") else None
    is_fault_name = fault not in NOT_FAULTS if listed is None else fault in listed
    if not callable(method) or not is_fault_name or _needs_arguments(method):
        message = f"{device}: the {type(emulator).__name__} emulator has no fault {fault!r}"
        if listed is not None:
            link = " (a link fault: it has no serial link)" if fault in LINK_FAULTS else ""
            message += f"{link}; its faults: {', '.join(listed)}"
        raise ValueError(message)


#: The simulated chip's faults (zero-argument methods of the bench).
CHIP_FAULTS = ("clog", "unclog", "leak", "bubble")
#: Public emulator methods that are not faults (plumbing and set-up).
NOT_FAULTS = frozenset(
    {
        "advance_to",
        "receive",
        "take_output",
        "step",
        "truth",
        "truth_units",
        "load_syringe",
        "rate_limits_ul_min",
    }
)


def _needs_arguments(method: Any) -> bool:
    """Tell whether ``method`` has a required parameter (a config cannot give one)."""
    import inspect

    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in parameters
    )


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


def _links(config: InstrumentConfig) -> dict[str, list[DeviceConfig]]:
    links: dict[str, list[DeviceConfig]] = {}
    for cfg in config.devices.values():
        links.setdefault(cfg.link, []).append(cfg)
    return links


# -- emulators -----------------------------------------------------------------------


def _one_device(emulator: str, cfgs: list[DeviceConfig], source: str) -> DeviceConfig:
    if len(cfgs) > 1:
        raise ConfigError(
            source,
            f"devices.{cfgs[1].name}.link",
            f"a simulated {emulator} link serves one device; give each its own link",
        )
    return cfgs[0]


def _make_emulator(world: Any, emulator: str, cfgs: list[DeviceConfig], source: str) -> Any:
    """Create the emulator serving the devices ``cfgs`` that share one sim:// link."""
    if emulator == "harvard":
        from simulator.devices.harvard import SimHarvardPump

        cfg = _one_device(emulator, cfgs, source)
        return SimHarvardPump(world, model=cfg.model or "phd-ultra", address=_int_address(cfg, 0))
    if emulator == "newera":
        from simulator.devices.newera import SimNewEraBus, SimNewEraPump

        bus = SimNewEraBus()
        for cfg in cfgs:
            pump = SimNewEraPump(world, address=_int_address(cfg, 0), model=cfg.model or "NE-1000")
            volume_ul = _need_syringe(cfg).volume_ul
            pump.load_syringe(volume_ul, volume_ul)  # mounted full
            bus.add(pump)
        return bus
    if emulator == "cavro":
        from simulator.devices.cavro import SimCavro

        cfg = _one_device(emulator, cfgs, source)
        n_ports = _positive_int(cfg, "n_ports", 6)
        names = port_names(cfg, n_ports)
        return SimCavro(
            world,
            address=_cavro_address(cfg),
            model=cfg.model or "XLP6000",
            n_ports=n_ports,
            syringe_volume_ul=_need_syringe(cfg).volume_ul,
            chip_port=names.get("chip"),
        )
    if emulator == "idex":
        from simulator.devices.idex import SimIdexValve

        cfg = _one_device(emulator, cfgs, source)
        return SimIdexValve(world, n_positions=_positive_int(cfg, "n_positions", 10))
    raise ConfigError(source, f"devices.{cfgs[0].name}.link", f"no emulator named {emulator!r}")


def _make_sensor_emulator(world: Any, cfg: DeviceConfig, bench: Any, source: str) -> Any:
    from simulator.devices.sensirion import SimScc1Slf3s

    location = _string_option(cfg, "location", "outlet") if "location" in cfg.options else None
    flow_source = None
    if location is not None:
        if location != "outlet":
            raise ConfigError(source, f"devices.{cfg.name}.location", "only 'outlet' is simulated")
        if bench is None:
            message = "no simulated chip to measure (no pump declares the inlet it feeds)"
            raise ConfigError(source, f"devices.{cfg.name}.location", message)
        flow_source = bench.outlet_flow_source
    return SimScc1Slf3s(
        world,
        flow_source=flow_source,
        sensor=cfg.model or "SLF3S-1300F",
        seed=world.seed,
        noise_ul_min=SIM_FLOW_NOISE_UL_MIN,
    )


def _sim_camera(config: InstrumentConfig) -> Any:
    """The simulated microscope's camera from its config keys (None: the default sCMOS).

    ``sensor_px = [rows, columns]``, ``pixel_pitch = "13 um"``, ``full_well_e``,
    ``read_noise_e``: e.g. a large-pixel camera of 1024 x 1024 x 13 um sees the same field as
    a 2048 x 2048 x 6.5 um sCMOS binned 2x2, and renders four times fewer pixels.
    """
    scopes = [c for c in config.devices.values() if c.driver == "sim-microscope"]
    if not scopes or not {"sensor_px", "pixel_pitch"} & set(scopes[0].options):
        return None
    from simulator.bench import CameraParams

    cfg = scopes[0]
    values: dict[str, Any] = {}
    sensor = cfg.options.get("sensor_px")
    if sensor is not None:
        if (
            not isinstance(sensor, list)
            or len(sensor) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 64 for n in sensor)
        ):
            raise ConfigError(
                config.source, f"devices.{cfg.name}.sensor_px", "must be [rows, columns] >= 64"
            )
        values["sensor_shape"] = (sensor[0], sensor[1])
    if "pixel_pitch" in cfg.options:
        try:
            values["pixel_pitch_um"] = parse_quantity(cfg.options["pixel_pitch"], LENGTH) * 1000
        except UnitError as exc:
            where = f"devices.{cfg.name}.pixel_pitch"
            raise ConfigError(config.source, where, str(exc)) from None
    for key in ("full_well_e", "read_noise_e"):
        if key in cfg.options:
            value = cfg.options[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(config.source, f"devices.{cfg.name}.{key}", "must be > 0")
            values[key] = float(value)
    return CameraParams(**values)


def _bench(world: Any, config: InstrumentConfig, emulators: dict[str, Any], seed: int) -> Any:
    """Build the simulated chip if pumps declare the inlets they feed."""
    pumps: dict[str, Any] = {}
    contents: dict[str, dict[str, float]] = {}
    for cfg in config.devices.values():
        if "inlet" not in cfg.options:
            continue
        inlet = _string_option(cfg, "inlet", "")
        if inlet in pumps:
            raise ConfigError(config.source, f"devices.{cfg.name}.inlet", f"{inlet!r} is taken")
        emulator = emulators[cfg.link]
        bus_pumps = getattr(emulator, "pumps", None)
        pumps[inlet] = bus_pumps[_int_address(cfg, 0)] if isinstance(bus_pumps, dict) else emulator
        stock = contents_nm(cfg)
        if stock:
            contents[inlet] = stock
    if not pumps:
        return None
    from simulator.bench import build_bench

    try:
        return build_bench(
            world, pumps=pumps, contents_nm=contents, seed=seed, camera=_sim_camera(config)
        )
    except ValueError as exc:
        raise ConfigError(config.source, "devices", str(exc)) from None


def build_emulators(
    config: InstrumentConfig, *, seed: int, start_s: float = 0.0
) -> tuple[Any, dict[str, Any], Any]:
    """Build the simulated world, one emulator per ``sim://`` link, and the chip.

    Args:
        config: a simulated instrument config.
        seed: the world's seed (the patient and the tumoroids, noise).
        start_s: the clock's time now (the world starts there).

    Returns:
        ``(world, emulators, bench)``: emulators keyed by link URL; ``bench`` is the
        simulated chip (:class:`simulator.bench.SimulatedBench`) or None.

    Raises:
        ConfigError: the config is not simulated, or names an unknown emulator or fault.
    """
    if not config.simulated:
        raise ConfigError(config.source, "devices", "not a simulated config (links are not sim://)")
    from simulator.world import World

    world = World(seed, max_step_s=60.0)
    world.advance_to(start_s)
    emulators: dict[str, Any] = {}
    sensors: list[tuple[str, DeviceConfig]] = []
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
        if emulator_name == "sensirion-scc1":
            sensors.append((link, _one_device(emulator_name, cfgs, config.source)))
            continue
        if emulator_name == "microscope":
            _one_device(emulator_name, cfgs, config.source)
            continue  # not a serial device: built over the chip by build_rig
        try:
            emulators[link] = _make_emulator(world, emulator_name, cfgs, config.source)
        except ConfigError as exc:
            raise ConfigError(config.source, exc.where, exc.message) from None
        except ValueError as exc:
            raise ConfigError(config.source, f"devices.{cfgs[0].name}", str(exc)) from None
    bench = _bench(world, config, emulators, seed)
    for link, cfg in sensors:  # sensors read the chip, so they come after it
        try:
            emulators[link] = _make_sensor_emulator(world, cfg, bench, config.source)
        except ValueError as exc:
            raise ConfigError(config.source, f"devices.{cfg.name}", str(exc)) from None
    for number, fault in enumerate(config.faults, start=1):
        try:
            target = (
                bench
                if fault.device == CHIP
                else _device_emulator(emulators, config, fault.device, bench)
            )
        except ValueError as exc:
            raise ConfigError(config.source, f"fault[{number}].device", str(exc)) from None
        try:
            check_fault(target, fault.device, fault.kind)
        except ValueError as exc:
            raise ConfigError(config.source, f"fault[{number}].kind", str(exc)) from None
    return world, emulators, bench


def build_rig(config: InstrumentConfig, *, clock: Clock, seed: int = 0) -> Rig:
    """Build every device of ``config`` on ``clock`` (nothing is opened or sent yet).

    Raises:
        ConfigError: unknown driver or option, bad address, missing syringe, bad link.
    """
    for cfg in config.devices.values():
        _spec(cfg, config.source)
        if "contents" in cfg.options:
            try:
                contents_nm(cfg)
            except ConfigError as exc:
                raise ConfigError(config.source, exc.where, exc.message) from None
    world: Any = None
    bench: Any = None
    emulators: dict[str, Any] = {}
    if config.simulated:
        world, emulators, bench = build_emulators(config, seed=seed, start_s=clock.now_s())
    rig = Rig(config, clock, {}, {}, {}, world, emulators, bench)
    for link, cfgs in _links(config).items():
        transport: Transport | None = None
        if _spec(cfgs[0], config.source).serial:
            if config.simulated:
                inner: Transport = EmulatorTransport(emulators[link], clock, name=link)
            else:
                try:
                    inner = SerialTransport.from_url(link, name=link)
                except ValueError as exc:
                    where = f"devices.{cfgs[0].name}.link"
                    raise ConfigError(config.source, where, str(exc)) from None
            transport = LoggingTransport(inner)
            rig.transports[link] = transport
        context = BuildContext(clock, transport, bench)
        for cfg in cfgs:
            spec = _spec(cfg, config.source)
            try:
                device = spec.build(cfg, context)
            except ConfigError as exc:
                raise ConfigError(config.source, exc.where, exc.message) from None
            except ValueError as exc:
                raise ConfigError(config.source, f"devices.{cfg.name}", str(exc)) from None
            rig.devices[cfg.name] = device
            rig.roles[cfg.name] = spec.role
            if spec.after_build is not None:
                try:
                    spec.after_build(rig, cfg, device)
                except ConfigError as exc:
                    raise ConfigError(config.source, exc.where, exc.message) from None
    return rig


def serve_on_ptys(emulators: dict[str, Any], now_s: Callable[[], float]) -> Any:
    """Start serving ``emulators`` (keyed by link) on pseudo-terminals in real time.

    Returns the started :class:`simulator.pty.PtyServer`; its ``paths`` map each link to
    the PTY path a program opens, and ``stop()`` ends it.
    """
    from simulator.pty import PtyServer

    server = PtyServer(emulators, now_s)
    server.start()
    return server
