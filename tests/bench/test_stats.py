"""rewardkit.bench.stats against small cases worked out by hand (in the comments)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from rewardkit.bench import stats

NAN = math.nan


@pytest.fixture
def no_warnings():
    """Turn every warning into an error for the test's duration."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- correlations --------------------------------------------------------------------------------


def test_spearman_average_ranks_for_ties(no_warnings):
    # x = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] -> ranks [1, 3, 2, 4].
    # Both rank means are 2.5: dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5].
    # sum dx*dy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9).
    # (The no-ties shortcut 1 - 6 sum d^2 / (n (n^2 - 1)) would give 1 - 3/60 = 0.95.)
    assert stats.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # Ties in y: y = [1, 1, 2, 3, 3] -> ranks [1.5, 1.5, 3, 4.5, 4.5], x ranks 1..5, means 3.
    # sum dx*dy = 3 + 1.5 + 0 + 1.5 + 3 = 9, sum dx^2 = 10, sum dy^2 = 9 -> 9 / sqrt(90).
    assert stats.spearman([1, 2, 3, 4, 5], [1, 1, 2, 3, 3]) == pytest.approx(9 / math.sqrt(90))
    assert stats.spearman([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)


def test_kendall_tau_b_ties_in_x_and_y(no_warnings):
    # x = [1, 2, 2, 3], y = [2, 1, 3, 3]; the 6 pairs:
    #   (0,1) x up, y down: discordant      (0,2) up, up: concordant     (0,3) up, up: concordant
    #   (1,2) x tied, y up: tie in x only   (1,3) up, up: concordant     (2,3) x up, y tied: y only
    # C = 3, D = 1, n0 = 6, pairs tied in x n1 = 1, in y n2 = 1:
    # tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = 2 / 5.
    assert stats.kendall_tau_b([1, 2, 2, 3], [2, 1, 3, 3]) == pytest.approx(0.4)
    # x = [1, 2, 2, 3], y = [1, 2, 3, 3]: pair (0,1) is now concordant: C = 4, D = 0 -> 4 / 5.
    assert stats.kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    # A pair tied on both sides counts in n1 and in n2: x = [1, 1, 2], y = [5, 5, 6]:
    # (0,1) joint tie, (0,2) and (1,2) concordant -> 2 / sqrt((3 - 1)(3 - 1)) = 1.
    assert stats.kendall_tau_b([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)


def test_pearson_four_points(no_warnings):
    # x = [1, 2, 3, 4] (mean 2.5), y = [2, 4, 5, 9] (mean 5): dx = [-1.5, -0.5, 0.5, 1.5],
    # dy = [-3, -1, 0, 4]; sum dx*dy = 4.5 + 0.5 + 0 + 6 = 11, sum dx^2 = 5, sum dy^2 = 26.
    assert stats.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert stats.pearson([0, 1], [5, 3]) == pytest.approx(-1.0)


@pytest.mark.parametrize("fn", [stats.spearman, stats.kendall_tau_b, stats.pearson])
@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 1, 1], [1, 2, 3]),  # constant x
        ([1, 2, 3], [4, 4, 4]),  # constant y
        ([0.5, 0.5], [0.5, 0.5]),  # both constant
        ([1], [2]),  # n < 2
        ([], []),  # empty
        ([1, NAN, 3], [1, 2, 3]),  # NaN propagates
    ],
)
def test_correlations_undefined_are_nan_without_warnings(fn, x, y, no_warnings):
    assert math.isnan(fn(x, y))


