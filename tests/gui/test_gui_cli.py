"""``chipctl gui`` arguments: bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from chipctl.errors import InputError
from chipctl.gui.cli import add_command, handle


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chipctl")
    add_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["gui", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "choose the simulated reference rig (--sim) or your instrument"),
        (("--sim", "--config", "x.toml"), "not both"),
        (("--sim", "--speed", "0"), "--speed must be > 0"),
        (("--sim", "--speed", "1000"), "at most 10,"),
        (("--sim", "--seed", "-1"), "--seed must be >= 0"),
        (("--open", "/nonexistent/run.h5"), "no such file"),
        (("--open", "/nonexistent/run.h5", "--speed", "10"), "only applies to the simulated"),
    ],
)
def test_bad_arguments_are_one_line(argv, message) -> None:
    with pytest.raises(InputError) as caught:
        handle(_args(*argv))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    from chipctl.errors import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        handle(_args("--config", str(tmp_path / "rig.toml")))


def test_no_display_is_one_line_not_a_qt_abort(monkeypatch) -> None:
    from chipctl.gui.app import check_display

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if sys.platform.startswith("linux"):
        with pytest.raises(InputError, match="no display"):
            check_display()


@pytest.mark.gui
def test_chipctl_gui_sim_starts_and_quits(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chipctl.gui",
            "--sim",
            "--runs",
            str(tmp_path),
            "--quit-after",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_input_through_the_entry_point_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chipctl.gui", "--sim", "--speed", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chipctl gui: error: --speed")
