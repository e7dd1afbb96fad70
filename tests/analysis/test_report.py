"""``chipctl report``'s figures and page, on a small simulated dose-response run."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
import pytest

from chipctl.analysis.exposure import exposure_from_run
from chipctl.analysis.gr import analyse_run, verdict
from chipctl.analysis.report import FIGURES, INDEX, _mark_events, write_report
from chipctl.runfile import open_run
from chipctl.runfile.reader import Event
from tests.analysis.test_cli_analysis import NAME, shared_run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def analysis(small_run):
    with open_run(small_run) as run:
        _, exposures = exposure_from_run(run)
        tumoroids = run.table("/analysis/tumoroids")  # written by the live analysis
    return analyse_run(exposures, tumoroids, control=["chamber 8"], n_boot=50)


@pytest.mark.slow
def test_report_writes_the_page_and_every_figure_inside_its_folder(small_run, analysis, tmp_path):
    out = tmp_path / "nested" / "report"
    with open_run(small_run) as run:
        files = write_report(run, analysis, out)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {f"nested/report/{name}" for name in (INDEX, *FIGURES)}
    assert [p.name for p in files] == [INDEX, *FIGURES]
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / INDEX).read_text(encoding="utf-8")
    (drug,) = analysis.drugs
    assert html.escape(verdict(drug.response).sentence) in page
    for name in FIGURES:
        assert f"<img src='{name}'" in page
    # text from the run file is escaped, never markup
    assert html.escape(NAME) in page
    assert "<i>check</i>" not in page
    assert "SIMULATED" in page


def test_alarms_are_red_lines_at_their_time():
    fig, ax = plt.subplots()
    ax.plot([0, 10], [0, 1])
    alarm = Event(2.5 * 3600.0, "interlock:pressure", "alarm", "inlet pressure above 50 kPa")
    _mark_events([ax], [alarm], arrival_s=3600.0)
    red = [line for line in ax.get_lines() if line.get_color() == "red"]
    assert len(red) == 1
    assert np.allclose(red[0].get_xdata(), [2.5, 2.5])
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert np.allclose(dashed[0].get_xdata(), [1.0, 1.0])
    assert any(t.get_text() == "interlock:pressure" for t in ax.texts)
    plt.close(fig)
