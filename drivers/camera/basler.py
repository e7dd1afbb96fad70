"""Basler cameras (ace, ace 2, boost, dart...) through pypylon.

pypylon is an optional dependency, imported inside the methods that need it, so
``drivers`` imports without it. Tested with pypylon 26.9 from PyPI, whose wheel bundles
the pylon runtime including the Camera Emulation transport layer: with the environment
variable ``PYLON_CAMEMU=N`` set before the first ``TlFactory`` call, pylon lists N
emulated cameras (device class ``BaslerCamEmu``, serials ``0815-0000``...,
hardware-reference §7.1). No pylon SDK install is needed for that.

Node names follow the GenICam SFNC as pylon exposes them on USB3 Vision and recent GigE
cameras: ``ExposureTime`` (us) and ``Gain`` (dB). Older GigE models only have
``ExposureTimeAbs`` (us), used as a fallback, and ``GainRaw`` in model-specific steps,
which is *not* used (no documented dB conversion), so gain is then unsupported.

Quirks (pypylon 26.9 camera emulation, checked here):

- binning does not shrink ``Width``/``WidthMax`` as real cameras do; the driver writes
  Width/Height after every binning change, so images have the binned size either way.
- exposure does not change the test image's brightness (hardware-reference §7.1).
- ``RetrieveResult`` with ``TimeoutHandling_Return`` returns an invalid result on timeout;
  that becomes :class:`~drivers.camera.roles.FrameTimeout`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
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
    TriggerMode,
    UnsupportedFeature,
)
from drivers.errors import DeviceError, DeviceNotFound, DeviceRejected, IncompatibleStateError

__all__ = ["BaslerCamera", "import_pylon"]


def import_pylon(device: str) -> Any:
    """Import ``pypylon.pylon`` or raise :class:`DeviceNotFound` saying how to install it."""
    try:
        from pypylon import pylon
    except ImportError as exc:
        raise DeviceNotFound(
            device, f"pypylon is not installed ({exc}); install the 'basler' extra"
        ) from exc
    return pylon


def _ms(timeout_s: float) -> int:
    return max(1, math.ceil(timeout_s * 1000.0))


class BaslerCamera(Camera):
    """A Basler camera driven through pypylon's ``InstantCamera``.

    Args:
        name: the device's name in the instrument config.
        serial_number: the camera to open; None opens the only camera found (and fails if
            there are several, so a rig never images with the wrong camera).
        device_class: restrict enumeration to one pylon device class, e.g.
            ``"BaslerUsb"``, ``"BaslerGigE"`` or ``"BaslerCamEmu"``.
        hardware_trigger_line: the input line used in hardware trigger mode.
        n_buffers: grab buffers pylon allocates (frames queued before being read).
        sensor_pixel_size_um: the pixel pitch from the datasheet (pylon has no node).
    """

    def __init__(
        self,
        *,
        name: str,
        serial_number: str | None = None,
        device_class: str | None = None,
        hardware_trigger_line: str = "Line1",
        n_buffers: int = 16,
        sensor_pixel_size_um: float | None = None,
    ) -> None:
        """Remember how to find the camera; no I/O."""
        super().__init__(name=name, sensor_pixel_size_um=sensor_pixel_size_um)
        if n_buffers < 1:
            raise ValueError(f"{name}: n_buffers must be >= 1, got {n_buffers}")
        self.serial_number = serial_number
        self.device_class = device_class
        self.hardware_trigger_line = hardware_trigger_line
        self.n_buffers = n_buffers
        self._cam: Any = None
        self._features: CameraFeatures | None = None
        self._exposure_node = ""

    # -- SDK plumbing ----------------------------------------------------------------

    @contextmanager
    def _sdk(self, action: str) -> Iterator[None]:
        """Turn pylon/GenICam exceptions into chipctl errors carrying the device name."""
        from pypylon import genicam

        try:
            yield
        except genicam.TimeoutException as exc:
            raise FrameTimeout(self.name, f"{action}: {_first_line(exc)}") from exc
        except (genicam.OutOfRangeException, genicam.InvalidArgumentException) as exc:
            raise DeviceRejected(self.name, f"{action}: {_first_line(exc)}") from exc
        except genicam.AccessException as exc:
            raise IncompatibleStateError(self.name, f"{action}: {_first_line(exc)}") from exc
        except genicam.GenericException as exc:
            raise DeviceError(self.name, f"{action}: {_first_line(exc)}") from exc

    def _camera(self) -> Any:
        if self._cam is None:
            raise IncompatibleStateError(self.name, "not connected")
        return self._cam

    def _node(self, name: str) -> Any | None:
        """Return the named node if the camera has it and it is available now."""
        from pypylon import genicam

        try:
            node = self._camera().GetNodeMap().GetNode(name)
        except genicam.GenericException:
            return None
        if node is None or not genicam.IsAvailable(node):
            return None
        return node

    def _need(self, name: str) -> Any:
        """Return the named node, or raise UnsupportedFeature if the camera lacks it."""
        node = self._node(name)
        if node is None:
            raise UnsupportedFeature(self.name, f"camera has no {name} node")
        return node

    def _writable(self, name: str) -> bool:
        from pypylon import genicam

        node = self._node(name)
        return node is not None and bool(genicam.IsWritable(node))

    def _get(self, name: str) -> Any:
        node = self._need(name)
        with self._sdk(f"read {name}"):
            return node.Value

    def _set(self, name: str, value: Any) -> None:
        node = self._need(name)
        with self._sdk(f"set {name} = {value!r}"):
            node.Value = value

    def node_map(self) -> Any:
        """Return pylon's node map, for vendor features outside the Camera role.

        Changing ROI, binning, format, exposure, gain or trigger here bypasses the
        role's checks; use it for things like ``TestImageSelector`` on the emulator.
        """
        return self._camera().GetNodeMap()

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Find and open the camera, switch auto exposure/gain off, select a mono format.

        Auto exposure and auto gain are switched off because intensities must be
        comparable between time points of a run.
        """
        pylon = import_pylon(self.name)
        with self._sdk("enumerate cameras"):
            factory = pylon.TlFactory.GetInstance()
            info = pylon.DeviceInfo()
            if self.serial_number is not None:
                info.SetSerialNumber(self.serial_number)
            if self.device_class is not None:
                info.SetDeviceClass(self.device_class)
            devices = list(factory.EnumerateDevices([info]))
        found = [f"{d.GetModelName()} ({d.GetSerialNumber()})" for d in devices]
        if not devices:
            want = f"serial {self.serial_number}" if self.serial_number else "any camera"
            raise DeviceNotFound(self.name, f"no Basler camera found ({want})")
        if len(devices) > 1:
            raise DeviceNotFound(
                self.name, f"{len(devices)} cameras found {found}; set serial_number"
            )
        with self._sdk("open camera"):
            self._cam = pylon.InstantCamera(factory.CreateDevice(devices[0]))
            self._cam.Open()
        try:
            self._configure()
        except BaseException:
            self._do_close()
            raise

    def _configure(self) -> None:
        for auto in ("ExposureAuto", "GainAuto"):
            if self._writable(auto):
                self._set(auto, "Off")
        if self._writable("TriggerSelector"):
            self._set("TriggerSelector", "FrameStart")
        for node in ("ExposureTime", "ExposureTimeAbs"):
            if self._writable(node):
                self._exposure_node = node
                break
        fmt_node = self._node("PixelFormat")
        formats = tuple(f for f in (fmt_node.Symbolics if fmt_node else ()) if f in MONO_BIT_DEPTHS)
        if not formats:
            raise DeviceNotFound(self.name, "camera offers no monochrome pixel format")
        if self._get("PixelFormat") not in formats:
            self._set("PixelFormat", formats[0])
        binnings: tuple[int, ...] = (1,)
        h_node, v_node = self._node("BinningHorizontal"), self._node("BinningVertical")
        if h_node is not None and v_node is not None and self._writable("BinningHorizontal"):
            top = min(int(h_node.Max), int(v_node.Max))
            binnings = tuple(range(1, top + 1))
        modes = {TriggerMode.FREE_RUN}
        source = self._node("TriggerSource")
        if self._writable("TriggerMode") and source is not None:
            if "Software" in source.Symbolics:
                modes.add(TriggerMode.SOFTWARE)
            if self.hardware_trigger_line in source.Symbolics:
                modes.add(TriggerMode.HARDWARE)
        self._features = CameraFeatures(
            exposure=bool(self._exposure_node),
            gain=self._writable("Gain"),
            binnings=binnings,
            pixel_formats=formats,
            trigger_modes=frozenset(modes),
        )

    def _do_close(self) -> None:
        cam, self._cam = self._cam, None
        self._features = None
        if cam is None:
            return
        with self._sdk("close camera"):
            if cam.IsGrabbing():
                cam.StopGrabbing()
            cam.Close()
            cam.DestroyDevice()

    # -- settings --------------------------------------------------------------------

    def _do_read_features(self) -> CameraFeatures:
        if self._features is None:
            raise IncompatibleStateError(self.name, "not connected")
        return self._features

    def _do_read_exposure_ms(self) -> float:
        return float(self._get(self._exposure_node)) / 1000.0

    def _do_read_exposure_range_ms(self) -> tuple[float, float]:
        node = self._need(self._exposure_node)
        with self._sdk("read exposure limits"):
            return float(node.Min) / 1000.0, float(node.Max) / 1000.0

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        self._set(self._exposure_node, exposure_ms * 1000.0)

    def _do_read_gain_db(self) -> float:
        return float(self._get("Gain"))

    def _do_read_gain_range_db(self) -> tuple[float, float]:
        node = self._need("Gain")
        with self._sdk("read gain limits"):
            return float(node.Min), float(node.Max)

    def _do_set_gain_db(self, gain_db: float) -> None:
        self._set("Gain", gain_db)

    def _do_read_binning(self) -> int:
        return int(self._get("BinningHorizontal")) if self._node("BinningHorizontal") else 1

    def _do_set_binning(self, binning: int) -> None:
        if binning == 1 and not self._writable("BinningHorizontal"):
            return  # no binning nodes: 1 is the only binning there is
        self._set("BinningHorizontal", binning)
        self._set("BinningVertical", binning)

    def _do_read_roi_constraints(self) -> RoiConstraints:
        b = self._do_read_binning()
        width, height = self._need("Width"), self._need("Height")
        off_x, off_y = self._node("OffsetX"), self._node("OffsetY")
        with self._sdk("read ROI limits"):
            if self._node("SensorWidth") is not None and self._node("SensorHeight") is not None:
                sensor_w, sensor_h = int(self._get("SensorWidth")), int(self._get("SensorHeight"))
            else:
                sensor_w, sensor_h = int(self._get("WidthMax")) * b, int(self._get("HeightMax")) * b
            return RoiConstraints(
                sensor_width_px=sensor_w,
                sensor_height_px=sensor_h,
                min_width_px=int(width.Min) * b,
                min_height_px=int(height.Min) * b,
                width_step_px=int(width.Inc) * b,
                height_step_px=int(height.Inc) * b,
                x_step_px=int(off_x.Inc) * b if off_x is not None else 0,
                y_step_px=int(off_y.Inc) * b if off_y is not None else 0,
            )

    def _do_read_roi(self) -> Roi:
        b = self._do_read_binning()
        off_x = int(self._get("OffsetX")) if self._node("OffsetX") else 0
        off_y = int(self._get("OffsetY")) if self._node("OffsetY") else 0
        return Roi(off_x * b, off_y * b, int(self._get("Width")) * b, int(self._get("Height")) * b)

    def _do_set_roi(self, roi: Roi) -> None:
        b = self._do_read_binning()
        # Offsets first to 0, then size, then offsets: GenICam checks each write against
        # the others' current values (OffsetX.Max = WidthMax - Width).
        for node in ("OffsetX", "OffsetY"):
            if self._writable(node):
                self._set(node, 0)
        self._set("Width", roi.width_px // b)
        self._set("Height", roi.height_px // b)
        if roi.x_px:
            self._set("OffsetX", roi.x_px // b)
        if roi.y_px:
            self._set("OffsetY", roi.y_px // b)

    def _do_read_pixel_format(self) -> str:
        return str(self._get("PixelFormat"))

    def _do_set_pixel_format(self, pixel_format: str) -> None:
        self._set("PixelFormat", pixel_format)

    def _do_read_trigger_mode(self) -> TriggerMode:
        if not self._node("TriggerMode") or self._get("TriggerMode") == "Off":
            return TriggerMode.FREE_RUN
        if self._get("TriggerSource") == "Software":
            return TriggerMode.SOFTWARE
        return TriggerMode.HARDWARE

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        if mode is TriggerMode.FREE_RUN:
            if self._node("TriggerMode"):
                self._set("TriggerMode", "Off")
            return
        source = "Software" if mode is TriggerMode.SOFTWARE else self.hardware_trigger_line
        self._set("TriggerSource", source)
        self._set("TriggerMode", "On")

    def _do_trigger_software(self) -> None:
        # A trigger sent before the camera is ready for the next frame is dropped
        # silently (pylon "Grab Strategies" / WaitForFrameTriggerReady docs), so wait.
        pylon = import_pylon(self.name)
        cam = self._camera()
        wait_s = self.default_timeout_s()
        with self._sdk("software trigger"):
            if not cam.WaitForFrameTriggerReady(_ms(wait_s), pylon.TimeoutHandling_Return):
                raise FrameTimeout(self.name, f"not ready for a trigger within {wait_s:g} s")
            cam.ExecuteSoftwareTrigger()

    # -- acquisition -----------------------------------------------------------------

    def _take(self, result: Any, timeout_s: float) -> NDArray[np.generic]:
        """Copy the image out of a grab result and give its buffer back to pylon."""
        if not result.IsValid():
            raise FrameTimeout(self.name, f"no frame within {timeout_s:g} s")
        try:
            if not result.GrabSucceeded():
                raise DeviceError(
                    self.name,
                    f"grab failed: {result.GetErrorDescription()} "
                    f"(error 0x{result.GetErrorCode():x})",
                )
            return np.array(result.GetArray(), copy=True)
        finally:
            result.Release()

    def _do_snap(self, timeout_s: float) -> NDArray[np.generic]:
        pylon = import_pylon(self.name)
        cam = self._camera()
        software = self._do_read_trigger_mode() is TriggerMode.SOFTWARE
        with self._sdk("snap"):
            cam.MaxNumBuffer.Value = 1
            cam.StartGrabbingMax(1, pylon.GrabStrategy_OneByOne)
            try:
                if software:
                    self._do_trigger_software()
                result = cam.RetrieveResult(_ms(timeout_s), pylon.TimeoutHandling_Return)
                return self._take(result, timeout_s)
            finally:
                cam.StopGrabbing()

    def _do_start_sequence(self, n_frames: int | None) -> None:
        pylon = import_pylon(self.name)
        cam = self._camera()
        with self._sdk("start sequence"):
            cam.MaxNumBuffer.Value = self.n_buffers
            if n_frames is None:
                cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
            else:
                cam.StartGrabbingMax(n_frames, pylon.GrabStrategy_OneByOne)

    def _do_read_frame(self, timeout_s: float) -> NDArray[np.generic]:
        pylon = import_pylon(self.name)
        with self._sdk("read frame"):
            result = self._camera().RetrieveResult(_ms(timeout_s), pylon.TimeoutHandling_Return)
            return self._take(result, timeout_s)

    def _do_stop_sequence(self) -> None:
        with self._sdk("stop sequence"):
            self._camera().StopGrabbing()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