@pytest.mark.parametrize("fn", [stats.spearman, stats.kendall_tau_b, stats.pearson])
def test_correlations_reject_mismatched_lengths(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([1, 2, 3], [1, 2])


def test_correlations_return_python_floats():
    for fn in (stats.spearman, stats.kendall_tau_b, stats.pearson):
        assert type(fn([1, 2, 3], [1, 3, 2])) is float


# --- within-group statistics ---------------------------------------------------------------------


def test_mean_within_group_skips_undefined_groups(no_warnings):
    a = [[1, 2, 3], [1, 1, 1], [1, 2, 3], [5]]
    b = [[1, 2, 3], [4, 5, 6], [1, 3, 2], [7]]
    # group 0: rho = 1; group 1: a constant -> nan, skipped; group 2: d = [0, 1, 1] ->
    # rho = 1 - 6*2 / (3*8) = 0.5; group 3: n < 2 -> nan, skipped. Mean (1 + 0.5) / 2 over 2.
    mean, counted = stats.mean_within_group(stats.spearman, a, b)
    assert mean == pytest.approx(0.75)
    assert counted == 2


def test_mean_within_group_none_defined(no_warnings):
    for a, b in [([[1, 1], [2]], [[1, 2], [3]]), ([], [])]:
        mean, counted = stats.mean_within_group(stats.pearson, a, b)
        assert math.isnan(mean) and counted == 0


def test_mean_within_group_rejects_mismatched_groups():
    with pytest.raises(ValueError, match="groups"):
        stats.mean_within_group(stats.pearson, [[1, 2]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="group 1"):
        stats.mean_within_group(stats.pearson, [[1, 2], [1, 2]], [[1, 2], [3]])


def test_discrimination_by_hand(no_warnings):
    scores = [[0.5, 0.5, 0.5], [0.0, 1.0], [0.2, 0.4, 0.6, 0.8]]
    # spreads: 0, 1, 0.6 -> mean 1.6 / 3; one all-tie group of three.
    # population stds: 0; [0, 1] -> 0.5; [0.2 .. 0.8] around 0.5: (0.09 + 0.01 + 0.01 + 0.09) / 4
    # = 0.05 -> sqrt(0.05).
    result = stats.discrimination(scores)
    assert result == {
        "all_tie_share": pytest.approx(1 / 3),
        "mean_spread": pytest.approx(1.6 / 3),
        "mean_std": pytest.approx((0.5 + math.sqrt(0.05)) / 3),
    }
    assert all(type(v) is float for v in result.values())


def test_discrimination_tolerance(no_warnings):
    almost = [[0.3, 0.3 + 1e-15], [0.7]]  # a single completion is trivially all-tie
    assert stats.discrimination(almost)["all_tie_share"] == 1.0
    assert stats.discrimination(almost, tol=0.0)["all_tie_share"] == 0.5
    assert stats.discrimination([[0.1, 0.2]], tol=0.1)["all_tie_share"] == 1.0


def test_discrimination_empty(no_warnings):
    assert all(math.isnan(v) for v in stats.discrimination([]).values())
    with pytest.raises(ValueError, match="group 1 is empty"):
        stats.discrimination([[1.0], []])


# --- pairwise accuracy (acc_eq) ------------------------------------------------------------------

# Dyadic fractions, so that every |m_i - m_j| is exact in binary floating point.
ITEM_1_METRIC = [0.875, 0.625, 0.625, 0.125]
ITEM_1_HUMAN = [3.0, 3.0, 1.0, 0.0]
# Item 1, epsilon = 0 (pair: metric, human -> verdict):
#   (0,1) 0.875 > 0.625, 3 = 3: metric orders, humans tie -> disagree
#   (0,2) >, 3 > 1 -> agree          (0,3) >, 3 > 0 -> agree
#   (1,2) 0.625 = 0.625, 3 > 1: metric ties, humans order -> disagree
#   (1,3) >, 3 > 0 -> agree          (2,3) >, 1 > 0 -> agree          => 4 of 6
ITEM_2_METRIC = [0.5, 0.5, 0.25]
ITEM_2_HUMAN = [2.0, 2.0, 5.0]
# Item 2: (0,1) both tie -> agree; (0,2) 0.5 > 0.25 but 2 < 5 -> disagree; (1,2) the same
#   => 1 of 3.


def test_pairwise_accuracy_worked_example(no_warnings):
    assert stats.pairwise_accuracy([ITEM_1_METRIC], [ITEM_1_HUMAN]) == pytest.approx(4 / 6)
    assert stats.pairwise_accuracy([ITEM_2_METRIC], [ITEM_2_HUMAN]) == pytest.approx(1 / 3)
    # Pooled over items: (4 + 1) / (6 + 3) = 5/9, not the mean of per-item accuracies (1/2).
    both = stats.pairwise_accuracy([ITEM_1_METRIC, ITEM_2_METRIC], [ITEM_1_HUMAN, ITEM_2_HUMAN])
    assert both == pytest.approx(5 / 9)


def test_pairwise_accuracy_epsilon_makes_metric_ties(no_warnings):
    # Item 1 with epsilon = 0.25: (0,1) |diff| 0.25 <= eps, humans tie -> now agree;
    # (0,2) |diff| 0.25, a metric tie but humans order it -> now disagree; the rest unchanged
    # ((0,3) 0.75, (1,3) and (2,3) 0.5 still ordered; (1,2) still a metric tie) => 4 of 6.
    assert stats.pairwise_accuracy([ITEM_1_METRIC], [ITEM_1_HUMAN], 0.25) == pytest.approx(4 / 6)
    # epsilon = 0.5: (1,3) and (2,3) turn into metric ties humans order -> 2 of 6
    # ((0,1) agrees, (0,3) 0.75 still agrees).
    assert stats.pairwise_accuracy([ITEM_1_METRIC], [ITEM_1_HUMAN], 0.5) == pytest.approx(2 / 6)
    # epsilon = 1: every pair is a metric tie; only the human tie (0,1) agrees.
    assert stats.pairwise_accuracy([ITEM_1_METRIC], [ITEM_1_HUMAN], 1.0) == pytest.approx(1 / 6)


def test_pairwise_accuracy_skips_nan_human_scores(no_warnings):
    # Translation 4 of item 1 is unscored; item 2 has one scored translation: no pairs.
    metric = [[*ITEM_1_METRIC, 0.3], [0.1, 0.2]]
    human = [[*ITEM_1_HUMAN, NAN], [NAN, 4.0]]
    assert stats.pairwise_accuracy(metric, human) == pytest.approx(4 / 6)
    # The same as a rectangular array, and with an unscored translation's metric score NaN too.
    metric_arr = np.array([[*ITEM_1_METRIC, NAN], [0.1, 0.2, 0.3, 0.4, 0.5]])
    human_arr = np.array([[*ITEM_1_HUMAN, NAN], [NAN, 4.0, NAN, NAN, NAN]])
    assert stats.pairwise_accuracy(metric_arr, human_arr) == pytest.approx(4 / 6)


def test_pairwise_accuracy_no_pairs_is_nan(no_warnings):
    assert math.isnan(stats.pairwise_accuracy([[0.5], [0.1, 0.2]], [[1.0], [NAN, 2.0]]))
    assert math.isnan(stats.pairwise_accuracy([], []))
    assert all(math.isnan(v) for v in stats.tie_calibrated_pairwise_accuracy([[1.0]], [[2.0]]))


def test_pairwise_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="epsilon"):
        stats.pairwise_accuracy([[1, 2]], [[1, 2]], -0.1)
    with pytest.raises(ValueError, match="item 0 has a NaN metric"):
        stats.pairwise_accuracy([[NAN, 2]], [[1, 2]])
    with pytest.raises(ValueError, match="group 0"):
        stats.pairwise_accuracy([[1, 2, 3]], [[1, 2]])


def test_tie_calibration_by_hand(no_warnings):
    metric = [[0.5, 0.375, 0.25, 0.0]]
    human = [[2.0, 2.0, 2.0, 1.0]]
    # pair  |m diff|  humans      candidate epsilons: 0, 0.125, 0.25, 0.375, 0.5
    # (0,1)  0.125    tie
    # (0,2)  0.25     tie
    # (0,3)  0.5      2 > 1, metric agrees
    # (1,2)  0.125    tie
    # (1,3)  0.375    2 > 1, metric agrees
    # (2,3)  0.25     2 > 1, metric agrees
    # eps 0:     human ties (0,1) (1,2) (0,2) disagree, ordered pairs agree     -> 3/6
    # eps 0.125: (0,1) (1,2) become metric ties and agree                      -> 5/6
    # eps 0.25:  (0,2) agrees too, but (2,3) becomes a tie humans order        -> 5/6
    # eps 0.375: (1,3) becomes a tie humans order                              -> 4/6
    # eps 0.5:   (0,3) too                                                     -> 3/6
    # Best 5/6, first reached at 0.125.
    accuracy, epsilon = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert accuracy == pytest.approx(5 / 6)
    assert epsilon == 0.125
    for eps, expected in [(0, 3), (0.125, 5), (0.25, 5), (0.375, 4), (0.5, 3)]:
        assert stats.pairwise_accuracy(metric, human, eps) == pytest.approx(expected / 6)


def test_tie_calibration_keeps_zero_when_ties_hurt(no_warnings):
    # No metric ties and none wanted: eps 0 -> 3/3; eps 1 -> (0,1), (1,2) disagree -> 1/3.
    assert stats.tie_calibrated_pairwise_accuracy([[3, 2, 1]], [[3, 2, 1]]) == (1.0, 0.0)
    # An exact metric tie humans share: eps 0 already gets all 3 pairs.
    assert stats.tie_calibrated_pairwise_accuracy([[1, 1, 0]], [[5, 5, 0]]) == (1.0, 0.0)


def test_tie_calibration_two_items(no_warnings):
    # Items 1 and 2 above; candidates 0, 0.25, 0.5, 0.75. Agreements (item 1 + item 2) / 9:
    #   eps 0: 4 + 1 = 5;  eps 0.25: 4 + 1 = 5 (item 2's (0,2), (1,2) become ties: still wrong);
    #   eps 0.5: 2 + 1 = 3; eps 0.75: 1 + 1 = 2.  Best 5/9 at 0.
    metric = [ITEM_1_METRIC, ITEM_2_METRIC]
    human = [ITEM_1_HUMAN, ITEM_2_HUMAN]
    accuracy, epsilon = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert (accuracy, epsilon) == (pytest.approx(5 / 9), 0.0)


def _naive_accuracy(metric, human, eps):
    agree = pairs = 0
    for m_item, h_item in zip(metric, human):
        scored = [(m, h) for m, h in zip(m_item, h_item) if not math.isnan(h)]
        for (m1, h1), (m2, h2) in itertools.combinations(scored, 2):
            pairs += 1
            metric_tie, human_tie = abs(m1 - m2) <= eps, h1 == h2
            if metric_tie or human_tie:
                agree += metric_tie and human_tie
            else:
                agree += (m1 > m2) == (h1 > h2)
    return agree / pairs


def test_accuracy_and_calibration_match_a_naive_loop(no_warnings):
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 7, size=40)
    metric = [list(rng.integers(0, 6, size=k) / 8) for k in sizes]  # many ties
    human = [list(rng.integers(0, 4, size=k).astype(float)) for k in sizes]
    for item in human[::5]:
        item[0] = NAN
    candidates = {0.0} | {
        abs(a - b)
        for m_item, h_item in zip(metric, human)
        for (a, x), (b, y) in itertools.combinations(zip(m_item, h_item), 2)
        if not (math.isnan(x) or math.isnan(y))
    }
    naive = {eps: _naive_accuracy(metric, human, eps) for eps in sorted(candidates)}
    for eps, expected in naive.items():
        assert stats.pairwise_accuracy(metric, human, eps) == pytest.approx(expected)
    best = max(naive.values())
    accuracy, epsilon = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert accuracy == pytest.approx(best)
    assert epsilon == min(eps for eps, acc in naive.items() if acc == best)


