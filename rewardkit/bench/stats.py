"""Statistics for the metric bench: correlations, within-group agreement and bootstrap CIs.

Scores come as groups: ``scores[i][j]`` is translation (completion) j of item (prompt) i, so
that statistics can be computed within items, where a reward has to rank GRPO's completions.
Every statistic returns ``nan``, without a warning, where it is undefined (too few values, a
constant side, no pairs); malformed input (mismatched shapes) raises :class:`ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as _st

__all__ = [
    "bootstrap_ci",
    "discrimination",
    "kendall_tau_b",
    "mean_within_group",
    "pairwise_accuracy",
    "pearson",
    "spearman",
    "system_level_pearson",
    "tie_calibrated_pairwise_accuracy",
]


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides as float vectors, or None when a correlation is undefined (n < 2, constant)."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 1 or ya.ndim != 1 or xa.shape != ya.shape:
        raise ValueError(f"need two 1-D sequences of the same length, got {xa.shape}, {ya.shape}")
    if xa.size < 2 or np.all(xa == xa[0]) or np.all(ya == ya[0]):
        return None
    return xa, ya


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties); nan when a side is constant or n < 2.

    A NaN in the input gives nan.
    """
    xy = _pair(x, y)
    return math.nan if xy is None else float(_st.spearmanr(*xy).statistic)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (corrected for ties on either side); nan when undefined or given NaN."""
    xy = _pair(x, y)
    return math.nan if xy is None else float(_st.kendalltau(*xy, variant="b").statistic)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; nan when a side is constant, n < 2 or a value is NaN."""
    xy = _pair(x, y)
    return math.nan if xy is None else float(_st.pearsonr(*xy).statistic)


def _check_groups(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> None:
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} groups on one side and {len(b)} on the other")
    for i, (ga, gb) in enumerate(zip(a, b)):
        if len(ga) != len(gb):
            raise ValueError(f"group {i} has {len(ga)} scores on one side, {len(gb)} on the other")


def mean_within_group(
    stat: Callable[[Sequence[float], Sequence[float]], float],
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
) -> tuple[float, int]:
    """Mean of ``stat(a[i], b[i])`` over the groups where it is defined (not nan), and how many
    groups counted; ``(nan, 0)`` when none did."""
    _check_groups(a, b)
    values = [v for v in (float(stat(ga, gb)) for ga, gb in zip(a, b)) if not math.isnan(v)]
    return (math.fsum(values) / len(values), len(values)) if values else (math.nan, 0)


def discrimination(scores: Sequence[Sequence[float]], tol: float = 1e-12) -> dict[str, float]:
    """How much a metric separates the completions of a group.

    ``all_tie_share``: share of groups whose scores are all equal within ``tol`` (max - min <=
    tol), where GRPO's group-normalised advantage is zero; ``mean_spread``: mean of max - min;
    ``mean_std``: mean population (ddof=0) standard deviation. All nan when there are no groups.
    """
    spreads, stds = [], []
    for i, group in enumerate(scores):
        values = np.asarray(group, dtype=float)
        if values.size == 0:
            raise ValueError(f"group {i} is empty")
        spreads.append(float(values.max() - values.min()))
        stds.append(float(values.std()))
    if not spreads:
        return {"all_tie_share": math.nan, "mean_spread": math.nan, "mean_std": math.nan}
    spread = np.asarray(spreads)
    return {
        "all_tie_share": float(np.mean(spread <= tol)),
        "mean_spread": float(spread.mean()),
        "mean_std": float(np.mean(stds)),
    }


