"""Imaging roles: what the engine needs of a camera, a stage, a shutter and a microscope.

The roles follow :mod:`drivers.roles`: small abstract classes whose public methods validate
their arguments (``ValueError`` before any call into the SDK) and then call abstract
``_do_*`` hooks that a vendor driver implements, after python-microscope's ``Camera`` and
``FilterWheel`` (aesthetics-anchors §5.8). One contract suite
(``tests/drivers/camera/test_camera_contract.py``) then tests the validation once for
every driver.

Conventions:

- Units are in the names: ``_ms`` milliseconds, ``_s`` seconds, ``_db`` decibels,
  ``_px`` sensor pixels, ``_um`` micrometres.
- Queries that reach the device are explicit ``read_*`` methods, never properties.
- Constructors do no I/O; ``connect()`` does.
- A region of interest (:class:`Roi`) is always given in *unbinned sensor pixels*, so the
  same chamber stays the same ROI whatever the binning; an image is
  ``(height_px // binning, width_px // binning)``. GenICam and Micro-Manager count ROI in
  binned pixels; the drivers convert.
- Images are 2-D ``numpy`` arrays, ``uint8`` for 8-bit formats and ``uint16`` for 10- to
  16-bit formats (monochrome only: tumoroid read-outs are brightfield and single-emission
  fluorescence, domain-reference §3.4).
- Camera SDKs produce frames on their own threads in real time. Every frame wait is
  bounded by ``timeout_s`` (an SDK timeout where the SDK has one, otherwise a poll on the
  driver's :class:`~drivers.clock.Clock`) and raises :class:`FrameTimeout`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np
from numpy.typing import NDArray

from drivers.clock import Clock
from drivers.errors import DeviceError, IncompatibleStateError, ReplyError, TransportTimeout

__all__ = [
    "MONO_BIT_DEPTHS",
    "Camera",
    "CameraFeatures",
    "ChannelImage",
    "ChannelPreset",
    "Frame",
    "FrameTimeout",
    "Image",
    "Microscope",
    "MoveTimeout",
    "Roi",
    "RoiConstraints",
    "Shutter",
    "Stage",
    "StageLimits",
    "StagePosition",
    "TriggerMode",
    "UnsupportedFeature",
]

#: A camera image: 2-D, ``uint8`` or ``uint16``.
Image = NDArray[np.uint8] | NDArray[np.uint16]

#: Bit depth of each monochrome pixel format (GenICam SFNC names, also used by pylon).
MONO_BIT_DEPTHS: Final[Mapping[str, int]] = {
    "Mono8": 8,
    "Mono10": 10,
    "Mono12": 12,
    "Mono14": 14,
    "Mono16": 16,
}

_DEFAULT_TIMEOUT_MARGIN_S: Final = 1.0


class FrameTimeout(TransportTimeout):
    """Raised when no frame arrived within ``timeout_s`` (no trigger, camera stalled)."""


class MoveTimeout(DeviceError):
    """Raised when a stage is still moving when the wait's ``timeout_s`` has passed."""


class UnsupportedFeature(DeviceError):
    """Raised when the connected device lacks a feature (no gain node, no binning...).

    Which features a device has is known only after ``connect()``; see
    :meth:`Camera.read_features`.
    """


def _check_finite(device: str, what: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{device}: {what} must be a finite number, got {value!r}")
    return float(value)


def _check_timeout(device: str, timeout_s: float) -> float:
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"{device}: timeout must be > 0 s, got {timeout_s!r}")
    return float(timeout_s)


