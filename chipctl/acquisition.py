"""Time-lapse imaging into the run file: what to image, and one time point of it.

An :class:`ImagingPlan` says which named positions and channels a microscope images, the
frame shape and dtype, and which fluidic quantities are recorded with every frame. An
:class:`Acquisition` binds a plan to a :class:`~drivers.camera.roles.Microscope` and a
:class:`~chipctl.runfile.RunFileWriter`: :meth:`Acquisition.declare` creates the stacks
(before the writer opens: SWMR forbids creating objects later), and each time point
visits the positions, snaps the channels through the Microscope role and appends frames and
metadata rows: in one call (:meth:`Acquisition.acquire`), or step by step so the engine's
scheduler runs interlock checks between steps (:meth:`Acquisition.start`,
:class:`TimePoint`). The module knows nothing of the protocol language: the engine's
``image`` action builds a plan from its ``positions`` and ``channels`` and starts a time
point on its schedule.

Run-file layout (paths from :mod:`chipctl.runfile.images`)::

    /images/<position>/<channel>        frames x height x width, one frame per chunk,
                                        attrs: units="ADU", compression; with the writer's
                                        ``attrs`` extension also position, channel,
                                        pixel_size_um, objective, magnification,
                                        exposure_ms, bit_depth (those known)
    /images/<position>/<channel>_meta   a table, one row per frame:
        t_s (s)             run time of the exposure start
        t_point_s (s)       the time point the frame belongs to (the ``t_s`` given to acquire)
        frame (1)           index of the frame in its stack
        exposure_ms (ms), gain_db (dB, NaN without gain control)
        stage_x_um, stage_y_um, stage_z_um (um, z NaN without a Z axis)
        pixel_size_um (um, NaN if unknown)
        <fluidic columns>   declared by the caller with their units, NaN where not given

The writer records ``units`` and ``compression`` on every stack. The other stack
attributes need the writer to accept ``attrs`` in ``declare_frames`` (see
:func:`writer_supports_stack_attrs`); until it does they are skipped, and nothing is lost:
``pixel_size_um`` is also a metadata column, position and channel are the path.

Compression (``compression=``) is the run-file writer's
(:class:`chipctl.runfile.framestore.Compression`): ``None``/``"none"``, ``"blosc2-lz4"``
(alias ``"lz4"``: Blosc2-LZ4 with byte shuffle) or ``"blosc2-lz4-bitshuffle"`` (a better
ratio on 12-16-bit frames: 0.85 of raw on the simulator's noisy 16-bit frames, where byte
shuffle gains nothing). Compressed stacks need the optional packages ``hdf5plugin``
and ``blosc2`` to write, and ``hdf5plugin`` to read (other tools: ``import hdf5plugin``
first); :mod:`chipctl.runfile.images` loads it. Frames are encoded on the run-file writer
thread, never on the engine's. Time-lapse frames go through
:meth:`~chipctl.runfile.RunFileWriter.append_frame` (copied, never dropped), not through
:class:`chipctl.streaming.FrameStream`, whose bounded ring drops frames when the disk
stalls: right for a live stream, wrong for a time point taken once an hour.

Time: ``t_s`` given to :meth:`Acquisition.acquire` is the run time of the time point; each
frame's ``t_s`` is that plus the clock time elapsed until its exposure started, so frames
carry run times whatever the clock's origin.

Lost frames: a camera that delivers no frame for a trigger (a dropped GigE or USB3 buffer)
raises :class:`~drivers.camera.roles.FrameTimeout` after its grab timeout. The time point
takes that frame again, up to ``frame_retries`` times (2 by default), each loss recorded
as a ``frame_lost`` event from the microscope (``frame lost (chamber 2 / brightfield),
retrying (1 of 2): <the camera's error>``). The retry is the next step, so the scheduler
runs its interlock checks in between. When the retries are used up, a ``FrameTimeout``
naming the microscope, the position and the channel ends the time point; the frames taken
before it are already in the run file. Other camera and stage errors are not retried.
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
from chipctl.runfile.framestore import Compression, dataset_options
from chipctl.runfile.writer import RunFileWriter
from drivers.camera.roles import ChannelImage, FrameTimeout, Microscope, MoveTimeout
from drivers.clock import Clock

__all__ = [
    "FRAME_RETRIES",
    "Acquisition",
    "AcquisitionSummary",
    "EventSink",
    "FluidicState",
    "FrameListener",
    "FrameRecord",
    "ImagingPlan",
    "parse_compression",
    "writer_supports_stack_attrs",
]

#: Short names accepted besides the :class:`Compression` values.
_COMPRESSION_ALIASES: Final = {"lz4": Compression.LZ4}

#: How many times a lost frame is taken again before the time point fails.
FRAME_RETRIES: Final = 2

#: Where an acquisition records its events: ``(t_s, source, kind, message)`` with ``t_s`` in
#: run time, as :meth:`chipctl.runfile.RunFileWriter.event` takes them.
EventSink = Callable[[float, str, str, str], None]

#: The fluidic state recorded with a frame: quantity -> value, or a function of the frame's
#: run time ``t_s`` that returns it (called once per position, at its first exposure).
FluidicState = Mapping[str, float] | Callable[[float], Mapping[str, float]]


def parse_compression(compression: Compression | str | None) -> Compression:
    """Return the :class:`Compression` of a name, checking its packages are installed.

    Args:
        compression: None or ``"none"``, a :class:`Compression` or its value
            (``"blosc2-lz4"``, ``"blosc2-lz4-bitshuffle"``), or ``"lz4"``.

    Raises:
        ValueError: an unknown name, or hdf5plugin/blosc2 missing for a compressed one.
    """
    if compression is None:
        return Compression.NONE
    if isinstance(compression, str) and compression in _COMPRESSION_ALIASES:
        codec = _COMPRESSION_ALIASES[compression]
    else:
        try:
            codec = Compression(compression)
        except ValueError:
            names = [*_COMPRESSION_ALIASES, *(c.value for c in Compression)]
            raise ValueError(f"unknown compression {compression!r}; use one of {names}") from None
    dataset_options(codec)  # raises ValueError naming the missing packages
    return codec


def writer_supports_stack_attrs(writer: RunFileWriter) -> bool:
    """Tell whether the writer's ``declare_frames`` takes stack attributes.

    The extension asked of :class:`~chipctl.runfile.RunFileWriter`::

        declare_frames(..., attrs: Mapping[str, str | int | float | bool] | None = None)

    writing ``attrs`` on the dataset beside ``units`` at :meth:`~RunFileWriter.open`
    (attributes cannot be created safely once SWMR is on).
    """
    return "attrs" in inspect.signature(writer.declare_frames).parameters


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
        compression: how frames are stored (see :func:`parse_compression` and the module
            docstring); normalised to a :class:`Compression`.

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
    compression: Compression | str | None = None

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
        for what, value in (
            ("pixel_size_um", self.pixel_size_um),
            ("magnification", self.magnification),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be > 0, got {value!r}")
        object.__setattr__(self, "compression", parse_compression(self.compression))

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
        compression: Compression | str | None = None,
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
        if isinstance(positions, str):
            names = known_positions if positions == "all" else [positions]
        else:
            names = list(positions)
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
class FrameRecord:
    """What listeners learn about each frame as it is handed to the writer.

    Args:
        position: the position name.
        channel: the channel name.
        index: the frame's index in its stack.
        t_s: when the frame was taken (run time).
        t_point_s: the time point's nominal time (run time).
        pixel_size_um: pixel size at the sample, if known.
        state: the fluidic quantities recorded with the frame.
        exposure_ms: the frame's exposure (stain signals are compared per unit exposure).
    """

    position: str
    channel: str
    index: int
    t_s: float
    t_point_s: float
    pixel_size_um: float | None
    state: Mapping[str, float]
    exposure_ms: float | None = None


#: A frame listener: called on the engine thread with each frame; it must return at once
#: (queue the work) and must not modify the pixels.
FrameListener = Callable[[FrameRecord, "np.ndarray[Any, Any]"], None]


@dataclass(frozen=True)
class AcquisitionSummary:
    """What one time point did.

    Attributes:
        frames: frames appended (positions x channels).
        positions: the positions visited, in order.
        stage_s: clock time spent moving the stage (from the move's start to its end).
        elapsed_s: clock time of the whole time point.
        frames_lost: frames the camera lost and that were taken again (each loss counts).
    """

    frames: int
    positions: tuple[str, ...]
    stage_s: float
    elapsed_s: float
    frames_lost: int = 0


class Acquisition:
    """Acquire an :class:`ImagingPlan` with a microscope into a run file.

    Called from one thread (the engine worker): the writer's producer calls are
    thread-safe, and the frames are written on the writer's own thread.

    Two ways to image a time point:

    - :meth:`acquire` does it all in one call, waiting for the stage on the clock;
    - :meth:`start` returns a :class:`TimePoint` whose :meth:`TimePoint.step` does one
      bounded piece of work (start a move, poll it, snap one channel) and says when to
      call it again, so the engine's scheduler keeps running interlock checks between
      steps (DESIGN.md, "Concurrency": long actions are split into start + poll)::

          point = acquisition.start(t_s, state)

          def tick() -> None:
              delay_s = point.step()
              if delay_s is not None:
                  scheduler.call_later(delay_s, tick, name="image")

    Args:
        microscope: the Microscope role (camera and stage connected).
        plan: what to image.
        writer: the run file's writer; :meth:`declare` must run before its ``open``.
        clock: the engine's clock (stage time and frame times are measured on it).
        poll_s: how often a moving stage is polled.
        move_timeout_s: how long one move to a position may take.
        frame_retries: how many times a lost frame (a camera
            :class:`~drivers.camera.roles.FrameTimeout`) is taken again.
        on_event: records the lost frames (default: the writer's ``event``; the engine
            may pass its recorder, so listeners see them too).
    """

    def __init__(
        self,
        microscope: Microscope,
        plan: ImagingPlan,
        writer: RunFileWriter,
        *,
        clock: Clock,
        poll_s: float = 0.05,
        move_timeout_s: float = 30.0,
        frame_retries: int = FRAME_RETRIES,
        on_event: EventSink | None = None,
    ) -> None:
        """Check the plan's names against the microscope; no I/O."""
        for p in plan.positions:
            if p not in microscope.position_names():
                raise ValueError(f"{microscope.name}: unknown position {p!r}")
        for c in plan.channels:
            if c not in microscope.channel_names():
                raise ValueError(f"{microscope.name}: unknown channel {c!r}")
        for what, value in (("poll_s", poll_s), ("move_timeout_s", move_timeout_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be > 0, got {value!r}")
        if type(frame_retries) is not int or frame_retries < 0:  # bool is no count
            raise ValueError(f"frame_retries must be an integer >= 0, got {frame_retries!r}")
        self.microscope = microscope
        self.plan = plan
        self.writer = writer
        self.clock = clock
        self.poll_s = float(poll_s)
        self.move_timeout_s = float(move_timeout_s)
        self.frame_retries = frame_retries
        self.on_event: EventSink = writer.event if on_event is None else on_event
        self._counts = {(p, c): 0 for p in plan.positions for c in plan.channels}
        self._declared = False
        #: called with each frame after it is handed to the writer (see FrameListener)
        self.frame_listeners: list[FrameListener] = []

    def declare(self) -> None:
        """Declare every frame stack and metadata table in the writer (before ``open``).

        Raises:
            RunFileError: the writer is already open.
            ValueError: a stack or table path is already declared (two acquisitions of
                the same position and channel).
        """
        with_attrs = writer_supports_stack_attrs(self.writer)
        columns = self.plan.meta_columns()
        for p in self.plan.positions:
            for c in self.plan.channels:
                extra: dict[str, Any] = {}
                if with_attrs:
                    extra["attrs"] = self.plan.stack_attrs(p, c)
                declare: Callable[..., None] = self.writer.declare_frames
                declare(
                    img.frames_path(p, c),
                    self.plan.frame_shape,
                    self.plan.dtype,
                    img.PIXEL_UNITS,
                    compression=self.plan.compression,
                    **extra,
                )
                self.writer.declare_table(
                    img.meta_path(p, c), columns, chunk_rows=img.META_CHUNK_ROWS
                )
        self._declared = True

    def frames_written(self, position: str, channel: str) -> int:
        """Return how many frames this acquisition appended to one stack."""
        return self._counts[(position, channel)]

    def start(
        self,
        t_s: float,
        fluidic_state: FluidicState,
        *,
        positions: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> TimePoint:
        """Begin one time point, to be driven by :meth:`TimePoint.step`; nothing moves yet.

        Args:
            t_s: the run time of this time point.
            fluidic_state: the fluidic quantities to record with every frame (a mapping, or
                a function of the frame's run time called once per position).
            positions: a subset of the plan's positions (default: all, in plan order).
            channels: a subset of the plan's channels (default: all, in plan order).

        Raises:
            ValueError: names outside the plan, or an undeclared fluidic quantity.
            RunFileError: :meth:`declare` was not called.
        """
        if not self._declared:
            raise RunFileError(f"{self.writer.path}: Acquisition.declare() was not called")
        pos = _subset("position", positions, self.plan.positions)
        chans = _subset("channel", channels, self.plan.channels)
        if callable(fluidic_state):
            state_of = fluidic_state
        else:
            fixed = self._check_state(fluidic_state)

            def state_of(_t_s: float) -> Mapping[str, float]:
                return fixed

        return TimePoint(self, float(t_s), state_of, pos, chans)

    def acquire(
        self,
        t_s: float,
        fluidic_state: FluidicState,
        *,
        positions: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> AcquisitionSummary:
        """Image one time point in one call: visit each position, snap each channel there.

        The same as driving :meth:`start`'s :class:`TimePoint` to its end, sleeping on the
        clock between steps.

        Args:
            t_s: the run time of this time point.
            fluidic_state: see :meth:`start`.
            positions: a subset of the plan's positions (default: all, in plan order).
            channels: a subset of the plan's channels (default: all, in plan order).

        Returns:
            Frames written, positions visited, stage and total clock time.

        Raises:
            ValueError: names outside the plan, an undeclared fluidic quantity, or a frame
                whose shape or dtype differs from the plan (camera settings changed).
            RunFileError: :meth:`declare` was not called, or the writer failed.
            drivers.camera.roles.MoveTimeout: the stage did not arrive in time.
            drivers.camera.roles.FrameTimeout: a frame was lost ``frame_retries + 1``
                times in a row (the error names the microscope, position and channel).
            drivers.errors.DeviceError: a camera or stage fault (frames already taken stay
                written).
        """
        point = self.start(t_s, fluidic_state, positions=positions, channels=channels)
        while (delay_s := point.step()) is not None:
            self.clock.sleep_s(delay_s)
        return point.summary()

    def _check_state(self, state: Mapping[str, float]) -> dict[str, float]:
        unknown = sorted(set(state) - set(self.plan.fluidic_columns))
        if unknown:
            raise ValueError(
                f"undeclared fluidic quantities {unknown}; "
                f"declared: {sorted(self.plan.fluidic_columns)}"
            )
        return {k: float(state.get(k, math.nan)) for k in self.plan.fluidic_columns}

    def _append(
        self,
        position: str,
        image: ChannelImage,
        t_point_s: float,
        t_frame_s: float,
        state: Mapping[str, float],
    ) -> None:
        got = image.image
        if got.shape != self.plan.frame_shape or got.dtype != self.plan.dtype:
            raise ValueError(
                f"{img.frames_path(position, image.channel)}: frame "
                f"{got.dtype}{list(got.shape)} does not match the declared "
                f"{self.plan.dtype}{list(self.plan.frame_shape)} "
                "(camera ROI, binning or pixel format changed after the plan was made)"
            )
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
        self.writer.append_frame(img.frames_path(*key), got)
        self.writer.append_rows(img.meta_path(*key), row)
        if self.frame_listeners:
            record = FrameRecord(
                position,
                image.channel,
                self._counts[key],
                t_frame_s,
                t_point_s,
                self.plan.pixel_size_um,
                dict(state),
                image.exposure_ms,
            )
            for listener in self.frame_listeners:
                listener(record, got)
        self._counts[key] += 1


class TimePoint:
    """One time point of an :class:`Acquisition`, done step by step (see :meth:`step`).

    Made by :meth:`Acquisition.start`. Each position is visited in turn: start the move,
    poll until the stage stops (or :class:`~drivers.camera.roles.MoveTimeout`), then snap
    its channels one per step; a lost frame is taken again at the next step, up to the
    acquisition's ``frame_retries`` times.
    """

    def __init__(
        self,
        acquisition: Acquisition,
        t_s: float,
        state_of: Callable[[float], Mapping[str, float]],
        positions: tuple[str, ...],
        channels: tuple[str, ...],
    ) -> None:
        """Remember what to do; the clock starts at the first :meth:`step`."""
        self._acq = acquisition
        self.t_s = t_s
        self._state_of = state_of
        self.positions = positions
        self.channels = channels
        self._t0_clock_s: float | None = None
        self._end_clock_s: float | None = None
        self._position = 0
        self._channel = 0
        self._phase = "move"  # move -> wait -> snap -> (next position) move ... -> done
        self._move_start_s = 0.0
        self._stage_s = 0.0
        self._frames = 0
        self._state: dict[str, float] = {}
        self._tries = 0  # losses of the frame being taken
        self._frames_lost = 0

    @property
    def done(self) -> bool:
        """Tell whether every position and channel was imaged."""
        return self._phase == "done"

    def _run_time_s(self, clock_s: float) -> float:
        assert self._t0_clock_s is not None
        return self.t_s + (clock_s - self._t0_clock_s)

    def step(self) -> float | None:
        """Do the next piece of work; return the delay before the next step, None when done.

        A step starts a move, polls a moving stage, or snaps one channel (one exposure);
        none waits on the clock.

        Raises:
            drivers.camera.roles.MoveTimeout: the stage is still moving after
                ``move_timeout_s`` (it is stopped first).
            ValueError: a frame whose shape or dtype differs from the plan.
            drivers.camera.roles.FrameTimeout: a frame lost once more than the retries
                allow.
            drivers.errors.DeviceError: a camera or stage fault.
        """
        acq = self._acq
        clock = acq.clock
        if self._t0_clock_s is None:
            self._t0_clock_s = clock.now_s()
        if self._phase == "done":
            return None
        position = self.positions[self._position]
        if self._phase == "move":
            self._move_start_s = clock.now_s()
            acq.microscope.start_move(position)
            self._phase = "wait"
            return 0.0
        if self._phase == "wait":
            now_s = clock.now_s()
            if acq.microscope.is_moving():
                if now_s - self._move_start_s >= acq.move_timeout_s:
                    acq.microscope.stage.stop()
                    raise MoveTimeout(
                        acq.microscope.stage.name,
                        f"still moving to {position!r} after {acq.move_timeout_s:g} s",
                    )
                return acq.poll_s
            self._stage_s += now_s - self._move_start_s
            self._phase = "snap"
            self._channel = 0
        channel = self.channels[self._channel]
        try:
            (image,) = acq.microscope.acquire([channel], position=position)
        except FrameTimeout as exc:
            return self._lost(position, channel, exc)
        self._tries = 0
        t_frame_s = self._run_time_s(image.t_s)
        if self._channel == 0:
            self._state = acq._check_state(self._state_of(t_frame_s))
        acq._append(position, image, self.t_s, t_frame_s, self._state)
        self._frames += 1
        self._channel += 1
        if self._channel < len(self.channels):
            return 0.0
        self._position += 1
        if self._position < len(self.positions):
            self._phase = "move"
            return 0.0
        self._phase = "done"
        self._end_clock_s = clock.now_s()
        return None

    def _lost(self, position: str, channel: str, exc: FrameTimeout) -> float:
        """Record a lost frame and take it again at once, or give up (raise)."""
        acq = self._acq
        self._tries += 1
        frame = f"{position} / {channel}"
        if self._tries > acq.frame_retries:
            tries = f"{self._tries} tries" if self._tries > 1 else "1 try"
            self._tries = 0  # a step after this error starts the frame's tries afresh
            raise FrameTimeout(
                acq.microscope.name, f"no frame of {frame} in {tries}; last: {exc}"
            ) from exc
        self._frames_lost += 1
        acq.on_event(
            self._run_time_s(acq.clock.now_s()),
            acq.microscope.name,
            "frame_lost",
            f"frame lost ({frame}), retrying ({self._tries} of {acq.frame_retries}): {exc}",
        )
        return 0.0

    def summary(self) -> AcquisitionSummary:
        """Return what was done so far (all of it once :attr:`done`)."""
        if self._t0_clock_s is None:
            elapsed_s = 0.0
        else:
            end_s = self._end_clock_s if self._end_clock_s is not None else self._acq.clock.now_s()
            elapsed_s = end_s - self._t0_clock_s
        return AcquisitionSummary(
            frames=self._frames,
            positions=self.positions[: self._position],
            stage_s=self._stage_s,
            elapsed_s=elapsed_s,
            frames_lost=self._frames_lost,
        )


def _subset(kind: str, names: Sequence[str] | None, plan: tuple[str, ...]) -> tuple[str, ...]:
    if names is None:
        return plan
    if isinstance(names, str):
        names = [names]
    outside = [n for n in names if n not in plan]
    if outside:
        raise ValueError(f"{kind}s {outside} are not in the imaging plan {list(plan)}")
    if not names:
        raise ValueError(f"no {kind}s to image")
    return tuple(names)
