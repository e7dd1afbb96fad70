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

from drivers.camera._sfnc import NodeAttrs, SfncCamera, first_line
from drivers.camera.roles import FrameTimeout, TriggerMode, UnsupportedFeature
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


class GenICamCamera(SfncCamera):
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

    _ATTRS = NodeAttrs("value", "min", "max", "inc", "symbolics")
    _NO_READABLE_NODE = "camera has no readable {} node"
    _NO_WRITABLE_NODE = "camera has no writable {} node"
    _NO_MONO_FORMAT = "no monochrome pixel format among {}"

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
        super().__init__(
            name=name,
            serial_number=serial_number,
            hardware_trigger_line=hardware_trigger_line,
            n_buffers=n_buffers,
            sensor_pixel_size_um=sensor_pixel_size_um,
        )
        if not cti_paths:
            raise ValueError(f"{name}: at least one .cti producer is needed")
        if n_buffers < 1:
            raise ValueError(f"{name}: n_buffers must be >= 1, got {n_buffers}")
        self.cti_paths = tuple(cti_paths)
        self._harvester: Any = None
        self._ia: Any = None

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
            raise DeviceRejected(self.name, f"{action}: {first_line(exc)}") from exc
        except genapi.AccessException as exc:
            raise IncompatibleStateError(self.name, f"{action}: {first_line(exc)}") from exc
        except (genapi.GenericException, gentl.GenericException) as exc:
            raise DeviceError(self.name, f"{action}: {first_line(exc)}") from exc

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

    def _writable_node(self, name: str) -> Any | None:
        return self._node(name, writable=True)

    def _can_trigger_software(self) -> bool:
        """Software mode needs the ``TriggerSoftware`` command this driver executes."""
        return self._node("TriggerSoftware", writable=True) is not None

    def _sensor_size_px(self, width: Any, height: Any, binning: int) -> tuple[int, int]:
        sensor = self._node("SensorWidth") is not None and self._node("SensorHeight") is not None
        maxima = self._node("WidthMax") is not None and self._node("HeightMax") is not None
        if not sensor and not maxima:  # Viky: Width's maximum is the whole (simulated) sensor.
            return int(width.max) * binning, int(height.max) * binning
        return super()._sensor_size_px(width, height, binning)

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

    # -- trigger and acquisition -----------------------------------------------------

    def _do_trigger_software(self) -> None:
        node = self._node("TriggerSoftware", writable=True)
        if node is None:
            raise UnsupportedFeature(self.name, "camera has no TriggerSoftware command")
        with self._sdk("software trigger"):
            node.execute()

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