def _as_matrix(groups: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """Groups as rows of a float matrix, padded with NaN to ``width`` columns."""
    try:
        out = np.asarray(groups, dtype=float)
        if out.ndim == 2 and out.shape[1] == width:
            return out
    except ValueError:  # ragged
        pass
    out = np.full((len(groups), width), np.nan)
    for k, group in enumerate(groups):
        out[k, : len(group)] = group
    return out


def _item_pairs(
    metric: Sequence[Sequence[float]], human: Sequence[Sequence[float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every within-item pair (i < j) of translations with a human score, pooled over items.

    Returns ``diff`` (|m_i - m_j|), ``human_tie`` (h_i == h_j) and ``same_order`` (the human
    scores differ and the metric orders the pair the same way).
    """
    _check_groups(metric, human)
    width = max((len(g) for g in human), default=0)
    if width < 2:
        return np.empty(0), np.empty(0, dtype=bool), np.empty(0, dtype=bool)
    m, h = _as_matrix(metric, width), _as_matrix(human, width)
    scored = ~np.isnan(h)  # padding is NaN too
    bad = np.flatnonzero((scored & np.isnan(m)).any(axis=1))
    if bad.size:
        raise ValueError(f"item {bad[0]} has a NaN metric score for a translation humans scored")
    i, j = np.triu_indices(width, 1)
    dm, dh = m[:, i] - m[:, j], h[:, i] - h[:, j]
    if scored.all():
        dm, dh = dm.ravel(), dh.ravel()
    else:
        valid = scored[:, i] & scored[:, j]
        dm, dh = dm[valid], dh[valid]
    return np.abs(dm), dh == 0, (dh != 0) & (np.sign(dm) == np.sign(dh))


def pairwise_accuracy(
    metric: Sequence[Sequence[float]], human: Sequence[Sequence[float]], epsilon: float = 0.0
) -> float:
    """WMT23 pairwise accuracy with ties, acc_eq (Deutsch, Foster & Freitag 2023, "Ties Matter"),
    within items.

    Over every pair of translations of the same item, the metric and humans agree when both call
    it a tie (metric: |m_i - m_j| <= epsilon; human: equal scores) or both order it the same way.
    Accuracy is agreements / pairs, pooled over items (an item weighs by its number of pairs;
    mt-metrics-eval averages per-item accuracies instead, which is the same when every item has
    as many scored translations). A NaN human score marks a translation as unscored: it is left
    out. nan when there are no pairs.
    """
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    diff, human_tie, same_order = _item_pairs(metric, human)
    if diff.size == 0:
        return math.nan
    agree = np.where(diff <= epsilon, human_tie, same_order)
    return int(agree.sum()) / diff.size


def tie_calibrated_pairwise_accuracy(
    metric: Sequence[Sequence[float]], human: Sequence[Sequence[float]]
) -> tuple[float, float]:
    """Tie calibration ("Ties Matter"): the best :func:`pairwise_accuracy` over epsilon, and the
    smallest epsilon reaching it.

    Candidates are 0 and every distinct within-item |m_i - m_j|; one sorted sweep over the pairs
    (O(P log P)) scores them all. ``(nan, nan)`` when there are no pairs.
    """
    diff, human_tie, same_order = _item_pairs(metric, human)
    if diff.size == 0:
        return math.nan, math.nan
    order = np.argsort(diff)  # ties among equal diffs need no stable order
    diff = diff[order]
    # Agreements when the first k+1 sorted pairs are metric ties: those agree if humans tie,
    # the rest if humans order them the same way.
    ties_below = np.cumsum(human_tie[order])
    orders_below = np.cumsum(same_order[order])
    agree = ties_below + (orders_below[-1] - orders_below)
    last = np.flatnonzero(np.append(diff[1:] != diff[:-1], True))  # last pair of each value
    epsilons, counts = diff[last], agree[last]
    if epsilons[0] > 0:  # epsilon = 0 makes no pair a metric tie
        epsilons = np.insert(epsilons, 0, 0.0)
        counts = np.insert(counts, 0, orders_below[-1])
    best = int(np.argmax(counts))  # first maximum: the smallest epsilon
    return int(counts[best]) / diff.size, float(epsilons[best])


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(indices)`` over n items.

    Each resample draws n item indices with replacement from ``Generator(PCG64(seed))``; nan
    results are ignored; ``(nan, nan)`` when all are nan.
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.Generator(np.random.PCG64(seed))
    values = np.array([float(statistic(rng.integers(0, n, size=n))) for _ in range(resamples)])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [alpha, 100 - alpha])
    return float(low), float(high)


def system_level_pearson(
    metric: Mapping[str, Sequence[float]], human: Mapping[str, Sequence[float]]
) -> float:
    """Pearson's r over systems between the mean metric and the mean human score.

    ``metric[s][k]`` and ``human[s][k]`` score segment k of system s. Segments without a human
    score (NaN) are left out of both means, so they cover the same segments; a system with no
    human score at all is left out. nan with fewer than 2 systems or a constant side.
    """
    if set(metric) != set(human):
        raise ValueError(f"systems differ: {sorted(set(metric) ^ set(human))} are on one side only")
    metric_means, human_means = [], []
    for system, m_scores in metric.items():
        m = np.asarray(m_scores, dtype=float)
        h = np.asarray(human[system], dtype=float)
        if m.shape != h.shape:
            raise ValueError(f"system {system!r}: {m.size} metric scores but {h.size} human")
        scored = ~np.isnan(h)
        if scored.any():
            metric_means.append(float(m[scored].mean()))
            human_means.append(float(h[scored].mean()))
    return pearson(metric_means, human_means)
