"""A camera, a stage and channel lights over any renderer of microscope images.

:class:`RenderedCamera`, :class:`RenderedStage` and :class:`ChannelLight` implement the
imaging roles (:mod:`drivers.camera.roles`) over a :class:`RenderSource`: any object with
``move_to``, ``position_um``, ``snap``, ``frame_arrives``, ``pixel_size_um`` and
``field_of_view_um``, such as the simulator's ``SimMicroscope``. The source is typed
structurally, so this module imports nothing of the simulator (DESIGN.md, "Dependency
direction"); the rig assembly hands the source in. The whole engine, the Microscope role
and the run file then work on rendered images exactly as on a real camera.

How the role's settings map onto :meth:`RenderSource.snap`:

- exposure (ms) is passed through; gain in dB becomes the source's gain multiplier
  ``10 ** (gain_db / 20)`` (amplitude dB, as camera gain nodes count it);
- the ROI (unbinned sensor pixels) becomes ``(x, y, width, height)``; the sensor size is
  ``field_of_view_um() / pixel_size_um`` at :meth:`RenderedCamera.connect`;
- binning 1, 2 or 4 is passed through; the ROI then moves in steps of the binning, since
  the source bins whole blocks;
- ``Mono8``, ``Mono12`` and ``Mono16`` select the source's bit depth; ``Mono8`` frames are
  returned as ``uint8``, the others as ``uint16``.

**Channel selection.** A rendered image shows one channel (``"brightfield"``, ``"live"``,
``"dead"`` for the simulator). The camera renders the channel of the most recently opened
:class:`ChannelLight` that is still open, and otherwise its *default channel*
(``"brightfield"`` unless changed with :meth:`RenderedCamera.set_channel`): a brightfield
lamp that is always on, and fluorescence excitation that is on only while a channel
exposes. This is what the Microscope role already does with a
:class:`~drivers.camera.roles.ChannelPreset`'s ``light``, so presets pick channels with no
extension to the role::

    live = ChannelLight(camera, "live", name="led-488")
    presets = [ChannelPreset("brightfield", 5.0), ChannelPreset("live", 50.0, light=live)]

**Time.** Rendering is on demand: a snap, or a frame of a free-running sequence, is drawn
when it is asked for, and takes no clock time. In software-trigger mode a sequence's
frames are rendered at :meth:`~drivers.camera.roles.Camera.trigger_software`; a
:meth:`~drivers.camera.roles.Camera.read_frame` with no frame queued waits ``timeout_s`` on
the camera's clock and raises :class:`~drivers.camera.roles.FrameTimeout`, as a real camera
whose trigger never comes. The stage moves the source at once; given ``speed_um_s`` and a
clock, it reports itself moving for the travel time, so stage waits cost clock time.

**Lost frames.** Before each frame the camera asks :meth:`RenderSource.frame_arrives`. A
frame that does not arrive (a GigE or USB3 camera dropping a buffer; the simulator's
``drop_frame`` and ``camera_lost`` faults) is what a real driver sees: nothing, until the
grab's timeout. :meth:`~drivers.camera.roles.Camera.snap` and a free-running
:meth:`~drivers.camera.roles.Camera.read_frame` wait their ``timeout_s`` on the clock and
raise :class:`~drivers.camera.roles.FrameTimeout` naming the camera; in software-trigger
mode the lost frame is simply never queued. A lost frame costs its timeout in clock time
(exposure + 1 s for a default snap), never a hang.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from drivers.camera.roles import (
    Camera,
    CameraFeatures,
    FrameTimeout,
    Roi,
    RoiConstraints,
    Shutter,
    Stage,
    StageLimits,
    StagePosition,
    TriggerMode,
)
from drivers.clock import Clock
from drivers.errors import DeviceError

__all__ = [
    "DEFAULT_STAGE_LIMITS",
    "ChannelLight",
    "RenderSource",
    "RenderedCamera",
    "RenderedStage",
]

#: Bit depth of each pixel format the rendered camera offers.
_FORMAT_BITS: Final = {"Mono8": 8, "Mono12": 12, "Mono16": 16}
_BINNINGS: Final = (1, 2, 4)
_EXPOSURE_RANGE_MS: Final = (0.01, 60_000.0)
_GAIN_RANGE_DB: Final = (0.0, 24.0)
#: Smallest ROI side, in binned pixels.
_MIN_ROI_BINNED_PX: Final = 8

#: Travel of a typical motorised stage insert around a chip centred at (0, 0): 120 x 80 mm,
#: 10 mm focus travel (z is the focal plane's height above the chamber floor).
DEFAULT_STAGE_LIMITS: Final = StageLimits(
    x_um=(-60_000.0, 60_000.0), y_um=(-40_000.0, 40_000.0), z_um=(-5_000.0, 5_000.0)
)


class RenderSource(Protocol):
    """What the rendered devices need of an image renderer (``SimMicroscope`` has it).

    Coordinates are the stage position in um; ``roi`` is ``(x, y, width, height)`` in
    unbinned sensor pixels, or None for the whole sensor.
    """

    @property
    def pixel_size_um(self) -> float:
        """Return the size of one unbinned sensor pixel at the sample, in um."""
        ...

    def field_of_view_um(self, roi: tuple[int, int, int, int] | None = None) -> tuple[float, float]:
        """Return the (width, height) of the imaged field in um."""
        ...

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move the stage at once (z None keeps the focus)."""
        ...

    def position_um(self) -> tuple[float, float, float]:
        """Return the stage position (x, y, z) in um."""
        ...

    def snap(
        self,
        channel: str,
        exposure_ms: float,
        gain: float,
        roi: tuple[int, int, int, int] | None,
        binning: int,
        bit_depth: int,
    ) -> NDArray[np.uint16]:
        """Render one ``uint16`` frame of shape ``(height // binning, width // binning)``."""
        ...

    def frame_arrives(self) -> bool:
        """Tell whether the frame being taken now reaches the host (False: it is lost).

        Called once per frame, before :meth:`snap`, which is then not called for a lost
        frame. A source that never loses frames returns True.
        """
        ...


