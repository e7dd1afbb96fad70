"""Tests of chipctl.analysis, and the simulated scenes they share.

A :class:`Scene` is the reference patient's chip under the reference rig's microscope
(camera and exposures read from ``chipctl/rigs/reference-sim.toml``, so the tests follow
the rig), rendered directly by the simulator; its truth masks are the ground truth the
analysis is judged against. Tests may import the simulator; chipctl code may not.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skimage.segmentation import clear_border

from chipctl.units import DURATION, LENGTH, parse_quantity
from simulator.biology import build_reference_biology
from simulator.microscope import CameraParams, SimMicroscope
from simulator.world import World

DAY_S = 86400.0
HOUR_S = 3600.0
REFERENCE_RIG = Path(__file__).resolve().parents[2] / "chipctl" / "rigs" / "reference-sim.toml"


def _reference_microscope() -> tuple[CameraParams, dict[str, float]]:
    with REFERENCE_RIG.open("rb") as f:
        scope = tomllib.load(f)["devices"]["microscope"]
    camera = CameraParams(
        sensor_shape=tuple(scope["sensor_px"]),
        pixel_pitch_um=parse_quantity(scope["pixel_pitch"], LENGTH) * 1000.0,
        full_well_e=float(scope["full_well_e"]),
        read_noise_e=float(scope["read_noise_e"]),
    )
    exposures = {
        name: parse_quantity(text, DURATION) * 1000.0 for name, text in scope["channels"].items()
    }
    return camera, exposures


#: The reference rig's simulated camera, and its channels' exposures (ms).
REFERENCE_CAMERA, EXPOSURE_MS = _reference_microscope()
#: The concentrations of an 8-chamber dilution series, nM (control first).
SERIES_NM = np.array([0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])


@dataclass(frozen=True)
class Record:
    """A frame's record, shaped like :class:`chipctl.acquisition.FrameRecord`."""

    position: str
    channel: str
    index: int
    t_s: float
    t_point_s: float
    pixel_size_um: float | None
    state: Mapping[str, float]


class Scene:
    """A seeded patient on the reference chip, imaged by the reference microscope.

    Args:
        seed: chooses the patient, the tumoroids, the gel texture and the camera noise.
        drug: a drug of the reference panel perfused at :data:`SERIES_NM` (chamber 1 the
            control), or None.
        camera: the simulated camera (the reference rig's by default).
    """

    def __init__(
        self, seed: int, *, drug: str | None = None, camera: CameraParams = REFERENCE_CAMERA
    ) -> None:
        self.world = World(0)
        exposure = {} if drug is None else {drug: SERIES_NM}
        self.biology = build_reference_biology(self.world, lambda: exposure, seed=seed)
        self.world.advance_to(0.0)
        self.scope = SimMicroscope(self.biology, seed=seed, camera=camera)
        self.t_s = 0.0

    @property
    def pixel_size_um(self) -> float:
        return self.scope.pixel_size_um

    def advance_to(self, t_s: float) -> None:
        self.world.advance_to(t_s)
        self.t_s = t_s

    def snap(self, chamber: int, channel: str, *, dz_um: float = 0.0) -> NDArray[np.uint16]:
        """One frame of ``chamber`` (1-based) at the reference exposure of ``channel``."""
        x, y, z = self.scope.chamber_positions_um()[chamber - 1]
        self.scope.move_to(x, y, z + dz_um)
        return self.scope.snap(channel, exposure_ms=EXPOSURE_MS[channel])

    def record(self, chamber: int, channel: str, index: int = 0) -> Record:
        return Record(
            f"chamber {chamber}", channel, index, self.t_s, self.t_s, self.pixel_size_um, {}
        )


@dataclass(frozen=True)
class Match:
    """One true tumoroid (wholly in the frame) against the segmentation.

    Attributes:
        jaccard: |true & found| / |true | found| with the found object overlapping it most
            (0 if none).
        area_error: found area / true area - 1 (NaN if not found).
        diameter_um: the true equivalent diameter.
        label: the true label.
    """

    jaccard: float
    area_error: float
    diameter_um: float
    label: int


def match_truth(labels: NDArray[Any], truth: NDArray[Any], pixel_size_um: float) -> list[Match]:
    """Compare a segmentation with the truth mask, per true tumoroid wholly in the frame."""
    inside = clear_border(truth)
    out = []
    for label in np.unique(inside)[1:]:
        true = truth == label
        true_px = int(true.sum())
        diameter = 2.0 * np.sqrt(true_px / np.pi) * pixel_size_um
        hits = labels[true]
        hits = hits[hits > 0]
        if hits.size == 0:
            out.append(Match(0.0, float("nan"), diameter, int(label)))
            continue
        found = labels == np.bincount(hits).argmax()
        jaccard = (true & found).sum() / (true | found).sum()
        out.append(Match(float(jaccard), found.sum() / true_px - 1.0, diameter, int(label)))
    return out
