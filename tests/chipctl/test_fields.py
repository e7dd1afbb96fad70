"""A chamber imaged in several fields: names, stage positions, protocols naming a chamber."""

from __future__ import annotations

import pytest

from chipctl.chip import chamber_of, field_name
from chipctl.config import parse_config, reference_rig_config
from chipctl.errors import ConfigError, ProtocolError
from chipctl.protocol.compile import compile_protocol
from chipctl.protocol.loader import parse_protocol
from chipctl.protocol.model import ImageStep, walk
from chipctl.protocol.preflight import preflight
from chipctl.rig import build_rig
from drivers.clock import VirtualClock


def test_field_names_and_their_chamber():
    assert [field_name(3, i, 3) for i in (1, 2, 3)] == ["chamber 3a", "chamber 3b", "chamber 3c"]
    assert field_name(3, 1, 1) == "chamber 3"
    assert chamber_of("chamber 12c") == "chamber 12"
    assert chamber_of("chamber 3") == "chamber 3"
    assert chamber_of("overview") == "overview"
    assert chamber_of("chamber 3ab") == "chamber 3ab"  # not a field name
    with pytest.raises(ValueError, match="field 4 of 3"):
        field_name(1, 4, 3)


def _config(fields: str) -> object:
    from chipctl import config

    text = config._REFERENCE_RIG_FILE.read_text(encoding="utf-8")
    assert "fields_per_chamber = 3" in text
    return parse_config(
        text.replace("fields_per_chamber = 3", f"fields_per_chamber = {fields}"), "rig.toml"
    )


def test_the_fields_tile_each_chamber_without_overlapping():
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    (scope,) = rig.microscopes().values()
    names = scope.microscope.position_names()
    assert len(names) == 24 and names[:4] == [
        "chamber 1a",
        "chamber 1b",
        "chamber 1c",
        "chamber 2a",
    ]
    height_um = scope.setup.frame_shape[0] * scope.setup.pixel_size_um
    fields = [scope.microscope._position(f"chamber 4{f}") for f in "abc"]  # the stage targets
    ys = [p.y_um for p in fields]
    xs = {p.x_um for p in fields}
    assert len(xs) == 1  # along the chamber
    assert ys[1] - ys[0] == pytest.approx(ys[2] - ys[1])
    assert ys[1] - ys[0] >= height_um  # no tumoroid is seen twice
    assert ys[2] - ys[0] + height_um >= 10000.0 - 20.0  # the 10 mm chamber, but for slivers
    assert sum(ys) / 3 == pytest.approx(rig.bench.microscope.chamber_positions_um()[3][1])


@pytest.mark.parametrize("bad", ["0", "27", '"3"', "true"])
def test_a_bad_field_count_is_one_config_line(bad):
    with pytest.raises(ConfigError, match="fields_per_chamber"):
        build_rig(_config(bad), clock=VirtualClock())


IMAGE_ONE_CHAMBER = """\
[protocol]
name = "one chamber"

[chambers]
control = ["chamber 8"]
labels = { "chamber 3b" = "middle of 3" }

[[step]]
action = "image"
positions = ["chamber 3", "chamber 5c", "chamber 3a"]
channels = ["brightfield"]
at = ["0 h"]
"""


def test_an_image_step_naming_a_chamber_images_all_its_fields():
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    protocol = parse_protocol(IMAGE_ONE_CHAMBER, "one.toml")
    compiled = compile_protocol(protocol, rig)
    (step,) = [s for s in walk(compiled.steps) if isinstance(s, ImageStep)]
    assert step.positions == ("chamber 3a", "chamber 3b", "chamber 3c", "chamber 5c")
    assert preflight(protocol, rig).frames == 4


def test_an_unknown_chamber_is_still_one_line():
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    text = IMAGE_ONE_CHAMBER.replace('control = ["chamber 8"]', 'control = ["chamber 9"]')
    with pytest.raises(ProtocolError, match="no position 'chamber 9'"):
        preflight(parse_protocol(text, "one.toml"), rig)
    text = IMAGE_ONE_CHAMBER.replace('"chamber 5c"', '"chamber 5d"')
    with pytest.raises(ProtocolError, match="no position 'chamber 5d'"):
        preflight(parse_protocol(text, "one.toml"), rig)
