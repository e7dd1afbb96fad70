"""The wheel installs the three packages, the reference rig and the built-in protocols."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("chipctl-*.whl")
    return path


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "chipctl/__init__.py",
        "chipctl/rigs/reference-sim.toml",
        "chipctl/builtin_protocols/perfusion-check.toml",
        "drivers/transport.py",
        "simulator/world.py",
    ):
        assert required in names, required
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_install_runs_a_builtin_protocol(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import chipctl, drivers, simulator; print(chipctl.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target)), where.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chipctl",
            "run",
            "perfusion-check",
            "--sim",
            "--quiet",
            "--out",
            str(tmp_path / "w.h5"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
