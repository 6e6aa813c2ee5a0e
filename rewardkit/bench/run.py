"""`rewardkit bench`: how a set of rewards behaves where GRPO uses it.

The bench reads top to bottom like the report it writes:

1. cost         load time, completions/s at several group sizes, memory growth
2. discrimination  within-group ties and spread on realistic groups of G completions
3. monotonicity    Spearman between the number of corruption edits k and the score, per kind
4. probes          how often a degenerate output outscores a good one
5. agreement       within-group Kendall tau between every pair of rewards
6. human           (with --human) acc_eq with tie calibration, Kendall tau_b, system level

``sections`` chooses which run (human agreement alone needs none of the corruptions, so it works
for any target language and costs one scoring pass per reward). Every random choice derives from
``seed``; the same inputs give the same results.
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
SECTIONS = ("cost", "discrimination", "ladders", "probes", "agreement", "human")
#: Sections built on corruptions of the reference, which exist for these languages only.
CORRUPTION_SECTIONS = ("cost", "discrimination", "ladders", "probes", "agreement")
AGGREGATES = ("mean", "median")


@dataclass(frozen=True)
class BenchConfig:
    """Settings of ``rewardkit bench``."""

    rewards: tuple[str, ...] = DEFAULT_REWARDS
    data: Path | None = None  # JSONL or TSV with id, reference and optional source, lang
    human: Path | None = None  # JSONL or TSV with id, system, hypothesis, score
    sections: tuple[str, ...] | None = None  # None: all (human only with a human file)
    aggregate: str | None = None  # mean or median of several judgments of one (id, system)
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
    score: float  # nan: unrated


@dataclass(frozen=True)
class HumanData:
    """Human judgments ready to compare: one scored segment per (id, system), grouped by item
    (``items[k]`` is an item id, ``segments[k]`` its segments), and what loading counted."""

    items: list[str]
    segments: list[list[HumanScore]]
    counts: dict[str, int]


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
    human_counts: dict[str, int] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
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
    items = []
    for n, row in _read_table(path):
        missing = [c for c in ("id", "reference") if row.get(c) in (None, "")]
        if missing:
            raise RewardkitError(
                f"{path}:{n} lacks {', '.join(missing)}; each row needs id and reference "
                f"(source and lang are optional)"
            )
        types = {"id": (str, int), "reference": str, "source": str, "lang": str}
        _check_types(path, n, row, types)
        lang = str(row.get("lang") or "de")
        items.append(Item(str(row["id"]), row["reference"], row.get("source") or None, lang))
    if len({i.id for i in items}) != len(items):
        raise RewardkitError(f"{path} repeats an id; ids must be unique")
    if not items:
        raise RewardkitError(f"{path} has no rows")
    return items


def load_human(path: Path, items: Sequence[Item], aggregate: str | None = None) -> HumanData:
    """Human judgments: id (an item id), system, hypothesis, score (higher is better).

    A missing score (NaN, null or empty) marks an unrated translation: it is counted and left
    out. Several judgments of one (id, system) are an error unless ``aggregate`` (mean or
    median) combines their scores; they must judge the same hypothesis.
    """
    known = {i.id for i in items}
    rows: dict[tuple[str, str], list[tuple[int, HumanScore]]] = {}
    judgments = unrated = 0
    for n, row in _read_table(path):
        missing = [c for c in ("id", "system", "hypothesis", "score") if c not in row]
        if missing:
            raise RewardkitError(f"{path}:{n} lacks {', '.join(missing)}")
        types = {
            "id": (str, int),
            "system": (str, int),
            "hypothesis": str,
            "score": (int, float, str),
        }
        _check_types(path, n, row, types)
        if str(row["id"]) not in known:
            raise RewardkitError(
                f"{path}:{n} scores item {row['id']!r}, which is not in the data; "
                "the human file's ids must match the data file's ids"
            )
        raw = row["score"]
        try:
            value = math.nan if raw is None or str(raw).strip() == "" else float(raw)
        except (TypeError, ValueError):
            raise RewardkitError(
                f"{path}:{n}: score {raw!r} is not a number (leave it empty or NaN for an "
                "unrated translation)"
            ) from None
        judgments += 1
        unrated += math.isnan(value)
        key = (str(row["id"]), str(row["system"]))
        rows.setdefault(key, []).append((n, HumanScore(*key, str(row["hypothesis"]), value)))

    repeated = [(key, group) for key, group in rows.items() if len(group) > 1]
    if repeated and aggregate is None:
        (item, system), group = repeated[0]
        raise RewardkitError(
            f"{path}: {len(repeated)} (id, system) pairs have several judgments (first: id "
            f"{item!r}, system {system!r}, lines {', '.join(str(n) for n, _ in group)}); pass "
            "--aggregate mean or --aggregate median to combine them"
        )
    if aggregate is not None and aggregate not in AGGREGATES:
        raise RewardkitError(f"aggregate must be one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    by_item: dict[str, list[HumanScore]] = {}
    merged = 0
    for (item, system), group in rows.items():
        texts = {h.hypothesis for _, h in group}
        if len(texts) > 1:
            lines = ", ".join(str(n) for n, _ in group)
            raise RewardkitError(
                f"{path}: id {item!r}, system {system!r} has different hypotheses on lines "
                f"{lines}; one system has one translation per item"
            )
        scores = np.array([h.score for _, h in group])
        scores = scores[~np.isnan(scores)]
        if scores.size == 0:
            continue  # unrated: left out
        merged += scores.size > 1
        value = float(np.median(scores) if aggregate == "median" else scores.mean())
        by_item.setdefault(item, []).append(HumanScore(item, system, group[0][1].hypothesis, value))
    order = sorted(by_item)
    segments = [by_item[i] for i in order]
    counts = {
        "judgments": judgments,
        "unrated": unrated,
        "aggregated": merged,
        "segments": sum(map(len, segments)),
        "items": len(order),
        "systems": len({h.system for row in segments for h in row}),
    }
    return HumanData(order, segments, counts)


def _read_table(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL or TSV (a header row) file; blank lines are skipped."""
    from rewardkit.textio import read_lines

    lines = [(n, line) for n, line in enumerate(read_lines(path), start=1) if line.strip()]
    if path.suffix == ".tsv":
        if not lines:
            return []
        header = lines[0][1].split("\t")
        return [(n, dict(zip(header, line.split("\t")))) for n, line in lines[1:]]
    rows = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RewardkitError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise RewardkitError(f"{path}:{n} is not a JSON object")
        rows.append((n, row))
    return rows


