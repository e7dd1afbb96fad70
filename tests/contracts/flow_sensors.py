"""The flow-sensor implementations the contract suite runs over: driver + its emulator.

Each entry builds the emulator (device side, from ``simulator``) and the driver (host side,
from ``drivers``), says how to set the emulator's true flow, bubble and temperature, and
states the sensor's measurement quality (noise, one count, calibrated range), from which
the contract derives its tolerances. Adding a flow sensor to chipctl means adding it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.clock import Clock
from drivers.roles import FlowSensor
from drivers.sensirion.flow import SensirionFlowSensor
from drivers.transport import Transport
from simulator.devices.sensirion import SLF3X_MODELS, SimScc1Slf3s
from simulator.world import World

from .harness import KnownBug


@dataclass(frozen=True)
class FlowSensorImpl:
    """One driver/emulator pair and the sensor's measurement quality.

    Attributes:
        make_emulator: builds the device side in ``world``.
        make_driver: builds the (unconnected) driver on a transport.
        set_true_flow: sets the flow through the emulated sensor (uL/min, signed).
        set_air_in_line: puts a bubble in (or out of) the emulated sensor.
        set_temperature: sets the emulated liquid temperature (degrees C).
        inject_sensor_reset: makes the emulated sensor reset on its own (glitch, ESD).
        noise_ul_min: standard deviation of the reading around the true flow.
        count_ul_min: one raw count (the quantisation step).
        full_scale_ul_min: the calibrated range; above it the high-flow flag is set.
        max_reading_ul_min: the largest flow the sensor's output can represent.
        baudrate: the link's line speed.
        known_bugs: contract tests this pair fails because of a reported bug, by test
            name (or ``"<name>[<link>]"``); they run as xfail(strict=True).
    """

    make_emulator: Callable[[World], Any]
    make_driver: Callable[[Transport, Clock], FlowSensor]
    set_true_flow: Callable[[Any, float], None]
    set_air_in_line: Callable[[Any, bool], None]
    set_temperature: Callable[[Any, float], None]
    inject_sensor_reset: Callable[[Any], None]
    noise_ul_min: float
    count_ul_min: float
    full_scale_ul_min: float
    max_reading_ul_min: float
    baudrate: int = 115200
    known_bugs: dict[str, KnownBug] = field(default_factory=dict)


def _set_attr(name: str) -> Callable[[Any, Any], None]:
    def setter(emulator: Any, value: Any) -> None:
        setattr(emulator, name, value)

    return setter


def _sensirion(sensor: str, noise_ul_min: float) -> FlowSensorImpl:
    model = SLF3X_MODELS[sensor]
    count_ul_min = 1.0 / model.counts_per_ul_min
    return FlowSensorImpl(
        make_emulator=lambda world: SimScc1Slf3s(
            world, sensor=sensor, noise_ul_min=noise_ul_min, seed=world.seed
        ),
        make_driver=lambda transport, clock: SensirionFlowSensor(
            transport, name="flow", clock=clock, sensor=sensor
        ),
        set_true_flow=_set_attr("true_flow_ul_min"),
        set_air_in_line=_set_attr("air_in_line"),
        set_temperature=_set_attr("temperature_c"),
        inject_sensor_reset=lambda emulator: emulator.inject_sensor_reset(),
        noise_ul_min=noise_ul_min,
        count_ul_min=count_ul_min,
        full_scale_ul_min=model.full_scale_ul_min,
        max_reading_ul_min=32767 * count_ul_min,  # int16 raw flow
        # close() in the teardown writes "stop measurement" and meets the same bug, so
        # pytest lists each of these tests twice as XFAIL (call and teardown).
    )


FLOW_SENSOR_IMPLS: dict[str, FlowSensorImpl] = {
    "sensirion-slf3s-1300f": _sensirion("SLF3S-1300F", noise_ul_min=2.0),
    "sensirion-slf3s-0600f": _sensirion("SLF3S-0600F", noise_ul_min=0.2),
}
