"""Time-lapse imaging into the run file: what to image, and one time point of it.

An :class:`ImagingPlan` says which named positions and channels a microscope images, the
frame shape and dtype, and which fluidic quantities are recorded with every frame. An
:class:`Acquisition` binds a plan to a :class:`~drivers.camera.roles.Microscope` and a
:class:`~chipctl.runfile.RunFileWriter`: :meth:`Acquisition.declare` creates the stacks
(before the writer opens: SWMR forbids creating objects later), and each
:meth:`Acquisition.acquire` visits the positions, snaps the channels through the Microscope
role and appends frames and metadata rows. The module knows nothing of the protocol
language: the engine's ``image`` action builds a plan from its ``positions`` and
``channels`` and calls :meth:`~Acquisition.acquire` on its schedule.

Run-file layout (paths from :mod:`chipctl.runfile.images`)::

    /images/<position>/<channel>        frames x height x width, one frame per chunk,
                                        attrs: units="ADU", position, channel, pixel_size_um,
                                        objective, magnification, exposure_ms (where known),
                                        bit_depth
    /images/<position>/<channel>_meta   a table, one row per frame:
        t_s (s)             run time of the exposure start
        t_point_s (s)       the time point the frame belongs to (the ``t_s`` given to acquire)
        frame (1)           index of the frame in its stack
        exposure_ms (ms), gain_db (dB, NaN without gain control)
        stage_x_um, stage_y_um, stage_z_um (um, z NaN without a Z axis)
        pixel_size_um (um, NaN if unknown)
        <fluidic columns>   declared by the caller with their units, NaN where not given

Stack attributes other than ``units``, and compression, need the writer to accept
``attrs`` and ``filters`` in ``declare_frames`` (see :func:`writer_frame_options`). Until
it does, the attributes are skipped (``pixel_size_um`` is also a metadata column, so
nothing is lost), and asking for compression raises :class:`RunFileError`.

Compression (``compression=``): ``"lz4"`` and ``"zstd"`` use the HDF5 filters of the
optional ``hdf5plugin`` package (LZ4 ~1 GB/s, about 1.5-2x on camera frames; Zstd level 3
slower, smaller); files written with them need ``import hdf5plugin`` (or
``HDF5_PLUGIN_PATH``) to be read by other tools; :mod:`chipctl.runfile.images` imports it
when installed. ``"gzip"`` (with byte shuffle) is built into every HDF5 and needs no plugin.
Compression runs on the run-file writer thread, never on the engine's.

Time: ``t_s`` given to :meth:`Acquisition.acquire` is the run time of the time point; each
frame's ``t_s`` is that plus the clock time elapsed until its exposure started, so frames
carry run times whatever the clock's origin.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from chipctl.errors import RunFileError
from chipctl.runfile import images as img
from chipctl.runfile.writer import RunFileWriter
from drivers.camera.roles import ChannelImage, Microscope
from drivers.clock import Clock

__all__ = [
    "COMPRESSIONS",
    "Acquisition",
    "AcquisitionSummary",
    "FluidicState",
    "ImagingPlan",
    "compression_filters",
    "writer_frame_options",
]

#: The compression names :class:`ImagingPlan` accepts (None = uncompressed).
COMPRESSIONS: Final = ("lz4", "zstd", "gzip")

#: The fluidic state recorded with a frame: quantity -> value, or a function of the frame's
#: run time ``t_s`` that returns it (called once per position, at its first exposure).
FluidicState = Mapping[str, float] | Callable[[float], Mapping[str, float]]

_GZIP_LEVEL: Final = 4
_ZSTD_LEVEL: Final = 3


def compression_filters(compression: str | None) -> dict[str, Any]:
    """Return the ``h5py.create_dataset`` keyword arguments of a compression name.

    Args:
        compression: None, ``"lz4"``, ``"zstd"`` (both need ``hdf5plugin``) or ``"gzip"``.

    Raises:
        ValueError: an unknown name.
        RunFileError: ``hdf5plugin`` is not installed for ``"lz4"``/``"zstd"``.
    """
    if compression is None:
        return {}
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; use one of {list(COMPRESSIONS)}")
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": _GZIP_LEVEL, "shuffle": True}
    try:
        import hdf5plugin
    except ImportError as exc:
        raise RunFileError(
            f"compression {compression!r} needs the hdf5plugin package (pip install hdf5plugin)"
        ) from exc
    plugin = hdf5plugin.LZ4() if compression == "lz4" else hdf5plugin.Zstd(clevel=_ZSTD_LEVEL)
    return dict(plugin)


def writer_frame_options(writer: RunFileWriter) -> frozenset[str]:
    """Return which extension keywords the writer's ``declare_frames`` accepts.

    The extension asked of :class:`~chipctl.runfile.RunFileWriter`::

        declare_frames(path, shape, dtype, units, *,
                       attrs: Mapping[str, str | int | float | bool] | None = None,
                       filters: Mapping[str, Any] | None = None)

    ``attrs`` are written on the dataset with ``units`` at :meth:`~RunFileWriter.open`;
    ``filters`` are passed to ``h5py.create_dataset`` (``compression``,
    ``compression_opts``, ``shuffle``: see :func:`compression_filters`).

    Returns:
        The subset of ``{"attrs", "filters"}`` the writer supports.
    """
    params = inspect.signature(writer.declare_frames).parameters
    return frozenset(name for name in ("attrs", "filters") if name in params)


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {kind} name {name!r}: must be non-empty and contain no '/'")
    return name


def _check_unique(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    dupes = sorted({n for n in names if list(names).count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {kind} names {dupes}")
    return tuple(names)


@dataclass(frozen=True)
class ImagingPlan:
    """What one microscope images during a run, and what is recorded with each frame.

    Args:
        positions: named positions of the microscope, in visiting order.
        channels: channel preset names, in acquisition order (none may end in ``_meta``).
        frame_shape: (height, width) of every frame, in (binned) pixels.
        dtype: the pixel dtype (``uint8`` or ``uint16``).
        fluidic_columns: fluidic quantity -> units, e.g. ``{"flow_ul_min": "uL/min",
            "conc_nm": "nM"}``; one metadata column each.
        pixel_size_um: the pixel at the sample, or None if unknown.
        objective: the objective's description, e.g. ``"4x/0.13 PLAN"``, or None.
        magnification: the objective's magnification, or None.
        channel_exposure_ms: each channel's preset exposure, recorded as a stack
            attribute (the metadata table has the exposure of every frame anyway).
        bit_depth: significant bits per pixel, or None if unknown.
        compression: None, ``"lz4"``, ``"zstd"`` or ``"gzip"`` (see the module docstring).

    Raises:
        ValueError: bad or duplicate names, a bad shape or dtype, or an unknown
            compression; one line naming the problem.
    """

    positions: tuple[str, ...]
    channels: tuple[str, ...]
    frame_shape: tuple[int, int]
    dtype: np.dtype[Any]
    fluidic_columns: Mapping[str, str] = field(default_factory=dict)
    pixel_size_um: float | None = None
    objective: str | None = None
    magnification: float | None = None
    channel_exposure_ms: Mapping[str, float] = field(default_factory=dict)
    bit_depth: int | None = None
    compression: str | None = None

    def __post_init__(self) -> None:
        """Validate names, shape, dtype, units and compression."""
        object.__setattr__(self, "positions", _check_unique("position", list(self.positions)))
        object.__setattr__(self, "channels", _check_unique("channel", list(self.channels)))
        if not self.positions or not self.channels:
            raise ValueError("an imaging plan needs at least one position and one channel")
        for p in self.positions:
            _check_name("position", p)
        for c in self.channels:
            if _check_name("channel", c).endswith(img.META_SUFFIX):
                raise ValueError(f"channel name {c!r} must not end in {img.META_SUFFIX!r}")
        shape = tuple(int(n) for n in self.frame_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"frame shape must be (height, width) >= 1, got {self.frame_shape}")
        object.__setattr__(self, "frame_shape", shape)
        dtype = np.dtype(self.dtype)
        if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError(f"frame dtype must be uint8 or uint16, got {dtype}")
        object.__setattr__(self, "dtype", dtype)
        for name, units in self.fluidic_columns.items():
            _check_name("fluidic column", name)
            if name in img.BASE_COLUMNS:
                raise ValueError(f"fluidic column {name!r} clashes with a metadata column")
            if not isinstance(units, str):
                raise ValueError(f"fluidic column {name!r}: units must be a string")
        object.__setattr__(self, "fluidic_columns", dict(self.fluidic_columns))
        object.__setattr__(self, "channel_exposure_ms", dict(self.channel_exposure_ms))
        for what, value in (("pixel size", self.pixel_size_um), ("mag", self.magnification)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be > 0, got {value!r}")
        compression_filters(self.compression)  # unknown name / missing plugin: fail now

    @classmethod
    def for_microscope(
        cls,
        microscope: Microscope,
        *,
        positions: str | Sequence[str] = "all",
        channels: Sequence[str],
        fluidic_columns: Mapping[str, str] | None = None,
        magnification: float | None = None,
        objective: str | None = None,
        channel_exposure_ms: Mapping[str, float] | None = None,
        compression: str | None = None,
    ) -> ImagingPlan:
        """Build a plan from a connected microscope's current camera settings.

        Reads the camera's ROI, binning, bit depth and pixel pitch (so the camera must be
        set up for the run first: the frame shape of a stack cannot change once declared).
        The pixel at the sample is ``pitch * binning / magnification`` when both are known.

        Args:
            microscope: the Microscope role, with connected camera and stage.
            positions: ``"all"`` (every named position, in definition order) or names.
            channels: preset names.
            fluidic_columns: fluidic quantity -> units.
            magnification: the objective's magnification, if known.
            objective: the objective's description, if known.
            channel_exposure_ms: the presets' exposures, recorded as attributes.
            compression: see :class:`ImagingPlan`.

        Raises:
            ValueError: an unknown position or channel, named with the known ones.
        """
        known_positions = microscope.position_names()
        names = known_positions if positions == "all" else list(positions)
        if isinstance(positions, str) and positions != "all":
            names = [positions]
        unknown = [p for p in names if p not in known_positions]
        if unknown:
            raise ValueError(
                f"{microscope.name}: unknown positions {unknown}; known: {known_positions}"
            )
        unknown = [c for c in channels if c not in microscope.channel_names()]
        if unknown:
            raise ValueError(
                f"{microscope.name}: unknown channels {unknown}; "
                f"known: {microscope.channel_names()}"
            )
        camera = microscope.camera
        roi = camera.read_roi()
        binning = camera.read_binning()
        bit_depth = camera.read_bit_depth()
        pitch_um = camera.read_pixel_size_um()
        pixel_um = (
            pitch_um * binning / magnification
            if pitch_um is not None and magnification is not None
            else None
        )
        return cls(
            positions=tuple(names),
            channels=tuple(channels),
            frame_shape=(roi.height_px // binning, roi.width_px // binning),
            dtype=np.dtype(np.uint8 if bit_depth <= 8 else np.uint16),
            fluidic_columns=dict(fluidic_columns or {}),
            pixel_size_um=pixel_um,
            objective=objective,
            magnification=magnification,
            channel_exposure_ms=dict(channel_exposure_ms or {}),
            bit_depth=bit_depth,
            compression=compression,
        )

    def meta_columns(self) -> dict[str, tuple[npt.DTypeLike, str]]:
        """Return the metadata table's columns: name -> (dtype, units)."""
        columns: dict[str, tuple[npt.DTypeLike, str]] = dict(img.BASE_COLUMNS)
        for name, units in self.fluidic_columns.items():
            columns[name] = (np.float64, units)
        return columns

    def stack_attrs(self, position: str, channel: str) -> dict[str, str | int | float]:
        """Return the attributes of one frame stack (those known; never ``units``)."""
        attrs: dict[str, str | int | float] = {
            img.ATTR_POSITION: position,
            img.ATTR_CHANNEL: channel,
        }
        if self.pixel_size_um is not None:
            attrs[img.ATTR_PIXEL_SIZE_UM] = float(self.pixel_size_um)
        if self.objective is not None:
            attrs[img.ATTR_OBJECTIVE] = self.objective
        if self.magnification is not None:
            attrs[img.ATTR_MAGNIFICATION] = float(self.magnification)
        if channel in self.channel_exposure_ms:
            attrs[img.ATTR_EXPOSURE_MS] = float(self.channel_exposure_ms[channel])
        if self.bit_depth is not None:
            attrs[img.ATTR_BIT_DEPTH] = int(self.bit_depth)
        return attrs