def _check_types(path: Path, n: int, row: dict[str, Any], types: dict[str, Any]) -> None:
    """Each field present (and not null) must have one of its types: `"reference": 123` is an
    error naming the file, line and field, not a crash later."""
    for name, kinds in types.items():
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            want = " or ".join(
                {"str": "text", "int": "an integer", "float": "a number"}[k.__name__]
                for k in (kinds if isinstance(kinds, tuple) else (kinds,))
            )
            raise RewardkitError(
                f"{path}:{n}: field '{name}' must be {want}, got {type(value).__name__} "
                f"{json.dumps(value)[:40]}"
            )


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


def selected_sections(config: BenchConfig) -> list[str]:
    """The sections to run, in report order: ``config.sections``, or every one (human only
    when a human file is given)."""
    if config.sections is None:
        return [s for s in SECTIONS if s != "human" or config.human]
    unknown = [s for s in config.sections if s not in SECTIONS]
    if unknown or not config.sections:
        what = f"unknown section {unknown[0]!r}" if unknown else "no section chosen"
        raise RewardkitError(f"{what}; choose from {', '.join(SECTIONS)} (comma-separated)")
    if "human" in config.sections and config.human is None:
        raise RewardkitError("section human needs human judgments: pass --human FILE")
    return [s for s in SECTIONS if s in config.sections]