def test_tie_calibration_is_fast():
    rng = np.random.default_rng(0)
    metric = rng.random((1000, 16)).round(3).tolist()
    human = rng.integers(0, 25, size=(1000, 16)).astype(float).tolist()
    accuracy, epsilon = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert 0 < accuracy < 1
    assert stats.pairwise_accuracy(metric, human, epsilon) == accuracy


# --- bootstrap -----------------------------------------------------------------------------------


def _mean_of(values):
    return lambda idx: float(values[idx].mean())


def test_bootstrap_single_item_by_hand(no_warnings):
    # n = 1: every resample is [0], so both ends equal the one value.
    assert stats.bootstrap_ci(lambda idx: [4.5][idx[0]], 1, resamples=20) == (4.5, 4.5)


def test_bootstrap_is_deterministic_and_follows_the_contract(no_warnings):
    values = np.random.default_rng(3).normal(size=30)
    stat = _mean_of(values)
    ci = stats.bootstrap_ci(stat, 30, resamples=200, seed=5)
    assert ci == stats.bootstrap_ci(stat, 30, resamples=200, seed=5)
    assert ci != stats.bootstrap_ci(stat, 30, resamples=200, seed=6)
    # The documented recipe: n indices with replacement per resample from Generator(PCG64(seed)),
    # then the 2.5th and 97.5th percentiles.
    rng = np.random.Generator(np.random.PCG64(5))
    draws = [stat(rng.integers(0, 30, size=30)) for _ in range(200)]
    assert ci == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    wide = stats.bootstrap_ci(stat, 30, resamples=200, seed=5, confidence=0.99)
    assert wide[0] <= ci[0] and ci[1] <= wide[1]


