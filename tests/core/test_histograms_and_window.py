import numpy as np
import pytest

from rewardscope.metrics.histograms import DEFAULT_REWARD_EDGES, BucketLayout, HistogramBank, linear_edges
from rewardscope.metrics.window import RollingWindow


def test_linear_buckets_count_values_on_bounds_in_their_le_bucket():
    bank = HistogramBank([linear_edges(-1.0, 3.0)])  # bounds every 0.2
    bank.observe(np.array([[-5.0, -1.0, 0.2, 0.25, 0.4, 3.0, 3.5]]))
    cumulative = dict(zip(bank.edges[0].tolist() + [float("inf")], bank.cumulative_counts()[0].tolist()))
    assert cumulative[-1.0] == 2  # -5 and -1
    assert cumulative[0.0] == 2
    assert cumulative[0.2] == 3  # 0.2 sits on the bound despite float rounding of (0.2 + 1) * 5
    assert cumulative[0.4] == 5  # 0.25 and 0.4
    assert cumulative[3.0] == 6
    assert cumulative[float("inf")] == 7
    assert bank.sums.tolist() == [pytest.approx(-5 - 1 + 0.2 + 0.25 + 0.4 + 3 + 3.5)]
    assert bank.totals.tolist() == [7]


def test_linear_and_general_paths_agree():
    rng = np.random.default_rng(1)
    values = np.round(rng.uniform(-3, 4, size=(2, 500)), 2)
    edges = [linear_edges(-1.0, 3.0), linear_edges(0.0, 1.5)]
    fast = BucketLayout(edges)
    general = BucketLayout(edges + [DEFAULT_REWARD_EDGES])
    assert fast.linear and not general.linear
    padded = np.vstack([values, np.zeros((1, 500))])
    expected = np.concatenate([np.bincount(np.searchsorted(e, v, side="left"), minlength=e.size + 1) for e, v in zip(edges, values)])
    assert fast.counts(values).tolist() == expected.tolist()
    assert general.counts(padded)[: expected.size].tolist() == expected.tolist()


def test_rows_of_a_bank_are_independent():
    bank = HistogramBank([np.array([1.0, 2.0]), np.array([10.0])])
    bank.observe_row(1, np.array([5.0, 50.0]))
    bank.observe_row(0, np.array([1.5]))
    assert [c.tolist() for c in bank.cumulative_counts()] == [[0, 1, 1], [1, 2]]


def test_edges_must_increase():
    with pytest.raises(ValueError):
        BucketLayout([np.array([1.0, 1.0])])


def test_window_keeps_only_capacity_rows_and_computes_exact_slopes():
    window = RollingWindow(width=2, capacity=4)
    for step in range(10):
        window.append(step * 2, np.array([3.0 * step + 1.0, np.nan if step % 2 else 1.0]))
    assert len(window) == 4
    assert window.steps().tolist() == [12, 14, 16, 18]
    assert window.column(0).tolist() == [19.0, 22.0, 25.0, 28.0]
    assert window.slope(0, last=4) == pytest.approx(1.5)  # 3 per record, 2 steps apart
    assert window.slope(1, last=4) == 0.0  # NaN (absent) values are ignored
    assert window.slope(0, last=5) is None  # fewer rows than asked for


def test_window_slope_needs_two_present_values():
    window = RollingWindow(width=1, capacity=3)
    for step, v in enumerate([np.nan, np.nan, 1.0]):
        window.append(step, np.array([v]))
    assert window.slope(0, last=3) is None


def test_vectorised_slopes_match_a_least_squares_fit_per_column():
    rng = np.random.default_rng(5)
    window = RollingWindow(width=4, capacity=30)
    for step in range(40):
        row = rng.normal(size=4) + np.array([0.1, -0.3, 2.0, 0.0]) * step
        row[rng.random(4) < 0.2] = np.nan
        window.append(3 * step, row)
    steps = window.steps(25)
    for column, slope in enumerate(window.slopes(np.arange(4), 25)):
        y = window.column(column, 25)
        present = ~np.isnan(y)
        assert slope == pytest.approx(np.polyfit(steps[present], y[present], 1)[0], rel=1e-9)


def test_trend_set_slopes_equal_the_general_least_squares_slopes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from rewardscope.metrics.window import RollingWindow, TrendSet

    keys = [("m", "", 5), ("m2", "", 5), ("m", "", 3), ("m3", "f", 8)]
    columns = [0, 1, 0, 2]

    @settings(max_examples=50, deadline=None)
    @given(gaps=st.lists(st.sampled_from([1, 1, 1, 1, 2, 7]), min_size=1, max_size=40),
           holes=st.sets(st.integers(0, 39), max_size=4), seed=st.integers(0, 1000))
    def check(gaps, holes, seed):
        rng = np.random.default_rng(seed)
        trends, reference = TrendSet(4, keys, columns, 4), RollingWindow(4, 8)
        step = 0
        for i, gap in enumerate(gaps):
            step += gap
            row = rng.normal(size=4) * 1e3 + step
            if i in holes:
                row[1] = np.nan
            got = trends.append(step, row)
            reference.append(step, row)
            for key, column in zip(keys, columns):
                want = reference.slopes(np.array([column]), key[2])[0]
                assert (want is None) == (key not in got)
                if want is not None:
                    assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-9)

    check()


def test_edges_on_a_fine_grid_are_bucketed_by_arithmetic_like_a_search():
    from rewardscope.metrics.histograms import _grid_step

    assert _grid_step(DEFAULT_REWARD_EDGES) == pytest.approx(0.05)
    assert _grid_step(np.array([0.0, 1.0, np.pi])) is None  # no common grid: the search path
    layout = BucketLayout([DEFAULT_REWARD_EDGES, linear_edges(0.0, 3.0), np.array([0.0, 0.5, 1.0, 4.0])])
    assert layout._lookup is not None
    rng = np.random.default_rng(3)
    for _ in range(50):
        pool = np.concatenate([rng.normal(0.0, 4.0, 64), DEFAULT_REWARD_EDGES, [0.0, 0.5, 1.0, 4.0, -100.0, 100.0]])
        values = rng.choice(pool, size=(3, 128))
        want = sum(layout.row_counts(row, values[row]) for row in range(3))
        assert layout.counts(values).tolist() == want.tolist()
    # decimal rewards a rounding step above a bound count in the bucket whose le they equal
    on_bound = layout.counts(np.array([[0.1 + 0.2 - 0.2], [1.0], [0.5]]))
    assert on_bound[list(DEFAULT_REWARD_EDGES).index(0.1)] == 1