class RenderedCamera(Camera):
    """A :class:`~drivers.camera.roles.Camera` whose frames are drawn by a :class:`RenderSource`.

    Args:
        source: the renderer.
        clock: waits for frames that do not come (a software trigger that never comes, a
            frame the source lost) run on it.
        name: the device's name in the instrument config.
        sensor_pixel_size_um: the physical pixel pitch (6.5 um for the simulator's sCMOS);
            the pixel at the sample is this over the objective's magnification.
        default_channel: the channel rendered while no :class:`ChannelLight` is open.
        sync: called before every render, e.g. to advance a simulated world to the
            clock's time, so the image shows the sample as it is now.
    """

    def __init__(
        self,
        source: RenderSource,
        *,
        clock: Clock,
        name: str = "camera",
        sensor_pixel_size_um: float | None = None,
        default_channel: str = "brightfield",
        sync: Callable[[], None] | None = None,
    ) -> None:
        """Remember the source and the settings; no rendering (that is :meth:`snap`)."""
        super().__init__(name=name, sensor_pixel_size_um=sensor_pixel_size_um)
        self.source = source
        self._clock = clock
        self._sync = sync
        self._default_channel = _check_channel(name, default_channel)
        self._open_lights: list[ChannelLight] = []
        self._sensor_px: tuple[int, int] | None = None
        self._exposure_ms = 10.0
        self._gain_db = 0.0
        self._binning = 1
        self._roi = Roi(0, 0, 1, 1)
        self._pixel_format = "Mono16"
        self._trigger = TriggerMode.FREE_RUN
        self._queue: deque[NDArray[np.generic]] = deque()
        # software triggers whose frame was lost: the next empty read says so
        self._lost_triggers = 0

    # -- lifecycle ---------------------------------------------------------------------

    def connect(self) -> None:
        """Work out the sensor size from the source's field of view; ROI = whole sensor.

        Raises:
            DeviceError: the source reports a field of view that is not a whole number of
                pixels.
        """
        pixel_um = float(self.source.pixel_size_um)
        width_um, height_um = self.source.field_of_view_um(None)
        width_px, height_px = round(width_um / pixel_um), round(height_um / pixel_um)
        if (
            width_px < _MIN_ROI_BINNED_PX
            or height_px < _MIN_ROI_BINNED_PX
            or not all(
                math.isclose(n * pixel_um, size, rel_tol=1e-6)
                for n, size in ((width_px, width_um), (height_px, height_um))
            )
        ):
            raise DeviceError(
                self.name,
                f"render source field of view {width_um:g} x {height_um:g} um is not a "
                f"whole number of {pixel_um:g} um pixels",
            )
        self._sensor_px = (width_px, height_px)
        self._binning = 1
        self._roi = Roi(0, 0, width_px, height_px)

    def _do_close(self) -> None:
        self._clear_queue()

    # -- channel -----------------------------------------------------------------------

    def set_channel(self, channel: str) -> None:
        """Set the channel rendered while no :class:`ChannelLight` is open.

        An extension of the Camera role, for direct use; through the Microscope role,
        presets select channels with their ``light`` (:class:`ChannelLight`).
        """
        self._default_channel = _check_channel(self.name, channel)

    def read_channel(self) -> str:
        """Return the channel the next frame will show."""
        if self._open_lights:
            return self._open_lights[-1].channel
        return self._default_channel

    def _light_changed(self, light: ChannelLight, is_open: bool) -> None:
        if light in self._open_lights:
            self._open_lights.remove(light)
        if is_open:
            self._open_lights.append(light)

    # -- hooks -------------------------------------------------------------------------

    def _sensor(self) -> tuple[int, int]:
        if self._sensor_px is None:
            raise DeviceError(self.name, "camera not connected (call connect() first)")
        return self._sensor_px

    def _do_read_features(self) -> CameraFeatures:
        self._sensor()
        return CameraFeatures(
            exposure=True,
            gain=True,
            binnings=_BINNINGS,
            pixel_formats=tuple(_FORMAT_BITS),
            trigger_modes=frozenset({TriggerMode.FREE_RUN, TriggerMode.SOFTWARE}),
        )

    def _do_read_exposure_ms(self) -> float:
        return self._exposure_ms

    def _do_read_exposure_range_ms(self) -> tuple[float, float]:
        return _EXPOSURE_RANGE_MS

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        self._exposure_ms = exposure_ms

    def _do_read_gain_db(self) -> float:
        return self._gain_db

    def _do_read_gain_range_db(self) -> tuple[float, float]:
        return _GAIN_RANGE_DB

    def _do_set_gain_db(self, gain_db: float) -> None:
        self._gain_db = gain_db

    def _do_read_roi_constraints(self) -> RoiConstraints:
        width_px, height_px = self._sensor()
        b = self._binning
        return RoiConstraints(
            sensor_width_px=width_px,
            sensor_height_px=height_px,
            min_width_px=_MIN_ROI_BINNED_PX * b,
            min_height_px=_MIN_ROI_BINNED_PX * b,
            width_step_px=b,
            height_step_px=b,
            x_step_px=b,
            y_step_px=b,
        )

    def _do_read_roi(self) -> Roi:
        self._sensor()
        return self._roi

    def _do_set_roi(self, roi: Roi) -> None:
        self._roi = roi

    def _do_read_binning(self) -> int:
        return self._binning

    def _do_set_binning(self, binning: int) -> None:
        self._binning = binning

    def _do_read_pixel_format(self) -> str:
        return self._pixel_format

    def _do_set_pixel_format(self, pixel_format: str) -> None:
        self._pixel_format = pixel_format

    def _do_read_trigger_mode(self) -> TriggerMode:
        return self._trigger

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        self._trigger = mode

    def _do_trigger_software(self) -> None:
        if self.source.frame_arrives():
            self._queue.append(self._render())
        else:
            self._lost_triggers += 1

    def _do_snap(self, timeout_s: float) -> NDArray[np.generic]:
        return self._grab(timeout_s)

    def _do_start_sequence(self, n_frames: int | None) -> None:
        self._clear_queue()

    def _do_read_frame(self, timeout_s: float) -> NDArray[np.generic]:
        if self._trigger is TriggerMode.FREE_RUN:
            return self._grab(timeout_s)
        if not self._queue:
            self._clock.sleep_s(timeout_s)
        if not self._queue:
            if self._lost_triggers:
                self._lost_triggers -= 1
                raise self._lost(timeout_s)
            raise FrameTimeout(self.name, f"no frame within {timeout_s:g} s (no trigger)")
        return self._queue.popleft()

    def _do_stop_sequence(self) -> None:
        self._clear_queue()

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._lost_triggers = 0

    def _grab(self, timeout_s: float) -> NDArray[np.generic]:
        """Take the frame of a trigger now: rendered, or lost after waiting ``timeout_s``."""
        if not self.source.frame_arrives():
            self._clock.sleep_s(timeout_s)
            raise self._lost(timeout_s)
        return self._render()

    def _lost(self, timeout_s: float) -> FrameTimeout:
        return FrameTimeout(self.name, f"no frame within {timeout_s:g} s of the trigger (lost)")

    def _render(self) -> NDArray[np.generic]:
        if self._sync is not None:
            self._sync()
        roi = self._roi
        bits = _FORMAT_BITS[self._pixel_format]
        try:
            image = self.source.snap(
                self.read_channel(),
                self._exposure_ms,
                10.0 ** (self._gain_db / 20.0),
                (roi.x_px, roi.y_px, roi.width_px, roi.height_px),
                self._binning,
                bits,
            )
        except ValueError as exc:
            raise DeviceError(self.name, f"render failed: {exc}") from exc
        if bits <= 8:
            return np.asarray(image, dtype=np.uint8)
        return np.array(image, dtype=np.uint16, copy=True)


