"""Plot history from a run file: chunked loading, and raw detail for zooms into old data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chipctl.gui.history import load_series, plotted_columns, read_detail
from chipctl.runfile import RunFileWriter, open_run

N = 120_000


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    path = tmp_path_factory.mktemp("history") / "long.h5"
    writer = RunFileWriter(
        path,
        chipctl_version="0.1.0",
        simulated=True,
        seed=0,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="",
        protocol_text="",
        protocol_name="long",
        telemetry={"medium": {"rate_ul_min": "uL/min", "running": "1"}},
        fsync=False,
    )
    writer.open()
    t = np.arange(N, dtype=float) * 10.0  # 10 s telemetry: 14 days
    rng = np.random.default_rng(1)
    y = 2.0 + 0.1 * rng.standard_normal(N)
    y[1234] = 40.0  # one pressure-like spike, long ago
    for ti, yi in zip(t, y, strict=True):
        writer.telemetry("medium", float(ti), {"rate_ul_min": float(yi), "running": 1.0})
    writer.close("completed", "2026-11-21T07:00:00+00:00")
    return path, t, y


def test_loading_keeps_every_sample_in_summaries_and_a_bounded_tail(long_run) -> None:
    path, t, y = long_run
    with open_run(path) as run:
        assert plotted_columns(run) == [("medium", "rate_ul_min")]  # "running" is not plotted
        series = load_series(run, tail_limit=32_768)[("medium", "rate_ul_min")]
    assert series.n_total == N
    assert len(series.tail()[0]) == 32_768
    whole = series.envelope(t[0], t[-1], 1000)
    assert np.max(whole.y) == 40.0  # the spike survives in the summaries
    assert np.min(whole.y) == np.min(y)
    assert whole.need_detail is None


def test_a_zoom_into_old_data_reads_the_raw_samples_back(long_run) -> None:
    path, t, y = long_run
    with open_run(path) as run:
        series = load_series(run, tail_limit=32_768)[("medium", "rate_ul_min")]
        t0, t1 = t[1200], t[1300]  # 100 samples, far older than the tail
        coarse = series.envelope(t0, t1, 800)
        assert coarse.need_detail is not None
        dt, dy, covers = read_detail(run, "medium", "rate_ul_min", *coarse.need_detail)
    assert covers[0] <= t0 and covers[1] >= t1
    inside = (t >= covers[0]) & (t <= covers[1])
    assert np.array_equal(dt, t[inside]) and np.array_equal(dy, y[inside])
    series.set_detail(dt, dy, covers)
    fine = series.envelope(t0, t1, 800)
    assert fine.need_detail is None
    shown = (fine.t_s >= t0) & (fine.t_s <= t1)
    assert np.array_equal(fine.y[shown], y[(t >= t0) & (t <= t1)])  # the raw samples