def progress_total(config: BenchConfig) -> int:
    """How many times :func:`run_bench` calls ``advance``."""
    per_reward = [s for s in selected_sections(config) if s != "agreement"]
    return len(config.rewards) * max(len(per_reward), 1)


def run_bench(
    registry: Registry,
    config: BenchConfig,
    advance: Callable[[str], None] = lambda stage: None,
    inputs_checked: Callable[[], None] = lambda: None,
) -> Results:
    """Run the chosen sections for every reward; ``advance(stage)`` is called as work completes,
    ``inputs_checked()`` once the inputs are read and checked, before the work (the command
    checks its output directory there)."""
    sections = selected_sections(config)
    items = load_items(config.data) if config.data else embedded_items(config.items, config.seed)
    corrupting = [s for s in sections if s in CORRUPTION_SECTIONS]
    other_langs = sorted({i.lang for i in items} - set(corrupt.LANGS))
    if corrupting and other_langs:
        raise RewardkitError(
            f"lang {other_langs[0]!r} in {config.data}: the corruptions behind "
            f"{', '.join(corrupting)} exist for {', '.join(corrupt.LANGS)} only; for other "
            "languages run the human agreement alone (--sections human)"
        )
    human = load_human(config.human, items, config.aggregate) if "human" in sections else None
    for spec in config.rewards:  # fail fast on unknown names or options, before any model loads
        registry.check_spec(spec)
    inputs_checked()
    results = Results(
        config=_jsonable(asdict(config)), rewards=list(config.rewards), sections=sections
    )
    if human is not None:
        results.human_counts = human.counts
        used = set(human.items)
        langs = sorted({i.lang for i in items if i.id in used or corrupting})
    else:
        langs = sorted({i.lang for i in items})
    seed = config.seed

    needs_groups = "discrimination" in sections or "agreement" in sections
    groups = realistic_groups(items, config.group_size, config.steps, seed) if needs_groups else []
    texts_by_g = {
        g: realistic_groups(items, g, config.steps, seed + g)
        for g in (config.cost_group_sizes if "cost" in sections else ())
    }
    ladders = {
        kind: [
            corrupt.ladder(kind, it.reference, config.steps, seed + n, it.lang)
            for n, it in enumerate(items)
        ]
        for kind in (corrupt.LADDERS if "ladders" in sections else ())
    }
    probing = "probes" in sections
    good = [
        [corrupt.good_output(it.reference, seed + n, it.lang)]
        for n, it in enumerate(items if probing else ())
    ]
    probe_texts = {
        kind: [[_probe(kind, it, seed + n)] for n, it in enumerate(items)]
        for kind in (corrupt.PROBES if probing else ())
    }

    group_scores: dict[str, list[list[float]]] = {}
    signatures: dict[str, str] = {}
    for spec in config.rewards:
        if "cost" in sections:
            reward, results.cost[spec] = measure_cost(registry, spec, items, config, texts_by_g)
            advance(f"{spec}: cost")
        else:
            reward = registry.build_reward(spec)
        signatures[spec] = reward.signature()
        results.warnings += language_warnings(spec, reward, langs)

        if needs_groups:
            group_scores[spec] = score(reward, items, groups)
        if "discrimination" in sections:
            results.discrimination[spec] = stats.discrimination(group_scores[spec])
            advance(f"{spec}: discrimination")

        if "ladders" in sections:
            results.monotonicity[spec], results.ladder_curves[spec] = {}, {}
            for kind, rungs in ladders.items():
                scored = score(reward, items, rungs)
                rho, _ = stats.mean_within_group(
                    stats.spearman, [list(range(len(s))) for s in scored], scored
                )
                results.monotonicity[spec][kind] = rho
                results.ladder_curves[spec][kind] = _mean_curve(scored, config.steps)
            advance(f"{spec}: ladders")

        if probing:
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
            advance(f"{spec}: probes")
        if human is not None:
            results.human[spec] = human_agreement(reward, items, human, config)
            advance(f"{spec}: human")
        if hasattr(reward, "close"):
            reward.close()

    if "agreement" in sections:
        for a in config.rewards:
            results.agreement[a] = {}
            for b in config.rewards:
                tau, _ = stats.mean_within_group(
                    stats.kendall_tau_b, group_scores[a], group_scores[b]
                )
                results.agreement[a][b] = tau
    for spec in results.human:
        for variant, calibration in results.human[spec]["acc_eq"].items():
            if calibration["mostly_ties"]:
                results.warnings.append(
                    f"{spec}: tie calibration (average_by={variant}) makes "
                    f"{calibration['tied_share']:.0%} of pairs metric ties, so acc_eq "
                    f"{calibration['accuracy']:.3f} is about the all-ties baseline "
                    f"{calibration['all_ties']:.3f}; compare the untied accuracy "
                    f"{calibration['untied']:.3f} instead"
                )
    results.reproducibility = reproducibility(config, signatures)
    return results


