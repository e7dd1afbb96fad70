"""Micro-Manager cameras, stages and shutters through pymmcore-plus.

Any device of a Micro-Manager configuration (``.cfg``) becomes a chipctl
:class:`~drivers.camera.roles.Camera`, :class:`~drivers.camera.roles.Stage` or
:class:`~drivers.camera.roles.Shutter`, so chipctl drives the hundreds of cameras and stages
Micro-Manager has adapters for (Hamamatsu, PCO, Photometrics, Andor, Prior, ASI, Marzhauser,
Ludl...). The drivers take an already loaded core (:func:`load_core` loads one from a config
file), because one core holds all the devices of a microscope and they share it.

pymmcore-plus is an optional dependency, imported inside :func:`load_core` only; the
drivers themselves just call methods on the core object they are given.

Tested with pymmcore-plus 0.18.1 (pymmcore 12.5.1.75.0, device interface 75) on
``pymmcore_plus.experimental.unicore.UniMMCore`` with pure-Python camera, XY stage, Z stage
and shutter devices, because the PyPI wheels ship no C++ device adapters (not even the
DemoCamera; hardware-reference §7.2). The calls used are the plain CMMCore API, so the
same code drives C++ adapters loaded from a real config.

Micro-Manager specifics the drivers handle:

- ``setROI``/``getROI`` count in *binned* pixels of the current image; chipctl's ROI is in
  sensor pixels, so the driver multiplies/divides by the ``Binning`` property.
- There is no query for the sensor size: :meth:`MMCamera.connect` clears the ROI, reads the
  image size and restores the ROI.
- ``snapImage`` blocks inside the adapter until the image is read out and takes no
  timeout, so :meth:`MMCamera.snap`'s timeout is the adapter's own. Sequence frames are
  polled from the circular buffer on the driver's clock, with ``timeout_s`` enforced.
- Gain and trigger mode are adapter-specific properties, so the config names them
  (``gain_property`` must be a property in dB; ``trigger_properties`` maps modes to
  property values). Micro-Manager has no generic software trigger command.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.camera.roles import (
    MONO_BIT_DEPTHS,
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
    UnsupportedFeature,
)
from drivers.clock import Clock
from drivers.errors import DeviceError, DeviceNotFound, IncompatibleStateError

__all__ = ["MMCamera", "MMShutter", "MMStage", "load_core"]

#: Widest exposure range assumed when the adapter publishes no limits for ``Exposure``.
FALLBACK_EXPOSURE_RANGE_MS = (0.001, 3_600_000.0)


def load_core(config_path: str, *, adapter_paths: tuple[str, ...] = ()) -> Any:
    """Create a ``CMMCorePlus`` and load a Micro-Manager configuration into it.

    Args:
        config_path: the ``.cfg`` file written by Micro-Manager's Hardware Configuration
            Wizard.
        adapter_paths: folders holding the ``mmgr_dal_*`` adapter libraries (default: the
            Micro-Manager install pymmcore-plus finds).

    Raises:
        DeviceNotFound: pymmcore-plus is missing, or the config does not load.
    """
    try:
        from pymmcore_plus import CMMCorePlus
    except ImportError as exc:
        raise DeviceNotFound(
            "mmcore", f"pymmcore-plus is not installed ({exc}); install the 'mmcore' extra"
        ) from exc
    core = CMMCorePlus()
    try:
        if adapter_paths:
            core.setDeviceAdapterSearchPaths(list(adapter_paths))
        core.loadSystemConfiguration(config_path)
    except Exception as exc:
        raise DeviceNotFound("mmcore", f"cannot load {config_path}: {exc}") from exc
    return core


def _check_device(core: Any, name: str, label: str, kind: str) -> None:
    """Raise DeviceNotFound unless ``label`` is a loaded device of type ``kind``."""
    try:
        loaded = tuple(core.getLoadedDevices())
    except Exception as exc:
        raise DeviceError(name, f"cannot list Micro-Manager devices: {exc}") from exc
    if label not in loaded:
        raise DeviceNotFound(name, f"no Micro-Manager device {label!r} (loaded: {list(loaded)})")
    dev_type = core.getDeviceType(label)
    type_name = getattr(dev_type, "name", str(dev_type))
    if type_name != kind:
        raise DeviceNotFound(name, f"Micro-Manager device {label!r} is a {type_name}, not {kind}")


class _MMErrors:
    """Context manager turning Micro-Manager errors (RuntimeError...) into DeviceError."""

    def __init__(self, name: str, action: str) -> None:
        self.name = name
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, DeviceError) or not isinstance(exc, Exception):
            return
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeviceError(self.name, f"{self.action}: {text}") from exc


class MMCamera(Camera):
    """A Micro-Manager camera device.

    Args:
        core: a ``CMMCorePlus`` (or ``UniMMCore``) with the camera loaded and initialised.
        name: the device's name in the instrument config.
        camera_label: the camera's label in the Micro-Manager config.
        clock: the clock sequence frames are polled on. Camera adapters deliver frames in
            real time, so give a real-time clock when running sequences on hardware.
        gain_property: the camera property holding the gain in dB, or None if none.
        trigger_properties: for each trigger mode the camera supports besides free run,
            the (property, value) that selects it, e.g.
            ``{TriggerMode.HARDWARE: ("TriggerMode", "External")}``; free run is selected
            by ``trigger_properties[FREE_RUN]`` if given.
        poll_s: how often the circular buffer is checked while waiting for a frame.
        sensor_pixel_size_um: the pixel pitch from the datasheet (Micro-Manager's pixel
            size is at the specimen, magnification included).
    """

    def __init__(
        self,
        core: Any,
        *,
        name: str,
        camera_label: str,
        clock: Clock,
        gain_property: str | None = "Gain",
        trigger_properties: Mapping[TriggerMode, tuple[str, str]] | None = None,
        poll_s: float = 0.001,
        sensor_pixel_size_um: float | None = None,
    ) -> None:
        """Remember the core and labels; no I/O."""
        super().__init__(name=name, sensor_pixel_size_um=sensor_pixel_size_um)
        triggers = dict(trigger_properties or {})
        if TriggerMode.SOFTWARE in triggers:
            raise ValueError(f"{name}: Micro-Manager has no generic software trigger command")
        if not (math.isfinite(poll_s) and poll_s > 0):
            raise ValueError(f"{name}: poll_s must be > 0, got {poll_s}")
        self.core = core
        self.camera_label = camera_label
        self.gain_property = gain_property
        self.trigger_properties = triggers
        self.poll_s = poll_s
        self._clock = clock
        self._features: CameraFeatures | None = None
        self._sensor_px: tuple[int, int] | None = None

    def _errors(self, action: str) -> _MMErrors:
        return _MMErrors(self.name, action)

    def _prop(self, prop: str) -> str:
        with self._errors(f"read {prop}"):
            return str(self.core.getProperty(self.camera_label, prop))

    def _prop_range(self, prop: str) -> tuple[float, float] | None:
        with self._errors(f"read {prop} limits"):
            if not self.core.hasPropertyLimits(self.camera_label, prop):
                return None
            return (
                float(self.core.getPropertyLowerLimit(self.camera_label, prop)),
                float(self.core.getPropertyUpperLimit(self.camera_label, prop)),
            )

    def _has_writable(self, prop: str) -> bool:
        with self._errors(f"inspect {prop}"):
            return bool(self.core.hasProperty(self.camera_label, prop)) and not bool(
                self.core.isPropertyReadOnly(self.camera_label, prop)
            )

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Check the label is a camera, make it the core's camera, read the sensor size."""
        _check_device(self.core, self.name, self.camera_label, "CameraDevice")
        with self._errors("select camera"):
            self.core.setCameraDevice(self.camera_label)
        binnings: tuple[int, ...] = (1,)
        if self._has_writable("Binning"):
            with self._errors("read allowed binnings"):
                allowed = self.core.getAllowedPropertyValues(self.camera_label, "Binning")
            binnings = tuple(sorted(int(v) for v in allowed if str(v).isdigit())) or (1,)
        for mode, (prop, value) in self.trigger_properties.items():
            if not self._has_writable(prop):
                raise DeviceNotFound(self.name, f"no writable property {prop!r} for {mode.value}")
            with self._errors(f"read allowed {prop}"):
                allowed = tuple(self.core.getAllowedPropertyValues(self.camera_label, prop))
            if allowed and value not in allowed:
                raise DeviceNotFound(self.name, f"{prop} has no value {value!r} ({allowed})")
        with self._errors("read sensor size"):
            has_binning = self.core.hasProperty(self.camera_label, "Binning")
            b = int(self.core.getProperty(self.camera_label, "Binning")) if has_binning else 1
            roi = list(self.core.getROI(self.camera_label))
            self.core.clearROI()
            self._sensor_px = (
                int(self.core.getImageWidth()) * b,
                int(self.core.getImageHeight()) * b,
            )
            self.core.setROI(self.camera_label, *roi)
        self._features = CameraFeatures(
            exposure=True,
            gain=self.gain_property is not None and self._has_writable(self.gain_property),
            binnings=binnings,
            pixel_formats=(self._do_read_pixel_format(),),
            trigger_modes=frozenset({TriggerMode.FREE_RUN, *self.trigger_properties}),
        )

    def _do_close(self) -> None:
        # The core (and its devices) belong to whoever loaded the config.
        self._features = None

    # -- settings --------------------------------------------------------------------

    def _do_read_features(self) -> CameraFeatures:
        if self._features is None:
            raise IncompatibleStateError(self.name, "not connected")
        return self._features

    def _do_read_exposure_ms(self) -> float:
        with self._errors("read exposure"):
            return float(self.core.getExposure(self.camera_label))

    def _do_read_exposure_range_ms(self) -> tuple[float, float]:
        return self._prop_range("Exposure") or FALLBACK_EXPOSURE_RANGE_MS

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        with self._errors("set exposure"):
            self.core.setExposure(self.camera_label, exposure_ms)

    def _gain_prop(self) -> str:
        if self.gain_property is None:
            raise UnsupportedFeature(self.name, "no gain property configured")
        return self.gain_property

    def _do_read_gain_db(self) -> float:
        return float(self._prop(self._gain_prop()))

    def _do_read_gain_range_db(self) -> tuple[float, float]:
        rng = self._prop_range(self._gain_prop())
        if rng is None:
            raise UnsupportedFeature(self.name, f"{self.gain_property} has no published limits")
        return rng

    def _do_set_gain_db(self, gain_db: float) -> None:
        with self._errors("set gain"):
            self.core.setProperty(self.camera_label, self._gain_prop(), gain_db)

    def _do_read_binning(self) -> int:
        with self._errors("read binning"):
            if not self.core.hasProperty(self.camera_label, "Binning"):
                return 1
        return int(self._prop("Binning"))

    def _do_set_binning(self, binning: int) -> None:
        if binning == 1 and not self._has_writable("Binning"):
            return  # no Binning property: 1 is the only binning there is
        with self._errors("set binning"):
            self.core.setProperty(self.camera_label, "Binning", binning)

    def _do_read_roi_constraints(self) -> RoiConstraints:
        if self._sensor_px is None:
            raise IncompatibleStateError(self.name, "not connected")
        b = self._do_read_binning()
        # Micro-Manager publishes no ROI increments; whole binned pixels always work.
        return RoiConstraints(
            sensor_width_px=self._sensor_px[0],
            sensor_height_px=self._sensor_px[1],
            min_width_px=b,
            min_height_px=b,
            width_step_px=b,
            height_step_px=b,
            x_step_px=b,
            y_step_px=b,
        )

    def _do_read_roi(self) -> Roi:
        b = self._do_read_binning()
        with self._errors("read ROI"):
            x, y, w, h = (int(v) for v in self.core.getROI(self.camera_label))
        return Roi(x * b, y * b, w * b, h * b)

    def _do_set_roi(self, roi: Roi) -> None:
        b = self._do_read_binning()
        with self._errors("set ROI"):
            x, y, w, h = roi.x_px // b, roi.y_px // b, roi.width_px // b, roi.height_px // b
            self.core.setROI(self.camera_label, x, y, w, h)

    def _do_read_pixel_format(self) -> str:
        with self._errors("read pixel type"):
            depth = int(self.core.getImageBitDepth())
            n_bytes = int(self.core.getBytesPerPixel())
            n_components = int(self.core.getNumberOfComponents())
        fmt = f"Mono{depth}"
        if n_components != 1 or n_bytes not in (1, 2) or fmt not in MONO_BIT_DEPTHS:
            raise UnsupportedFeature(
                self.name, f"{depth}-bit, {n_bytes}-byte, {n_components}-component pixels"
            )
        return fmt

    def _do_set_pixel_format(self, pixel_format: str) -> None:
        return  # only the current format is offered (see CameraFeatures.pixel_formats)

    def _do_read_trigger_mode(self) -> TriggerMode:
        for mode, (prop, value) in self.trigger_properties.items():
            if self._prop(prop) == value:
                return mode
        return TriggerMode.FREE_RUN

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        if mode not in self.trigger_properties:
            return  # FREE_RUN with no property: nothing selects it but the others' absence
        prop, value = self.trigger_properties[mode]
        with self._errors(f"set {prop}"):
            self.core.setProperty(self.camera_label, prop, value)

    def _do_trigger_software(self) -> None:
        raise UnsupportedFeature(self.name, "Micro-Manager has no software trigger command")

    # -- acquisition -----------------------------------------------------------------

    def _do_snap(self, timeout_s: float) -> NDArray[np.generic]:
        with self._errors("snap"):
            self.core.setCameraDevice(self.camera_label)
            self.core.snapImage()
            return np.array(self.core.getImage(), copy=True)

    def _do_start_sequence(self, n_frames: int | None) -> None:
        with self._errors("start sequence"):
            self.core.setCameraDevice(self.camera_label)
            if n_frames is None:
                self.core.startContinuousSequenceAcquisition(0.0)
            else:
                self.core.startSequenceAcquisition(self.camera_label, n_frames, 0.0, True)

    def _do_read_frame(self, timeout_s: float) -> NDArray[np.generic]:
        deadline_s = self._clock.now_s() + timeout_s
        while True:
            with self._errors("read frame"):
                if self.core.getRemainingImageCount() > 0:
                    return np.array(self.core.popNextImage(), copy=True)
                if self.core.isBufferOverflowed():
                    raise DeviceError(self.name, "circular buffer overflowed; frames lost")
            now_s = self._clock.now_s()
            if now_s >= deadline_s:
                raise FrameTimeout(self.name, f"no frame within {timeout_s:g} s")
            self._clock.sleep_s(min(self.poll_s, deadline_s - now_s))

    def _do_stop_sequence(self) -> None:
        with self._errors("stop sequence"):
            self.core.stopSequenceAcquisition(self.camera_label)


