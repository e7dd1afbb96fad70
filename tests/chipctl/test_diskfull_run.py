"""A disk that fills up during an imaging run (issue 9): the run stops safely, says why.

The run happens in a subprocess whose file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored)
makes the run file's writes fail with EFBIG part-way: the portable stand-in for a full disk.
Expected: the run ends failed with a one-line "disk full" reason, every pump stopped, the
run file opens and keeps everything written before the fault.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from chipctl.runfile import RunFile

PROTOCOL = """
[protocol]
name = "fill"

[[step]]
action = "image"
positions = "all"
channels = ["brightfield"]
every = "10 min"
duration = "24 h"

[[step]]
action = "perfuse"
rates = { medium = "1 uL/min", drug = "1 uL/min" }
duration = "24 h"
"""

CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import chipctl.api as api

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000_000, 200_000_000))
    runs = []
    result = api.run_protocol(sys.argv[1], sim=True, out=sys.argv[2], run_ready=runs.append,
                              live_analysis=False)
    run = runs[0]
    pumps = [n for n, r in run.rig.roles.items() if r == "pump"]
    # the engine polls every device once more after stopping the pumps
    running = {n: run.session.last_values[n]["running"] for n in pumps}
    print(json.dumps({"state": result.state.value, "message": result.message,
                      "running": running, "t_s": result.duration_s}))
    """
)


def test_a_full_disk_stops_the_run_safely(tmp_path):
    protocol = tmp_path / "fill.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    out = tmp_path / "fill.h5"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(protocol), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == "failed"
    assert "disk full" in got["message"] and "\n" not in got["message"]
    assert got["t_s"] < 24 * 3600  # it stopped at the fault, not at the end
    assert not any(got["running"].values()), got["running"]
    with RunFile(out) as run:
        assert len(run.telemetry("medium")["t_s"]) > 0
        assert any(e.kind == "command" and e.source == "medium" for e in run.events())
