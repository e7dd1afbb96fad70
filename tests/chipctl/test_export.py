"""OME-TIFF export of a run file's images: round trip through tifffile, names, errors."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

from chipctl.acquisition import Acquisition
from chipctl.errors import InputError, RunFileError
from chipctl.export import export_ome_tiff, safe_file_stem
from chipctl.runfile import images as img
from chipctl.runfile import open_run

from .test_acquisition import Rig, make_plan, make_rig, make_writer, record_run

tifffile = pytest.importorskip("tifffile")

OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def _ome(path: Path) -> ET.Element:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return ET.fromstring(tif.ome_metadata)


def test_round_trip_pixels_sizes_channels_and_times(tmp_path):
    run = record_run(tmp_path)
    out = tmp_path / "ome"
    written = export_ome_tiff(run.path, out)
    assert [p.name for p in written] == ["c4.ome.tif", "chamber_1.ome.tif"]
    with open_run(run.path) as rf:
        meta = {
            (p, c): img.read_metadata(rf, p, c)
            for p in ("chamber 1", "c4")
            for c in ("brightfield", "live")
        }
    for path, position in zip(written, ["c4", "chamber 1"]):
        data = tifffile.imread(path)
        assert data.shape == (3, 2, 128, 128) and data.dtype == np.uint16  # T, C, Y, X
        for c, channel in enumerate(["brightfield", "live"]):
            np.testing.assert_array_equal(data[:, c], np.stack(run.images[(position, channel)]))
        root = _ome(path)
        image = root.find(f"{OME}Image")
        assert image is not None and image.get("Name") == position
        pixels = image.find(f"{OME}Pixels")
        assert pixels is not None
        assert float(pixels.get("PhysicalSizeX")) == pytest.approx(3.25)
        assert float(pixels.get("PhysicalSizeY")) == pytest.approx(3.25)
        assert pixels.get("PhysicalSizeXUnit") == "µm"
        assert (pixels.get("SizeT"), pixels.get("SizeC")) == ("3", "2")
        names = [ch.get("Name") for ch in pixels.findall(f"{OME}Channel")]
        assert names == ["brightfield", "live"]
        planes = pixels.findall(f"{OME}Plane")
        assert len(planes) == 6
        for plane in planes:
            t, c = int(plane.get("TheT")), int(plane.get("TheC"))
            expected = meta[(position, names[c])]
            assert float(plane.get("DeltaT")) == pytest.approx(expected["t_s"][t])
            assert plane.get("DeltaTUnit") == "s"
            assert float(plane.get("ExposureTime")) == pytest.approx(expected["exposure_ms"][t])
            assert float(plane.get("PositionX")) == pytest.approx(expected["stage_x_um"][t])


def test_ome_xml_parses_into_the_ome_model(tmp_path):
    """ome-types builds its typed OME model from the XML (and validates it when it can)."""
    ome_types = pytest.importorskip("ome_types")
    validate = any(importlib.util.find_spec(m) for m in ("lxml", "xmlschema"))
    run = record_run(tmp_path, n_points=2)
    (path, _) = export_ome_tiff(run.path, tmp_path / "ome")
    with tifffile.TiffFile(path) as tif:
        ome = ome_types.from_xml(tif.ome_metadata, validate=validate)
    pixels = ome.images[0].pixels
    assert pixels.physical_size_x == pytest.approx(3.25)
    assert [c.name for c in pixels.channels] == ["brightfield", "live"]
    assert len(pixels.planes) == 4


def test_a_compressed_run_exports_the_same_pixels(tmp_path):
    run = record_run(tmp_path, n_points=2, compression="lz4")
    (path, _) = export_ome_tiff(run.path, tmp_path / "ome")
    data = tifffile.imread(path)
    np.testing.assert_array_equal(data[:, 1], np.stack(run.images[("c4", "live")]))


def test_channels_with_different_frame_counts_get_a_file_each(tmp_path):
    rig: Rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    try:
        acq.acquire(0.0, {})
        acq.acquire(60.0, {}, positions=["c4"], channels=["live"])
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")
    written = export_ome_tiff(tmp_path / "run.h5", tmp_path / "ome")
    assert sorted(p.name for p in written) == [
        "c4_brightfield.ome.tif",
        "c4_live.ome.tif",
        "chamber_1.ome.tif",
    ]
    assert tifffile.imread(tmp_path / "ome" / "c4_live.ome.tif").shape == (2, 128, 128)


def test_existing_files_are_not_overwritten_unless_asked(tmp_path):
    run = record_run(tmp_path, n_points=1)
    out = tmp_path / "ome"
    export_ome_tiff(run.path, out)
    with pytest.raises(InputError, match=r"c4\.ome\.tif: already exists"):
        export_ome_tiff(run.path, out)
    assert len(export_ome_tiff(run.path, out, overwrite=True)) == 2
    assert sorted(p.name for p in out.iterdir()) == ["c4.ome.tif", "chamber_1.ome.tif"]


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("chamber 1", "chamber_1"),
        ("../../etc/passwd", "etc_passwd"),
        ("..\\..\\evil", "evil"),
        ("C:\\evil", "C_evil"),
        ("/abs/path", "abs_path"),
        (".hidden", "hidden"),
        ("NUL", "_NUL"),
        ("pos-1.5", "pos-1.5"),
        ("µ-chamber", "chamber"),
    ],
)
def test_safe_file_stem(name, stem):
    assert safe_file_stem(name) == stem


@pytest.mark.parametrize("name", ["..", ".", "///", ""])
def test_names_with_nothing_usable_are_rejected(name):
    with pytest.raises(InputError, match="gives no usable file name"):
        safe_file_stem(name)


def _rename_position(path: Path, old: str, new: str) -> None:
    """Rename a position group in a finished run file, as a hand-edited file could."""
    with h5py.File(path, "r+") as h5:
        h5.move(f"/images/{old}", f"/images/{new}")


def test_escaping_position_names_stay_in_the_folder(tmp_path):
    run = record_run(tmp_path, n_points=1)
    _rename_position(run.path, "c4", "..")
    with pytest.raises(InputError, match=r"'\.\.' gives no usable file name"):
        export_ome_tiff(run.path, tmp_path / "ome")
    _rename_position(run.path, "..", "..\\..\\x")
    out = tmp_path / "deep" / "ome"
    written = export_ome_tiff(run.path, out)
    assert sorted(p.name for p in written) == ["chamber_1.ome.tif", "x.ome.tif"]
    assert all(p.parent == out.resolve() for p in written)
    assert sorted(p.name for p in out.iterdir()) == ["chamber_1.ome.tif", "x.ome.tif"]
    assert not list((tmp_path / "deep").glob("*.tif")) and not list(tmp_path.glob("*.tif"))


def test_colliding_names_write_nothing(tmp_path):
    run = record_run(tmp_path, n_points=1)
    _rename_position(run.path, "c4", "chamber_1")  # "chamber 1" also becomes chamber_1
    out = tmp_path / "ome"
    with pytest.raises(InputError, match=r"map to the same file chamber_1\.ome\.tif"):
        export_ome_tiff(run.path, out)
    assert list(out.iterdir()) == []


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    run = record_run(tmp_path, n_points=1)
    out = tmp_path / "ome"
    out.mkdir()
    (out / "c4.ome.tif").symlink_to(tmp_path / "elsewhere.tif")
    with pytest.raises(InputError, match="would leave"):
        export_ome_tiff(run.path, out, overwrite=True)
    assert not (tmp_path / "elsewhere.tif").exists()


# -- errors --------------------------------------------------------------------------------


def test_a_run_without_images_is_a_one_line_error(tmp_path):
    writer = make_writer(tmp_path / "run.h5")
    writer.open()
    writer.close("completed", "2026-11-21T07:00:00+00:00")
    with pytest.raises(RunFileError, match=r"run\.h5: no images to export$"):
        export_ome_tiff(tmp_path / "run.h5", tmp_path / "ome")
    assert not (tmp_path / "ome").exists()


def test_declared_but_empty_stacks_count_as_no_images(tmp_path):
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock).declare()
    writer.open()
    writer.close("aborted", "2026-11-21T07:00:00+00:00")
    with pytest.raises(RunFileError, match="no images to export"):
        export_ome_tiff(tmp_path / "run.h5", tmp_path / "ome")


def test_missing_run_file_and_bad_folder(tmp_path):
    with pytest.raises(RunFileError, match="no such file"):
        export_ome_tiff(tmp_path / "nope.h5", tmp_path / "ome")
    run = record_run(tmp_path, n_points=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        export_ome_tiff(run.path, tmp_path / "file")