class MMStage(Stage):
    """A Micro-Manager XY stage, optionally with a focus (Z) stage.

    Micro-Manager does not publish travel limits for XY stages, so they come from the
    config (the stage datasheet, or the region the chip holder allows).

    Args:
        core: a ``CMMCorePlus`` (or ``UniMMCore``) with the stages loaded.
        name: the device's name in the instrument config.
        xy_label: the XY stage's label.
        limits: travel limits; ``limits.z_um`` must be given if and only if ``z_label`` is.
        z_label: the focus stage's label, or None.
    """

    def __init__(
        self,
        core: Any,
        *,
        name: str,
        xy_label: str,
        limits: StageLimits,
        z_label: str | None = None,
    ) -> None:
        """Remember the core, labels and limits; no I/O."""
        super().__init__(name=name)
        if (limits.z_um is None) != (z_label is None):
            raise ValueError(f"{name}: give Z limits if and only if a Z stage label is given")
        self.core = core
        self.xy_label = xy_label
        self.z_label = z_label
        self._limits = limits

    def _errors(self, action: str) -> _MMErrors:
        return _MMErrors(self.name, action)

    def connect(self) -> None:
        """Check the labels are an XY stage and a focus stage."""
        _check_device(self.core, self.name, self.xy_label, "XYStageDevice")
        if self.z_label is not None:
            _check_device(self.core, self.name, self.z_label, "StageDevice")

    def close(self) -> None:
        """Nothing to release: the core belongs to whoever loaded the config."""

    def _do_read_limits_um(self) -> StageLimits:
        return self._limits

    def _do_move_to(self, x_um: float, y_um: float, z_um: float | None) -> None:
        with self._errors("start move"):
            self.core.setXYPosition(self.xy_label, x_um, y_um)
            if z_um is not None and self.z_label is not None:
                self.core.setPosition(self.z_label, z_um)

    def _do_is_moving(self) -> bool:
        with self._errors("read busy"):
            busy = bool(self.core.deviceBusy(self.xy_label))
            if self.z_label is not None:
                busy = busy or bool(self.core.deviceBusy(self.z_label))
        return busy

    def _do_read_position_um(self) -> StagePosition:
        with self._errors("read position"):
            x_um, y_um = self.core.getXYPosition(self.xy_label)
            z_um = None if self.z_label is None else float(self.core.getPosition(self.z_label))
        return StagePosition(float(x_um), float(y_um), z_um)

    def _do_stop(self) -> None:
        with self._errors("stop"):
            self.core.stop(self.xy_label)
            if self.z_label is not None:
                self.core.stop(self.z_label)


class MMShutter(Shutter):
    """A Micro-Manager shutter device (mechanical shutter, LED or laser on/off).

    Args:
        core: a ``CMMCorePlus`` (or ``UniMMCore``) with the shutter loaded.
        name: the device's name in the instrument config.
        shutter_label: the shutter's label.
    """

    def __init__(self, core: Any, *, name: str, shutter_label: str) -> None:
        """Remember the core and label; no I/O."""
        super().__init__(name=name)
        self.core = core
        self.shutter_label = shutter_label

    def connect(self) -> None:
        """Check the label is a shutter."""
        _check_device(self.core, self.name, self.shutter_label, "ShutterDevice")

    def set_open(self, is_open: bool) -> None:
        """Open or close the shutter."""
        with _MMErrors(self.name, "set shutter"):
            self.core.setShutterOpen(self.shutter_label, bool(is_open))

    def read_open(self) -> bool:
        """Tell whether the shutter is open."""
        with _MMErrors(self.name, "read shutter"):
            return bool(self.core.getShutterOpen(self.shutter_label))
