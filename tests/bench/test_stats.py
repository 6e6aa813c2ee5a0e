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
    # Averaged over items (the default, WMT23's average_by="item"): (4/6 + 1/3) / 2 = 1/2,
    # not the pooled share of pairs (4 + 1) / (6 + 3) = 5/9.
    both = stats.pairwise_accuracy([ITEM_1_METRIC, ITEM_2_METRIC], [ITEM_1_HUMAN, ITEM_2_HUMAN])
    assert both == pytest.approx(1 / 2)


def test_average_by_none_pairs_across_items(no_warnings):
    metric, human = [[0.5, 0.25], [0.75, 0.5]], [[1.0, 0.0], [1.0, 1.0]]
    # item: A's one pair agrees, B's humans tie what the metric orders -> (1 + 0) / 2.
    assert stats.pairwise_accuracy(metric, human) == pytest.approx(0.5)
    # none: segments m = [0.5, 0.25, 0.75, 0.5], h = [1, 0, 1, 1], six pairs:
    #   (0,1) agree  (0,2) humans tie, metric orders: no  (0,3) both tie (0 diff): yes
    #   (1,2) agree  (1,3) agree  (2,3) humans tie, metric orders: no        -> 4/6
    assert stats.pairwise_accuracy(metric, human, average_by="none") == pytest.approx(4 / 6)
    # Calibrated: epsilon 0.25 turns (0,2), (2,3) into agreeing ties but (0,1), (1,3) into
    # disagreeing ones: 4/6 again, so the smallest epsilon, 0, wins. Humans tie 3 of 6 pairs;
    # epsilon 0 ties 1 ((0,3)).
    pooled = stats.tie_calibrated_pairwise_accuracy(metric, human, "none")
    assert pooled == stats.TieCalibration(
        accuracy=pytest.approx(4 / 6),
        epsilon=0.0,
        untied=pytest.approx(4 / 6),
        all_ties=pytest.approx(0.5),
        tied_share=pytest.approx(1 / 6),
        pairs=6,
        groups=1,
    )
    with pytest.raises(ValueError, match="average_by"):
        stats.pairwise_accuracy(metric, human, average_by="sys")


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
    # Translation 4 of item 1 is unscored; item 2 has one scored translation: no pairs, so it
    # is left out of the average too.
    metric = [[*ITEM_1_METRIC, 0.3], [0.1, 0.2]]
    human = [[*ITEM_1_HUMAN, NAN], [NAN, 4.0]]
    assert stats.pairwise_accuracy(metric, human) == pytest.approx(4 / 6)
    # The same as a rectangular array, and with an unscored translation's metric score NaN too.
    metric_arr = np.array([[*ITEM_1_METRIC, NAN], [0.1, 0.2, 0.3, 0.4, 0.5]])
    human_arr = np.array([[*ITEM_1_HUMAN, NAN], [NAN, 4.0, NAN, NAN, NAN]])
    assert stats.pairwise_accuracy(metric_arr, human_arr) == pytest.approx(4 / 6)
    assert stats.tie_calibrated_pairwise_accuracy(metric, human).groups == 1


def test_pairwise_accuracy_no_pairs_is_nan(no_warnings):
    assert math.isnan(stats.pairwise_accuracy([[0.5], [0.1, 0.2]], [[1.0], [NAN, 2.0]]))
    assert math.isnan(stats.pairwise_accuracy([], []))
    for average_by in stats.AVERAGE_BY:
        none = stats.tie_calibrated_pairwise_accuracy([[1.0]], [[2.0]], average_by)
        assert (none.pairs, none.groups) == (0, 0)
        assert all(math.isnan(v) for v in (none.accuracy, none.epsilon, none.all_ties))
        assert not none.mostly_ties


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
    # Best 5/6, first reached at 0.125, which ties 2 of 6 pairs; humans tie 3 of 6.
    result = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert result.accuracy == pytest.approx(5 / 6)
    assert result.epsilon == 0.125
    assert result.untied == pytest.approx(3 / 6)
    assert result.all_ties == pytest.approx(3 / 6)
    assert result.tied_share == pytest.approx(2 / 6)
    assert (result.pairs, result.groups, result.mostly_ties) == (6, 1, False)
    for eps, expected in [(0, 3), (0.125, 5), (0.25, 5), (0.375, 4), (0.5, 3)]:
        assert stats.pairwise_accuracy(metric, human, eps) == pytest.approx(expected / 6)


