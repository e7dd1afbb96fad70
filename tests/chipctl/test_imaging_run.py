"""The image step: validation, preflight, and a simulated run that stores frames."""

import numpy as np
import pytest

from chipctl.api import check_protocol, run_protocol
from chipctl.errors import ProtocolError
from chipctl.protocol.loader import parse_protocol
from chipctl.runfile import RunFile
from chipctl.runfile.images import image_stacks, read_stack

HEAD = '[protocol]\nname = "img"\n\n'
PERFUSE = (
    '[[step]]\naction = "infuse"\npump = "medium"\nrate = "2 uL/min"\n'
    'duration = "3 h"\nwait = false\n\n'
)


def _image(**fields):
    lines = ["[[step]]", 'action = "image"']
    for key, value in fields.items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n\n"


def test_an_image_schedule_stores_every_frame_with_its_metadata(tmp_path):
    text = (
        HEAD
        + PERFUSE
        + _image(
            positions='["chamber 1b", "chamber 2b"]',
            channels='["brightfield", "live"]',
            every='"1 h"',
            duration='"2 h"',
        )
    )
    protocol = parse_protocol(text, "img.toml")
    _, pre = check_protocol(protocol, sim=True)
    assert pre.frames == 3 * 2 * 2
    assert pre.image_bytes == pre.frames * 1024 * 1024 * 2
    result = run_protocol(protocol, sim=True, out=tmp_path / "img.h5")
    assert result.ok, result.message
    with RunFile(result.path) as run:
        stacks = {(s.position, s.channel): s for s in image_stacks(run)}
        assert {k for k, s in stacks.items() if s.n_frames} == {
            ("chamber 1b", "brightfield"),
            ("chamber 1b", "live"),
            ("chamber 2b", "brightfield"),
            ("chamber 2b", "live"),
        }
        frames, meta = read_stack(run, "chamber 1b", "brightfield")
        _, meta2 = read_stack(run, "chamber 2b", "brightfield")
        events = run.events()
    assert frames.shape == (3, 1024, 1024) and frames.dtype == np.uint16
    assert np.allclose(meta["t_point_s"] - meta["t_point_s"][0], [0, 3600, 7200], atol=1)
    # the fluidic state at each frame: medium has pumped 2 uL/min since the start
    assert meta["medium_delivered_ul"][-1] == pytest.approx(240, rel=0.01)
    # each position is imaged where its chamber is
    assert meta["stage_x_um"][0] != meta2["stage_x_um"][0]
    time_points = [e for e in events if e.source == "imaging" and e.kind == "time_point"]
    assert len(time_points) == 3


def test_overlapping_schedules_wait_for_each_other_and_say_so(tmp_path):
    text = (
        HEAD
        + _image(positions='"all"', channels='["brightfield"]', at='["0 h"]')
        + _image(positions='["chamber 1"]', channels='["dead"]', at='["0 h"]')
    )
    result = run_protocol(parse_protocol(text, "two.toml"), sim=True, out=tmp_path / "two.h5")
    assert result.ok, result.message
    with RunFile(result.path) as run:
        late = [e for e in run.events() if e.kind == "late"]
    assert len(late) == 1 and "step 2 time point 1" in late[0].message


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"positions": '"all"', "channels": '["brightfield"]'}, "field 'every': missing"),
        ({"positions": '"all"', "channels": '["uv"]', "at": '["0 h"]'}, "no channel 'uv'"),
        (
            {"positions": '["chamber 9"]', "channels": '["live"]', "at": '["0 h"]'},
            "no position 'chamber 9'",
        ),
        ({"positions": '"all"', "channels": "[]", "at": '["0 h"]'}, "non-empty list"),
        ({"positions": '"all"', "channels": '["live"]', "at": '["-1 h"]'}, "negative"),
        (
            {"positions": '"all"', "channels": '["live"]', "every": '"1 s"', "duration": '"7 d"'},
            "time points; at most",
        ),
        (
            {"positions": '"all"', "channels": '["live"]', "at": '["0 h"]', "every": '"1 h"'},
            "not both",
        ),
    ],
)
def test_image_step_errors_name_the_field(fields, fragment):
    text = HEAD + _image(**fields)
    with pytest.raises(ProtocolError) as info:
        check_protocol(parse_protocol(text, "bad.toml"), sim=True)
    assert fragment in str(info.value)
    assert str(info.value).startswith("bad.toml:")


def test_a_basler_emulated_camera_can_replace_the_simulated_one(tmp_path):
    """The same protocol with pylon's camera emulation in the simulated microscope."""
    from chipctl.config import parse_config, reference_rig_config

    text = reference_rig_config().text
    assert text.rstrip().splitlines()[-1].startswith("channels =")  # microscope table is last
    config = parse_config(
        text + 'camera = { driver = "basler", serial = "0815-0000", emulated = true }\n',
        "basler.toml",
    )
    protocol = parse_protocol(
        HEAD
        + _image(
            positions='["chamber 1", "chamber 8"]',
            channels='["brightfield", "live"]',
            every='"1 h"',
            duration='"1 h"',
        ),
        "timelapse.toml",
    )
    result = run_protocol(protocol, config, out=tmp_path / "basler.h5")
    assert result.ok, result.message
    with RunFile(result.path) as run:
        events = run.events()
        for position in [f"chamber {k}{f}" for k in (1, 8) for f in "abc"]:
            for channel in ("brightfield", "live"):
                frames, meta = read_stack(run, position, channel)
                assert frames.shape == (2, 1024, 1024) and frames.dtype == np.uint16
                assert np.allclose(meta["t_point_s"] - meta["t_point_s"][0], [0, 3600], atol=1)
    assert any(e.source == "microscope" and e.kind == "connected" for e in events)
    # the frames came through the Basler driver and pylon's emulator, not the renderer
    from chipctl.rig import build_rig
    from drivers.camera.basler import BaslerCamera
    from drivers.clock import VirtualClock

    rig = build_rig(config, clock=VirtualClock())
    assert isinstance(rig.microscopes()["microscope"].camera, BaslerCamera)


def test_frames_can_be_stored_compressed_and_read_back(tmp_path):
    from chipctl.config import parse_config, reference_rig_config

    config = parse_config(reference_rig_config().text + 'compression = "lz4"\n', "lz4.toml")
    text = HEAD + _image(positions='["chamber 2b"]', channels='["live"]', at='["0 h"]')
    result = run_protocol(parse_protocol(text, "one.toml"), config, out=tmp_path / "lz4.h5")
    assert result.ok, result.message
    with RunFile(result.path) as run:
        (stack,) = [s for s in image_stacks(run) if s.n_frames]
        frames, _ = read_stack(run, "chamber 2b", "live")
    assert stack.attrs["compression"] == "blosc2-lz4"
    assert frames.shape == (1, 1024, 1024) and frames.max() > frames.min()


def test_an_unknown_compression_or_camera_is_one_config_line():
    from chipctl.config import parse_config, reference_rig_config
    from chipctl.errors import ConfigError
    from chipctl.rig import build_rig
    from drivers.clock import VirtualClock

    for extra, fragment in (
        ('compression = "zstd"', "devices.microscope.compression: unknown compression"),
        ('camera = { driver = "andor" }', "devices.microscope.camera.driver"),
    ):
        config = parse_config(reference_rig_config().text + extra + "\n", "x.toml")
        with pytest.raises(ConfigError, match=fragment):
            build_rig(config, clock=VirtualClock())
