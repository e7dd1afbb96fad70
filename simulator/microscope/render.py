"""The simulated microscope: XYZ stage + objective + sCMOS camera over a :class:`Biology`.

Coordinates: the stage position is the sample point at the sensor centre, in um, in the
chip frame of :class:`simulator.biology.ChamberLayout` (chip centre at (0, 0), chambers side
by side along x); ``z`` is the focal plane's height above the chamber floor. Image column
``j`` and row ``i`` of the full sensor sit at
``x = x_stage + (j + 0.5 - W/2) p`` and ``y = y_stage + (i + 0.5 - H/2) p`` with the sample
pixel ``p = pitch / M`` (1.625 um at 4x with 6.5 um pixels): rows grow with stage y.

A snap renders what the biology looks like at its current time (the owner advances the
world first). Per frame only the tumoroids' bounding boxes are drawn on a cached
background (gel, walls, fibroblasts, vignetting, lamp flux: cached per position, focus,
channel and ROI), then :func:`simulator.microscope.camera.digitize` adds noise and
quantises.

Ground truth (:meth:`SimMicroscope.truth_masks`, :meth:`SimMicroscope.truth_labels`) is
for tests and analysis validation only: analysis code must never read it.

Faults (:attr:`SimMicroscope.FAULTS`, injected like the serial emulators' fault methods):
a frame can be lost between the camera and the host, as a GigE or USB3 camera loses a
buffer (``drop_frame``: the next one; ``camera_lost``: every one until ``camera_ok``). The
host side asks :meth:`SimMicroscope.frame_arrives` once per frame before it renders; a
lost frame is never rendered, and :meth:`SimMicroscope.snap` itself is unchanged.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from simulator.biology import Biology, TumoroidTruth
from simulator.microscope.camera import CameraParams, NormalBank, digitize
from simulator.microscope.optics import (
    Objective,
    defocus_sigma_um,
    depth_of_field_um,
    pixel_size_um,
    vignetting_map,
)
from simulator.microscope.scene import (
    Appearance,
    TumoroidView,
    canonical_channel,
    chamber_background,
    draw_tumoroid,
    gel_texture_tile,
)

__all__ = ["Roi", "SimMicroscope"]

Float32Array = NDArray[np.float32]
FloatArray = NDArray[np.float64]
UInt16Array = NDArray[np.uint16]
LabelArray = NDArray[np.int32]

#: (column, row, width, height) in physical sensor pixels.
Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Frame:
    channel: str
    xs_um: FloatArray
    ys_um: FloatArray
    views: tuple[TumoroidView, ...]
    truth: TumoroidTruth


class SimMicroscope:
    """A simulated camera on an XYZ stage, looking at the chambers of a :class:`Biology`.

    Args:
        biology: the tumoroid population (synced before each snap).
        seed: seeds the gel texture and the camera noise.
        objective: objective (4x / 0.13 by default).
        camera: camera (2048 x 2048, 6.5 um sCMOS by default).
        appearance: sample appearance.
        cache_size: background fields kept (positions x channels x ROIs); the
            :attr:`cache_size` attribute may be raised later, e.g. once the positions a
            protocol visits are known (a cache smaller than one imaging round's fields
            rebuilds every background, 0.1-0.4 s each).
    """

    #: The fault methods an instrument config may schedule (``[[fault]]`` kinds); none
    #: takes an argument.
    FAULTS: ClassVar[tuple[str, ...]] = ("drop_frame", "camera_lost", "camera_ok")

    def __init__(
        self,
        biology: Biology,
        seed: int = 0,
        *,
        objective: Objective | None = None,
        camera: CameraParams | None = None,
        appearance: Appearance | None = None,
        cache_size: int = 32,
    ) -> None:
        """Set up optics and camera; the stage starts over chamber 0 in focus."""
        self.biology = biology
        self.objective = objective or Objective()
        self.camera = camera or CameraParams()
        self.appearance = appearance or Appearance()
        self.rng = np.random.default_rng(seed)
        self._texture = gel_texture_tile(self.rng, 512, self.appearance.texture_scale_px)
        h, w = self.camera.sensor_shape
        self._bank = NormalBank(self.rng, h * w)
        self._vignette = vignetting_map(self.camera.sensor_shape, self.camera.vignetting_corner)
        self._cache: OrderedDict[tuple[object, ...], Float32Array] = OrderedDict()
        self.cache_size = cache_size
        lay = biology.layout
        origins = np.array([lay.origin_um(k) for k in range(lay.n_chambers)])
        self._stage_x = origins[biology.chamber, 0] + biology.x_um
        self._stage_y = origins[biology.chamber, 1] + biology.y_um
        x0, y0 = lay.centre_um(0)
        self._pos = (x0, y0, self.focus_z_um)
        self._frame: _Frame | None = None
        self._frames_to_drop = 0
        self._camera_lost = False

    # ---- optics and stage ----------------------------------------------------------

    @property
    def pixel_size_um(self) -> float:
        """Sample pixel, camera pitch / magnification (1.625 um by default)."""
        return pixel_size_um(self.camera.pixel_pitch_um, self.objective.magnification)

    @property
    def depth_of_field_um(self) -> float:
        """Depth of field of the objective and camera (45 um by default)."""
        return depth_of_field_um(self.objective, self.camera.pixel_pitch_um)

    @property
    def focus_z_um(self) -> float:
        """Stage z that focuses the gel mid-plane (the nominal focus)."""
        return self.biology.layout.gel_height_um / 2.0

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move the stage (instantly; motion timing belongs to the stage emulator)."""
        z = self._pos[2] if z_um is None else z_um
        if not all(math.isfinite(v) for v in (x_um, y_um, z)):
            raise ValueError(f"stage position must be finite: {(x_um, y_um, z)}")
        self._pos = (float(x_um), float(y_um), float(z))

    def position_um(self) -> tuple[float, float, float]:
        """Current stage position (x, y, z), um."""
        return self._pos

    def chamber_positions_um(self) -> list[tuple[float, float, float]]:
        """Stage (x, y, z) of each chamber's centre, focused on the gel mid-plane."""
        return [(x, y, self.focus_z_um) for x, y in self.biology.layout.centres_um()]

    def field_of_view_um(self, roi: Roi | None = None) -> tuple[float, float]:
        """Width and height of the imaged field, um."""
        _, _, w, h = self._check_roi(roi, 1)
        return (w * self.pixel_size_um, h * self.pixel_size_um)

    # ---- imaging -------------------------------------------------------------------

    def snap(
        self,
        channel: str = "brightfield",
        exposure_ms: float = 10.0,
        gain: float = 1.0,
        roi: Roi | None = None,
        binning: int = 1,
        bit_depth: int = 16,
        *,
        noise: bool = True,
    ) -> UInt16Array:
        """Acquire one frame at the current stage position.

        Args:
            channel: "brightfield", "live" (calcein, green) or "dead" (EthD-1/PI, red);
                aliases in :data:`simulator.microscope.scene.CHANNELS`.
            exposure_ms: exposure time, ms (> 0).
            gain: analog gain multiplier (> 0).
            roi: (column, row, width, height) in physical sensor pixels; default full.
            binning: 1, 2, 4 ...; ROI width and height must be divisible by it.
            bit_depth: 8, 12 or 16.
            noise: ``False`` gives the noise-free expectation (for tests).

        Returns:
            uint16 image of shape (height / binning, width / binning).
        """
        ch = canonical_channel(channel)
        if not exposure_ms > 0.0 or not gain > 0.0:
            raise ValueError(f"exposure_ms and gain must be > 0, got {exposure_ms}, {gain}")
        col, row, w, h = self._check_roi(roi, binning)
        x, y, z = self._pos
        p = self.pixel_size_um
        sh, sw = self.camera.sensor_shape
        xs: FloatArray = x + (np.arange(col, col + w, dtype=np.float64) + 0.5 - sw / 2.0) * p
        ys: FloatArray = y + (np.arange(row, row + h, dtype=np.float64) + 0.5 - sh / 2.0) * p
        key = (ch, x, y, z, col, row, w, h)
        base = self._background(key, ch, xs, ys, z, (slice(row, row + h), slice(col, col + w)))
        image = base.copy()
        truth = self.biology.tumoroids()
        views = self._views(truth, xs, ys, z)
        stain_gain = self._vignette[row : row + h, col : col + w]
        for view in views:
            draw_tumoroid(image, stain_gain, ch, xs, ys, view, self.appearance, p)
        image *= np.float32(self.camera.quantum_efficiency * exposure_ms)
        image += np.float32(self.camera.dark_e_per_s * exposure_ms * 1e-3)
        frame = digitize(
            image,
            self.camera,
            gain=gain,
            binning=binning,
            bit_depth=bit_depth,
            bank=self._bank if noise else None,
            rng=self.rng,
        )
        bx = xs.reshape(-1, binning).mean(axis=1)
        by = ys.reshape(-1, binning).mean(axis=1)
        self._frame = _Frame(ch, bx, by, tuple(views), truth)
        return frame

    def _check_roi(self, roi: Roi | None, binning: int) -> Roi:
        sh, sw = self.camera.sensor_shape
        col, row, w, h = (0, 0, sw, sh) if roi is None else roi
        if binning < 1 or w % binning or h % binning:
            raise ValueError(f"ROI {w}x{h} is not divisible by binning {binning}")
        if col < 0 or row < 0 or w < 1 or h < 1 or col + w > sw or row + h > sh:
            raise ValueError(f"ROI {(col, row, w, h)} outside the {sw}x{sh} sensor")
        return (col, row, w, h)

    def _background(
        self,
        key: tuple[object, ...],
        channel: str,
        xs: FloatArray,
        ys: FloatArray,
        z: float,
        window: tuple[slice, slice],
    ) -> Float32Array:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        lay = self.biology.layout
        blur_px = self._sigma_um(z - self.focus_z_um) / self.pixel_size_um
        fibs = [
            (lay.origin_um(k), self.biology.fibroblasts(k))
            for k in self._chambers_in_view(xs, ys, margin_um=150.0)
        ]
        # render a margin so that blurs and lines do not depend on where the ROI ends
        p = self.pixel_size_um
        fib_px = self.appearance.fibroblast_width_um / p
        m = math.ceil(4.0 * max(blur_px, fib_px)) + 2
        pad = np.arange(1, m + 1, dtype=np.float64) * p
        xs_ext = np.concatenate([xs[0] - pad[::-1], xs, xs[-1] + pad])
        ys_ext = np.concatenate([ys[0] - pad[::-1], ys, ys[-1] + pad])
        image = chamber_background(
            channel,
            xs_ext,
            ys_ext,
            layout=lay,
            fibroblasts=fibs,
            texture=self._texture,
            blur_px=blur_px,
            appearance=self.appearance,
            pixel_um=p,
        )[m:-m, m:-m]
        image *= self._vignette[window]
        if channel == "brightfield":
            image *= np.float32(self.appearance.bf_photons_px_ms)
        self._cache[key] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image

    def _chambers_in_view(
        self, xs: FloatArray, ys: FloatArray, margin_um: float = 0.0
    ) -> list[int]:
        lay = self.biology.layout
        out = []
        for k in range(lay.n_chambers):
            x0, y0 = lay.origin_um(k)
            if xs[-1] + margin_um >= x0 and xs[0] - margin_um <= x0 + lay.width_um:
                if ys[-1] + margin_um >= y0 and ys[0] - margin_um <= y0 + lay.length_um:
                    out.append(k)
        return out

    def _sigma_um(self, dz_um: float) -> float:
        return defocus_sigma_um(dz_um, self.objective, self.depth_of_field_um)

    def _views(
        self, truth: TumoroidTruth, xs: FloatArray, ys: FloatArray, z: float
    ) -> list[TumoroidView]:
        margin = 30.0
        r = truth.radius_um
        near = (
            (self._stage_x + r + margin >= xs[0])
            & (self._stage_x - r - margin <= xs[-1])
            & (self._stage_y + r + margin >= ys[0])
            & (self._stage_y - r - margin <= ys[-1])
            & (r > 0.0)
        )
        shell_v = 4.0 / 3.0 * np.pi * (r**3 - truth.necrotic_radius_um**3)
        density = np.clip(truth.live_volume_um3 / np.maximum(shell_v, 1e-9), 0.0, 1.0)
        return [
            TumoroidView(
                label=int(i) + 1,
                x_um=float(self._stage_x[i]),
                y_um=float(self._stage_y[i]),
                radius_um=float(r[i]),
                core_um=float(truth.necrotic_radius_um[i]),
                live_density=float(density[i]),
                sigma_um=self._sigma_um(z - float(truth.z_um[i])),
            )
            for i in np.flatnonzero(near)
        ]

    # ---- faults (the link between camera and host) ---------------------------------

    def drop_frame(self) -> None:
        """Lose the next frame on its way to the host, as a camera whose buffer is dropped.

        The host gets nothing for that trigger (its grab times out); later frames arrive.
        Each call loses one more frame.
        """
        self._frames_to_drop += 1

    def camera_lost(self) -> None:
        """Lose every frame until :meth:`camera_ok` (the camera's link is down)."""
        self._camera_lost = True

    def camera_ok(self) -> None:
        """Clear :meth:`camera_lost` and any frame still to drop: frames arrive again."""
        self._camera_lost = False
        self._frames_to_drop = 0

    def frame_arrives(self) -> bool:
        """Tell whether the frame being taken now reaches the host; False if it is lost.

        The host side calls it once per frame, before :meth:`snap` (a frame that does not
        arrive need not be rendered). It uses up one :meth:`drop_frame`.
        """
        if self._camera_lost:
            return False
        if self._frames_to_drop:
            self._frames_to_drop -= 1
            return False
        return True

    # ---- ground truth (tests only) -------------------------------------------------

    def truth_masks(self, channel: str | None = None) -> LabelArray:
        """Labelled mask aligned with the last snap (0 = background, label = index + 1).

        ``brightfield``: every tumoroid's projected disc; ``live``: discs of tumoroids
        with live tissue (live fraction >= 0.02); ``dead``: the whole disc where the viable
        shell is mostly dead (live density < 0.8), else the necrotic core's disc. Later
        (higher-index) tumoroids overwrite earlier ones where discs overlap.
        For tests and analysis validation only.

        Args:
            channel: defaults to the channel of the last snap.
        """
        if self._frame is None:
            raise RuntimeError("no snap yet")
        fr = self._frame
        ch = fr.channel if channel is None else canonical_channel(channel)
        labels = np.zeros((fr.ys_um.size, fr.xs_um.size), dtype=np.int32)
        live_fraction = fr.truth.live_fraction
        for v in fr.views:
            radius = v.radius_um
            if ch == "live" and live_fraction[v.label - 1] < 0.02:
                continue
            if ch == "dead" and v.live_density >= 0.8:
                radius = v.core_um
            if radius <= 0.0:
                continue
            cx = np.flatnonzero(np.abs(fr.xs_um - v.x_um) < radius)
            cy = np.flatnonzero(np.abs(fr.ys_um - v.y_um) < radius)
            if cx.size == 0 or cy.size == 0:
                continue
            dx = fr.xs_um[cx] - v.x_um
            dy = fr.ys_um[cy] - v.y_um
            inside = dy[:, None] ** 2 + dx[None, :] ** 2 < radius**2
            sub = labels[cy[0] : cy[-1] + 1, cx[0] : cx[-1] + 1]
            sub[inside] = v.label
        return labels

    def truth_labels(self) -> dict[int, tuple[int, int]]:
        """Label -> (chamber, id within chamber) for the tumoroids drawn in the last snap."""
        if self._frame is None:
            raise RuntimeError("no snap yet")
        t = self._frame.truth
        return {
            v.label: (int(t.chamber[v.label - 1]), int(t.ident[v.label - 1]))
            for v in self._frame.views
        }

    def truth_tumoroids(self) -> TumoroidTruth:
        """The biology's truth at the time of the last snap (all tumoroids)."""
        if self._frame is None:
            raise RuntimeError("no snap yet")
        return self._frame.truth