def test_bootstrap_contains_estimate_and_narrows(no_warnings):
    rng = np.random.default_rng(11)
    widths = []
    for n in (25, 400):
        values = rng.normal(size=n)
        low, high = stats.bootstrap_ci(_mean_of(values), n)
        assert low < values.mean() < high
        widths.append(high - low)
    # The width of a mean's CI shrinks like 1/sqrt(n): about 4x here.
    assert widths[1] < widths[0] / 2


def test_bootstrap_ignores_nan_results(no_warnings):
    def stat(idx):
        return NAN if idx[0] == 0 else float(idx.mean())

    low, high = stats.bootstrap_ci(stat, 5, resamples=300)
    rng = np.random.Generator(np.random.PCG64(0))
    draws = [stat(rng.integers(0, 5, size=5)) for _ in range(300)]
    kept = [d for d in draws if not math.isnan(d)]
    assert 0 < len(kept) < 300
    assert (low, high) == pytest.approx(tuple(np.percentile(kept, [2.5, 97.5])))
    assert all(math.isnan(v) for v in stats.bootstrap_ci(lambda idx: NAN, 5, resamples=10))


def test_bootstrap_rejects_bad_arguments():
    for kwargs in ({"n": 0}, {"n": 3, "resamples": 0}, {"n": 3, "confidence": 1.0}):
        with pytest.raises(ValueError):
            stats.bootstrap_ci(lambda idx: 0.0, **kwargs)


