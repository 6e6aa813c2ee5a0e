"""Statistics for the metric bench: correlations, within-group agreement and bootstrap CIs.

Scores come as groups: ``scores[i][j]`` is translation (completion) j of item (prompt) i, so
that statistics can be computed within items, where a reward has to rank GRPO's completions.
Every statistic returns ``nan``, without a warning, where it is undefined (too few values, a
constant side, no pairs); malformed input (mismatched shapes) raises :class:`ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as _st

__all__ = [
    "AVERAGE_BY",
    "Interval",
    "PairTable",
    "TieCalibration",
    "bootstrap_ci",
    "discrimination",
    "kendall_tau_b",
    "mean_within_group",
    "pairwise_accuracy",
    "pearson",
    "spearman",
    "system_level",
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


# --- pairwise accuracy with ties (acc_eq) --------------------------------------------------------

#: How acc_eq averages, as mt-metrics-eval's ``average_by`` names it: "item" (WMT23's segment-level
#: acc_eq and this bench's default) averages per-item accuracies; "none" pools every scored
#: translation into one set, pairs across items included.
AVERAGE_BY = ("item", "none")

#: A tie calibration that makes at least this share of pairs metric ties gets a warning.
MOSTLY_TIES = 0.9


@dataclass(frozen=True)
class TieCalibration:
    """acc_eq with tie calibration, and the numbers that make it readable.

    ``accuracy``: acc_eq at ``epsilon``, the smallest threshold reaching the best accuracy;
    ``untied``: acc_eq at epsilon 0 (only exactly equal metric scores tie; no calibration);
    ``all_ties``: acc_eq of a metric that ties every pair, i.e. the share of pairs humans tie,
    a baseline that needs no metric at all; ``tied_share``: share of pairs ``epsilon`` makes metric
    ties. Shares and accuracies weigh pairs as the averaging does (with "item", each item's
    pairs weigh 1 / its number of pairs). ``pairs``: pairs compared; ``groups``: items (or the one
    pool) with at least one pair. Every float is nan when there are no pairs.
    """

    accuracy: float
    epsilon: float
    untied: float
    all_ties: float
    tied_share: float
    pairs: int
    groups: int

    @property
    def mostly_ties(self) -> bool:
        """Whether calibration made (nearly) every pair a metric tie (``tied_share`` >= 0.9)."""
        return self.tied_share >= MOSTLY_TIES


def _scored_rows(
    metric: Sequence[Sequence[float]], human: Sequence[Sequence[float]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per item, the metric and human scores of the translations humans scored (NaN: unscored)."""
    _check_groups(metric, human)
    rows = []
    for k, (m_row, h_row) in enumerate(zip(metric, human)):
        m, h = np.asarray(m_row, dtype=float), np.asarray(h_row, dtype=float)
        scored = ~np.isnan(h)
        if np.isnan(m[scored]).any():
            raise ValueError(f"item {k} has a NaN metric score for a translation humans scored")
        rows.append((m[scored], h[scored]))
    return rows


