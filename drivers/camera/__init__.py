"""Microscope cameras, stages and shutters: the imaging roles and their vendor drivers.

The roles (:mod:`drivers.camera.roles`) are re-exported here. The vendor drivers live in
their own modules and are *not* imported here, because each needs an optional SDK:

- :mod:`drivers.camera.basler`: Basler cameras through pypylon (extra ``basler``);
- :mod:`drivers.camera.genicam`: any GenICam/GenTL camera through harvesters and the
  vendor's ``.cti`` producer (extra ``genicam``);
- :mod:`drivers.camera.mmcore`: cameras, stages and shutters of a Micro-Manager
  configuration through pymmcore-plus (extra ``mmcore``).

Each driver imports its SDK inside the methods that need it, so importing any of these
modules works without the SDK, and ``connect()`` says which extra to install.
"""

from drivers.camera.roles import (
    MONO_BIT_DEPTHS,
    Camera,
    CameraFeatures,
    ChannelImage,
    ChannelPreset,
    Frame,
    FrameTimeout,
    Image,
    Microscope,
    MoveTimeout,
    Roi,
    RoiConstraints,
    Shutter,
    Stage,
    StageLimits,
    StagePosition,
    TriggerMode,
    UnsupportedFeature,
)

__all__ = [
    "MONO_BIT_DEPTHS",
    "Camera",
    "CameraFeatures",
    "ChannelImage",
    "ChannelPreset",
    "Frame",
    "FrameTimeout",
    "Image",
    "Microscope",
    "MoveTimeout",
    "Roi",
    "RoiConstraints",
    "Shutter",
    "Stage",
    "StageLimits",
    "StagePosition",
    "TriggerMode",
    "UnsupportedFeature",
]