def _check_in_range(device: str, what: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{device}: {what} {value:g} is outside {low:g}..{high:g}")


# -- camera ------------------------------------------------------------------------------


class TriggerMode(Enum):
    """What starts each exposure."""

    FREE_RUN = "free_run"
    """The camera exposes continuously at its frame rate."""
    SOFTWARE = "software"
    """Each exposure waits for :meth:`Camera.trigger_software` (``snap`` triggers itself)."""
    HARDWARE = "hardware"
    """Each exposure waits for an edge on the camera's trigger input line."""


@dataclass(frozen=True, slots=True)
class Roi:
    """A rectangle of the sensor, in unbinned sensor pixels.

    Args:
        x_px: left edge (0 = first sensor column).
        y_px: top edge (0 = first sensor row).
        width_px: width.
        height_px: height.
    """

    x_px: int
    y_px: int
    width_px: int
    height_px: int

    def __post_init__(self) -> None:
        """Reject negative offsets and empty rectangles."""
        if self.x_px < 0 or self.y_px < 0:
            raise ValueError(f"ROI offsets must be >= 0 px, got ({self.x_px}, {self.y_px})")
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"ROI size must be > 0 px, got {self.width_px} x {self.height_px}")


@dataclass(frozen=True, slots=True)
class RoiConstraints:
    """What ROIs the camera accepts at its current binning, in unbinned sensor pixels.

    Args:
        sensor_width_px: full sensor width.
        sensor_height_px: full sensor height.
        min_width_px: smallest ROI width.
        min_height_px: smallest ROI height.
        width_step_px: the ROI width must be a multiple of this.
        height_step_px: the ROI height must be a multiple of this.
        x_step_px: the left edge must be a multiple of this; 0 if the camera has no
            horizontal offset (the ROI then starts at column 0).
        y_step_px: the top edge must be a multiple of this; 0 if the camera has no vertical
            offset.
    """

    sensor_width_px: int
    sensor_height_px: int
    min_width_px: int
    min_height_px: int
    width_step_px: int
    height_step_px: int
    x_step_px: int
    y_step_px: int

    def problems(self, roi: Roi) -> list[str]:
        """Return why ``roi`` is not acceptable (an empty list if it is)."""
        out: list[str] = []
        x_axis = ("x", roi.x_px, roi.width_px, self.sensor_width_px, self.min_width_px)
        y_axis = ("y", roi.y_px, roi.height_px, self.sensor_height_px, self.min_height_px)
        for (axis, off, size, sensor, min_size), size_step, off_step in (
            (x_axis, self.width_step_px, self.x_step_px),
            (y_axis, self.height_step_px, self.y_step_px),
        ):
            if off + size > sensor:
                out.append(f"{axis} {off}+{size} px exceeds the sensor's {sensor} px")
            if size < min_size:
                out.append(f"{axis} size {size} px is below the minimum {min_size} px")
            if size % size_step:
                out.append(f"{axis} size {size} px is not a multiple of {size_step} px")
            if off_step == 0 and off != 0:
                out.append(f"{axis} offset must be 0 (this camera has no {axis} offset)")
            elif off_step and off % off_step:
                out.append(f"{axis} offset {off} px is not a multiple of {off_step} px")
        return out