def test_tie_calibration_that_ties_every_pair(no_warnings):
    # MQM-like: three error-free translations (0) and one with an error (-1) that the metric
    # ranks above two of them. metric [0.25, 0.5, 0.75, 0.625]:
    #   (0,1) 0.25 tie  (0,2) 0.5 tie  (1,2) 0.25 tie  humans tie these three
    #   (0,3) 0.375 discordant  (1,3) 0.125 discordant  (2,3) 0.125 concordant
    # eps 0: only (2,3) agrees -> 1/6; eps 0.125: (2,3) becomes a tie -> 0; eps 0.25: (0,1),
    # (1,2) agree -> 2/6; eps 0.375: 2/6; eps 0.5: (0,2) too -> 3/6, every pair a metric tie.
    # acc_eq = the all-ties baseline 3/6, far from the untied 1/6: the case to warn about.
    result = stats.tie_calibrated_pairwise_accuracy([[0.25, 0.5, 0.75, 0.625]], [[0, 0, 0, -1]])
    assert (result.accuracy, result.epsilon) == (pytest.approx(0.5), 0.5)
    assert result.all_ties == pytest.approx(0.5)
    assert result.untied == pytest.approx(1 / 6)
    assert result.tied_share == 1.0
    assert result.mostly_ties


def test_tie_calibration_keeps_zero_when_ties_hurt(no_warnings):
    # No metric ties and none wanted: eps 0 -> 3/3; eps 1 -> (0,1), (1,2) disagree -> 1/3.
    result = stats.tie_calibrated_pairwise_accuracy([[3, 2, 1]], [[3, 2, 1]])
    assert (result.accuracy, result.epsilon, result.all_ties) == (1.0, 0.0, 0.0)
    # An exact metric tie humans share: eps 0 already gets all 3 pairs.
    result = stats.tie_calibrated_pairwise_accuracy([[1, 1, 0]], [[5, 5, 0]])
    assert (result.accuracy, result.epsilon, result.tied_share) == (1.0, 0.0, pytest.approx(1 / 3))


def test_tie_calibration_two_items(no_warnings):
    # Items 1 and 2 above; candidates 0, 0.25, 0.5, 0.75. Mean of item accuracies:
    #   eps 0: (4/6 + 1/3) / 2 = 1/2; eps 0.25: (4/6 + 1/3) / 2 = 1/2 (item 2's (0,2), (1,2)
    #   become ties: still wrong); eps 0.5: (2/6 + 1/3) / 2 = 1/3; eps 0.75: (1/6 + 1/3) / 2.
    #   Best 1/2 at 0. Humans tie 1 of 6 and 1 of 3 pairs: baseline (1/6 + 1/3) / 2 = 1/4;
    #   epsilon 0 ties (1,2) of item 1 and (0,1) of item 2: (1/6 + 1/3) / 2 = 1/4.
    metric = [ITEM_1_METRIC, ITEM_2_METRIC]
    human = [ITEM_1_HUMAN, ITEM_2_HUMAN]
    result = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert (result.accuracy, result.epsilon) == (pytest.approx(1 / 2), 0.0)
    assert (result.all_ties, result.tied_share) == (pytest.approx(1 / 4), pytest.approx(1 / 4))
    assert (result.pairs, result.groups) == (9, 2)


def _reference_calibration(metric, human, average_by):
    """mt-metrics-eval's definition written out plainly (tau_optimization with acc23,
    sample_rate 1): rows are items ("item") or one row of everything ("none"); unscored
    translations are dropped; every pair is (concordant, discordant, tie in humans only, in the
    metric only, in both); a row's acc23 = (concordant + tied in both) / pairs; candidate
    thresholds are 0 and every pair's |metric difference|, and a difference <= the threshold is
    a metric tie; the result is the first best mean over rows with a pair."""
    rows = [
        [(m, h) for m, h in zip(m_row, h_row) if not math.isnan(h)]
        for m_row, h_row in zip(metric, human)
    ]
    if average_by == "none":
        rows = [[seg for row in rows for seg in row]]
    rows = [row for row in rows if len(row) > 1]
    pairs = [list(itertools.combinations(row, 2)) for row in rows]
    thresholds = sorted({0.0} | {abs(a[0] - b[0]) for row in pairs for a, b in row})

    def acc23(row, eps):
        good = 0
        for (m1, h1), (m2, h2) in row:
            metric_tie = abs(m1 - m2) <= eps
            good += (h1 == h2 and metric_tie) or (
                h1 != h2 and not metric_tie and (m1 > m2) == (h1 > h2)
            )
        return good / len(row)

    taus = [sum(acc23(row, eps) for row in pairs) / len(pairs) for eps in thresholds]
    best = int(np.argmax(taus))
    return taus[best], thresholds[best]


