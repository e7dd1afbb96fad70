"""The Camera role over a GenICam node map, through the SFNC standard feature names.

Both SDK drivers (:mod:`drivers.camera.basler` over pypylon, :mod:`drivers.camera.genicam`
over harvesters) reach the same GenICam node map and the same SFNC features:
``ExposureTime`` (us), ``Gain`` (dB), ``BinningHorizontal``/``BinningVertical``,
``Width``/``Height``/``OffsetX``/``OffsetY`` (binned pixels), ``SensorWidth``/
``SensorHeight`` or ``WidthMax``/``HeightMax``, ``PixelFormat``, and ``TriggerSelector``
``FrameStart`` + ``TriggerMode`` + ``TriggerSource``. :class:`SfncCamera` implements the
role's settings once on top of a few node-access primitives; each driver supplies those
primitives, the SDK's exception translation, opening and closing, and acquisition.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar, NamedTuple

from drivers.camera.roles import (
    MONO_BIT_DEPTHS,
    Camera,
    CameraFeatures,
    Roi,
    RoiConstraints,
    TriggerMode,
    UnsupportedFeature,
)
from drivers.errors import DeviceNotFound, IncompatibleStateError

__all__ = ["NodeAttrs", "SfncCamera", "first_line"]


def first_line(exc: BaseException) -> str:
    """Return the first line of an SDK exception's message, or its type if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NodeAttrs(NamedTuple):
    """What an SDK calls a node's properties (pypylon capitalises them, genapi does not)."""

    value: str
    min: str
    max: str
    inc: str
    entries: str


