"""Simulated microscope: stage, objective, camera and a renderer of the biology.

* :class:`SimMicroscope` (:mod:`simulator.microscope.render`): ``move_to``, ``snap``,
  ``chamber_positions_um``, the ground truth (``truth_masks``, ``truth_labels``) and the
  camera faults (``drop_frame``, ``camera_lost``, ``camera_ok``);
* :class:`CameraParams` and the noise model (:mod:`simulator.microscope.camera`);
* :class:`Objective`, sampling, defocus and vignetting (:mod:`simulator.microscope.optics`);
* :class:`Appearance` and the scene drawing (:mod:`simulator.microscope.scene`).

The ground truth is for tests and analysis validation only; analysis never reads it.
"""

from simulator.microscope.camera import CameraParams
from simulator.microscope.optics import Objective
from simulator.microscope.render import Roi, SimMicroscope
from simulator.microscope.scene import CHANNELS, Appearance

__all__ = ["CHANNELS", "Appearance", "CameraParams", "Objective", "Roi", "SimMicroscope"]