# A small constructed example: 4 items x 4 systems, MQM-like scores with many ties, unrated
# translations and a system missing from some items (NaN), equal metric scores.
EXAMPLE_HUMAN = [
    [0.0, 0.0, -1.0, -5.0],
    [0.0, 0.0, 0.0, NAN],
    [-2.0, 0.0, -2.0, -1.0],
    [NAN, -1.0, NAN, NAN],
]
EXAMPLE_METRIC = [
    [0.75, 0.5, 0.5, 0.25],
    [0.625, 0.625, 0.25, 0.125],
    [0.5, 0.75, 0.25, 0.25],
    [0.5, 0.375, 0.25, 0.0],
]


def test_tie_calibration_equals_mt_metrics_eval_on_a_small_example(no_warnings):
    # Expected values printed by mt-metrics-eval (github.com/google-research/mt-metrics-eval,
    # commit 68a481a): tau_optimization.tau_optimization(metric, human_with_None,
    # TauSufficientStats.acc_23, sample_rate=1.0) on the matrix ("item") and on it flattened
    # to one row ("none"). Item 4 has one rated translation and no pair.
    item = stats.tie_calibrated_pairwise_accuracy(EXAMPLE_METRIC, EXAMPLE_HUMAN, "item")
    assert (item.accuracy, item.epsilon) == (pytest.approx(0.6111111111111112), 0.375)
    assert (item.pairs, item.groups) == (15, 3)
    assert item.untied == pytest.approx(0.5)  # mt-metrics-eval's tau at threshold 0
    none = stats.tie_calibrated_pairwise_accuracy(EXAMPLE_METRIC, EXAMPLE_HUMAN, "none")
    assert (none.accuracy, none.epsilon) == (pytest.approx(0.5454545454545454), 0.125)
    assert none.untied == pytest.approx(0.5303030303030303)
    assert none.all_ties == pytest.approx(0.2878787878787879)  # its tau at the largest threshold
    assert none.pairs == 66  # 12 rated translations
    for average_by in stats.AVERAGE_BY:
        want = _reference_calibration(EXAMPLE_METRIC, EXAMPLE_HUMAN, average_by)
        got = stats.tie_calibrated_pairwise_accuracy(EXAMPLE_METRIC, EXAMPLE_HUMAN, average_by)
        assert (got.accuracy, got.epsilon) == (pytest.approx(want[0]), want[1])


def _naive_accuracy(metric, human, eps, average_by="item"):
    rows = [
        [(m, h) for m, h in zip(m_item, h_item) if not math.isnan(h)]
        for m_item, h_item in zip(metric, human)
    ]
    if average_by == "none":
        rows = [[seg for row in rows for seg in row]]
    accuracies = []
    for scored in rows:
        agree = pairs = 0
        for (m1, h1), (m2, h2) in itertools.combinations(scored, 2):
            pairs += 1
            metric_tie, human_tie = abs(m1 - m2) <= eps, h1 == h2
            if metric_tie or human_tie:
                agree += metric_tie and human_tie
            else:
                agree += (m1 > m2) == (h1 > h2)
        if pairs:
            accuracies.append(agree / pairs)
    return sum(accuracies) / len(accuracies)


@pytest.mark.parametrize("average_by", ["item", "none"])
def test_accuracy_and_calibration_match_a_naive_loop(average_by, no_warnings):
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 7, size=40)
    metric = [list(rng.integers(0, 6, size=k) / 8) for k in sizes]  # many ties
    human = [list(rng.integers(0, 4, size=k).astype(float)) for k in sizes]
    for item in human[::5]:
        item[0] = NAN
    if average_by == "none":
        metric, human = metric[:12], human[:12]
    candidates = {0.0} | {k / 8 for k in range(6)}
    naive = {eps: _naive_accuracy(metric, human, eps, average_by) for eps in sorted(candidates)}
    for eps, expected in naive.items():
        assert stats.pairwise_accuracy(metric, human, eps, average_by) == pytest.approx(expected)
    best = max(naive.values())
    result = stats.tie_calibrated_pairwise_accuracy(metric, human, average_by)
    assert result.accuracy == pytest.approx(best)
    assert result.epsilon == min(eps for eps, acc in naive.items() if acc >= best - 1e-12)
    assert result.untied == pytest.approx(naive[0.0])
    assert result.all_ties == pytest.approx(naive[max(naive)])  # the largest ties every pair


def test_resampled_calibration_equals_calibration_on_the_resample(no_warnings):
    # Counts (a bootstrap draw: item 0 twice, item 1 never, item 3 once...) weigh items as
    # the calibration of the data with those items repeated.
    metric, human = EXAMPLE_METRIC, EXAMPLE_HUMAN
    counts = np.array([2, 0, 1, 3])
    repeated = [k for k, c in enumerate(counts) for _ in range(c)]
    want = stats.tie_calibrated_pairwise_accuracy(
        [metric[k] for k in repeated], [human[k] for k in repeated]
    )
    got = stats.PairTable(metric, human).calibrate(counts)
    assert got.accuracy == pytest.approx(want.accuracy)
    assert got.epsilon == want.epsilon
    assert got.groups == 2  # items 0 and 2 (item 3 has no pair)


