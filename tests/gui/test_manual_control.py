"""Manual control of an idle rig (chipctl.engine.manual) on the simulated reference rig."""

from __future__ import annotations

import itertools
import threading

import pytest

from chipctl.config import reference_rig_config
from chipctl.engine.manual import (
    ManualControl,
    ManualError,
    MoveStage,
    SelectValve,
    Snap,
    StartPump,
    StopPump,
)
from chipctl.rig import build_rig
from drivers.clock import ScaledClock, VirtualClock
from drivers.roles import PumpDirection


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str]] = []
        self.samples: list[tuple[str, float, dict[str, float]]] = []
        self.polled = threading.Event()

    def on_event(self, t_s, source, kind, message) -> None:
        self.events.append((t_s, source, kind, message))

    def on_telemetry(self, device, t_s, values) -> None:
        self.samples.append((device, t_s, dict(values)))
        if sum(1 for s in self.samples if s[0] == "medium") >= 3:
            self.polled.set()


@pytest.fixture
def manual():
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    control = ManualControl(rig)
    listener = Listener()
    control.add_listener(listener)
    control.start().result(30)
    yield control, listener
    control.close()


def test_commands_move_the_simulated_devices(manual) -> None:
    control, listener = manual
    control.submit(StartPump("medium", 20.0, volume_ul=50.0)).result(10)
    control.submit(lambda s: s.clock.sleep_s(60.0)).result(10)  # a minute of virtual time
    status = control.submit(lambda s: s.pump("medium").read_status()).result(10)
    assert status.infused_ul == pytest.approx(20.0, rel=0.02)  # 20 uL/min for one minute
    assert control.submit(SelectValve("outlet", "sample 3")).result(10) == 4
    assert control.submit(lambda s: s.rig.devices["outlet"].read_position()).result(10) == 4
    control.submit(StopPump("medium")).result(10)
    assert not control.submit(lambda s: s.pump("medium").read_status()).result(10).running
    commands = [(src, msg) for _, src, kind, msg in listener.events if kind == "command"]
    assert ("medium", "manual: infuse 50 uL at 20 uL/min") in commands
    assert ("outlet", "manual: select 'sample 3' (4)") in commands
    assert ("medium", "manual: stop") in commands
    # on a virtual clock every command is followed by a telemetry poll
    assert any(device == "medium" and v["rate_ul_min"] > 0 for device, _, v in listener.samples)


def test_snap_and_stage_move(manual) -> None:
    control, _ = manual
    images = control.submit(Snap(("brightfield", "live"), "chamber 3")).result(60)
    assert [i.channel for i in images] == ["brightfield", "live"]
    # a chamber imaged in three fields: its middle one
    assert images[0].image.shape == (1024, 1024) and images[0].position == "chamber 3b"
    assert images[0].image.std() > 0
    where = control.submit(MoveStage("chamber 5")).result(60)
    rig = control.rig
    scope = rig.microscopes()["microscope"].microscope
    assert where == scope.stage.read_position_um()
    moved = control.submit(MoveStage(x_um=where.x_um + 100.0, y_um=where.y_um)).result(60)
    assert moved.x_um == pytest.approx(where.x_um + 100.0, abs=1.0)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (StartPump("medium", 1e6), "medium: rate 1e+06 uL/min is outside"),
        (StartPump("medium", 10.0, volume_ul=50_000.0), "exceeds the BD Plastipak 10 mL"),
        (StartPump("flow", 10.0), "no pump 'flow' on this rig"),
        (StartPump("medium", 10.0, PumpDirection.WITHDRAW, -1.0), "volume must be > 0"),
        (SelectValve("outlet", "sample 42"), "outlet has no port 'sample 42'"),
        (SelectValve("outlet", 11), "outlet has positions 1..10, not 11"),
        (SelectValve("nowhere", 1), "no valve 'nowhere'"),
        (Snap(("infrared",)), "no channel 'infrared'"),
        (Snap(("live",), "chamber 99"), "no position 'chamber 99'"),
        (MoveStage(x_um=1.0), "give a named position or both x and y"),
    ],
)
def test_bad_commands_are_one_clear_line_before_anything_is_sent(command, message) -> None:
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    with pytest.raises(ManualError) as caught:
        command.check(rig)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_engine_refuses_bad_commands_too(manual) -> None:
    control, _ = manual
    with pytest.raises(ManualError, match="outside"):
        control.submit(StartPump("medium", 1e6)).result(10)
    with pytest.raises(ManualError, match="outside"):  # beyond the stage's travel
        control.submit(MoveStage(x_um=1e9, y_um=0.0)).result(10)


def test_close_stops_the_pumps_and_refuses_more_commands() -> None:
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    control = ManualControl(rig)
    listener = Listener()
    control.add_listener(listener)
    control.start().result(30)
    control.submit(StartPump("drug", 5.0)).result(10)
    emulator = rig.emulator_of("drug")
    control.close()
    assert not control.running
    stops = [msg for _, src, kind, msg in listener.events if src == "drug" and kind == "command"]
    assert stops[-1] == "stop (session closing)"
    assert not getattr(emulator, "running", False)
    with pytest.raises(ManualError, match="not open"):
        control.submit(StopPump("drug"))


def test_periodic_telemetry_and_heartbeats_on_a_scaled_clock() -> None:
    """On a real-time (scaled) clock the scheduler polls every config period by itself."""
    rig = build_rig(reference_rig_config(), clock=ScaledClock(200.0))
    control = ManualControl(rig)
    listener = Listener()
    control.add_listener(listener)
    try:
        control.start().result(30)
        control.submit(StartPump("drug", 5.0)).result(10)
        assert listener.polled.wait(20), "no periodic telemetry"
        times = [t for device, t, _ in listener.samples if device == "medium"]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        period = rig.config.telemetry_period_s
        assert all(g == pytest.approx(period, rel=0.5) for g in gaps[1:])
        # the New Era pump's safe-mode watchdog is kept alive by the heartbeats
        assert not [e for e in listener.events if e[2] == "alarm"]
    finally:
        control.close()


def test_a_device_that_does_not_connect_fails_the_start() -> None:
    from drivers.errors import DeviceError

    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    rig.inject_fault("outlet", "disconnected")  # the valve's cable is unplugged
    control = ManualControl(rig)
    listener = Listener()
    control.add_listener(listener)
    with pytest.raises(DeviceError) as caught:
        control.start().result(30)
    assert "outlet" in str(caught.value)
    control.close()
    assert not control.running
    # the pumps that had connected were stopped and closed again
    assert ("session", "closed") in [(src, kind) for _, src, kind, _ in listener.events]
    with pytest.raises(ManualError):
        control.submit(StopPump("medium"))
