"""`rewardkit bench`: how a set of rewards behaves where GRPO uses it.

The bench reads top to bottom like the report it writes:

1. cost         load time, completions/s at several group sizes, memory growth
2. discrimination  within-group ties and spread on realistic groups of G completions
3. monotonicity    Spearman between the number of corruption edits k and the score, per kind
4. probes          how often a degenerate output outscores a good one
5. agreement       within-group Kendall tau between every pair of rewards
6. human           (with --human) pairwise accuracy with tie calibration, Kendall tau_b, Pearson

Every random choice derives from ``seed``; the same inputs give the same results.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.bench import corrupt, stats
from rewardkit.errors import RewardkitError
from rewardkit.registry import Registry
from rewardkit.rewards import Group, Reward
from rewardkit.textdata import qa_items, translation_pairs

DEFAULT_REWARDS = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougel", "meteor", "bertscore")


@dataclass(frozen=True)
class BenchConfig:
    """Settings of ``rewardkit bench``."""

    rewards: tuple[str, ...] = DEFAULT_REWARDS
    data: Path | None = None  # JSONL or TSV with id, reference and optional source, lang
    human: Path | None = None  # JSONL with id, system, hypothesis, score
    items: int = 120  # embedded items when no --data (half translation, half spoken QA)
    steps: int = 6  # corruption edits per ladder
    group_size: int = 8
    cost_group_sizes: tuple[int, ...] = (4, 8, 16)
    bootstrap: int = 1000
    seed: int = 0
    output_dir: Path = Path("bench-report")


@dataclass(frozen=True)
class Item:
    id: str
    reference: str
    source: str | None = None
    lang: str = "de"


@dataclass(frozen=True)
class HumanScore:
    id: str
    system: str
    hypothesis: str
    score: float


@dataclass
class Results:
    config: dict[str, Any]
    rewards: list[str]
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    discrimination: dict[str, dict[str, float]] = field(default_factory=dict)
    monotonicity: dict[str, dict[str, float]] = field(default_factory=dict)
    ladder_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    probes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)
    human: dict[str, dict[str, Any]] = field(default_factory=dict)
    reproducibility: dict[str, Any] = field(default_factory=dict)


# --- data ---------------------------------------------------------------------------------------


def embedded_items(n: int, seed: int) -> list[Item]:
    """Half English->German translation pairs, half spoken-QA answers (English)."""
    st = translation_pairs(n - n // 2, seed=seed, split="test")
    qa = qa_items(n // 2, seed=seed, split="test")
    return [Item(p.id, p.reference, p.source, "de") for p in st] + [
        Item(q.id, q.answer, f"{q.passage} {q.question}", "en") for q in qa
    ]


def load_items(path: Path) -> list[Item]:
    """Items from JSONL (one object per line) or TSV (a header row); id and reference required."""
    rows = _read_table(path)
    items = []
    for n, row in enumerate(rows, start=2 if path.suffix == ".tsv" else 1):
        missing = [c for c in ("id", "reference") if not row.get(c)]
        if missing:
            raise RewardkitError(
                f"{path}:{n} lacks {', '.join(missing)}; each row needs id and reference "
                f"(source and lang are optional)"
            )
        lang = row.get("lang") or "de"
        if lang not in corrupt.LANGS:
            raise RewardkitError(
                f"{path}:{n}: lang {lang!r} is not supported by the corruptions; "
                f"use one of {', '.join(corrupt.LANGS)}"
            )
        items.append(Item(str(row["id"]), row["reference"], row.get("source") or None, lang))
    if len({i.id for i in items}) != len(items):
        raise RewardkitError(f"{path} repeats an id; ids must be unique")
    if not items:
        raise RewardkitError(f"{path} has no rows")
    return items


def load_human(path: Path, items: Sequence[Item]) -> list[HumanScore]:
    """Human judgments: id (an item id), system, hypothesis, score (higher is better)."""
    known = {i.id for i in items}
    scores = []
    for n, row in enumerate(_read_table(path), start=1):
        missing = [c for c in ("id", "system", "hypothesis", "score") if c not in row]
        if missing:
            raise RewardkitError(f"{path}:{n} lacks {', '.join(missing)}")
        if str(row["id"]) not in known:
            raise RewardkitError(
                f"{path}:{n} scores item {row['id']!r}, which is not in the data; "
                "the human file's ids must match the data file's ids"
            )
        try:
            value = float(row["score"])
        except (TypeError, ValueError):
            raise RewardkitError(f"{path}:{n}: score {row['score']!r} is not a number") from None
        scores.append(HumanScore(str(row["id"]), str(row["system"]), row["hypothesis"], value))
    return scores


def _read_table(path: Path) -> list[dict[str, Any]]:
    from rewardkit.textio import read_lines

    lines = [line for line in read_lines(path) if line.strip()]
    if path.suffix == ".tsv":
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    rows = []
    for n, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RewardkitError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise RewardkitError(f"{path}:{n} is not a JSON object")
        rows.append(row)
    return rows


# --- scoring ------------------------------------------------------------------------------------


def score(
    reward: Reward, items: Sequence[Item], texts: Sequence[Sequence[str]]
) -> list[list[float]]:
    """Score ``texts[i]`` (a group of completions) against item i, in one call."""
    groups = [Group((item.reference,), tuple(t), item.source) for item, t in zip(items, texts)]
    return reward(groups).scores


def realistic_groups(items: Sequence[Item], g: int, steps: int, seed: int) -> list[list[str]]:
    """G plausible completions per item: random corruption kinds, 0..steps edits each."""
    rng = random.Random(seed)
    groups = []
    for n, item in enumerate(items):
        group = []
        for j in range(g):
            kind = rng.choice(corrupt.LADDERS)
            rungs = corrupt.ladder(kind, item.reference, steps, seed + 7919 * n + j, item.lang)
            group.append(rungs[rng.randrange(len(rungs))])
        groups.append(group)
    return groups


class PeakMemory:
    """Peak resident-set growth of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakMemory:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def measure_cost(
    registry: Registry,
    spec: str,
    items: Sequence[Item],
    config: BenchConfig,
    texts_by_g: dict[int, list[list[str]]],
) -> tuple[Reward, dict[str, Any]]:
    with PeakMemory() as memory:
        start = time.perf_counter()
        reward = registry.build_reward(spec)
        score(reward, items[:1], [[items[0].reference]])  # first call: lazy loads, warm-up
        load_s = time.perf_counter() - start
        throughput = {}
        for g, texts in texts_by_g.items():
            start = time.perf_counter()
            score(reward, items, texts)
            elapsed = time.perf_counter() - start
            throughput[str(g)] = sum(map(len, texts)) / elapsed
    return reward, {
        "load_s": load_s,
        "completions_per_s": throughput,
        "memory_growth_mib": memory.growth_mib,
        "device": str(getattr(reward, "device", "cpu")),
        "threads": _threads(),
    }


