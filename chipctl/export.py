"""Export a run file's images for other tools: one OME-TIFF per position.

``chipctl export RUN.h5 --ome-tiff DIR`` calls :func:`export_ome_tiff`. Each position becomes
``DIR/<position>.ome.tif``, a TCYX stack (time points as T, channels as C, in channel-name
order) with OME-XML metadata that Fiji/Bio-Formats, napari, QuPath and OMERO read:

- ``PhysicalSizeX``/``PhysicalSizeY`` in um (when the run recorded a pixel size);
- the channel names;
- per plane: ``DeltaT`` (the frame's run time ``t_s``, in s), ``ExposureTime`` (ms) and the
  stage position ``PositionX/Y/Z`` (um).

If the channels of a position hold different numbers of frames (an ``image`` step imaged
only some channels), OME's single T axis cannot line them up: that position is written as
one file per channel, ``DIR/<position>_<channel>.ome.tif``.

File names come from position and channel names made safe: every character outside
``A-Z a-z 0-9 . _ -`` becomes ``_``, leading and trailing ``.``, ``_`` and ``-`` are dropped,
and the resolved path must lie directly in ``DIR``, so a name such as ``../x`` or ``C:\\x``
(from a hand-edited or foreign file) can never write outside it. Existing files are not
overwritten unless asked.

Frames are streamed plane by plane from the run file, so a position larger than memory
exports; files above 2 GiB are written as BigTIFF.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from chipctl.errors import InputError, RunFileError
from chipctl.runfile import images as img
from chipctl.runfile.reader import RunFile, open_run

__all__ = ["export_ome_tiff", "safe_file_stem"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_BIGTIFF_BYTES: Final = 2**31
_SUFFIX: Final = ".ome.tif"
_UM: Final = "µm"


def safe_file_stem(name: str) -> str:
    """Return ``name`` as a file-name stem that cannot leave its directory.

    Characters outside ``A-Z a-z 0-9 . _ -`` (path separators included) become ``_``;
    leading and trailing dots, underscores and dashes are dropped (so ``..``, hidden names
    and option-like names vanish); Windows device names (``CON``, ``NUL``...) get a leading ``_``.

    Raises:
        InputError: nothing usable is left (e.g. ``".."``).
    """
    stem = _UNSAFE.sub("_", name).strip("._-")
    if not stem:
        raise InputError(f"name {name!r} gives no usable file name")
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    return stem


def _target(out_dir: Path, stem: str, overwrite: bool, taken: set[Path]) -> Path:
    path = (out_dir / f"{stem}{_SUFFIX}").resolve()
    if path.parent != out_dir:
        raise InputError(f"{stem!r}: export path {path} would leave {out_dir}")
    if path in taken:
        raise InputError(f"two image stacks map to the same file {path.name}; rename one")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (remove it, or export to an empty folder)")
    taken.add(path)
    return path


def export_ome_tiff(
    run_path: Path | str, out_dir: Path | str, *, overwrite: bool = False
) -> list[Path]:
    """Write one OME-TIFF per imaged position of a run file (see the module docstring).

    Args:
        run_path: the run file (finished or live: a live one exports its current snapshot).
        out_dir: the folder to write into (created if missing).
        overwrite: replace existing files of the same names.

    Returns:
        The files written, in position order.

    Raises:
        RunFileError: the run file is missing or not a run file, or holds no frames.
        InputError: ``tifffile`` is missing, ``out_dir`` is not a folder, a name gives no
            safe file name, two names collide, or a file exists (without ``overwrite``).
    """
    try:
        import tifffile
    except ImportError as exc:
        raise InputError(
            "OME-TIFF export needs the tifffile package (pip install tifffile)"
        ) from exc
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder")
    with open_run(run_path) as run:
        stacks = [s for s in img.image_stacks(run) if s.n_frames > 0]
        if not stacks:
            raise RunFileError(f"{run.path}: no images to export")
        by_position: dict[str, list[img.ImageStack]] = {}
        for stack in stacks:
            by_position.setdefault(stack.position, []).append(stack)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{out}: cannot create the folder ({exc})") from exc
        out = out.resolve()
        # Plan every file name first, so a collision or an existing file writes nothing.
        jobs: list[tuple[Path, str, list[img.ImageStack]]] = []
        taken: set[Path] = set()
        for position, group in by_position.items():
            stem = safe_file_stem(position)
            if _aligned(group):
                jobs.append((_target(out, stem, overwrite, taken), position, group))
            else:
                for stack in group:
                    name = f"{stem}_{safe_file_stem(stack.channel)}"
                    jobs.append((_target(out, name, overwrite, taken), position, [stack]))
        written: list[Path] = []
        for path, position, group in jobs:
            _write(tifffile, run, path, position, group)
            written.append(path)
    return written


def _aligned(group: Sequence[img.ImageStack]) -> bool:
    first = group[0]
    return all(
        (s.n_frames, s.shape, s.dtype) == (first.n_frames, first.shape, first.dtype) for s in group
    )


def _planes(run: RunFile, group: Sequence[img.ImageStack]) -> Iterator[np.ndarray[Any, Any]]:
    datasets = [run.frames(s.frames_path) for s in group]
    for t in range(group[0].n_frames):
        for ds in datasets:
            yield np.asarray(ds[t])


def _write(
    tifffile: Any, run: RunFile, path: Path, position: str, group: Sequence[img.ImageStack]
) -> None:
    metas = [img.read_metadata(run, s.position, s.channel) for s in group]
    n_t, n_c = group[0].n_frames, len(group)
    height, width = group[0].shape
    dtype = group[0].dtype

    def per_plane(column: str) -> list[float] | None:
        values = [float(metas[c][column][t]) for t in range(n_t) for c in range(n_c)]
        return values if all(math.isfinite(v) for v in values) else None

    plane: dict[str, Any] = {}
    for key, column, units in (
        ("DeltaT", img.COL_T, "s"),
        ("ExposureTime", img.COL_EXPOSURE_MS, "ms"),
        ("PositionX", img.COL_STAGE_X_UM, _UM),
        ("PositionY", img.COL_STAGE_Y_UM, _UM),
        ("PositionZ", img.COL_STAGE_Z_UM, _UM),
    ):
        values = per_plane(column)
        if values is not None:
            plane[key] = values
            plane[f"{key}Unit"] = [units] * len(values)
    metadata: dict[str, Any] = {
        "axes": "TCYX",
        "Name": position,
        "Channel": {"Name": [s.channel for s in group]},
        "Plane": plane,
    }
    pixel_um = group[0].pixel_size_um
    if pixel_um is not None:
        metadata.update(
            PhysicalSizeX=pixel_um,
            PhysicalSizeXUnit=_UM,
            PhysicalSizeY=pixel_um,
            PhysicalSizeYUnit=_UM,
        )
    bits = group[0].attrs.get(img.ATTR_BIT_DEPTH)
    if isinstance(bits, int):
        metadata["SignificantBits"] = bits
    size = n_t * n_c * height * width * dtype.itemsize
    tmp = path.with_name(path.name + ".partial")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=size >= _BIGTIFF_BYTES, ome=True) as tif:
            tif.write(
                _planes(run, group),
                shape=(n_t, n_c, height, width),
                dtype=dtype,
                photometric="minisblack",
                metadata=metadata,
            )
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
