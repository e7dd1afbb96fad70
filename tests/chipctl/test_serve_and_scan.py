"""`chipctl simulate serve` and `chipctl devices scan`, end to end, as separate processes."""

import os
import select
import signal
import subprocess

import pytest

from chipctl.config import reference_rig_config

pytestmark = pytest.mark.pty


@pytest.fixture
def served(chipctl_cmd):
    proc = subprocess.Popen(
        [*chipctl_cmd, "simulate", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
    )
    devices = {}
    # every serial link of the rig (the microscope is not a serial device)
    n_links = len(
        {d.link for d in reference_rig_config().devices.values() if d.driver != "sim-microscope"}
    )
    try:
        # one line per emulated serial link: NAMES MODEL PATH
        data = b""
        while data.count(b"\n") < n_links:
            ready, _, _ = select.select([proc.stdout], [], [], 30.0)
            assert ready, f"simulate serve printed only {data!r} in 30 s"
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"simulate serve exited after {data!r}"
            data += chunk
        for line in data.decode().splitlines():
            names, *_, path = line.split()
            for name in names.split(","):
                devices[name] = (line, path)
        yield devices
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_serve_prints_one_line_per_device(served):
    assert set(served) >= {"medium", "drug", "outlet", "flow"}
    for _line, path in served.values():
        assert path.startswith("/dev/pts/")


def test_scan_identifies_every_served_device(served, chipctl_cmd):
    paths = {name: path for name, (_, path) in served.items()}
    proc = subprocess.run(
        [*chipctl_cmd, "devices", "scan", *paths.values()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    expected = {
        "medium": "harvard",
        "drug": "newera",
        "exchanger": "cavro",
        "outlet": "idex",
        "flow": "sensirion-flow",
    }
    for name, driver in expected.items():
        assert lines[paths[name]].startswith(driver), lines[paths[name]]


def test_scan_of_a_missing_port_says_so(chipctl_cmd):
    proc = subprocess.run(
        [*chipctl_cmd, "devices", "scan", "/dev/ttyNOPE9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "/dev/ttyNOPE9: nothing answered" in proc.stdout
    assert "Traceback" not in proc.stderr