@dataclass(frozen=True)
class AcquisitionSummary:
    """What one :meth:`Acquisition.acquire` did.

    Attributes:
        frames: frames appended (positions x channels).
        positions: the positions visited, in order.
        stage_s: clock time spent moving the stage.
        elapsed_s: clock time of the whole call.
    """

    frames: int
    positions: tuple[str, ...]
    stage_s: float
    elapsed_s: float


class Acquisition:
    """Acquire an :class:`ImagingPlan` with a microscope into a run file.

    Called from one thread (the engine worker): the writer's producer calls are
    thread-safe, and the frames are written on the writer's own thread.

    Args:
        microscope: the Microscope role (camera and stage connected).
        plan: what to image.
        writer: the run file's writer; :meth:`declare` must run before its ``open``.
        clock: the engine's clock (stage time and frame times are measured on it).
    """

    def __init__(
        self, microscope: Microscope, plan: ImagingPlan, writer: RunFileWriter, *, clock: Clock
    ) -> None:
        """Check the plan's names against the microscope; no I/O."""
        for p in plan.positions:
            if p not in microscope.position_names():
                raise ValueError(f"{microscope.name}: unknown position {p!r}")
        for c in plan.channels:
            if c not in microscope.channel_names():
                raise ValueError(f"{microscope.name}: unknown channel {c!r}")
        self.microscope = microscope
        self.plan = plan
        self.writer = writer
        self._clock = clock
        self._counts = {(p, c): 0 for p in plan.positions for c in plan.channels}
        self._declared = False

    def declare(self) -> None:
        """Declare every frame stack and metadata table in the writer (before ``open``).

        Raises:
            RunFileError: the writer is already open, or compression was asked of a writer
                without the ``filters`` extension (:func:`writer_frame_options`).
        """
        options = writer_frame_options(self.writer)
        filters = compression_filters(self.plan.compression)
        if filters and "filters" not in options:
            raise RunFileError(
                f"{self.writer.path}: compression {self.plan.compression!r} needs "
                "RunFileWriter.declare_frames(..., filters=...), which this chipctl lacks"
            )
        columns = self.plan.meta_columns()
        for p in self.plan.positions:
            for c in self.plan.channels:
                extra: dict[str, Any] = {}
                if "attrs" in options:
                    extra["attrs"] = self.plan.stack_attrs(p, c)
                if filters:
                    extra["filters"] = filters
                declare: Callable[..., None] = self.writer.declare_frames
                declare(
                    img.frames_path(p, c),
                    self.plan.frame_shape,
                    self.plan.dtype,
                    img.PIXEL_UNITS,
                    **extra,
                )
                self.writer.declare_table(
                    img.meta_path(p, c), columns, chunk_rows=img.META_CHUNK_ROWS
                )
        self._declared = True

    def frames_written(self, position: str, channel: str) -> int:
        """Return how many frames this acquisition appended to one stack."""
        return self._counts[(position, channel)]

    def acquire(
        self,
        t_s: float,
        fluidic_state: FluidicState,
        *,
        positions: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> AcquisitionSummary:
        """Image one time point: visit each position and snap each channel there.

        Args:
            t_s: the run time of this time point.
            fluidic_state: the fluidic quantities to record with every frame (a mapping, or
                a function of the frame's run time called once per position).
            positions: a subset of the plan's positions (default: all, in plan order).
            channels: a subset of the plan's channels (default: all, in plan order).

        Returns:
            Frames written, positions visited, stage and total clock time.

        Raises:
            ValueError: names outside the plan, an undeclared fluidic quantity, or a frame
                whose shape or dtype differs from the plan (camera settings changed).
            RunFileError: :meth:`declare` was not called, or the writer failed.
            drivers.errors.DeviceError: a camera or stage fault (frames of positions
                already visited stay written).
        """
        if not self._declared:
            raise RunFileError(f"{self.writer.path}: Acquisition.declare() was not called")
        pos = self._subset("position", positions, self.plan.positions)
        chans = self._subset("channel", channels, self.plan.channels)
        if callable(fluidic_state):
            state_of: Callable[[float], Mapping[str, float]] = fluidic_state
        else:
            fixed = self._check_state(fluidic_state)
            state_of = lambda _t_s: fixed  # noqa: E731
        t0_clock_s = self._clock.now_s()
        stage_s = 0.0
        frames = 0
        for p in pos:
            move_start_s = self._clock.now_s()
            self.microscope.move_to(p)
            stage_s += self._clock.now_s() - move_start_s
            images = self.microscope.acquire(chans, position=p)
            for image in images:
                self._check_image(p, image)
            first_t_s = t_s + (images[0].t_s - t0_clock_s)
            state = self._check_state(state_of(first_t_s))
            for image in images:
                self._append(p, image, t_s, t_s + (image.t_s - t0_clock_s), state)
                frames += 1
        return AcquisitionSummary(
            frames=frames,
            positions=pos,
            stage_s=stage_s,
            elapsed_s=self._clock.now_s() - t0_clock_s,
        )

    def _subset(
        self, kind: str, names: Sequence[str] | None, plan: tuple[str, ...]
    ) -> tuple[str, ...]:
        if names is None:
            return plan
        if isinstance(names, str):
            names = [names]
        outside = [n for n in names if n not in plan]
        if outside:
            raise ValueError(f"{kind}s {outside} are not in the imaging plan {list(plan)}")
        return tuple(names)

    def _check_state(self, state: Mapping[str, float]) -> dict[str, float]:
        unknown = sorted(set(state) - set(self.plan.fluidic_columns))
        if unknown:
            raise ValueError(
                f"undeclared fluidic quantities {unknown}; "
                f"declared: {sorted(self.plan.fluidic_columns)}"
            )
        return {k: float(state.get(k, math.nan)) for k in self.plan.fluidic_columns}

    def _check_image(self, position: str, image: ChannelImage) -> None:
        got = image.image
        if got.shape != self.plan.frame_shape or got.dtype != self.plan.dtype:
            raise ValueError(
                f"{img.frames_path(position, image.channel)}: frame {got.dtype}{list(got.shape)} "
                f"does not match the declared {self.plan.dtype}{list(self.plan.frame_shape)} "
                "(camera ROI, binning or pixel format changed after the plan was made)"
            )

    def _append(
        self,
        position: str,
        image: ChannelImage,
        t_point_s: float,
        t_frame_s: float,
        state: Mapping[str, float],
    ) -> None:
        key = (position, image.channel)
        stage = image.stage_um
        row: dict[str, list[float]] = {
            img.COL_T: [t_frame_s],
            img.COL_T_POINT: [t_point_s],
            img.COL_FRAME: [self._counts[key]],
            img.COL_EXPOSURE_MS: [image.exposure_ms],
            img.COL_GAIN_DB: [math.nan if image.gain_db is None else image.gain_db],
            img.COL_STAGE_X_UM: [stage.x_um],
            img.COL_STAGE_Y_UM: [stage.y_um],
            img.COL_STAGE_Z_UM: [math.nan if stage.z_um is None else stage.z_um],
            img.COL_PIXEL_SIZE_UM: [
                math.nan if self.plan.pixel_size_um is None else self.plan.pixel_size_um
            ],
        }
        for name, value in state.items():
            row[name] = [value]
        self.writer.append_frame(img.frames_path(*key), image.image)
        self.writer.append_rows(img.meta_path(*key), row)
        self._counts[key] += 1
