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

from drivers.camera._sfnc import NodeAttrs, SfncCamera, first_line
from drivers.camera.roles import FrameTimeout, TriggerMode
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


class BaslerCamera(SfncCamera):
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

    _ATTRS = NodeAttrs("Value", "Min", "Max", "Inc", "Symbolics")
    # Older GigE models only have ExposureTimeAbs (us); see the module docstring.
    _EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")

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
        super().__init__(
            name=name,
            serial_number=serial_number,
            hardware_trigger_line=hardware_trigger_line,
            n_buffers=n_buffers,
            sensor_pixel_size_um=sensor_pixel_size_um,
        )
        if n_buffers < 1:
            raise ValueError(f"{name}: n_buffers must be >= 1, got {n_buffers}")
        self.device_class = device_class
        self._cam: Any = None

    # -- SDK plumbing ----------------------------------------------------------------

    @contextmanager
    def _sdk(self, action: str) -> Iterator[None]:
        """Turn pylon/GenICam exceptions into chipctl errors carrying the device name."""
        from pypylon import genicam

        try:
            yield
        except genicam.TimeoutException as exc:
            raise FrameTimeout(self.name, f"{action}: {first_line(exc)}") from exc
        except (genicam.OutOfRangeException, genicam.InvalidArgumentException) as exc:
            raise DeviceRejected(self.name, f"{action}: {first_line(exc)}") from exc
        except genicam.AccessException as exc:
            raise IncompatibleStateError(self.name, f"{action}: {first_line(exc)}") from exc
        except genicam.GenericException as exc:
            raise DeviceError(self.name, f"{action}: {first_line(exc)}") from exc

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

    def _writable_node(self, name: str) -> Any | None:
        from pypylon import genicam

        node = self._node(name)
        return node if node is not None and genicam.IsWritable(node) else None

    def _setting_node(self, name: str) -> Any | None:
        """Return any available node: pylon raises AccessException if it is locked now."""
        return self._node(name)

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

    # -- trigger and acquisition -----------------------------------------------------

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
