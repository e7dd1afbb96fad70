"""A microscope as one instrument device: camera, stage, lights, presets and positions.

The run engine connects and closes devices one by one; a microscope is several drivers
(a camera, a stage, light sources) that only make sense together, with the channel
presets and named positions of the Microscope role. :class:`MicroscopeDevice` holds them
and connects, sets up and closes them as one. Images are taken through its
:attr:`MicroscopeDevice.microscope` (:class:`drivers.camera.roles.Microscope`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.camera.roles import Camera, Microscope, Roi, Shutter, Stage
from drivers.roles import Device

__all__ = ["MicroscopeDevice", "MicroscopeSetup"]


@dataclass(frozen=True)
class MicroscopeSetup:
    """Camera settings applied at connect, so every frame of a run has one shape.

    Args:
        binning: camera binning (1, 2, 4...).
        frame_shape: the (height, width) of frames with that binning; the camera's ROI is
            set to it (from the sensor's top-left corner) at connect.
        pixel_format: the pixel format to select at connect (e.g. ``"Mono16"``), or None
            to keep the camera's.
        compression: how image stacks are stored (None, ``"lz4"``,
            ``"blosc2-lz4-bitshuffle"``: see :mod:`chipctl.runfile.framestore`).
        pixel_size_um: the pixel at the sample.
        magnification: the objective's magnification, if known.
        objective: the objective's description, if known.
    """

    binning: int
    frame_shape: tuple[int, int]
    pixel_size_um: float | None = None
    pixel_format: str | None = None
    compression: str | None = None
    magnification: float | None = None
    objective: str | None = None


class MicroscopeDevice(Device):
    """The drivers of one microscope, connected and closed together.

    Args:
        name: the device's name in the instrument config.
        microscope: the Microscope role over ``camera`` and ``stage``.
        setup: the camera settings applied at connect.
        lights: light sources used by the channel presets (switched off at close).
    """

    def __init__(
        self,
        *,
        name: str,
        microscope: Microscope,
        setup: MicroscopeSetup,
        lights: Sequence[Shutter] = (),
    ) -> None:
        """Hold the drivers; no I/O."""
        super().__init__(name=name)
        self.microscope = microscope
        self.setup = setup
        self.lights = tuple(lights)

    @property
    def camera(self) -> Camera:
        """Get the camera."""
        return self.microscope.camera

    @property
    def stage(self) -> Stage:
        """Get the stage."""
        return self.microscope.stage

    def connect(self) -> None:
        """Connect camera and stage, and apply binning, pixel format and frame size."""
        self.camera.connect()
        self.stage.connect()
        self.camera.set_binning(self.setup.binning)
        if self.setup.pixel_format is not None:
            self.camera.set_pixel_format(self.setup.pixel_format)
        height_px, width_px = self.setup.frame_shape
        binning = self.setup.binning
        self.camera.set_roi(Roi(0, 0, width_px * binning, height_px * binning))
        for light in self.lights:
            light.set_open(False)

    def reconnect(self) -> None:
        """Connect again after a fault (camera settings are applied again)."""
        self.connect()

    def close(self) -> None:
        """Switch the lights off and close camera and stage."""
        for light in self.lights:
            light.close()
        self.camera.close()
        self.stage.close()
