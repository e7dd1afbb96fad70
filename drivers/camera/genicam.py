"""Any GenICam camera (GigE Vision, USB3 Vision, CoaXPress...) through harvesters and GenTL.

A GenTL producer (a ``.cti`` file from the camera vendor: Basler, FLIR/Teledyne, Allied
Vision, IDS, Matrix Vision...) talks to the camera; harvesters loads producers and gives
access to the camera's GenICam node map and image stream. harvesters and genicam are
optional dependencies, imported inside the methods that need them.

Tested with harvesters 1.4.3 and genicam 1.6.0 on ``viky.cti``, the simulated producer
shipped inside the ``genicam`` wheel (vendor "Machine Vision Games Ltd.", model ``Viky``,
three cameras, serials ``0``-``2``; hardware-reference §7.3). Viky has only ``Width``/
``Height`` (100-800 px), ``PixelFormat`` (``RGBa8``/``Mono8``) and
``AcquisitionFrameRate`` (1-200 fps): no exposure, gain, offset, binning or trigger nodes,
so on Viky those features report unsupported, and the ROI must start at (0, 0).
:func:`bundled_viky_cti` finds the file.

Node names are the GenICam SFNC ones: ``ExposureTime`` (us), ``Gain`` (dB),
``BinningHorizontal``/``BinningVertical``, ``OffsetX``/``OffsetY``, ``TriggerSelector``
``FrameStart`` + ``TriggerMode`` + ``TriggerSource`` + ``TriggerSoftware``.

Quirk: ``ImageAcquirer.fetch(timeout=...)`` honours its timeout only when acquisition was
started without harvesters' own polling thread (``start(run_as_thread=False)``, the
default, used here); with the thread it loops until a buffer comes (harvesters 1.4.3,
``core.py``, ``fetch``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
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

__all__ = ["GenICamCamera", "bundled_viky_cti"]


def bundled_viky_cti() -> str:
    """Return the path of the simulated ``viky.cti`` producer inside the genicam package.

    Raises:
        FileNotFoundError: genicam is not installed, or its wheel has no ``viky.cti``.
    """
    try:
        import genicam
    except ImportError as exc:
        raise FileNotFoundError(f"genicam is not installed ({exc})") from exc
    path = os.path.join(os.path.dirname(os.path.abspath(genicam.__file__)), "viky.cti")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no viky.cti in {os.path.dirname(path)}")
    return path


class GenICamCamera(Camera):
    """A GenICam camera reached through a GenTL producer.

    Args:
        name: the device's name in the instrument config.
        cti_paths: the GenTL producer files to load.
        serial_number: the camera to open; None opens the only camera found (and fails if
            the producers list several).
        hardware_trigger_line: the ``TriggerSource`` used in hardware trigger mode.
        n_buffers: stream buffers announced to the producer.
        sensor_pixel_size_um: the pixel pitch from the datasheet (no SFNC node for it).
    """

    def __init__(
        self,
        *,
        name: str,
        cti_paths: Sequence[str],
        serial_number: str | None = None,
        hardware_trigger_line: str = "Line0",
        n_buffers: int = 8,
        sensor_pixel_size_um: float | None = None,
    ) -> None:
        """Remember the producers and the camera to open; no I/O."""
        super().__init__(name=name, sensor_pixel_size_um=sensor_pixel_size_um)
        if not cti_paths:
            raise ValueError(f"{name}: at least one .cti producer is needed")
        if n_buffers < 1:
            raise ValueError(f"{name}: n_buffers must be >= 1, got {n_buffers}")
        self.cti_paths = tuple(cti_paths)
        self.serial_number = serial_number
        self.hardware_trigger_line = hardware_trigger_line
        self.n_buffers = n_buffers
        self._harvester: Any = None
        self._ia: Any = None
        self._features: CameraFeatures | None = None

    # -- SDK plumbing ----------------------------------------------------------------

    @contextmanager
    def _sdk(self, action: str) -> Iterator[None]:
        """Turn GenTL/GenApi exceptions into chipctl errors carrying the device name."""
        from genicam import genapi, gentl

        try:
            yield
        except gentl.TimeoutException as exc:
            raise FrameTimeout(self.name, f"{action}: no frame in time") from exc
        except (genapi.OutOfRangeException, genapi.InvalidArgumentException) as exc:
            raise DeviceRejected(self.name, f"{action}: {_first_line(exc)}") from exc
        except genapi.AccessException as exc:
            raise IncompatibleStateError(self.name, f"{action}: {_first_line(exc)}") from exc
        except (genapi.GenericException, gentl.GenericException) as exc:
            raise DeviceError(self.name, f"{action}: {_first_line(exc)}") from exc

    def _acquirer(self) -> Any:
        if self._ia is None:
            raise IncompatibleStateError(self.name, "not connected")
        return self._ia

    def _node(self, name: str, *, writable: bool = False) -> Any | None:
        """Return the named node if the camera has it and it is readable (or writable)."""
        from genicam import genapi

        node = getattr(self._acquirer().remote_device.node_map, name, None)
        if node is None:
            return None
        mode = node.node.get_access_mode()
        wanted = genapi.EAccessMode.WO if writable else genapi.EAccessMode.RO
        return node if mode in (genapi.EAccessMode.RW, wanted) else None

    def _need(self, name: str) -> Any:
        """Return the named readable node, or raise UnsupportedFeature."""
        node = self._node(name)
        if node is None:
            raise UnsupportedFeature(self.name, f"camera has no readable {name} node")
        return node

    def _get(self, name: str) -> Any:
        node = self._need(name)
        with self._sdk(f"read {name}"):
            return node.value

    def _set(self, name: str, value: Any) -> None:
        node = self._node(name, writable=True)
        if node is None:
            raise UnsupportedFeature(self.name, f"camera has no writable {name} node")
        with self._sdk(f"set {name} = {value!r}"):
            node.value = value

    def node_map(self) -> Any:
        """Return the camera's GenICam node map, for features outside the Camera role.

        Changing ROI, binning, format, exposure, gain or trigger here bypasses the role's
        checks; use it for vendor features such as Viky's ``AcquisitionFrameRate``.
        """
        return self._acquirer().remote_device.node_map

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Load the producers, find and open the camera, select a mono pixel format."""
        try:
            from harvesters.core import Harvester
        except ImportError as exc:
            raise DeviceNotFound(
                self.name, f"harvesters is not installed ({exc}); install the 'genicam' extra"
            ) from exc
        for path in self.cti_paths:
            if not os.path.isfile(path):
                raise DeviceNotFound(self.name, f"GenTL producer not found: {path}")
        harvester = Harvester()
        self._harvester = harvester
        try:
            with self._sdk("load producers"):
                for path in self.cti_paths:
                    harvester.add_file(path, check_existence=True)
                harvester.update()
            infos = list(harvester.device_info_list)
            found = [str(i.serial_number) for i in infos]
            if self.serial_number is not None:
                index = found.index(self.serial_number) if self.serial_number in found else -1
            else:
                index = 0 if len(infos) == 1 else -1
            if index < 0:
                raise DeviceNotFound(
                    self.name,
                    f"camera serial {self.serial_number!r} not among {found}"
                    if self.serial_number is not None
                    else f"{len(infos)} cameras found (serials {found}); set serial_number",
                )
            with self._sdk("open camera"):
                self._ia = harvester.create(index)
                self._ia.num_buffers = self.n_buffers
            self._configure()
        except BaseException:
            self._do_close()
            raise

    def _configure(self) -> None:
        for auto in ("ExposureAuto", "GainAuto"):
            if self._node(auto, writable=True) is not None:
                self._set(auto, "Off")
        if self._node("TriggerSelector", writable=True) is not None:
            self._set("TriggerSelector", "FrameStart")
        fmt_node = self._node("PixelFormat")
        symbolics = tuple(fmt_node.symbolics) if fmt_node is not None else ()
        formats = tuple(f for f in symbolics if f in MONO_BIT_DEPTHS)
        if not formats:
            raise DeviceNotFound(self.name, f"no monochrome pixel format among {symbolics}")
        if self._get("PixelFormat") not in formats:
            self._set("PixelFormat", formats[0])
        binnings: tuple[int, ...] = (1,)
        h_node = self._node("BinningHorizontal", writable=True)
        v_node = self._node("BinningVertical", writable=True)
        if h_node is not None and v_node is not None:
            binnings = tuple(range(1, min(int(h_node.max), int(v_node.max)) + 1))
        modes = {TriggerMode.FREE_RUN}
        source = self._node("TriggerSource", writable=True)
        if self._node("TriggerMode", writable=True) is not None and source is not None:
            if "Software" in source.symbolics and self._node("TriggerSoftware", writable=True):
                modes.add(TriggerMode.SOFTWARE)
            if self.hardware_trigger_line in source.symbolics:
                modes.add(TriggerMode.HARDWARE)
        self._features = CameraFeatures(
            exposure=self._node("ExposureTime", writable=True) is not None,
            gain=self._node("Gain", writable=True) is not None,
            binnings=binnings,
            pixel_formats=formats,
            trigger_modes=frozenset(modes),
        )

    def _do_close(self) -> None:
        ia, self._ia = self._ia, None
        harvester, self._harvester = self._harvester, None
        self._features = None
        with self._sdk("close camera"):
            if ia is not None:
                if ia.is_acquiring():
                    ia.stop()
                ia.destroy()
            if harvester is not None:
                harvester.reset()

    # -- settings --------------------------------------------------------------------

    def _do_read_features(self) -> CameraFeatures:
        if self._features is None:
            raise IncompatibleStateError(self.name, "not connected")
        return self._features

    def _do_read_exposure_ms(self) -> float:
        return float(self._get("ExposureTime")) / 1000.0

    def _do_read_exposure_range_ms(self) -> tuple[float, float]:
        node = self._need("ExposureTime")
        with self._sdk("read exposure limits"):
            return float(node.min) / 1000.0, float(node.max) / 1000.0

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        self._set("ExposureTime", exposure_ms * 1000.0)

    def _do_read_gain_db(self) -> float:
        return float(self._get("Gain"))

    def _do_read_gain_range_db(self) -> tuple[float, float]:
        node = self._need("Gain")
        with self._sdk("read gain limits"):
            return float(node.min), float(node.max)

    def _do_set_gain_db(self, gain_db: float) -> None:
        self._set("Gain", gain_db)

    def _do_read_binning(self) -> int:
        return int(self._get("BinningHorizontal")) if self._node("BinningHorizontal") else 1

    def _do_set_binning(self, binning: int) -> None:
        if binning == 1 and self._node("BinningHorizontal", writable=True) is None:
            return  # no binning nodes: 1 is the only binning there is
        self._set("BinningHorizontal", binning)
        self._set("BinningVertical", binning)

    def _do_read_roi_constraints(self) -> RoiConstraints:
        b = self._do_read_binning()
        width, height = self._need("Width"), self._need("Height")
        off_x, off_y = self._node("OffsetX", writable=True), self._node("OffsetY", writable=True)
        with self._sdk("read ROI limits"):
            if self._node("SensorWidth") is not None and self._node("SensorHeight") is not None:
                sensor_w, sensor_h = int(self._get("SensorWidth")), int(self._get("SensorHeight"))
            elif self._node("WidthMax") is not None and self._node("HeightMax") is not None:
                sensor_w, sensor_h = int(self._get("WidthMax")) * b, int(self._get("HeightMax")) * b
            else:  # Viky: Width's maximum is the whole (simulated) sensor.
                sensor_w, sensor_h = int(width.max) * b, int(height.max) * b
            return RoiConstraints(
                sensor_width_px=sensor_w,
                sensor_height_px=sensor_h,
                min_width_px=int(width.min) * b,
                min_height_px=int(height.min) * b,
                width_step_px=int(width.inc) * b,
                height_step_px=int(height.inc) * b,
                x_step_px=int(off_x.inc) * b if off_x is not None else 0,
                y_step_px=int(off_y.inc) * b if off_y is not None else 0,
            )

    def _do_read_roi(self) -> Roi:
        b = self._do_read_binning()
        off_x = int(self._get("OffsetX")) if self._node("OffsetX") else 0
        off_y = int(self._get("OffsetY")) if self._node("OffsetY") else 0
        return Roi(off_x * b, off_y * b, int(self._get("Width")) * b, int(self._get("Height")) * b)

    def _do_set_roi(self, roi: Roi) -> None:
        b = self._do_read_binning()
        # Offsets to 0 first: GenICam checks each write against the others' current
        # values (OffsetX.Max = WidthMax - Width).
        for node in ("OffsetX", "OffsetY"):
            if self._node(node, writable=True) is not None:
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
        if self._node("TriggerMode") is None or self._get("TriggerMode") == "Off":
            return TriggerMode.FREE_RUN
        if self._get("TriggerSource") == "Software":
            return TriggerMode.SOFTWARE
        return TriggerMode.HARDWARE

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        if mode is TriggerMode.FREE_RUN:
            if self._node("TriggerMode", writable=True) is not None:
                self._set("TriggerMode", "Off")
            return
        source = "Software" if mode is TriggerMode.SOFTWARE else self.hardware_trigger_line
        self._set("TriggerSource", source)
        self._set("TriggerMode", "On")

    def _do_trigger_software(self) -> None:
        node = self._node("TriggerSoftware", writable=True)
        if node is None:
            raise UnsupportedFeature(self.name, "camera has no TriggerSoftware command")
        with self._sdk("software trigger"):
            node.execute()

    # -- acquisition -----------------------------------------------------------------

    def _fetch(self, timeout_s: float) -> NDArray[np.generic]:
        """Wait for one buffer, copy its first image component, queue the buffer again."""
        with self._sdk("fetch frame"), self._acquirer().fetch(timeout=timeout_s) as buffer:
            component = buffer.payload.components[0]
            height, width = int(component.height), int(component.width)
            data = np.asarray(component.data)
            if data.size != height * width:
                raise DeviceError(
                    self.name,
                    f"frame has {data.size} values for {width} x {height} px "
                    f"({component.data_format}); only single-component mono formats",
                )
            return data.reshape(height, width).copy()

    def _do_snap(self, timeout_s: float) -> NDArray[np.generic]:
        ia = self._acquirer()
        software = self._do_read_trigger_mode() is TriggerMode.SOFTWARE
        with self._sdk("start acquisition"):
            ia.start()
        try:
            if software:
                self._do_trigger_software()
            return self._fetch(timeout_s)
        finally:
            with self._sdk("stop acquisition"):
                ia.stop()

    def _do_start_sequence(self, n_frames: int | None) -> None:
        # Acquisition runs continuously; the role stops it after n_frames were read.
        with self._sdk("start sequence"):
            self._acquirer().start()

    def _do_read_frame(self, timeout_s: float) -> NDArray[np.generic]:
        return self._fetch(timeout_s)

    def _do_stop_sequence(self) -> None:
        with self._sdk("stop sequence"):
            self._acquirer().stop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