def language_warnings(spec: str, reward: Reward, langs: Sequence[str]) -> list[str]:
    """A warning when a model-based reward's model does not cover the data's languages."""
    covered = reward.languages
    missing = [lang for lang in langs if covered is not None and lang not in covered]
    if not missing:
        return []
    return [
        f"{spec}: its model covers {', '.join(covered or ())} only, but the data is "
        f"{', '.join(missing)} (the lang column; de when absent), so its scores there say "
        "little; choose a model for that language"
    ]


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


def _with_interval(
    value: float, statistic: Callable[[np.ndarray], float], n: int, config: BenchConfig
) -> dict[str, Any]:
    """A statistic with its bootstrap interval over n items; no interval when it is undefined."""
    if n == 0 or math.isnan(value):
        return {"value": value, "ci": None, "ci_undefined": 0}
    ci = stats.bootstrap_ci(
        statistic, n, resamples=config.bootstrap, seed=config.seed, estimate=value
    )
    return {"value": value, "ci": [ci.low, ci.high], "ci_undefined": ci.undefined}


def human_agreement(
    reward: Reward, items: Sequence[Item], human: HumanData, config: BenchConfig
) -> dict[str, Any]:
    """Segment level: acc_eq with tie calibration (item-averaged, the default, with a bootstrap
    interval; pooled, without one: its pairs grow with the square of the segments) and Kendall
    tau_b over all segments; system level: Pearson and Kendall tau_b between the reward's
    corpus score (the mean sentence score where it has none) and the mean human score.
    Intervals: percentile bootstrap over items."""
    by_id = {item.id: item for item in items}
    n = len(human.items)
    texts = [[h.hypothesis for h in row] for row in human.segments]
    metric = score(reward, [by_id[i] for i in human.items], texts) if n else []
    people = [[h.score for h in row] for row in human.segments]

    acc_eq = {}
    table = stats.PairTable(metric, people, "item")
    calibration = table.calibrate()
    acc_eq["item"] = asdict(calibration) | {"mostly_ties": calibration.mostly_ties}
    acc_eq["item"] |= _interval_only(
        _with_interval(
            calibration.accuracy,
            lambda idx: table.calibrate(np.bincount(idx, minlength=n)).accuracy,
            n,
            config,
        )
    )
    pooled = stats.PairTable(metric, people, "none").calibrate()
    acc_eq["none"] = asdict(pooled) | {"mostly_ties": pooled.mostly_ties, "ci": None}

    flat_m = np.array([v for row in metric for v in row])
    flat_h = np.array([v for row in people for v in row])
    ends = np.cumsum([len(row) for row in metric])
    starts = ends - np.array([len(row) for row in metric], dtype=int)

    def tau(idx: np.ndarray) -> float:
        take = np.concatenate([np.arange(starts[k], ends[k]) for k in idx])
        return stats.kendall_tau_b(flat_m[take], flat_h[take])

    result = {
        "average_by": "item",
        "acc_eq": acc_eq,
        "kendall_tau_b": _with_interval(stats.kendall_tau_b(flat_m, flat_h), tau, n, config),
        "system": system_agreement(reward, items, human, metric, config),
    }
    return result


