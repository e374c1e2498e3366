"""The notebooks' interval statistics (notebooks 07-09 quote every hit rate with them), against references."""
import numpy as np
import pytest
from scipy.stats import binomtest

from minihash.lessons.nb07_balanced_hashing import compare, paired_difference, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (57, 100), (200, 200), (1, 400), (137, 250)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_interval_is_scipys(k, n, level):
    want = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    lo, hi = wilson_interval(k, n, level)
    np.testing.assert_allclose([lo, hi], [want.low, want.high], atol=1e-12)


def test_wilson_interval_takes_arrays():
    lo, hi = wilson_interval(np.array([0, 5, 10]), 10)
    assert lo.shape == hi.shape == (3,) and lo[0] == pytest.approx(0.0) and hi[-1] == pytest.approx(1.0)
    assert np.all(lo <= hi)


def test_paired_difference_against_the_normal_approximation():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.7
    b = np.where(rng.random(2000) < 0.8, a, ~a)  # agrees with a on 80 % of the queries
    d, lo, hi = paired_difference(a, b, n_boot=4000)
    diff = a.astype(float) - b.astype(float)
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert d == pytest.approx(diff.mean())
    assert lo == pytest.approx(d - 1.96 * se, abs=0.006) and hi == pytest.approx(d + 1.96 * se, abs=0.006)


def test_compare_says_which_is_ahead_only_when_the_interval_excludes_zero():
    same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert "no difference" in compare("A", same, "B", same[::-1])
    better = np.ones(200, bool)
    assert "A ahead" in compare("A", better, "B", same) and "B ahead" in compare("A", same, "B", better)


def test_at_equal_share_interpolates_in_log_share():
    from minihash.lessons.nb07_balanced_hashing import at_equal_share
    b = [(0.001, 0.40), (0.010, 0.60)]
    a = [(np.sqrt(0.001 * 0.010), 0.50 + 0.30)]  # halfway in log share: b is 0.50 there
    text = at_equal_share("A", a, "B", b, n_queries=200)
    assert "+30 to +30 points" in text and "A ahead at 1 of them" in text
    assert "no common share" in at_equal_share("A", [(0.5, 0.9)], "B", b, n_queries=200)
