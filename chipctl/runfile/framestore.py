"""The fast frame path of the run file: one frame per HDF5 chunk, written as a whole chunk.

A frame stack is an appendable dataset ``(n, *frame_shape)`` chunked ``(1, *frame_shape)``.
:class:`FrameStack` appends to it with ``write_direct_chunk``: the frame's bytes (or its
pre-compressed bytes) go to the file as one chunk, bypassing HDF5's hyperslab selection and
filter pipeline. Measured here (perf-limits §2a, 2048² uint16, durable): ``ds[i] = frame``
reaches 0.79 of a raw ``os.write``, ``write_direct_chunk`` 0.96.

Compression (:class:`Compression`) is Blosc2-LZ4 with byte shuffle or bit shuffle, through
the ``python-blosc2`` package; the dataset carries the hdf5plugin Blosc2 filter (id 32026),
so any reader that loads hdf5plugin (``import hdf5plugin``) decodes it. That filter reads a
chunk as a Blosc2 contiguous *super-chunk frame* (a bare Blosc2 chunk is refused on read;
measured), so the encoder compresses the frame with ``blosc2.compress2`` and wraps the
result in a one-chunk super-chunk frame. It does not use ``blosc2.asarray`` (the filter's own
b2nd layout): that path holds the GIL for the whole compression (measured: a concurrent
Python thread keeps ~40 % of its speed), whereas ``compress2`` releases it once
``blosc2.set_releasegil(True)`` is set (~70 %), which the encoder does. Encoding happens in
:class:`FrameEncoder`, which runs wherever its owner puts it: on a compression thread for
:class:`chipctl.streaming.FrameStream`, on the run-file writer thread for
:meth:`chipctl.runfile.RunFileWriter.append_frame`, never on the control thread.

Flushing stays compatible with SWMR: a stack only ever grows along axis 0, and its extent is
made visible to live readers by the run-file writer's periodic file flush, or sooner with
``flush_every_frames`` (``Dataset.flush``, no fsync: perf-limits §2f, fsync every 10 or 100
frames stalls the writer 35-260 ms).

Both compression packages are optional: uncompressed stacks need neither; asking for a
compressed stack without them raises :class:`ValueError` at declaration.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "Compression",
    "FrameEncoder",
    "FrameStack",
    "compression_available",
    "dataset_options",
    "describe",
    "register_filters",
]

DEFAULT_CLEVEL: Final = 5
"""Blosc compression level: 5 is Blosc's default and LZ4's speed barely depends on it."""


class Compression(enum.Enum):
    """How frames are stored in a stack."""

    NONE = "none"
    """Raw pixels, one frame per chunk."""
    LZ4 = "blosc2-lz4"
    """Blosc2, LZ4 codec, byte shuffle: ~2x on microscope frames, ~3 ms/8 MiB on one core."""
    LZ4_BITSHUFFLE = "blosc2-lz4-bitshuffle"
    """Blosc2, LZ4 codec, bit shuffle: a better ratio (~2.3-2.5x), a little more CPU."""


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def compression_available() -> bool:
    """Tell whether compressed stacks can be written (hdf5plugin and blosc2 installed)."""
    return _module("hdf5plugin") is not None and _module("blosc2") is not None


def register_filters() -> bool:
    """Load hdf5plugin so that h5py can read compressed stacks; return whether it could.

    A reader of a run file with compressed stacks calls this (or imports hdf5plugin) before
    reading frames; without it h5py reports that the filter is not available.
    """
    return _module("hdf5plugin") is not None


def _require_compression(compression: Compression) -> tuple[Any, Any]:
    hdf5plugin = _module("hdf5plugin")
    blosc2 = _module("blosc2")
    if hdf5plugin is None or blosc2 is None:
        raise ValueError(
            f"compression {compression.value!r} needs the packages hdf5plugin and blosc2 "
            "(pip install hdf5plugin blosc2)"
        )
    return hdf5plugin, blosc2


def dataset_options(compression: Compression | str, clevel: int = DEFAULT_CLEVEL) -> dict[str, Any]:
    """Return the ``h5py.Group.create_dataset`` keywords that declare ``compression``.

    Args:
        compression: how frames are stored.
        clevel: the Blosc compression level recorded in the filter (0-9).

    Raises:
        ValueError: an unknown compression, or its packages are missing.
    """
    compression = Compression(compression)
    if compression is Compression.NONE:
        return {}
    hdf5plugin, _ = _require_compression(compression)
    shuffle = (
        hdf5plugin.Blosc2.SHUFFLE
        if compression is Compression.LZ4
        else hdf5plugin.Blosc2.BITSHUFFLE
    )
    return dict(hdf5plugin.Blosc2(cname="lz4", clevel=clevel, filters=shuffle))


class FrameEncoder:
    """Turn a frame into the bytes of its chunk; one encoder per thread.

    For :attr:`Compression.NONE` the chunk *is* the frame (no copy). Otherwise each call
    returns a new ``bytes`` of the compressed chunk.

    Args:
        shape: the shape of one frame.
        dtype: the pixel dtype.
        compression: how frames are stored.
        clevel: the Blosc compression level (0-9).
        nthreads: Blosc threads per frame; 1 leaves the other core to the writer and the
            control thread (this machine has two, perf-limits §0).

    Raises:
        ValueError: a compression whose packages are missing.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: npt.DTypeLike,
        compression: Compression | str = Compression.NONE,
        *,
        clevel: int = DEFAULT_CLEVEL,
        nthreads: int = 1,
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self.compression = Compression(compression)
        self._blosc2: Any = None
        self._cparams: Any = None
        if self.compression is not Compression.NONE:
            _, blosc2 = _require_compression(self.compression)
            shuffle = (
                blosc2.Filter.SHUFFLE
                if self.compression is Compression.LZ4
                else blosc2.Filter.BITSHUFFLE
            )
            self._blosc2 = blosc2
            # Process-wide, and only a small cost for small blocks (python-blosc2 docs):
            # without it the compression thread starves the writer and the camera thread.
            blosc2.set_releasegil(True)
            self._cparams = blosc2.CParams(
                codec=blosc2.Codec.LZ4,
                clevel=int(clevel),
                filters=[shuffle],
                typesize=self.dtype.itemsize,
                nthreads=int(nthreads),
            )

    def encode(self, frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | bytes:
        """Return the chunk for ``frame`` (C-contiguous, of the encoder's shape and dtype).

        Raises:
            ValueError: a frame of another shape or dtype, or not C-contiguous.
        """
        if frame.shape != self.shape or frame.dtype != self.dtype:
            raise ValueError(
                f"frame {frame.shape} {frame.dtype} does not match {self.shape} {self.dtype}"
            )
        if not frame.flags.c_contiguous:
            raise ValueError("frame is not C-contiguous")
        if self._blosc2 is None:
            return frame
        compressed = self._blosc2.compress2(frame, cparams=self._cparams)
        schunk = self._blosc2.SChunk(chunksize=frame.nbytes, cparams=self._cparams)
        schunk.insert_chunk(0, compressed)
        data: bytes = schunk.to_cframe()
        return data


class FrameStack:
    """Append frames to one stack dataset with whole-chunk writes (writer thread only).

    Args:
        dataset: an ``h5py.Dataset`` of shape ``(n, *frame_shape)``, chunks
            ``(1, *frame_shape)``, created with :func:`dataset_options` of ``compression``.
        compression: how its chunks are encoded.
        flush_every_frames: also ``Dataset.flush()`` after this many appended frames, so a
            live SWMR reader sees them before the writer's next file flush; None: never.

    Raises:
        ValueError: a dataset whose chunks are not one frame.
    """

    def __init__(
        self,
        dataset: Any,
        compression: Compression | str = Compression.NONE,
        *,
        flush_every_frames: int | None = None,
    ) -> None:
        frame_shape = tuple(dataset.shape[1:])
        if dataset.chunks != (1, *frame_shape):
            raise ValueError(f"{dataset.name}: chunks {dataset.chunks} are not one frame")
        if flush_every_frames is not None and flush_every_frames < 1:
            raise ValueError(f"flush_every_frames must be >= 1, got {flush_every_frames}")
        self._ds = dataset
        self._dsid = dataset.id
        self._zeros = (0,) * len(frame_shape)
        self._n = int(dataset.shape[0])
        self._since_flush = 0
        self._flush_every = flush_every_frames
        self._frame_nbytes = int(np.prod(frame_shape)) * dataset.dtype.itemsize
        self.compression = Compression(compression)
        self._encoder = FrameEncoder(frame_shape, dataset.dtype, self.compression)

    @property
    def n_frames(self) -> int:
        """Frames appended so far (the dataset's length)."""
        return self._n

    def append_frame(self, frame: np.ndarray[Any, Any]) -> None:
        """Encode (if compressed) and append one frame of the stack's shape and dtype."""
        self.append_chunk(self._encoder.encode(frame))

    def append_chunk(self, chunk: Any) -> None:
        """Append one chunk already encoded for this stack (raw frame bytes or compressed).

        Raises:
            ValueError: an uncompressed chunk of the wrong size.
        """
        if self.compression is Compression.NONE:
            nbytes = chunk.nbytes if isinstance(chunk, np.ndarray) else len(memoryview(chunk))
            if nbytes != self._frame_nbytes:
                raise ValueError(f"chunk of {nbytes} B, a frame is {self._frame_nbytes} B")
        n = self._n
        self._ds.resize(n + 1, axis=0)
        self._dsid.write_direct_chunk((n, *self._zeros), chunk)
        self._n = n + 1
        self._since_flush += 1
        if self._flush_every is not None and self._since_flush >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Make the appended frames visible to SWMR readers (``Dataset.flush``, no fsync)."""
        self._ds.flush()
        self._since_flush = 0

    def flushed(self) -> None:
        """Note that the whole file was just flushed (resets the frame count to the next)."""
        self._since_flush = 0


def describe(compression: Compression | str) -> Mapping[str, str]:
    """Return the attributes recorded on a stack to say how it is stored."""
    return {"compression": Compression(compression).value}