def _interval_only(stat: dict[str, Any]) -> dict[str, Any]:
    return {"ci": stat["ci"], "ci_undefined": stat["ci_undefined"]}


def system_agreement(
    reward: Reward,
    items: Sequence[Item],
    human: HumanData,
    metric: Sequence[Sequence[float]],
    config: BenchConfig,
) -> dict[str, Any]:
    """Pearson and Kendall tau_b over systems, as WMT computes them: each system's score is the
    reward's corpus score over its segments (sign flipped for an error rate such as TER), or
    the mean of its sentence scores where the reward has no corpus score; the human score is
    the mean of its segments' scores. A system scores the segments it has: when systems cover
    different items, ``same_items`` is false and their scores compare different sets."""
    by_id = {item.id: item for item in items}
    segments: dict[str, list[tuple[int, HumanScore, float]]] = {}
    for k, (row, scores) in enumerate(zip(human.segments, metric)):
        for h, value in zip(row, scores):
            segments.setdefault(h.system, []).append((k, h, value))
    n = len(human.items)
    systems, label = {}, "mean sentence score"
    for name, segs in sorted(segments.items()):
        hyps = [h.hypothesis for _, h, _ in segs]
        refs = [(by_id[h.id].reference,) for _, h, _ in segs]
        resampler = reward.corpus_resampler(hyps, refs)
        corpus = resampler(np.ones(len(segs), dtype=int)) if resampler else None
        if corpus is not None:
            label = f"corpus {corpus.metric}" + ("" if corpus.higher_is_better else " (negated)")
        systems[name] = {
            "items": np.array([k for k, _, _ in segs]),
            "human": np.array([h.score for _, h, _ in segs]),
            "sentence": np.array([v for _, _, v in segs]),
            "corpus": resampler if corpus is not None else None,
        }

    def system_scores(counts: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        metric_scores, human_scores = {}, {}
        for name, sys in systems.items():
            weight = counts[sys["items"]]
            if weight.sum() == 0:
                metric_scores[name] = human_scores[name] = math.nan
                continue
            human_scores[name] = float(weight @ sys["human"] / weight.sum())
            if sys["corpus"] is None:
                metric_scores[name] = float(weight @ sys["sentence"] / weight.sum())
            else:
                corpus = sys["corpus"](weight)
                sign = 1.0 if corpus.higher_is_better else -1.0
                metric_scores[name] = sign * corpus.score
        return metric_scores, human_scores

    cache: dict[bytes, tuple[float, float]] = {}  # one resample serves both statistics

    def correlations(idx: np.ndarray) -> tuple[float, float]:
        key = idx.tobytes()
        if key not in cache:
            cache[key] = stats.system_level(*system_scores(np.bincount(idx, minlength=n)))
        return cache[key]

    pearson, kendall = (
        stats.system_level(*system_scores(np.ones(n, dtype=int))) if n else (math.nan,) * 2
    )
    covered = {frozenset(sys["items"].tolist()) for sys in systems.values()}
    return {
        "score": label,
        "systems": len(systems),
        "same_items": len(covered) <= 1,
        "pearson": _with_interval(pearson, lambda idx: correlations(idx)[0], n, config),
        "kendall_tau_b": _with_interval(kendall, lambda idx: correlations(idx)[1], n, config),
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

    from rewardkit.textio import write_atomic

    write_atomic(path, json.dumps(clean(asdict(results)), indent=2) + "\n")