def _threads() -> int:
    import sys

    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    import os

    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


# --- the bench ----------------------------------------------------------------------------------


def run_bench(
    registry: Registry, config: BenchConfig, advance: Callable[[str], None] = lambda stage: None
) -> Results:
    """Run every section for every reward; ``advance(stage)`` is called as work completes."""
    items = load_items(config.data) if config.data else embedded_items(config.items, config.seed)
    human = load_human(config.human, items) if config.human else []
    for spec in config.rewards:  # fail fast on unknown names or options, before any model loads
        registry.check_spec(spec)
    results = Results(config=_jsonable(asdict(config)), rewards=list(config.rewards))
    seed = config.seed

    groups = realistic_groups(items, config.group_size, config.steps, seed)
    texts_by_g = {
        g: realistic_groups(items, g, config.steps, seed + g) for g in config.cost_group_sizes
    }
    ladders = {
        kind: [
            corrupt.ladder(kind, it.reference, config.steps, seed + n, it.lang)
            for n, it in enumerate(items)
        ]
        for kind in corrupt.LADDERS
    }
    good = [[corrupt.good_output(it.reference, seed + n, it.lang)] for n, it in enumerate(items)]
    probe_texts = {
        kind: [[_probe(kind, it, seed + n)] for n, it in enumerate(items)]
        for kind in corrupt.PROBES
    }

    group_scores: dict[str, list[list[float]]] = {}
    signatures: dict[str, str] = {}
    for spec in config.rewards:
        reward, results.cost[spec] = measure_cost(registry, spec, items, config, texts_by_g)
        signatures[spec] = reward.signature()
        advance(f"{spec}: cost")

        group_scores[spec] = score(reward, items, groups)
        results.discrimination[spec] = stats.discrimination(group_scores[spec])

        results.monotonicity[spec], results.ladder_curves[spec] = {}, {}
        for kind, rungs in ladders.items():
            scored = score(reward, items, rungs)
            rho, _ = stats.mean_within_group(
                stats.spearman, [list(range(len(s))) for s in scored], scored
            )
            results.monotonicity[spec][kind] = rho
            results.ladder_curves[spec][kind] = _mean_curve(scored, config.steps)
        advance(f"{spec}: ladders")

        good_scores = [row[0] for row in score(reward, items, good)]
        results.probes[spec] = {}
        for kind, texts in probe_texts.items():
            probe_scores = [row[0] for row in score(reward, items, texts)]
            wins = [p > q for p, q in zip(probe_scores, good_scores)]
            ties = [p == q for p, q in zip(probe_scores, good_scores)]
            results.probes[spec][kind] = {
                "outscores_good": float(np.mean(wins)),
                "ties_good": float(np.mean(ties)),
            }
        if human:
            results.human[spec] = human_agreement(reward, items, human, config)
        advance(f"{spec}: probes")
        if hasattr(reward, "close"):
            reward.close()

    for a in config.rewards:
        results.agreement[a] = {}
        for b in config.rewards:
            tau, _ = stats.mean_within_group(stats.kendall_tau_b, group_scores[a], group_scores[b])
            results.agreement[a][b] = tau
    results.reproducibility = reproducibility(config, signatures)
    return results