@dataclass(frozen=True, slots=True)
class CameraFeatures:
    """What the connected camera can do; fixed for a connection.

    Args:
        exposure: exposure time can be set.
        gain: gain can be set in dB.
        binnings: the symmetric binning factors it accepts (``(1,)`` if none).
        pixel_formats: the monochrome pixel formats it offers (SFNC names).
        trigger_modes: the trigger modes it offers.
    """

    exposure: bool
    gain: bool
    binnings: tuple[int, ...]
    pixel_formats: tuple[str, ...]
    trigger_modes: frozenset[TriggerMode]


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a sequence.

    Args:
        image: the pixels (2-D, ``uint8`` or ``uint16``), owned by the caller.
        index: 0-based position in the sequence, counted by the driver from
            :meth:`Camera.start_sequence`.
    """

    image: Image
    index: int


class Camera(ABC):
    """A monochrome scientific or machine-vision camera.

    Subclasses implement the ``_do_*`` hooks. The public methods check arguments against
    the device's reported limits (``ValueError``), check that the device has the feature
    (:class:`UnsupportedFeature`) and that no sequence is running where a setting is
    changed (:class:`~drivers.errors.IncompatibleStateError`), then call the hook.

    Args:
        name: the device's name in the instrument config.
        sensor_pixel_size_um: the physical pixel pitch from the datasheet. GenICam and
            Micro-Manager have no standard query for it (Micro-Manager's pixel size is at
            the specimen, magnification included), so it comes from the config.
    """

    def __init__(self, *, name: str, sensor_pixel_size_um: float | None = None) -> None:
        """Remember name and pixel pitch; no I/O (that is :meth:`connect`)."""
        if sensor_pixel_size_um is not None and not (
            math.isfinite(sensor_pixel_size_um) and sensor_pixel_size_um > 0
        ):
            raise ValueError(f"{name}: pixel size must be > 0 um, got {sensor_pixel_size_um}")
        self.name = name
        self._sensor_pixel_size_um = sensor_pixel_size_um
        self._seq_running = False
        self._seq_n_frames: int | None = None
        self._seq_frames_read = 0

    # -- lifecycle -------------------------------------------------------------------

    @abstractmethod
    def connect(self) -> None:
        """Open the camera, check it is a camera of the expected kind, select a mono format.

        Raises :class:`~drivers.errors.DeviceNotFound` if no matching camera answers.
        """

    def close(self) -> None:
        """Stop any sequence and release the camera (safe to call twice)."""
        if self._seq_running:
            self.stop_sequence()
        self._do_close()

    @abstractmethod
    def _do_close(self) -> None:
        """Release the camera and the SDK objects."""

    # -- description -----------------------------------------------------------------

    def read_features(self) -> CameraFeatures:
        """Return what the connected camera can do."""
        return self._do_read_features()

    def read_sensor_size_px(self) -> tuple[int, int]:
        """Return the full sensor (width, height) in unbinned pixels."""
        c = self._do_read_roi_constraints()
        return c.sensor_width_px, c.sensor_height_px

    def read_pixel_size_um(self) -> float | None:
        """Return the sensor's pixel pitch in um (from the config), or None if unknown."""
        return self._sensor_pixel_size_um

    # -- exposure and gain -----------------------------------------------------------

    def read_exposure_ms(self) -> float:
        """Return the exposure time in ms."""
        self._require(self.read_features().exposure, "exposure control")
        return self._do_read_exposure_ms()

    def read_exposure_range_ms(self) -> tuple[float, float]:
        """Return the (min, max) exposure time in ms the device accepts now."""
        self._require(self.read_features().exposure, "exposure control")
        return self._do_read_exposure_range_ms()

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure time; ``ValueError`` if outside :meth:`read_exposure_range_ms`."""
        _check_finite(self.name, "exposure", exposure_ms)
        self._check_idle("set the exposure")
        low, high = self.read_exposure_range_ms()
        _check_in_range(self.name, "exposure (ms)", exposure_ms, low, high)
        self._do_set_exposure_ms(float(exposure_ms))

    def read_gain_db(self) -> float:
        """Return the analogue gain in dB."""
        self._require(self.read_features().gain, "gain control in dB")
        return self._do_read_gain_db()

    def read_gain_range_db(self) -> tuple[float, float]:
        """Return the (min, max) gain in dB."""
        self._require(self.read_features().gain, "gain control in dB")
        return self._do_read_gain_range_db()

    def set_gain_db(self, gain_db: float) -> None:
        """Set the gain; ``ValueError`` if outside :meth:`read_gain_range_db`."""
        _check_finite(self.name, "gain", gain_db)
        self._check_idle("set the gain")
        low, high = self.read_gain_range_db()
        _check_in_range(self.name, "gain (dB)", gain_db, low, high)
        self._do_set_gain_db(float(gain_db))

    # -- geometry --------------------------------------------------------------------

    def read_roi_constraints(self) -> RoiConstraints:
        """Return the sensor size and ROI increments at the current binning."""
        return self._do_read_roi_constraints()

    def read_roi(self) -> Roi:
        """Return the current ROI in unbinned sensor pixels."""
        return self._do_read_roi()

    def set_roi(self, roi: Roi) -> None:
        """Set the ROI; ``ValueError`` naming every problem if the camera cannot take it."""
        self._check_idle("set the ROI")
        problems = self.read_roi_constraints().problems(roi)
        if problems:
            raise ValueError(f"{self.name}: ROI {roi} rejected: " + "; ".join(problems))
        self._do_set_roi(roi)

    def reset_roi(self) -> None:
        """Set the ROI to the whole sensor (rounded down to the width/height steps)."""
        self._check_idle("reset the ROI")
        self._do_set_roi(self._full_roi(self.read_roi_constraints()))

    @staticmethod
    def _full_roi(c: RoiConstraints) -> Roi:
        return Roi(
            0,
            0,
            c.sensor_width_px - c.sensor_width_px % c.width_step_px,
            c.sensor_height_px - c.sensor_height_px % c.height_step_px,
        )

    def read_binning(self) -> int:
        """Return the symmetric binning factor (1 = none)."""
        return self._do_read_binning()

    def set_binning(self, binning: int) -> None:
        """Set symmetric binning; the ROI is reset to the whole sensor.

        Resetting is deliberate: vendors disagree on what happens to an ROI when binning
        changes (GenICam cameras halve Width's maximum, some keep the offset), so chipctl
        makes it explicit: set binning first, then the ROI.
        """
        features = self.read_features()
        if binning not in features.binnings:
            raise ValueError(f"{self.name}: binning {binning} not in {features.binnings}")
        self._check_idle("set the binning")
        self._do_set_binning(binning)
        self._do_set_roi(self._full_roi(self.read_roi_constraints()))

    # -- pixel format ----------------------------------------------------------------

    def read_pixel_format(self) -> str:
        """Return the pixel format (SFNC name, e.g. ``"Mono12"``)."""
        return self._do_read_pixel_format()

    def set_pixel_format(self, pixel_format: str) -> None:
        """Select one of :attr:`CameraFeatures.pixel_formats`."""
        formats = self.read_features().pixel_formats
        if pixel_format not in formats:
            raise ValueError(f"{self.name}: pixel format {pixel_format!r} not in {formats}")
        self._check_idle("set the pixel format")
        self._do_set_pixel_format(pixel_format)

    def read_bit_depth(self) -> int:
        """Return the significant bits per pixel (8 to 16)."""
        fmt = self.read_pixel_format()
        return MONO_BIT_DEPTHS.get(fmt) or self._do_read_bit_depth()

    def _do_read_bit_depth(self) -> int:
        """Return the bit depth for a format outside :data:`MONO_BIT_DEPTHS`."""
        raise UnsupportedFeature(self.name, f"unknown bit depth of {self.read_pixel_format()}")

    # -- trigger ---------------------------------------------------------------------

    def read_trigger_mode(self) -> TriggerMode:
        """Return what starts each exposure."""
        return self._do_read_trigger_mode()

    def set_trigger_mode(self, mode: TriggerMode) -> None:
        """Select a trigger mode among :attr:`CameraFeatures.trigger_modes`."""
        modes = self.read_features().trigger_modes
        if mode not in modes:
            names = sorted(m.value for m in modes)
            raise UnsupportedFeature(self.name, f"trigger mode {mode.value!r} not in {names}")
        self._check_idle("set the trigger mode")
        self._do_set_trigger_mode(mode)

    def trigger_software(self) -> None:
        """Start one exposure of a running sequence in software trigger mode."""
        if not self._seq_running:
            raise IncompatibleStateError(self.name, "software trigger without a sequence")
        if self.read_trigger_mode() is not TriggerMode.SOFTWARE:
            raise IncompatibleStateError(self.name, "software trigger outside software mode")
        self._do_trigger_software()

    # -- acquisition -----------------------------------------------------------------

    def default_timeout_s(self) -> float:
        """Return a frame timeout that a healthy camera always meets: exposure + 1 s."""
        if self.read_features().exposure:
            return self._do_read_exposure_ms() / 1000.0 + _DEFAULT_TIMEOUT_MARGIN_S
        return _DEFAULT_TIMEOUT_MARGIN_S * 2

    def snap(self, timeout_s: float | None = None) -> Image:
        """Acquire one image and return it (a copy the caller owns).

        In software trigger mode the driver triggers the exposure itself; in hardware
        mode it waits up to ``timeout_s`` for the external trigger.

        Raises:
            FrameTimeout: no image within ``timeout_s`` (default :meth:`default_timeout_s`).
            IncompatibleStateError: a sequence is running.
        """
        self._check_idle("snap")
        wait_s = self.default_timeout_s() if timeout_s is None else timeout_s
        return self._checked(self._do_snap(_check_timeout(self.name, wait_s)))

    def start_sequence(self, n_frames: int | None = None) -> None:
        """Start acquiring ``n_frames`` frames, or frames until stopped if None.

        Frames queue in the SDK's buffers; take them with :meth:`read_frame`.
        """
        if n_frames is not None and n_frames < 1:
            raise ValueError(f"{self.name}: n_frames must be >= 1 or None, got {n_frames}")
        self._check_idle("start a sequence")
        self._do_start_sequence(n_frames)
        self._seq_running = True
        self._seq_n_frames = n_frames
        self._seq_frames_read = 0

    def read_frame(self, timeout_s: float) -> Frame:
        """Return the next frame of the sequence, waiting up to ``timeout_s``.

        A finite sequence stops by itself once its last frame was read.

        Raises:
            FrameTimeout: no frame within ``timeout_s``.
            IncompatibleStateError: no sequence is running.
        """
        _check_timeout(self.name, timeout_s)
        if not self._seq_running:
            raise IncompatibleStateError(self.name, "read_frame without a running sequence")
        image = self._checked(self._do_read_frame(timeout_s))
        frame = Frame(image=image, index=self._seq_frames_read)
        self._seq_frames_read += 1
        if self._seq_n_frames is not None and self._seq_frames_read >= self._seq_n_frames:
            self.stop_sequence()
        return frame

    def stop_sequence(self) -> None:
        """Stop the sequence and drop frames not read (safe to call when stopped)."""
        if self._seq_running:
            self._seq_running = False
            self._do_stop_sequence()

    def is_sequence_running(self) -> bool:
        """Tell whether a sequence was started and not yet stopped or read to its end."""
        return self._seq_running

    # -- helpers ---------------------------------------------------------------------

    def _require(self, supported: bool, what: str) -> None:
        if not supported:
            raise UnsupportedFeature(self.name, f"this camera has no {what}")

    def _check_idle(self, action: str) -> None:
        if self._seq_running:
            raise IncompatibleStateError(self.name, f"cannot {action} while a sequence runs")

    def _checked(self, image: NDArray[np.generic]) -> Image:
        if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
            got = f"a {image.dtype} image of shape {image.shape}"
            raise ReplyError(self.name, f"SDK returned {got}, expected 2-D uint8 or uint16")
        return image  # type: ignore[return-value]

    # -- hooks -----------------------------------------------------------------------

    @abstractmethod
    def _do_read_features(self) -> CameraFeatures:
        """Return the features (drivers work them out once, in :meth:`connect`)."""

    @abstractmethod
    def _do_read_exposure_ms(self) -> float: ...

    @abstractmethod
    def _do_read_exposure_range_ms(self) -> tuple[float, float]: ...

    @abstractmethod
    def _do_set_exposure_ms(self, exposure_ms: float) -> None: ...

    @abstractmethod
    def _do_read_gain_db(self) -> float: ...

    @abstractmethod
    def _do_read_gain_range_db(self) -> tuple[float, float]: ...

    @abstractmethod
    def _do_set_gain_db(self, gain_db: float) -> None: ...

    @abstractmethod
    def _do_read_roi_constraints(self) -> RoiConstraints: ...

    @abstractmethod
    def _do_read_roi(self) -> Roi: ...

    @abstractmethod
    def _do_set_roi(self, roi: Roi) -> None:
        """Apply ``roi`` (validated, in unbinned sensor pixels)."""

    @abstractmethod
    def _do_read_binning(self) -> int: ...

    @abstractmethod
    def _do_set_binning(self, binning: int) -> None: ...

    @abstractmethod
    def _do_read_pixel_format(self) -> str: ...

    @abstractmethod
    def _do_set_pixel_format(self, pixel_format: str) -> None: ...

    @abstractmethod
    def _do_read_trigger_mode(self) -> TriggerMode: ...

    @abstractmethod
    def _do_set_trigger_mode(self, mode: TriggerMode) -> None: ...

    @abstractmethod
    def _do_trigger_software(self) -> None: ...

    @abstractmethod
    def _do_snap(self, timeout_s: float) -> NDArray[np.generic]:
        """Acquire one image within ``timeout_s`` or raise :class:`FrameTimeout`."""

    @abstractmethod
    def _do_start_sequence(self, n_frames: int | None) -> None: ...

    @abstractmethod
    def _do_read_frame(self, timeout_s: float) -> NDArray[np.generic]:
        """Return the next queued frame within ``timeout_s`` or raise :class:`FrameTimeout`."""

    @abstractmethod
    def _do_stop_sequence(self) -> None: ...


# -- stage -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StagePosition:
    """A stage position in um; ``z_um`` is None for an XY-only stage or position."""

    x_um: float
    y_um: float
    z_um: float | None = None


@dataclass(frozen=True, slots=True)
class StageLimits:
    """Travel limits in um, each a (min, max) pair; ``z_um`` None when there is no Z axis."""

    x_um: tuple[float, float]
    y_um: tuple[float, float]
    z_um: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        """Reject empty or reversed ranges."""
        for axis, rng in (("x", self.x_um), ("y", self.y_um), ("z", self.z_um)):
            if rng is not None and not rng[0] < rng[1]:
                raise ValueError(f"stage {axis} limits must be (min, max), got {rng}")


class Stage(ABC):
    """A motorised XY stage with an optional Z (focus) axis.

    Moves are split into start and poll (DESIGN.md, "Concurrency"): :meth:`move_to` only
    starts the move, so the engine keeps checking interlocks while the stage travels, and
    :meth:`wait_until_stopped` polls on the engine's clock.

    Args:
        name: the device's name in the instrument config.
    """

    def __init__(self, *, name: str) -> None:
        """Remember the name; no I/O."""
        self.name = name

    @abstractmethod
    def connect(self) -> None:
        """Check the stage answers."""

    @abstractmethod
    def close(self) -> None:
        """Release the stage."""

    def read_limits_um(self) -> StageLimits:
        """Return the travel limits."""
        return self._do_read_limits_um()

    def has_z(self) -> bool:
        """Tell whether this stage has a Z axis."""
        return self.read_limits_um().z_um is not None

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Start moving to (x, y[, z]) and return at once; ``ValueError`` outside limits."""
        limits = self.read_limits_um()
        for axis, value, rng in (("x", x_um, limits.x_um), ("y", y_um, limits.y_um)):
            _check_finite(self.name, f"{axis} position", value)
            _check_in_range(self.name, f"{axis} (um)", value, *rng)
        if z_um is not None:
            if limits.z_um is None:
                raise UnsupportedFeature(self.name, "this stage has no Z axis")
            _check_finite(self.name, "z position", z_um)
            _check_in_range(self.name, "z (um)", z_um, *limits.z_um)
        self._do_move_to(float(x_um), float(y_um), None if z_um is None else float(z_um))

    def is_moving(self) -> bool:
        """Tell whether any axis is still moving."""
        return self._do_is_moving()

    def wait_until_stopped(self, clock: Clock, timeout_s: float, poll_s: float = 0.01) -> None:
        """Poll :meth:`is_moving` on ``clock`` until the stage stops.

        Raises:
            MoveTimeout: still moving after ``timeout_s`` of ``clock`` time.
        """
        _check_timeout(self.name, timeout_s)
        _check_timeout(self.name, poll_s)
        deadline_s = clock.now_s() + timeout_s
        while self.is_moving():
            now_s = clock.now_s()
            if now_s >= deadline_s:
                raise MoveTimeout(self.name, f"still moving after {timeout_s:g} s")
            clock.sleep_s(min(poll_s, deadline_s - now_s))

    def read_position_um(self) -> StagePosition:
        """Return the current position (z_um None without a Z axis)."""
        return self._do_read_position_um()

    def stop(self) -> None:
        """Stop all axes at once (safe at any time)."""
        self._do_stop()

    @abstractmethod
    def _do_read_limits_um(self) -> StageLimits: ...

    @abstractmethod
    def _do_move_to(self, x_um: float, y_um: float, z_um: float | None) -> None: ...

    @abstractmethod
    def _do_is_moving(self) -> bool: ...

    @abstractmethod
    def _do_read_position_um(self) -> StagePosition: ...

    @abstractmethod
    def _do_stop(self) -> None: ...


# -- shutter -----------------------------------------------------------------------------


class Shutter(ABC):
    """A shutter or any on/off light source (LED, lamp TTL line).

    Args:
        name: the device's name in the instrument config.
    """

    def __init__(self, *, name: str) -> None:
        """Remember the name; no I/O."""
        self.name = name

    def connect(self) -> None:
        """Check the device answers (default: nothing to check)."""
        return

    def close(self) -> None:
        """Release the device (default: nothing to release)."""
        return

    @abstractmethod
    def set_open(self, is_open: bool) -> None:
        """Open (light on) or close (light off)."""

    @abstractmethod
    def read_open(self) -> bool:
        """Tell whether it is open."""


# -- microscope --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelPreset:
    """Camera settings and light for one imaging channel.

    Args:
        name: e.g. ``"brightfield"``, ``"live"`` (calcein), ``"dead"`` (PI / EthD-1).
        exposure_ms: exposure time.
        gain_db: gain, or None to leave the camera's gain as it is.
        light: the shutter or light source opened only while this channel exposes, or
            None (e.g. brightfield lamp left on). Keeping fluorescence excitation off
            between exposures limits phototoxicity (domain-reference §3.4).
    """

    name: str
    exposure_ms: float
    gain_db: float | None = None
    light: Shutter | None = None


@dataclass(frozen=True, slots=True)
class ChannelImage:
    """One image of a multi-channel acquisition, with what a run file needs to label it.

    Args:
        channel: the preset's name.
        position: the named position, or None if acquired where the stage stood.
        stage_um: the stage position read just before the exposure.
        image: the pixels.
        exposure_ms: exposure used.
        gain_db: gain used (None if the camera has no gain control).
        t_s: clock time when the exposure was started.
    """

    channel: str
    position: str | None
    stage_um: StagePosition
    image: Image
    exposure_ms: float
    gain_db: float | None
    t_s: float


class Microscope:
    """A camera on a stage, with named channel presets and named positions.

    It owns no devices' lifecycle: connect the camera, stage and lights first. It holds
    the clock because stage waits poll on it and images are stamped with it.

    Args:
        name: the microscope's name in the instrument config.
        camera: a connected camera.
        stage: a connected stage.
        clock: the engine's clock.
        channels: the channel presets (unique names).
        positions: named stage positions, e.g. one per chamber.
        move_timeout_s: how long a move to a named position may take.
    """

    def __init__(
        self,
        *,
        name: str,
        camera: Camera,
        stage: Stage,
        clock: Clock,
        channels: Sequence[ChannelPreset],
        positions: Mapping[str, StagePosition],
        move_timeout_s: float = 30.0,
    ) -> None:
        """Check preset and position names are unique; no I/O."""
        names = [c.name for c in channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{name}: duplicate channel names {dupes}")
        self.name = name
        self.camera = camera
        self.stage = stage
        self._clock = clock
        self._channels = {c.name: c for c in channels}
        self._positions = dict(positions)
        self._move_timeout_s = _check_timeout(name, move_timeout_s)

    def channel_names(self) -> list[str]:
        """Return the preset names in definition order."""
        return list(self._channels)

    def position_names(self) -> list[str]:
        """Return the named positions in definition order."""
        return list(self._positions)

    def preflight(self) -> list[str]:
        """Check every preset and position against the devices' limits (reads limits).

        Returns:
            One line per problem; empty if everything fits.
        """
        problems: list[str] = []
        features = self.camera.read_features()
        exp_range = self.camera.read_exposure_range_ms() if features.exposure else None
        gain_range = self.camera.read_gain_range_db() if features.gain else None
        for c in self._channels.values():
            if exp_range is None:
                problems.append(f"channel {c.name!r}: camera has no exposure control")
            elif not exp_range[0] <= c.exposure_ms <= exp_range[1]:
                problems.append(
                    f"channel {c.name!r}: exposure {c.exposure_ms:g} ms outside "
                    f"{exp_range[0]:g}..{exp_range[1]:g} ms"
                )
            if c.gain_db is not None:
                if gain_range is None:
                    problems.append(f"channel {c.name!r}: camera has no gain control in dB")
                elif not gain_range[0] <= c.gain_db <= gain_range[1]:
                    problems.append(
                        f"channel {c.name!r}: gain {c.gain_db:g} dB outside "
                        f"{gain_range[0]:g}..{gain_range[1]:g} dB"
                    )
        limits = self.stage.read_limits_um()
        for pname, p in self._positions.items():
            for axis, value, rng in (
                ("x", p.x_um, limits.x_um),
                ("y", p.y_um, limits.y_um),
                ("z", p.z_um, limits.z_um),
            ):
                if value is None:
                    continue
                if rng is None:
                    problems.append(f"position {pname!r}: stage has no {axis} axis")
                elif not rng[0] <= value <= rng[1]:
                    problems.append(
                        f"position {pname!r}: {axis} {value:g} um outside {rng[0]:g}..{rng[1]:g}"
                    )
        return problems

    def _position(self, position: str) -> StagePosition:
        try:
            return self._positions[position]
        except KeyError:
            raise ValueError(
                f"{self.name}: unknown position {position!r}; known: {self.position_names()}"
            ) from None

    def _channel(self, channel: str) -> ChannelPreset:
        try:
            return self._channels[channel]
        except KeyError:
            raise ValueError(
                f"{self.name}: unknown channel {channel!r}; known: {self.channel_names()}"
            ) from None

    def start_move(self, position: str) -> None:
        """Start moving to a named position and return at once (poll :meth:`is_moving`)."""
        p = self._position(position)
        self.stage.move_to(p.x_um, p.y_um, p.z_um)

    def is_moving(self) -> bool:
        """Tell whether the stage is still moving."""
        return self.stage.is_moving()

    def move_to(self, position: str) -> None:
        """Move to a named position and wait on the clock until the stage stops."""
        self.start_move(position)
        self.stage.wait_until_stopped(self._clock, self._move_timeout_s)

    def acquire(
        self, channels: Sequence[str], *, position: str | None = None
    ) -> list[ChannelImage]:
        """Snap each channel in order where the stage stands.

        Every channel name is checked before anything changes. Each channel's light is
        opened just for its exposure and closed again even if the snap fails.

        Args:
            channels: preset names, in acquisition order.
            position: the label stored with the images (the caller moved there).
        """
        presets = [self._channel(c) for c in channels]
        if not presets:
            raise ValueError(f"{self.name}: no channels to acquire")
        stage_um = self.stage.read_position_um()
        has_gain = self.camera.read_features().gain
        out: list[ChannelImage] = []
        for preset in presets:
            self.camera.set_exposure_ms(preset.exposure_ms)
            if preset.gain_db is not None:
                self.camera.set_gain_db(preset.gain_db)
            gain_db = self.camera.read_gain_db() if has_gain else None
            if preset.light is not None:
                preset.light.set_open(True)
            try:
                t_s = self._clock.now_s()
                image = self.camera.snap()
            finally:
                if preset.light is not None:
                    preset.light.set_open(False)
            out.append(
                ChannelImage(
                    channel=preset.name,
                    position=position,
                    stage_um=stage_um,
                    image=image,
                    exposure_ms=preset.exposure_ms,
                    gain_db=gain_db,
                    t_s=t_s,
                )
            )
        return out

    def acquire_at(self, position: str, channels: Sequence[str]) -> list[ChannelImage]:
        """Move to a named position, wait for the stage, and acquire ``channels`` there."""
        self._position(position)
        for c in channels:
            self._channel(c)
        self.move_to(position)
        return self.acquire(channels, position=position)
