"""Paired bootstrap over test items for the difference of two arms' corpus scores.

An arm is one or more lists of hypotheses (one per seed, and per sampled run) for the same test
items. A corpus metric (sacrebleu BLEU or chrF, the signatures ``rewardkit eval`` reports) is
recomputed on every resample from per-item sufficient statistics: each item's statistics are
extracted once, a resample sums the rows it draws, and the score comes from the sums exactly as
sacrebleu computes a corpus score. The arm's score on a resample is the mean over its lists; the
statistic is arm A's score minus arm B's, and the interval is the percentile interval.
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
