"""Paired bootstrap over test items for the difference of two arms' corpus scores.

An arm is one or more lists of hypotheses (one per seed, and per sampled run) for the same test
items. A corpus metric (sacrebleu BLEU or chrF, the signatures ``rewardkit eval`` reports) is
recomputed on every resample from per-item sufficient statistics: each item's statistics are
extracted once, a resample sums the rows it draws, and the score comes from the sums exactly as
sacrebleu computes a corpus score. The arm's score on a resample is the mean over its lists; the
statistic is arm A's score minus arm B's, and the interval is the percentile interval.

Metrics that ``rewardkit eval`` reports as a mean of sentence scores (ROUGE-L, METEOR, BERTScore)
take the same form: a row per item (score, 1), scored as 100 x sum / count (``sentence_stats``).
``rank_bootstrap`` resamples the items the same way to ask how stable a ranking of several
arms is, and with it a rank correlation against another ranking (the reward ablation's: does
the bench's ranking of the rewards predict the trained one?).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _metric(name: str):
    from sacrebleu.metrics import BLEU, CHRF

    return {"BLEU": BLEU, "chrF": CHRF}[name]()


def item_stats(name: str, hypotheses: Sequence[str], references: Sequence[Sequence[str]]):
    """Per-item sufficient statistics, shape (items, k), and the function that scores a row of
    summed statistics (``name``: BLEU or chrF, sacrebleu's defaults)."""
    metric = _metric(name)
    width = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    stats = np.asarray(metric._extract_corpus_statistics(list(hypotheses), streams), dtype=float)

    def score(summed: np.ndarray) -> float:
        return float(metric._compute_score_from_stats([round(x) for x in summed]).score)

    return stats, score


def sentence_stats(values: Sequence[float]):
    """A mean-of-sentence-scores metric in ``item_stats``' form: rows (score, 1) per item, and
    the function that turns summed rows into 100 x the mean."""
    stats = np.column_stack([np.asarray(values, dtype=float), np.ones(len(values))])

    def score(summed: np.ndarray) -> float:
        return float(100.0 * summed[0] / summed[1])

    return stats, score


def ranks(values: dict[str, float], descending: bool = False) -> dict[str, float]:
    """Ranks 1..n (1: the lowest value, or the highest with ``descending``), ties averaged."""
    order = sorted(values, key=lambda k: -values[k] if descending else values[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def mean_ranks(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each arm's mean rank over the metrics (each metric: higher is better, rank 1 the best);
    ``scores`` is {arm: {metric: score}} with the same metrics for every arm."""
    arms = list(scores)
    metrics = list(scores[arms[0]])
    per_metric = [ranks({a: scores[a][m] for a in arms}, descending=True) for m in metrics]
    return {a: sum(r[a] for r in per_metric) / len(metrics) for a in arms}


def trained_ranks(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Arms ranked by their mean rank over the metrics (``mean_ranks``), ties averaged."""
    return ranks(mean_ranks(scores))


def rank_bootstrap(
    arms: dict[str, dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]]],
    other: dict[str, float],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """How stable the arms' ranking (``trained_ranks`` over every metric) is under resampling
    of the items, and Spearman's rho between it and the ``other`` ranking: on all items and on
    ``resamples`` resamples (one draw shared by every arm and metric), with the percentile
    interval of rho at ``level`` and the share of resamples that keep the all-items top arm
    first. ``arms`` is {arm: {metric: (per-item stats, score function)}}."""
    from scipy.stats import spearmanr

    items = {len(stats) for metrics in arms.values() for stats, _ in metrics.values()}
    if len(items) != 1:
        raise ValueError(f"the arms cover different numbers of items: {sorted(items)}")
    n = items.pop()
    names = sorted(arms)

    def ranking(index: np.ndarray | slice) -> dict[str, float]:
        return trained_ranks(
            {a: {m: f(s[index].sum(axis=0)) for m, (s, f) in arms[a].items()} for a in names}
        )

    def rho(r: dict[str, float]) -> float:
        return float(spearmanr([other[a] for a in names], [r[a] for a in names])[0])

    full = ranking(slice(None))
    top = min(full, key=full.get)
    rng = np.random.default_rng(seed)
    draws, tops = [], 0
    for _ in range(resamples):
        r = ranking(rng.integers(0, n, size=n))
        draws.append(rho(r))
        tops += r[top] == min(r.values())
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return {
        "rho": rho(full),
        "low": float(low),
        "high": float(high),
        "level": level,
        "resamples": resamples,
        "items": n,
        "ranks": full,
        "top": top,
        "top_share": tops / resamples,
    }


def paired_bootstrap(
    arm_a: Sequence[np.ndarray],
    arm_b: Sequence[np.ndarray],
    score: Callable[[np.ndarray], float],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Mean-over-lists score of A minus that of B, on all items and on ``resamples`` resamples
    of the items (the same draw for every list of both arms: paired), with the percentile
    interval at ``level``. Each element of an arm is a per-item matrix (items, k)."""
    items = {len(m) for m in (*arm_a, *arm_b)}
    if len(items) != 1:
        raise ValueError(f"the arms cover different numbers of items: {sorted(items)}")
    n = items.pop()

    def diff(index: np.ndarray | slice) -> float:
        a = np.mean([score(m[index].sum(axis=0)) for m in arm_a])
        b = np.mean([score(m[index].sum(axis=0)) for m in arm_b])
        return float(a - b)

    rng = np.random.default_rng(seed)
    draws = np.array([diff(rng.integers(0, n, size=n)) for _ in range(resamples)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {
        "difference": diff(slice(None)),
        "low": float(low),
        "high": float(high),
        "level": level,
        "resamples": resamples,
        "items": n,
        "share_above_zero": float(np.mean(draws > 0)),
    }