def _pair_differences(m: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m_i - m_j and h_i - h_j over every pair i < j (row by row when there are many)."""
    if m.size <= 256:
        i, j = np.triu_indices(m.size, 1)
        return m[i] - m[j], h[i] - h[j]
    dm = [m[i] - m[i + 1 :] for i in range(m.size - 1)]
    dh = [h[i] - h[i + 1 :] for i in range(h.size - 1)]
    return np.concatenate(dm), np.concatenate(dh)


class PairTable:
    """Every pair of scored translations acc_eq compares, in three classes sorted by metric
    difference |m_i - m_j|: pairs humans tie ("tie"), pairs humans order and the metric orders
    strictly the same way ("agree"), and the rest ("other": the metric orders them the other way,
    or ties them exactly). acc_eq at epsilon counts "tie" pairs with difference <= epsilon plus
    "agree" pairs with difference > epsilon.

    ``average_by="item"`` makes pairs within each item (a row of ``metric``/``human``);
    ``"none"`` pools every scored translation (NaN human scores are left out) into one set.
    """

    CLASSES = ("tie", "agree", "other")

    def __init__(
        self,
        metric: Sequence[Sequence[float]],
        human: Sequence[Sequence[float]],
        average_by: str = "item",
    ):
        if average_by not in AVERAGE_BY:
            raise ValueError(
                f"average_by must be one of {', '.join(AVERAGE_BY)}, not {average_by!r}"
            )
        rows = _scored_rows(metric, human)
        if average_by == "none":
            rows = [tuple(np.concatenate(side) for side in zip(*rows))] if rows else []
        self.average_by = average_by
        self.group_pairs = np.array([m.size * (m.size - 1) // 2 for m, _ in rows], dtype=np.int64)
        parts: dict[str, list[tuple[np.ndarray, int]]] = {c: [] for c in self.CLASSES}
        for g, (m, h) in enumerate(rows):
            if m.size < 2:
                continue
            dm, dh = _pair_differences(m, h)
            tie = dh == 0
            agree = ~tie & (np.sign(dm) == np.sign(dh))
            for name, mask in zip(self.CLASSES, (tie, agree, ~(tie | agree))):
                parts[name].append((np.abs(dm[mask]), g))
        self.diffs: dict[str, np.ndarray] = {}
        self.groups: dict[str, np.ndarray | None] = {}
        for name, blocks in parts.items():
            diff = np.concatenate([d for d, _ in blocks]) if blocks else np.empty(0)
            if average_by == "none":  # one group: no group ids to carry along
                diff.sort()
                self.diffs[name], self.groups[name] = diff, None
            else:
                group = (
                    np.concatenate([np.full(d.size, g, np.int32) for d, g in blocks])
                    if (blocks)
                    else np.empty(0, np.int32)
                )
                order = np.argsort(diff, kind="stable")
                self.diffs[name], self.groups[name] = diff[order], group[order]

    @property
    def pairs(self) -> int:
        return int(self.group_pairs.sum())

    def _cumulative(self, counts: np.ndarray | None) -> tuple[dict[str, np.ndarray], float, int]:
        """Cumulative pair weights per class, their total, and the groups that count."""
        if self.average_by == "none":  # every pair weighs 1: exact integer sums
            cum = {c: np.arange(1, d.size + 1, dtype=float) for c, d in self.diffs.items()}
            return cum, float(self.pairs), int(self.pairs > 0)
        if counts is None:
            counts = np.ones(self.group_pairs.size)
        has_pairs = self.group_pairs > 0
        weight = np.where(has_pairs, counts / np.maximum(self.group_pairs, 1), 0.0)
        cum = {c: np.cumsum(weight[g]) for c, g in self.groups.items()}
        return cum, float(np.sum(counts[has_pairs])), int(np.count_nonzero(counts[has_pairs]))

    def _below(self, cum: dict[str, np.ndarray], name: str, eps: np.ndarray) -> np.ndarray:
        """Weight of the pairs of a class whose difference is <= each eps."""
        idx = np.searchsorted(self.diffs[name], eps, side="right")
        padded = np.concatenate([[0.0], cum[name]])
        return padded[idx]

    def _share(self, parts: Sequence[tuple[str, bool]], eps: float, counts: Any) -> float:
        """Weighted share of the pairs in ``parts`` ((class, below): the class's pairs whose
        difference is <= eps when below, > eps otherwise): per group an exact count over its
        pairs, then the weighted mean, so that e.g. a perfect metric gets exactly 1."""
        n_groups = self.group_pairs.size
        hits = np.zeros(n_groups)
        for name, below in parts:
            cut = np.searchsorted(self.diffs[name], eps, side="right")
            part = slice(0, cut) if below else slice(cut, None)
            if self.groups[name] is None:
                hits[0] += self.diffs[name][part].size
            else:
                hits += np.bincount(self.groups[name][part], minlength=n_groups)
        has_pairs = self.group_pairs > 0
        weight = np.ones(n_groups) if counts is None else np.asarray(counts, dtype=float)
        weight = np.where(has_pairs, weight, 0.0)
        share = hits[has_pairs] / self.group_pairs[has_pairs]
        return math.fsum(weight[has_pairs] * share) / math.fsum(weight[has_pairs])

    def accuracy(self, epsilon: float, counts: np.ndarray | None = None) -> float:
        """acc_eq at a given threshold: metric differences <= epsilon are ties."""
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if self._cumulative(counts)[1] == 0:
            return math.nan
        return self._share([("tie", True), ("agree", False)], epsilon, counts)

    def calibrate(self, counts: np.ndarray | None = None) -> TieCalibration:
        """The tie calibration; ``counts[g]`` weighs group g (a bootstrap resample's draws).

        The candidate thresholds are 0 and every "tie" pair's difference: between two of them
        acc_eq cannot rise, so the smallest best threshold is always among them. The sweep sums
        floats, so accuracies within 1e-12 of the best count as the best; the numbers returned
        are then counted exactly at the chosen threshold.
        """
        cum, norm, groups = self._cumulative(counts)
        if norm == 0:
            return TieCalibration(*(math.nan,) * 5, pairs=self.pairs, groups=0)
        eps = np.concatenate([[0.0], np.unique(self.diffs["tie"])])
        agree_total = cum["agree"][-1] if cum["agree"].size else 0.0
        acc = (self._below(cum, "tie", eps) + agree_total - self._below(cum, "agree", eps)) / norm
        best = float(eps[int(np.flatnonzero(acc >= acc.max() - 1e-12)[0])])
        return TieCalibration(
            accuracy=self.accuracy(best, counts),
            epsilon=best,
            untied=self.accuracy(0.0, counts),
            all_ties=self._share([("tie", True)], math.inf, counts),
            tied_share=self._share([(c, True) for c in self.CLASSES], best, counts),
            pairs=self.pairs,
            groups=groups,
        )


def pairwise_accuracy(
    metric: Sequence[Sequence[float]],
    human: Sequence[Sequence[float]],
    epsilon: float = 0.0,
    average_by: str = "item",
) -> float:
    """WMT23 pairwise accuracy with ties, acc_eq (Deutsch, Foster & Freitag 2023, "Ties Matter").

    A pair of translations agrees when metric and humans both call it a tie (metric:
    |m_i - m_j| <= epsilon; humans: equal scores) or both order it the same way. With
    ``average_by="item"`` (the default, as in WMT23) pairs are made within each item (a row) and
    the per-item accuracies are averaged, items without a pair left out; with ``"none"`` every
    scored translation is pooled and paired with every other. A NaN human score marks a
    translation as unscored: it is left out. nan when there are no pairs.
    """
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    return PairTable(metric, human, average_by).accuracy(epsilon)


def tie_calibrated_pairwise_accuracy(
    metric: Sequence[Sequence[float]],
    human: Sequence[Sequence[float]],
    average_by: str = "item",
) -> TieCalibration:
    """Tie calibration ("Ties Matter"; mt-metrics-eval's ``KendallWithTiesOpt``, variant
    acc23, sample_rate 1): the best :func:`pairwise_accuracy` over epsilon, one epsilon shared
    by all items, and the smallest epsilon reaching it. O(P log P) for P pairs."""
    return PairTable(metric, human, average_by).calibrate()


# --- bootstrap and system level ------------------------------------------------------------------


class Interval(NamedTuple):
    """A bootstrap interval and how many resamples gave an undefined (nan) statistic; those are
    left out of the percentiles, so a large count means the interval describes fewer resamples."""

    low: float
    high: float
    undefined: int


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    estimate: float | None = None,
) -> Interval:
    """Percentile bootstrap CI of ``statistic(indices)`` over n items.

    Each resample draws n item indices with replacement from ``Generator(PCG64(seed))``. nan
    results are counted in ``undefined`` and left out; the ends are nan when all are nan. When
    ``estimate`` (the statistic on the full data) is nan there is nothing to bracket: no
    resampling, a nan interval.
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if estimate is not None and math.isnan(estimate):
        return Interval(math.nan, math.nan, 0)
    rng = np.random.Generator(np.random.PCG64(seed))
    values = np.array([float(statistic(rng.integers(0, n, size=n))) for _ in range(resamples)])
    defined = values[~np.isnan(values)]
    undefined = int(values.size - defined.size)
    if defined.size == 0:
        return Interval(math.nan, math.nan, undefined)
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(defined, [alpha, 100 - alpha])
    return Interval(float(low), float(high), undefined)


def system_level(metric: Mapping[str, float], human: Mapping[str, float]) -> tuple[float, float]:
    """Pearson's r and Kendall's tau_b over systems between system-level metric and human
    scores (``metric[s]``: system s's score, e.g. its corpus BLEU). Systems with a nan score on
    either side are left out; nan with fewer than 2 systems left or a constant side."""
    if set(metric) != set(human):
        raise ValueError(f"systems differ: {sorted(set(metric) ^ set(human))} are on one side only")
    keep = [s for s in metric if not (math.isnan(metric[s]) or math.isnan(human[s]))]
    x, y = [metric[s] for s in keep], [human[s] for s in keep]
    return pearson(x, y), kendall_tau_b(x, y)