class ChannelLight(Shutter):
    """A light source that makes a :class:`RenderedCamera` render ``channel`` while open.

    Give it as a :class:`~drivers.camera.roles.ChannelPreset`'s ``light``: the Microscope
    role opens it for the exposure only, which selects the channel for that frame.

    Args:
        camera: the camera whose rendered channel it selects.
        channel: the channel it stands for (``"live"``, ``"dead"``...).
        name: the device's name in the instrument config.
    """

    def __init__(self, camera: RenderedCamera, channel: str, *, name: str | None = None) -> None:
        """Remember the camera and channel; the light starts closed."""
        super().__init__(name=name or f"{camera.name}-{channel}-light")
        self.camera = camera
        self.channel = _check_channel(self.name, channel)
        self._open = False

    def set_open(self, is_open: bool) -> None:
        """Switch the light; while open, the camera renders :attr:`channel`."""
        self._open = bool(is_open)
        self.camera._light_changed(self, self._open)

    def read_open(self) -> bool:
        """Tell whether the light is on."""
        return self._open

    def close(self) -> None:
        """Switch the light off."""
        self.set_open(False)


class RenderedStage(Stage):
    """A :class:`~drivers.camera.roles.Stage` that moves a :class:`RenderSource`.

    Args:
        source: the renderer whose stage position it sets.
        name: the device's name in the instrument config.
        limits: travel limits (:data:`DEFAULT_STAGE_LIMITS` by default); z must be given.
        speed_um_s: travel speed per axis (axes move together); None moves instantly.
        clock: required with ``speed_um_s``: moves then take clock time.
    """

    def __init__(
        self,
        source: RenderSource,
        *,
        name: str = "stage",
        limits: StageLimits = DEFAULT_STAGE_LIMITS,
        speed_um_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Remember the source, limits and speed; no move."""
        super().__init__(name=name)
        if limits.z_um is None:
            raise ValueError(f"{name}: a rendered stage has a Z axis; give z limits")
        if speed_um_s is not None:
            if not (math.isfinite(speed_um_s) and speed_um_s > 0):
                raise ValueError(f"{name}: speed must be > 0 um/s, got {speed_um_s!r}")
            if clock is None:
                raise ValueError(f"{name}: a stage with a speed needs a clock")
        self.source = source
        self._limits = limits
        self._speed_um_s = speed_um_s
        self._clock = clock
        # The move in progress: (start, target, start time, end time).
        self._move: tuple[StagePosition, StagePosition, float, float] | None = None

    def connect(self) -> None:
        """Read the source's position once (fails if the source cannot report it)."""
        self._source_position()

    def close(self) -> None:
        """Nothing to release."""

    def _source_position(self) -> StagePosition:
        x_um, y_um, z_um = self.source.position_um()
        return StagePosition(float(x_um), float(y_um), float(z_um))

    def _now_s(self) -> float:
        return self._clock.now_s() if self._clock is not None else 0.0

    def _do_read_limits_um(self) -> StageLimits:
        return self._limits

    def _do_move_to(self, x_um: float, y_um: float, z_um: float | None) -> None:
        start = self._do_read_position_um()
        target = StagePosition(x_um, y_um, start.z_um if z_um is None else z_um)
        try:
            self.source.move_to(target.x_um, target.y_um, target.z_um)
        except ValueError as exc:
            raise DeviceError(self.name, f"move rejected: {exc}") from exc
        if self._speed_um_s is None:
            self._move = None
            return
        travel_um = max(
            abs(target.x_um - start.x_um),
            abs(target.y_um - start.y_um),
            abs((target.z_um or 0.0) - (start.z_um or 0.0)),
        )
        t0_s = self._now_s()
        self._move = (start, target, t0_s, t0_s + travel_um / self._speed_um_s)

    def _do_is_moving(self) -> bool:
        if self._move is None:
            return False
        if self._now_s() >= self._move[3]:
            self._move = None
            return False
        return True

    def _do_read_position_um(self) -> StagePosition:
        if not self._do_is_moving() or self._move is None:
            return self._source_position()
        start, target, t0_s, t1_s = self._move
        f = (self._now_s() - t0_s) / (t1_s - t0_s)

        def lerp(a: float, b: float) -> float:
            return a + (b - a) * f

        return StagePosition(
            lerp(start.x_um, target.x_um),
            lerp(start.y_um, target.y_um),
            lerp(start.z_um or 0.0, target.z_um or 0.0),
        )

    def _do_stop(self) -> None:
        if self._do_is_moving():
            here = self._do_read_position_um()
            self.source.move_to(here.x_um, here.y_um, here.z_um)
        self._move = None


def _check_channel(device: str, channel: str) -> str:
    if not isinstance(channel, str) or not channel.strip():
        raise ValueError(f"{device}: channel must be a non-empty name, got {channel!r}")
    return channel