def test_tie_calibration_is_fast():
    rng = np.random.default_rng(0)
    metric = rng.random((1000, 16)).round(3).tolist()
    human = rng.integers(0, 25, size=(1000, 16)).astype(float).tolist()
    result = stats.tie_calibrated_pairwise_accuracy(metric, human)
    assert 0 < result.accuracy < 1
    assert stats.pairwise_accuracy(metric, human, result.epsilon) == pytest.approx(result.accuracy)


# --- bootstrap -----------------------------------------------------------------------------------


def _mean_of(values):
    return lambda idx: float(values[idx].mean())


def test_bootstrap_single_item_by_hand(no_warnings):
    # n = 1: every resample is [0], so both ends equal the one value.
    assert stats.bootstrap_ci(lambda idx: [4.5][idx[0]], 1, resamples=20) == (4.5, 4.5, 0)


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
    assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert ci.undefined == 0
    wide = stats.bootstrap_ci(stat, 30, resamples=200, seed=5, confidence=0.99)
    assert wide.low <= ci.low and ci.high <= wide.high


def test_bootstrap_contains_estimate_and_narrows(no_warnings):
    rng = np.random.default_rng(11)
    widths = []
    for n in (25, 400):
        values = rng.normal(size=n)
        low, high, _ = stats.bootstrap_ci(_mean_of(values), n)
        assert low < values.mean() < high
        widths.append(high - low)
    # The width of a mean's CI shrinks like 1/sqrt(n): about 4x here.
    assert widths[1] < widths[0] / 2


def test_bootstrap_counts_nan_results(no_warnings):
    def stat(idx):
        return NAN if idx[0] == 0 else float(idx.mean())

    low, high, undefined = stats.bootstrap_ci(stat, 5, resamples=300)
    rng = np.random.Generator(np.random.PCG64(0))
    draws = [stat(rng.integers(0, 5, size=5)) for _ in range(300)]
    kept = [d for d in draws if not math.isnan(d)]
    assert undefined == 300 - len(kept) > 0  # counted, not silently dropped
    assert (low, high) == pytest.approx(tuple(np.percentile(kept, [2.5, 97.5])))
    everything_nan = stats.bootstrap_ci(lambda idx: NAN, 5, resamples=10)
    assert math.isnan(everything_nan.low) and everything_nan.undefined == 10


def test_bootstrap_of_an_undefined_estimate_is_null(no_warnings):
    calls = []

    def stat(idx):
        calls.append(idx)
        return 0.5  # defined on resamples, but the full-data estimate is not

    ci = stats.bootstrap_ci(stat, 5, resamples=10, estimate=NAN)
    assert math.isnan(ci.low) and math.isnan(ci.high) and ci.undefined == 0
    assert not calls


def test_bootstrap_rejects_bad_arguments():
    for kwargs in ({"n": 0}, {"n": 3, "resamples": 0}, {"n": 3, "confidence": 1.0}):
        with pytest.raises(ValueError):
            stats.bootstrap_ci(lambda idx: 0.0, **kwargs)


# --- system level --------------------------------------------------------------------------------


def test_system_level_by_hand(no_warnings):
    metric = {"A": 2.0, "B": 5.0, "C": 8.0, "D": NAN}
    human = {"A": 15.0, "B": 30.0, "C": 40.0, "D": 1.0}
    # D has no metric score and is left out. x = [2, 5, 8] (mean 5), y = [15, 30, 40]
    # (mean 85/3): dx = [-3, 0, 3], dy = [-40/3, 5/3, 35/3]; sum dx*dy = 40 + 35 = 75,
    # sum dx^2 = 18, sum dy^2 = 2850/9 -> r = 75 / sqrt(5700). Kendall: all 3 pairs concordant.
    pearson, kendall = stats.system_level(metric, human)
    assert pearson == pytest.approx(75 / math.sqrt(5700))
    assert kendall == pytest.approx(1.0)
    # B above C for the metric only: C = 2, D = 1 -> tau_b = 1/3.
    _, kendall = stats.system_level({"A": 1, "B": 9, "C": 5}, {"A": 1, "B": 2, "C": 3})
    assert kendall == pytest.approx(1 / 3)


def test_system_level_undefined_and_bad_input(no_warnings):
    assert all(math.isnan(v) for v in stats.system_level({"A": 1.0}, {"A": 2.0}))
    assert all(math.isnan(v) for v in stats.system_level({"A": 1, "B": 2}, {"A": 3, "B": 3}))
    assert all(math.isnan(v) for v in stats.system_level({}, {}))
    with pytest.raises(ValueError, match="systems differ"):
        stats.system_level({"A": 1}, {"B": 1})
