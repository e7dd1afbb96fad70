"""The envelope series behind the plots: what it draws keeps every extreme, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipctl.gui.series import BIN, FACTOR, LEVELS, EnvelopeSeries, minmax_decimate
from chipctl.gui.timeaxis import format_tick

SMALL_TAIL = BIN * FACTOR ** (LEVELS - 1)


def _truth(t, y, t0, t1):
    inside = (t >= t0) & (t <= t1)
    return np.nanmin(y[inside]), np.nanmax(y[inside])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60_000),
    seed=st.integers(0, 2**32 - 1),
    lo=st.floats(0.0, 1.0),
    width=st.floats(0.001, 1.0),
    px=st.integers(50, 2000),
    chunk=st.integers(97, 50_000),
)
def test_envelope_keeps_the_extremes_of_the_visible_range(n, seed, lo, width, px, chunk):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, n))
    y = rng.standard_normal(n)
    y[rng.integers(0, n, 3)] += rng.uniform(-50, 50, 3)  # spikes
    series = EnvelopeSeries(tail_limit=SMALL_TAIL)
    for i in range(0, n, chunk):
        series.extend(t[i : i + chunk], y[i : i + chunk])
    t0 = t[0] + lo * (t[-1] - t[0])
    t1 = min(t0 + width * (t[-1] - t[0]) + 1e-9, t[-1])
    env = series.envelope(t0, t1, px)
    if not ((t >= t0) & (t <= t1)).any():
        return
    true_min, true_max = _truth(t, y, t0, t1)
    if env.need_detail is not None:
        # zoomed into data older than the tail: the drawn bins still bound the truth
        assert np.nanmin(env.y) <= true_min and np.nanmax(env.y) >= true_max
        detail = (t >= env.need_detail[0]) & (t <= env.need_detail[1])
        series.set_detail(t[detail], y[detail], covers=env.need_detail)
        env = series.envelope(t0, t1, px)
        assert env.need_detail is None
    # every drawn point is a real sample value and nothing in range is hidden
    assert np.nanmin(env.y) <= true_min and np.nanmax(env.y) >= true_max
    assert set(np.round(env.y, 12)) <= set(np.round(y, 12))
    # about two points per pixel (a bin's min and max), never all the samples
    assert len(env.t_s) <= 4 * px + 8


def test_memory_stays_bounded_with_a_million_samples() -> None:
    series = EnvelopeSeries()
    small = EnvelopeSeries()
    t = np.arange(1_000_000, dtype=float)
    for i in range(0, len(t), 10_000):
        series.extend(t[i : i + 10_000], np.sin(t[i : i + 10_000]))
    small.extend(t[:100_000], np.sin(t[:100_000]))
    assert series.n_total == 1_000_000
    assert len(series.tail()[0]) == series.tail_limit
    # a million samples hold no more than ~the tail plus 10 %: the summaries are small
    assert series.nbytes() < 1.1 * 4 * 8 * series.tail_limit
    assert series.nbytes() < 1_000_000 * 16  # less than the raw t and y arrays


def test_nan_is_a_gap_not_a_value() -> None:
    series = EnvelopeSeries()
    t = np.arange(10_000, dtype=float)
    y = np.ones_like(t)
    y[5_000:6_000] = np.nan
    series.extend(t, y)
    env = series.envelope(0, 9_999, 100)
    assert np.isnan(env.y).any()
    assert np.nanmax(env.y) == 1.0


def test_minmax_decimate_pairs() -> None:
    t = np.arange(10, dtype=float)
    y = np.array([0, 5, 1, 2, -3, 4, 4, 4, 9, 0], dtype=float)
    dt, dy = minmax_decimate(t, y, 2)
    assert list(dy) == [-3, 5, 0, 9]
    assert list(dt) == [2.0, 2.0, 7.0, 7.0]
    _, small_y = minmax_decimate(t[:3], y[:3], 5)
    assert list(small_y) == [0, 5, 1]


def test_samples_must_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="3 times but 2 values"):
        EnvelopeSeries().extend([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
    ("t_s", "spacing_s", "text"),
    [
        (0.5, 0.1, "0.5 s"),
        (90.0, 30.0, "0:01:30"),
        (5400.0, 1800.0, "1:30 h"),
        (90_000.0, 21_600.0, "1d 01:00"),
        (-60.0, 30.0, "-0:01:00"),
    ],
)
def test_time_axis_labels_read_as_durations(t_s, spacing_s, text) -> None:
    assert format_tick(t_s, spacing_s) == text
