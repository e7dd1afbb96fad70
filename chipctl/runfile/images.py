"""Image stacks of a run file: their layout, and reading frames with their metadata back.

Layout (written by :mod:`chipctl.acquisition`)::

    /images/<position>/<channel>        frames x height x width (uint8 or uint16, "ADU"),
                                        one frame per chunk; attrs: units, compression, and
                                        where the writer supports them position, channel,
                                        pixel_size_um, objective, magnification,
                                        exposure_ms, bit_depth
    /images/<position>/<channel>_meta   a table (see :mod:`chipctl.runfile.layout`), one
                                        row per frame: BASE_COLUMNS, then the fluidic
                                        columns the acquisition declared

A stack is found through its metadata table (every ``/images/<p>/<c>_meta`` table names a
stack ``/images/<p>/<c>``), so listing uses only :meth:`RunFile.tables`. A live run's
frames and rows are written separately, so a snapshot may hold a frame whose row is not
flushed yet (or the reverse): :func:`read_stack` cuts both to the shorter.

Compressed frames (Blosc2-LZ4, :mod:`chipctl.runfile.framestore`) need the ``hdf5plugin``
filters; this module loads them when ``hdf5plugin`` is installed, so reading through it just
works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from chipctl.runfile import layout
from chipctl.runfile.framestore import register_filters
from chipctl.runfile.reader import RunFile

register_filters()  # h5py can then decode compressed stacks (when hdf5plugin is installed)

__all__ = [
    "ATTR_BIT_DEPTH",
    "ATTR_CHANNEL",
    "ATTR_EXPOSURE_MS",
    "ATTR_MAGNIFICATION",
    "ATTR_OBJECTIVE",
    "ATTR_PIXEL_SIZE_UM",
    "ATTR_POSITION",
    "BASE_COLUMNS",
    "COL_EXPOSURE_MS",
    "COL_FRAME",
    "COL_GAIN_DB",
    "COL_PIXEL_SIZE_UM",
    "COL_STAGE_X_UM",
    "COL_STAGE_Y_UM",
    "COL_STAGE_Z_UM",
    "COL_T",
    "COL_T_POINT",
    "META_CHUNK_ROWS",
    "META_SUFFIX",
    "PIXEL_UNITS",
    "ImageStack",
    "frames_path",
    "image_stacks",
    "meta_path",
    "read_frame",
    "read_metadata",
    "read_stack",
]

META_SUFFIX: Final = "_meta"
PIXEL_UNITS: Final = "ADU"
#: Metadata rows per chunk: frames are few (one per time point), so keep chunks small.
META_CHUNK_ROWS: Final = 256

ATTR_POSITION: Final = "position"
ATTR_CHANNEL: Final = "channel"
ATTR_PIXEL_SIZE_UM: Final = "pixel_size_um"
ATTR_OBJECTIVE: Final = "objective"
ATTR_MAGNIFICATION: Final = "magnification"
ATTR_EXPOSURE_MS: Final = "exposure_ms"
ATTR_BIT_DEPTH: Final = "bit_depth"

COL_T: Final = layout.TIME_COLUMN
COL_T_POINT: Final = "t_point_s"
COL_FRAME: Final = "frame"
COL_EXPOSURE_MS: Final = "exposure_ms"
COL_GAIN_DB: Final = "gain_db"
COL_STAGE_X_UM: Final = "stage_x_um"
COL_STAGE_Y_UM: Final = "stage_y_um"
COL_STAGE_Z_UM: Final = "stage_z_um"
COL_PIXEL_SIZE_UM: Final = "pixel_size_um"

#: The metadata columns every stack has: name -> (dtype, units).
BASE_COLUMNS: Final[Mapping[str, tuple[np.dtype[Any], str]]] = {
    COL_T: (np.dtype(np.float64), "s"),
    COL_T_POINT: (np.dtype(np.float64), "s"),
    COL_FRAME: (np.dtype(np.int64), "1"),
    COL_EXPOSURE_MS: (np.dtype(np.float64), "ms"),
    COL_GAIN_DB: (np.dtype(np.float64), "dB"),
    COL_STAGE_X_UM: (np.dtype(np.float64), "um"),
    COL_STAGE_Y_UM: (np.dtype(np.float64), "um"),
    COL_STAGE_Z_UM: (np.dtype(np.float64), "um"),
    COL_PIXEL_SIZE_UM: (np.dtype(np.float64), "um"),
}


def frames_path(position: str, channel: str) -> str:
    """Return the path of the frame stack of one position and channel."""
    return f"{layout.IMAGES_GROUP}/{position}/{channel}"


def meta_path(position: str, channel: str) -> str:
    """Return the path of the metadata table of one position and channel."""
    return f"{frames_path(position, channel)}{META_SUFFIX}"


@dataclass(frozen=True)
class ImageStack:
    """One frame stack of a run file, as found in a snapshot.

    Attributes:
        position: the position's name.
        channel: the channel's name.
        frames_path: the frame dataset's path.
        meta_path: the metadata table's path.
        n_frames: frames with both pixels and a metadata row in the snapshot.
        shape: (height, width) of a frame.
        dtype: the pixel dtype.
        pixel_size_um: the pixel at the sample (attribute, else the metadata column), or
            None if unknown.
        attrs: every attribute of the frame dataset, as plain Python values.
    """

    position: str
    channel: str
    frames_path: str
    meta_path: str
    n_frames: int
    shape: tuple[int, int]
    dtype: np.dtype[Any]
    pixel_size_um: float | None
    attrs: Mapping[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    return value


def _stack(run: RunFile, position: str, channel: str) -> ImageStack:
    fpath, mpath = frames_path(position, channel), meta_path(position, channel)
    try:
        ds = run.frames(fpath)
    except KeyError:
        raise KeyError(f"{run.path}: no frame stack {fpath!r}") from None
    meta = run.table(mpath)
    n = min(int(ds.shape[0]), len(meta[COL_T]))
    attrs = {str(k): _plain(v) for k, v in ds.attrs.items()}
    pixel = attrs.get(ATTR_PIXEL_SIZE_UM)
    if pixel is None and n and COL_PIXEL_SIZE_UM in meta:
        pixel = float(meta[COL_PIXEL_SIZE_UM][0])
    pixel_size_um = None if pixel is None or not math.isfinite(pixel) else float(pixel)
    return ImageStack(
        position=position,
        channel=channel,
        frames_path=fpath,
        meta_path=mpath,
        n_frames=n,
        shape=(int(ds.shape[1]), int(ds.shape[2])),
        dtype=np.dtype(ds.dtype),
        pixel_size_um=pixel_size_um,
        attrs=attrs,
    )


def image_stacks(run: RunFile) -> list[ImageStack]:
    """Return every frame stack of a run file, sorted by position then channel name.

    Args:
        run: an open run file (finished or live; a live one is read as of its snapshot,
            see :meth:`RunFile.refresh`).
    """
    prefix = layout.IMAGES_GROUP + "/"
    out: list[ImageStack] = []
    for path in run.tables():
        if not (path.startswith(prefix) and path.endswith(META_SUFFIX)):
            continue
        parts = path[len(prefix) : -len(META_SUFFIX)].split("/")
        if len(parts) != 2 or not all(parts):
            continue
        out.append(_stack(run, parts[0], parts[1]))
    return sorted(out, key=lambda s: (s.position, s.channel))


def read_metadata(run: RunFile, position: str, channel: str) -> dict[str, np.ndarray[Any, Any]]:
    """Return one stack's metadata columns (name -> 1-D array), cut to its frames.

    Raises:
        KeyError: no such stack.
    """
    stack = _stack(run, position, channel)
    return {k: v[: stack.n_frames] for k, v in run.table(stack.meta_path).items()}


def read_frame(run: RunFile, position: str, channel: str, index: int) -> np.ndarray[Any, Any]:
    """Return one frame (a 2-D array read from the file).

    Raises:
        KeyError: no such stack.
        IndexError: ``index`` outside the stack's frames.
    """
    stack = _stack(run, position, channel)
    if not -stack.n_frames <= index < stack.n_frames:
        raise IndexError(f"{stack.frames_path}: frame {index} of {stack.n_frames}")
    frame: np.ndarray[Any, Any] = run.frames(stack.frames_path)[index % stack.n_frames]
    return frame


def read_stack(
    run: RunFile, position: str, channel: str
) -> tuple[np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]]]:
    """Return all frames of a stack (frames x height x width) and their metadata columns.

    Frames and rows are cut to the same count (a live snapshot may be one ahead).

    Raises:
        KeyError: no such stack.
    """
    stack = _stack(run, position, channel)
    frames: np.ndarray[Any, Any] = run.frames(stack.frames_path)[: stack.n_frames]
    meta = {k: v[: stack.n_frames] for k, v in run.table(stack.meta_path).items()}
    return frames, meta