# --- system level --------------------------------------------------------------------------------


def test_system_level_pearson_by_hand(no_warnings):
    metric = {"A": [1, 3, 100], "B": [4, 6, 5], "C": [8, 8], "D": [1, 2]}
    human = {"A": [10, 20, NAN], "B": [30, 30, 30], "C": [35, 45], "D": [NAN, NAN]}
    # A: segment 3 has no human score and leaves both means: metric 2, human 15.
    # B: 5, 30.  C: 8, 40.  D: no human score at all, left out.
    # x = [2, 5, 8] (mean 5), y = [15, 30, 40] (mean 85/3): dx = [-3, 0, 3],
    # dy = [-40/3, 5/3, 35/3]; sum dx*dy = 40 + 35 = 75, sum dx^2 = 18, sum dy^2 = 2850/9
    # -> r = 75 / sqrt(18 * 2850 / 9) = 75 / sqrt(5700).
    assert stats.system_level_pearson(metric, human) == pytest.approx(75 / math.sqrt(5700))


def test_system_level_pearson_undefined_and_bad_input(no_warnings):
    assert math.isnan(stats.system_level_pearson({"A": [1.0]}, {"A": [2.0]}))
    assert math.isnan(stats.system_level_pearson({"A": [1], "B": [2]}, {"A": [3], "B": [3]}))
    assert math.isnan(stats.system_level_pearson({}, {}))
    with pytest.raises(ValueError, match="systems differ"):
        stats.system_level_pearson({"A": [1]}, {"B": [1]})
    with pytest.raises(ValueError, match="system 'A'"):
        stats.system_level_pearson({"A": [1, 2]}, {"A": [1]})
