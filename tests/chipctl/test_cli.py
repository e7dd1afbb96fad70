"""The command line as a user meets it: subprocesses, exit codes, one-line errors."""

import subprocess

import pytest

from chipctl.runfile import RunFile

BROKEN = """\
[protocol]
name = "broken"

[[step]]
action = "infuse"
pump = "medium"
rate = "2 uL"
duration = "1 h"
"""


def _run(cmd, *args, cwd=None, timeout=120):
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def _one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_run_sim_writes_a_run_file_and_summary(chipctl_cmd, tmp_path):
    out = tmp_path / "check.h5"
    proc = _run(chipctl_cmd, "run", "perfusion-check", "--sim", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "SIMULATED" in proc.stderr
    assert proc.stdout.splitlines()[0].startswith("completed: perfusion-check")
    assert f"run file: {out}" in proc.stdout
    with RunFile(out) as run:
        assert run.status == "completed"
        assert run.attrs["simulated"]


def test_run_default_out_goes_under_runs(chipctl_cmd, tmp_path):
    proc = _run(chipctl_cmd, "run", "perfusion-check", "--sim", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = list((tmp_path / "runs").glob("*_perfusion-check.h5"))
    assert len(files) == 1


def test_run_refuses_without_choosing_sim_or_config(chipctl_cmd, tmp_path):
    proc = _run(chipctl_cmd, "run", "perfusion-check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--sim" in _one_line_error(proc) and "--config" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_check_broken_protocol_exits_2_with_one_line(chipctl_cmd, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    proc = _run(chipctl_cmd, "check", str(path), "--sim")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert f"{path}:7: step 1: field 'rate':" in line


def test_check_good_protocol_prints_preflight(chipctl_cmd):
    proc = _run(chipctl_cmd, "check", "perfusion-check", "--sim")
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout and "duration   01:13:20" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "nope-protocol", "--sim"], "no such file"),
        (["run", "perfusion-check", "--sim", "--seed", "-3"], "--seed"),
        (["run", "perfusion-check", "--sim", "--speed", "0"], "--speed"),
        (["run", "perfusion-check", "--config", "missing.toml"], "missing.toml: no such file"),
        (["check", "perfusion-check", "--sim", "--config", "x.toml"], "not both"),
        (["run", "perfusion-check", "--sim", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_with_one_line(chipctl_cmd, tmp_path, args, fragment):
    proc = _run(chipctl_cmd, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in _one_line_error(proc)


def test_missing_serial_port_fails_with_one_line_and_a_run_file(chipctl_cmd, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(
        '[devices.medium]\ndriver = "harvard"\nlink = "serial:///dev/ttyNOPE0"\n'
        'syringe = "BD Plastipak 10 mL"\n'
        '[devices.drug]\ndriver = "harvard"\nlink = "serial:///dev/ttyNOPE1"\n'
        'syringe = "BD Plastipak 10 mL"\n'
        '[devices.outlet]\ndriver = "idex"\nlink = "serial:///dev/ttyNOPE2"\n'
        'ports = ["waste", "sample 1"]\n'
    )
    out = tmp_path / "hw.h5"
    proc = _run(
        chipctl_cmd, "run", "perfusion-check", "--config", str(config), "--out", str(out), "--quiet"
    )
    assert proc.returncode == 1
    assert "HARDWARE" in proc.stderr
    assert "/dev/ttyNOPE0" in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    with RunFile(out) as run:
        assert run.status == "failed"
        assert any(e.kind == "error" and "ttyNOPE0" in e.message for e in run.events())


def test_every_command_has_help(chipctl_cmd):
    for args in (
        ["--help"],
        ["run", "--help"],
        ["check", "--help"],
        ["protocols", "--help"],
        ["simulate", "--help"],
        ["simulate", "serve", "--help"],
    ):
        proc = _run(chipctl_cmd, *args)
        assert proc.returncode == 0, args
        assert "usage:" in proc.stdout


def test_protocols_lists_builtins(chipctl_cmd):
    proc = _run(chipctl_cmd, "protocols")
    assert proc.returncode == 0
    assert "perfusion-check" in proc.stdout


def test_export_writes_ome_tiffs_and_refuses_a_missing_run(chipctl_cmd, tmp_path):
    protocol = tmp_path / "img.toml"
    protocol.write_text(
        '[protocol]\nname = "img"\n\n[[step]]\naction = "image"\npositions = ["chamber 1"]\n'
        'channels = ["brightfield", "live"]\nat = ["0 h", "1 h"]\n'
    )
    run = tmp_path / "img.h5"
    proc = _run(chipctl_cmd, "run", str(protocol), "--sim", "--out", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = _run(chipctl_cmd, "export", str(run), "--ome-tiff", str(tmp_path / "ome"))
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.split()
    assert written and all(path.endswith(".ome.tif") for path in written)
    proc = _run(chipctl_cmd, "export", str(tmp_path / "nope.h5"), "--ome-tiff", str(tmp_path))
    assert proc.returncode == 1
    assert "no such file" in _one_line_error(proc)


# -- signals: every way out of a run stops the pumps ------------------------------------------


def _start_run(chipctl_cmd, tmp_path):
    """A run at 10x real time, returned once its first step has begun (read from stderr)."""
    import os

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*chipctl_cmd, "run", "perfusion-check", "--sim", "--speed", "10", "--no-analysis",
         "--out", str(tmp_path / "run.h5")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:  # blocks until the run says something: no sleeps
        seen.append(line)
        if line.startswith("step "):
            return proc, seen
    pytest.fail(f"the run ended before its first step: {''.join(seen)}")


def _reference_pumps():
    from chipctl.config import reference_rig_config
    from chipctl.rig import build_rig
    from drivers.clock import VirtualClock

    pumps = build_rig(reference_rig_config(), clock=VirtualClock()).pumps()
    assert len(pumps) >= 3
    return pumps


def _after_exit(proc, tmp_path):
    out, err = proc.communicate(timeout=120)
    with RunFile(tmp_path / "run.h5") as run:
        status = run.status
        stops = {e.source for e in run.events() if e.kind == "command" and "stop" in e.message}
    return out, err, status, stops


def test_sigterm_aborts_the_run_stops_every_pump_and_closes_the_file(chipctl_cmd, tmp_path):
    import signal

    proc, _ = _start_run(chipctl_cmd, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err, status, stops = _after_exit(proc, tmp_path)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert status == "aborted"
    assert "terminated (SIGTERM)" in out
    assert set(_reference_pumps()) <= stops


def test_two_ctrl_c_abort_the_run_and_stop_every_pump(chipctl_cmd, tmp_path):
    import signal

    proc, _ = _start_run(chipctl_cmd, tmp_path)
    proc.send_signal(signal.SIGINT)  # first: pause, and ask
    for line in proc.stderr:
        if "paused" in line:
            break
    proc.send_signal(signal.SIGINT)  # second: abort
    out, err, status, stops = _after_exit(proc, tmp_path)
    assert "operator abort" in out
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert status == "aborted"
    assert set(_reference_pumps()) <= stops