def _probe(kind: str, item: Item, seed: int) -> str:
    if kind == "copy_source" and item.source is None:
        return ""  # nothing to copy: the degenerate output is empty
    return corrupt.probe(kind, item.reference, item.source, seed, item.lang)


def _mean_curve(scored: Sequence[Sequence[float]], steps: int) -> list[float]:
    """Mean score at each k (ladders may be shorter than steps + 1)."""
    curve = []
    for k in range(steps + 1):
        values = [s[k] for s in scored if len(s) > k]
        curve.append(float(np.mean(values)) if values else math.nan)
    return curve


def human_agreement(
    reward: Reward, items: Sequence[Item], human: Sequence[HumanScore], config: BenchConfig
) -> dict[str, Any]:
    """Pairwise accuracy (tie-calibrated acc_eq), segment Kendall tau_b, system Pearson."""
    by_id = {item.id: item for item in items}
    order = sorted({h.id for h in human})
    per_item = {i: [h for h in human if h.id == i] for i in order}
    scored = score(
        reward, [by_id[i] for i in order], [[h.hypothesis for h in per_item[i]] for i in order]
    )
    metric = [list(row) for row in scored]
    people = [[h.score for h in per_item[i]] for i in order]

    def acc(idx: np.ndarray) -> float:
        return stats.tie_calibrated_pairwise_accuracy(
            [metric[i] for i in idx], [people[i] for i in idx]
        )[0]

    def tau(idx: np.ndarray) -> float:
        return stats.kendall_tau_b(
            [v for i in idx for v in metric[i]], [v for i in idx for v in people[i]]
        )

    accuracy, epsilon = stats.tie_calibrated_pairwise_accuracy(metric, people)
    systems_metric: dict[str, list[float]] = {}
    systems_human: dict[str, list[float]] = {}
    for i, row in zip(order, metric):
        for h, value in zip(per_item[i], row):
            systems_metric.setdefault(h.system, []).append(value)
            systems_human.setdefault(h.system, []).append(h.score)
    n = len(order)
    ci = dict(resamples=config.bootstrap, seed=config.seed)
    return {
        "pairwise_accuracy": accuracy,
        "pairwise_accuracy_ci": stats.bootstrap_ci(acc, n, **ci),
        "tie_epsilon": epsilon,
        "kendall_tau_b": tau(np.arange(n)),
        "kendall_tau_b_ci": stats.bootstrap_ci(tau, n, **ci),
        "system_pearson": stats.system_level_pearson(systems_metric, systems_human),
        "items": n,
        "systems": len(systems_metric),
    }


def reproducibility(config: BenchConfig, signatures: dict[str, str]) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in (
        "rewardkit",
        "sacrebleu",
        "rouge-score",
        "nltk",
        "bert-score",
        "torch",
        "transformers",
        "numpy",
        "scipy",
    ):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    return {"seed": config.seed, "signatures": signatures, "packages": packages}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def save_json(results: Results, path: Path) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(asdict(results)), indent=2) + "\n", encoding="utf-8")