class SfncCamera(Camera):
    """A camera whose Camera-role features are SFNC nodes of a GenICam node map.

    Args:
        name: the device's name in the instrument config.
        serial_number: the camera to open; None opens the only camera found.
        hardware_trigger_line: the ``TriggerSource`` used in hardware trigger mode.
        n_buffers: frame buffers the SDK allocates (subclasses check it is >= 1).
        sensor_pixel_size_um: the pixel pitch from the datasheet (no SFNC node for it).
    """

    #: The SDK's names for a node's value, minimum, maximum, increment and enum entries.
    _ATTRS: ClassVar[NodeAttrs]
    #: Exposure nodes in order of preference; the first writable one at connect is used.
    _EXPOSURE_NODES: tuple[str, ...] = ("ExposureTime",)
    #: UnsupportedFeature messages for a node that :meth:`_get` / :meth:`_set` cannot use.
    _NO_READABLE_NODE = "camera has no {} node"
    _NO_WRITABLE_NODE = "camera has no {} node"
    #: DeviceNotFound message when PixelFormat offers no mono format ({} = the entries).
    _NO_MONO_FORMAT = "camera offers no monochrome pixel format"

    def __init__(
        self,
        *,
        name: str,
        serial_number: str | None,
        hardware_trigger_line: str,
        n_buffers: int,
        sensor_pixel_size_um: float | None,
    ) -> None:
        super().__init__(name=name, sensor_pixel_size_um=sensor_pixel_size_um)
        self.serial_number = serial_number
        self.hardware_trigger_line = hardware_trigger_line
        self.n_buffers = n_buffers
        self._features: CameraFeatures | None = None
        self._exposure_node = ""

    # -- node access, per SDK --------------------------------------------------------

    @abstractmethod
    def _sdk(self, action: str) -> AbstractContextManager[None]:
        """Turn the SDK's exceptions into chipctl errors carrying the device name."""

    @abstractmethod
    def _node(self, name: str) -> Any | None:
        """Return the named node if the camera has it and it can be read now, else None."""

    @abstractmethod
    def _writable_node(self, name: str) -> Any | None:
        """Return the named node if it can be written now, else None."""

    def _setting_node(self, name: str) -> Any | None:
        """Return the node a setting is written to, or None if the camera has no such node.

        By default only a writable node; an SDK that reports a locked node by an
        exception on write (turned into IncompatibleStateError) may return any node.
        """
        return self._writable_node(name)

    def _can_trigger_software(self) -> bool:
        """Return whether a software trigger can be sent once TriggerSource offers it."""
        return True

    # -- node helpers ----------------------------------------------------------------

    def _value(self, node: Any) -> Any:
        """Return the node's current value (the SDK call, not wrapped in :meth:`_sdk`)."""
        return getattr(node, self._ATTRS.value)

    def _assign(self, node: Any, value: Any) -> None:
        """Write the node's value (the SDK call, not wrapped in :meth:`_sdk`)."""
        setattr(node, self._ATTRS.value, value)

    def _min(self, node: Any) -> Any:
        return getattr(node, self._ATTRS.min)

    def _max(self, node: Any) -> Any:
        return getattr(node, self._ATTRS.max)

    def _inc(self, node: Any) -> Any:
        return getattr(node, self._ATTRS.inc)

    def _entries(self, node: Any) -> tuple[str, ...]:
        """Return the symbolic names an enumeration node offers now."""
        return tuple(getattr(node, self._ATTRS.entries))

    def _writable(self, name: str) -> bool:
        return self._writable_node(name) is not None

    def _need(self, name: str) -> Any:
        """Return the named node, or raise UnsupportedFeature if the camera lacks it."""
        node = self._node(name)
        if node is None:
            raise UnsupportedFeature(self.name, self._NO_READABLE_NODE.format(name))
        return node

    def _get(self, name: str) -> Any:
        node = self._need(name)
        with self._sdk(f"read {name}"):
            return self._value(node)

    def _set(self, name: str, value: Any) -> None:
        node = self._setting_node(name)
        if node is None:
            raise UnsupportedFeature(self.name, self._NO_WRITABLE_NODE.format(name))
        with self._sdk(f"set {name} = {value!r}"):
            self._assign(node, value)

    # -- setup at connect ------------------------------------------------------------

    def _configure(self) -> None:
        """Switch auto exposure/gain off, select a mono format, record the features.

        Auto exposure and auto gain are switched off because intensities must be
        comparable between time points of a run.
        """
        for auto in ("ExposureAuto", "GainAuto"):
            if self._writable(auto):
                self._set(auto, "Off")
        if self._writable("TriggerSelector"):
            self._set("TriggerSelector", "FrameStart")
        for node in self._EXPOSURE_NODES:
            if self._writable(node):
                self._exposure_node = node
                break
        fmt_node = self._node("PixelFormat")
        symbolics = self._entries(fmt_node) if fmt_node is not None else ()
        formats = tuple(f for f in symbolics if f in MONO_BIT_DEPTHS)
        if not formats:
            raise DeviceNotFound(self.name, self._NO_MONO_FORMAT.format(symbolics))
        if self._get("PixelFormat") not in formats:
            self._set("PixelFormat", formats[0])
        binnings: tuple[int, ...] = (1,)
        h_node = self._setting_node("BinningHorizontal")
        v_node = self._setting_node("BinningVertical")
        if h_node is not None and v_node is not None and self._writable("BinningHorizontal"):
            binnings = tuple(range(1, min(int(self._max(h_node)), int(self._max(v_node))) + 1))
        modes = {TriggerMode.FREE_RUN}
        source = self._setting_node("TriggerSource")
        if self._writable("TriggerMode") and source is not None:
            sources = self._entries(source)
            if "Software" in sources and self._can_trigger_software():
                modes.add(TriggerMode.SOFTWARE)
            if self.hardware_trigger_line in sources:
                modes.add(TriggerMode.HARDWARE)
        self._features = CameraFeatures(
            exposure=bool(self._exposure_node),
            gain=self._writable("Gain"),
            binnings=binnings,
            pixel_formats=formats,
            trigger_modes=frozenset(modes),
        )

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
            return float(self._min(node)) / 1000.0, float(self._max(node)) / 1000.0

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        self._set(self._exposure_node, exposure_ms * 1000.0)

    def _do_read_gain_db(self) -> float:
        return float(self._get("Gain"))

    def _do_read_gain_range_db(self) -> tuple[float, float]:
        node = self._need("Gain")
        with self._sdk("read gain limits"):
            return float(self._min(node)), float(self._max(node))

    def _do_set_gain_db(self, gain_db: float) -> None:
        self._set("Gain", gain_db)

    def _do_read_binning(self) -> int:
        return int(self._get("BinningHorizontal")) if self._node("BinningHorizontal") else 1

    def _do_set_binning(self, binning: int) -> None:
        if binning == 1 and not self._writable("BinningHorizontal"):
            return  # no binning nodes: 1 is the only binning there is
        self._set("BinningHorizontal", binning)
        self._set("BinningVertical", binning)

    def _sensor_size_px(self, width: Any, height: Any, binning: int) -> tuple[int, int]:
        """Return the full sensor in unbinned px, given the Width and Height nodes.

        SensorWidth/SensorHeight if the camera has them, else WidthMax/HeightMax, which
        are in binned pixels.
        """
        if self._node("SensorWidth") is not None and self._node("SensorHeight") is not None:
            return int(self._get("SensorWidth")), int(self._get("SensorHeight"))
        return int(self._get("WidthMax")) * binning, int(self._get("HeightMax")) * binning

    def _do_read_roi_constraints(self) -> RoiConstraints:
        b = self._do_read_binning()
        width, height = self._need("Width"), self._need("Height")
        off_x, off_y = self._setting_node("OffsetX"), self._setting_node("OffsetY")
        with self._sdk("read ROI limits"):
            sensor_w, sensor_h = self._sensor_size_px(width, height, b)
            return RoiConstraints(
                sensor_width_px=sensor_w,
                sensor_height_px=sensor_h,
                min_width_px=int(self._min(width)) * b,
                min_height_px=int(self._min(height)) * b,
                width_step_px=int(self._inc(width)) * b,
                height_step_px=int(self._inc(height)) * b,
                x_step_px=int(self._inc(off_x)) * b if off_x is not None else 0,
                y_step_px=int(self._inc(off_y)) * b if off_y is not None else 0,
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
        if self._node("TriggerMode") is None or self._get("TriggerMode") == "Off":
            return TriggerMode.FREE_RUN
        if self._get("TriggerSource") == "Software":
            return TriggerMode.SOFTWARE
        return TriggerMode.HARDWARE

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        if mode is TriggerMode.FREE_RUN:
            if self._setting_node("TriggerMode") is not None:
                self._set("TriggerMode", "Off")
            return
        source = "Software" if mode is TriggerMode.SOFTWARE else self.hardware_trigger_line
        self._set("TriggerSource", source)
        self._set("TriggerMode", "On")
