"""Frame stacks written as whole chunks: raw and Blosc2-LZ4, through RunFileWriter and alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from chipctl.runfile import RunFileWriter, open_run
from chipctl.runfile.framestore import (
    Compression,
    FrameEncoder,
    FrameStack,
    compression_available,
    dataset_options,
    register_filters,
)

needs_compression = pytest.mark.skipif(
    not compression_available(), reason="needs hdf5plugin and blosc2"
)


def make_writer(path: Path) -> RunFileWriter:
    return RunFileWriter(
        path,
        chipctl_version="test",
        simulated=True,
        seed=None,
        started_utc="",
        config_text="",
        protocol_text="",
        protocol_name="frames",
        telemetry={},
        fsync=False,
    )


def sample(n: int, shape: tuple[int, int] = (16, 20)) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(7)
    return (rng.poisson(200, size=(n, *shape)) + 100).astype(np.uint16)


@pytest.mark.parametrize(
    "compression",
    [
        Compression.NONE,
        pytest.param(Compression.LZ4, marks=needs_compression),
        pytest.param(Compression.LZ4_BITSHUFFLE, marks=needs_compression),
    ],
)
def test_append_frame_round_trip(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "run.h5"
    data = sample(5)
    w = make_writer(path)
    w.declare_frames("/images/a", data.shape[1:], np.uint16, "ADU", compression=compression)
    w.open()
    for frame in data:
        w.append_frame("/images/a", frame)  # copied; encoded on the writer thread
    data_copy = data.copy()
    data[:] = 0  # the caller may reuse its buffer at once
    w.close("completed", "")
    register_filters()
    with open_run(path) as run:
        stack = run.frames("/images/a")
        assert stack.chunks == (1, *data.shape[1:])
        assert stack.attrs["compression"] == compression.value
        np.testing.assert_array_equal(stack[()], data_copy)


def test_encoded_frame_is_checked_and_callback_runs_on_writer_thread(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    w = make_writer(path)
    w.declare_frames("/images/a", (4, 6), np.uint16, "ADU", flush_every_frames=2)
    w.open()
    with pytest.raises(ValueError, match="not a declared frame stack"):
        w.append_encoded_frame("/images/b", np.zeros((4, 6), np.uint16))
    with pytest.raises(ValueError, match="!="):
        w.append_encoded_frame("/images/a", np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        w.append_encoded_frame("/images/a", np.zeros((6, 4), np.uint16).T)
    threads: list[str] = []
    frame = np.arange(24, dtype=np.uint16).reshape(4, 6)
    for _ in range(3):
        w.append_encoded_frame(
            "/images/a", frame, lambda: threads.append(threading.current_thread().name)
        )
    w.close("completed", "")
    assert threads == ["runfile-writer:run.h5"] * 3
    assert w.failure is None
    with open_run(path) as run:
        np.testing.assert_array_equal(run.frames("/images/a")[()], np.stack([frame] * 3))


def test_frame_stack_alone_flushes_every_n_frames(tmp_path: Path) -> None:
    path = tmp_path / "stack.h5"
    data = sample(5, (8, 8))
    with h5py.File(path, "w", libver=("v110", "v110")) as h5:
        ds = h5.create_dataset(
            "f", shape=(0, 8, 8), maxshape=(None, 8, 8), dtype=np.uint16, chunks=(1, 8, 8)
        )
        h5.swmr_mode = True
        stack = FrameStack(ds, flush_every_frames=2)
        flushes: list[int] = []
        original = ds.flush
        ds.flush = lambda: (flushes.append(stack.n_frames), original())  # type: ignore[method-assign]
        for frame in data:
            stack.append_frame(frame)
        assert stack.n_frames == 5
        assert flushes == [2, 4]
        with pytest.raises(ValueError, match="chunk of"):
            stack.append_chunk(b"\0" * 10)
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["f"][()], data)


def test_frame_stack_refuses_chunks_that_are_not_one_frame(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        ds = h5.create_dataset(
            "f", shape=(0, 8, 8), maxshape=(None, 8, 8), dtype="u2", chunks=(2, 8, 8)
        )
        with pytest.raises(ValueError, match="not one frame"):
            FrameStack(ds)


@needs_compression
def test_encoder_output_is_smaller_and_decodes(tmp_path: Path) -> None:
    data = sample(1, (64, 64))[0]
    enc = FrameEncoder(data.shape, np.uint16, Compression.LZ4)
    chunk = enc.encode(data)
    assert isinstance(chunk, bytes) and len(chunk) < data.nbytes
    with pytest.raises(ValueError, match="does not match"):
        enc.encode(data[:10])
    raw = FrameEncoder(data.shape, np.uint16)
    assert raw.encode(data) is data  # uncompressed: zero copy
    assert dataset_options(Compression.NONE) == {}
    assert "compression" in dataset_options("blosc2-lz4")


def test_stack_attributes_are_written_at_open(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    w = make_writer(path)
    attrs = {"channel": "live", "pixel_size_um": 1.625, "bit_depth": 12, "binned": False}
    w.declare_frames("/images/a", (4, 4), np.uint16, "ADU", attrs=attrs)
    for bad, match in (({"units": "x"}, "set by the writer"), ({"x": [1, 2]}, "not a scalar")):
        with pytest.raises(ValueError, match=match):
            w.declare_frames("/images/b", (4, 4), np.uint16, "ADU", attrs=bad)
    w.open()
    w.close("completed", "")
    with open_run(path) as run:
        got = dict(run.frames("/images/a").attrs)
    assert got == {**attrs, "units": "ADU", "compression": "none"}
