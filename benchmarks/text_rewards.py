"""Benchmark: rewardkit's ``bleu`` and ``chrf`` rewards against plain sacrebleu loops.

One GRPO-shaped step (``--prompts`` groups of ``--group-size`` completions, ~20-token German and
English sentences generated from a fixed seed, completions being noisy variants of the reference)
is scored three ways, in the same process and on the same inputs:

* ``rewardkit``: ``load_registry(entry_points=False).build_reward(name)`` called once on the
  whole step (a list of ``rewardkit.Group``);
* ``sentence_*`` loop: ``sacrebleu.sentence_bleu(h, [r])`` / ``sacrebleu.sentence_chrf(h, [r])``
  for every completion;
* ``reused object`` loop: one ``BLEU(effective_order=True)`` / ``CHRF()`` and its
  ``sentence_score(h, [r])`` for every completion.

Every score must be identical (rewardkit score == sacrebleu score / 100, compared with ``==``) or
the script exits with status 1. The step is timed twice: with a quarter of the completions of
each group repeated (GRPO samples often repeat; rewardkit scores a repeat once) and with every
completion distinct, so the share of the speedup that comes from deduplication is visible.

Each timed run stands for a fresh training step: sacrebleu's tokenizer caches are emptied and
the rewardkit reward is built anew (so its caches start empty) before each run; building is not
timed. Methods are interleaved within each repeat so that machine noise hits them alike.

Run: ``OMP_NUM_THREADS=1 python benchmarks/text_rewards.py`` (see ``--help``). Results go to
``benchmarks/results/text_rewards.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sacrebleu
from grpo_text import cpu_model
from rich.console import Console
from rich.table import Table
from sacrebleu.metrics import BLEU, CHRF

import rewardkit
from rewardkit import Group

SEED = 1234
TARGET = 3.0  # wanted speedup of rewardkit over the reused-object loop, with repeats
METRICS = ("bleu", "chrf")
METHODS = ("rewardkit", "sentence_fn", "reused_obj")
# --- Synthetic data -----------------------------------------------------------------------------

ENGLISH_TEXT = """the of and to a in is it that was for on are with as he she they we you this be at
by from have not but had his her their one all were when there can an which what said each will
about how up out them then many some so these would other into has more two time very after
first new work way years people day city house street children water school family country world
night morning government company question problem village river garden window train station
doctor teacher student weather music language market money history system story book letter
report meeting week month today yesterday tomorrow always never often again still already
quickly slowly together small large old young good great little long important different
beautiful difficult happy early late open close walk speak read write travel build carry find
think believe remember understand explain decide arrive leave begin finish"""

GERMAN_TEXT = """der die das und zu den in von nicht mit ist sich des ein eine auf dem es für im
auch als an er sie wir ihr nach wird bei einer um am sind noch wie einem über so zum war haben
nur oder aber vor zur bis mehr durch man dann soll wenn schon heute gestern morgen immer
wieder sehr viel ganz Haus Straße Stadt Kinder Wasser Schule Familie Land Welt Nacht Zeit
Regierung Frage Dorf Fluss Garten Fenster Zug Bahnhof Arzt Lehrerin Wetter Sprache Markt Geld
Geschichte Buch Brief Bericht Woche Monat Mädchen Junge Großmutter Bäcker Bücher Äpfel Brücke
schnell langsam zusammen klein groß alt jung gut schön schwierig glücklich früh spät offen
gehen sprechen lesen schreiben reisen bauen tragen finden denken glauben erinnern verstehen
erklären entscheiden ankommen beginnen fährt öffnete gesprochen getroffen geregnet"""

GERMAN_PARTS_TEXT = """Haus Tür Stadt Rat Bahn Hof Kinder Garten Wasser Flasche Schul Weg Land
Wirtschaft Fenster Rahmen Markt Platz Zeit Schrift Arbeit Geber Straßen Bau Wetter Bericht
Sprach Kurs Brief Träger Fahr Rad Kranken Pflege Bücher Regal Welt Meister"""

NUMBERS = ["3", "12", "2024", "3,5", "1.000", "10-15", "7:45", "100", "42"]


def _vocabulary(rng: random.Random) -> dict[str, tuple[list[str], list[float]]]:
    """Per language, its words (roughly most frequent first; German ends with compounds) and
    Zipf-like sampling weights by rank."""
    parts = GERMAN_PARTS_TEXT.split()
    compounds = sorted({a + b.lower() for a in parts for b in parts if a != b})
    vocab = {"en": ENGLISH_TEXT.split(), "de": GERMAN_TEXT.split() + rng.sample(compounds, 600)}
    return {
        lang: (words, [1.0 / (rank + 2.7) for rank in range(len(words))])
        for lang, words in vocab.items()
    }


def _sentence(rng: random.Random, words: list[str], weights: list[float]) -> list[str]:
    tokens = rng.choices(words, weights, k=rng.randint(16, 22))
    if rng.random() < 0.25:
        tokens.insert(rng.randrange(1, len(tokens)), rng.choice(NUMBERS))
    if rng.random() < 0.5:  # a comma after a word
        i = rng.randrange(3, len(tokens) - 2)
        tokens[i] += ","
    tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    tokens[-1] += rng.choice(".....?!")
    return tokens


def _variant(rng: random.Random, ref: list[str], words: list[str], weights: list[float]) -> str:
    """A noisy copy of the reference: substitutions, deletions, insertions, a swap, a case or
    punctuation slip, at a strength drawn per completion so scores spread over [0, 1]."""
    strength = rng.choice((0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0))
    if strength == 1.0:  # an unrelated sentence in the same language
        return " ".join(_sentence(rng, words, weights))
    out: list[str] = []
    for token in ref:
        roll = rng.random()
        if roll < strength * 0.5:
            out.append(rng.choices(words, weights)[0])
        elif roll < strength * 0.7:
            continue
        else:
            out.append(token)
        if rng.random() < strength * 0.2:
            out.append(rng.choices(words, weights)[0])
    if len(out) > 3 and rng.random() < strength:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    if out and rng.random() < 0.1:
        out[0] = out[0].lower()
    if out and rng.random() < 0.1:
        out[-1] = out[-1].rstrip(".?!")
    return " ".join(out)


def make_steps(prompts: int, group_size: int, seed: int = SEED) -> dict[str, list[Group]]:
    """Two steps on the same references: ``repeats`` (a quarter of each group's completions are
    copies of other completions of the group) and ``unique`` (all completions distinct)."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    n_copies = group_size // 4
    repeats, unique = [], []
    for p in range(prompts):
        lang = "de" if p % 2 else "en"
        words, weights = vocab[lang]
        ref = _sentence(rng, words, weights)
        completions: list[str] = []
        while len(completions) < group_size:
            candidate = _variant(rng, ref, words, weights)
            if candidate not in completions:
                completions.append(candidate)
        reference = " ".join(ref)
        unique.append(Group([reference], completions))
        # Replace the last n_copies completions by copies of the others, then shuffle.
        kept = completions[: group_size - n_copies]
        with_copies = kept + [rng.choice(kept) for _ in range(n_copies)]
        rng.shuffle(with_copies)
        repeats.append(Group([reference], with_copies))
    return {"repeats": repeats, "unique": unique}


# --- Scoring ------------------------------------------------------------------------------------


def _clear_sacrebleu_caches() -> None:
    """Empty the tokenizers' lru caches so every run tokenises its step from scratch."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

    Tokenizer13a.__call__.cache_clear()
    TokenizerRegexp.__call__.cache_clear()


def _runners(metric: str, registry: rewardkit.Registry) -> dict[str, Callable[[], Callable]]:
    """For each method, a factory (untimed) returning the timed function step -> scores.

    Scores come back as a flat list in [0, 1] (sacrebleu's are divided by 100 after timing).
    """
    sentence_fn = sacrebleu.sentence_bleu if metric == "bleu" else sacrebleu.sentence_chrf

    def make_rewardkit():
        reward = registry.build_reward(metric)
        return lambda step: [s for row in reward(step).scores for s in row]

    def make_sentence_fn():
        return lambda step: [
            sentence_fn(h, [g.references[0]]).score for g in step for h in g.completions
        ]

    def make_reused_obj():
        scorer = BLEU(effective_order=True) if metric == "bleu" else CHRF()
        return lambda step: [
            scorer.sentence_score(h, [g.references[0]]).score for g in step for h in g.completions
        ]

    return {
        "rewardkit": make_rewardkit,
        "sentence_fn": make_sentence_fn,
        "reused_obj": make_reused_obj,
    }


def time_step(
    step: list[Group], metric: str, registry: rewardkit.Registry, repeats: int
) -> dict[str, list[float]]:
    """Time each method ``repeats`` times, interleaved, checking every run's scores."""
    runners = _runners(metric, registry)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for rep in range(repeats):
        order = METHODS[rep % 3 :] + METHODS[: rep % 3]  # rotate who goes first
        scores = {}
        for method in order:
            run = runners[method]()
            _clear_sacrebleu_caches()
            gc.collect()
            start = time.perf_counter()
            result = run(step)
            times[method].append(time.perf_counter() - start)
            scores[method] = result
        check_identical(step, metric, scores)
    return times


def check_identical(step: list[Group], metric: str, scores: dict[str, list[float]]) -> None:
    """Exit with status 1 unless rewardkit == sacrebleu / 100 exactly for every completion."""
    expected = [s / 100.0 for s in scores["reused_obj"]]
    by_fn = [s / 100.0 for s in scores["sentence_fn"]]
    got = scores["rewardkit"]
    pairs = [(g, h) for g in step for h in g.completions]
    bad = [i for i, (a, b, c) in enumerate(zip(got, expected, by_fn)) if not a == b == c]
    if len(got) != len(pairs) or bad:
        for i in bad[:5]:
            group, hyp = pairs[i]
            print(
                f"MISMATCH {metric}: rewardkit {got[i]!r} sacrebleu/100 {expected[i]!r} "
                f"sentence_{metric}/100 {by_fn[i]!r}\n  hyp {hyp!r}\n  ref {group.references[0]!r}",
                file=sys.stderr,
            )
        sys.exit(f"FAILED: {len(bad)} of {len(pairs)} {metric} scores differ from sacrebleu")


# --- Report -------------------------------------------------------------------------------------


def step_stats(step: list[Group], registry: rewardkit.Registry) -> dict[str, float]:
    """Shape of the step: completion lengths, unique share and how the scores spread."""
    completions = [h for g in step for h in g.completions]
    bleu = registry.build_reward("bleu")
    out = bleu(step)
    flat = [s for row in out.scores for s in row]
    tokens = [len(bleu.metric._preprocess_segment(h).split()) for h in completions]
    return {
        "completions": len(completions),
        "mean_completion_tokens": round(statistics.fmean(tokens), 2),
        "unique_fraction": out.diagnostics["unique_fraction"],
        "bleu_mean": round(statistics.fmean(flat), 4),
        "bleu_share_zero": round(sum(s == 0 for s in flat) / len(flat), 4),
        # identical texts score 1.0000000000000004 in sacrebleu, hence the tolerance
        "bleu_share_one": round(sum(s >= 1 - 1e-9 for s in flat) / len(flat), 4),
    }


def summarise(times: dict[str, list[float]], n: int) -> dict[str, dict[str, float]]:
    out = {}
    for method, values in times.items():
        best, median = min(values), statistics.median(values)
        out[method] = {
            "best_s": best,
            "median_s": median,
            "completions_per_s": n / best,
            "all_s": values,
        }
    rk = out["rewardkit"]
    for base in ("sentence_fn", "reused_obj"):
        out["rewardkit"][f"speedup_vs_{base}_best"] = out[base]["best_s"] / rk["best_s"]
        out["rewardkit"][f"speedup_vs_{base}_median"] = out[base]["median_s"] / rk["median_s"]
    return out


HEADERS = [
    "step",
    "metric",
    "rewardkit s",
    "sentence_* loop s",
    "reused-object loop s",
    "vs sentence_*",
    "vs reused object",
    "rewardkit completions/s",
]


def table_rows(results: dict) -> list[list[str]]:
    """One row per (step, metric): best (median) seconds of each method and rewardkit's
    speedups over the two loops, best over best (median over median)."""
    rows = []
    for variant, per_metric in results.items():
        for metric, t in per_metric.items():
            rk = t["rewardkit"]
            rows.append(
                [
                    variant,
                    metric,
                    *(f"{t[m]['best_s']:.3f} ({t[m]['median_s']:.3f})" for m in METHODS),
                    *(
                        f"{rk[f'speedup_vs_{m}_best']:.2f}x ({rk[f'speedup_vs_{m}_median']:.2f}x)"
                        for m in METHODS[1:]
                    ),
                    f"{rk['completions_per_s']:,.0f}",
                ]
            )
    return rows


def render(rows: list[list[str]], console: Console) -> None:
    table = Table(title="rewardkit bleu / chrf vs sacrebleu loops: best (median) of the runs")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown(rows: list[list[str]], report: dict) -> str:
    s, m = report["settings"], report["machine"]
    res = report["results"]
    shape = s["steps"]["repeats"]
    lines = [
        "# Text rewards benchmark: rewardkit `bleu` / `chrf` vs sacrebleu loops",
        "",
        f"Run on {report['date']}: `{report['command']}`.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(HEADERS))) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"Seconds for one step of {s['prompts'] * s['group_size']} completions, best of "
        f"{s['repeats']} runs (median in brackets); speedup = loop time / rewardkit time. "
        "`sentence_*` loop: `sacrebleu.sentence_bleu(h, [r])` / `sacrebleu.sentence_chrf(h, [r])` "
        "per completion; reused-object loop: one `BLEU(effective_order=True)` / `CHRF()` and its "
        "`.sentence_score(h, [r])` per completion; rewardkit: "
        '`load_registry(entry_points=False).build_reward("bleu")` (or `"chrf"`) called once on '
        "the step. "
        "Every run's scores were checked identical: rewardkit score == sacrebleu score / 100, "
        "with `==`, for every completion.",
        "",
    ]
    for metric in METRICS:
        with_repeats = res["repeats"][metric]["rewardkit"]["speedup_vs_reused_obj_best"]
        unique = res["unique"][metric]["rewardkit"]["speedup_vs_reused_obj_best"]
        verdict = "met" if with_repeats >= TARGET else "NOT met"
        lines.append(
            f"- {metric}: {with_repeats:.2f}x over the reused-object loop with repeats "
            f"(target {TARGET:.0f}x: {verdict}), {unique:.2f}x with every completion distinct"
        )
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores visible; {m['platform']}",
        f"- Python {m['python']}, sacrebleu {m['sacrebleu']}, rewardkit {m['rewardkit']}",
        f"- OMP_NUM_THREADS={m['omp_num_threads']}; load average (1, 5, 15 min) at start "
        f"{m['loadavg_start']}, at end {m['loadavg_end']}",
        "",
        "## Settings",
        "",
        f"- one step: {s['prompts']} prompts x G={s['group_size']} completions, one reference "
        f"per prompt, German and English sentences from a fixed vocabulary (seed {s['seed']}); "
        f"completions are noisy variants of the reference, {shape['mean_completion_tokens']} "
        f"13a tokens on average; BLEU mean {shape['bleu_mean']}, "
        f"{shape['bleu_share_zero']:.1%} of completions at 0, {shape['bleu_share_one']:.1%} at 1",
        f"- `repeats`: a quarter of each group's completions are copies of others (unique "
        f"fraction {shape['unique_fraction']:.2f}); `unique`: the same references, every "
        "completion distinct",
        f"- {s['repeats']} timed runs per method ({s['timer']}), methods interleaved; before "
        "each run sacrebleu's tokenizer caches are emptied and the rewardkit reward is built "
        "anew (untimed), so each run scores the step as a fresh training step",
        "",
        "## Rerun",
        "",
        "```",
        "OMP_NUM_THREADS=1 python benchmarks/text_rewards.py "
        "[--prompts 512] [--group-size 8] [--repeats 5] [--output-dir benchmarks/results]",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=512, help="groups per step (512)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per group (8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (5)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"data seed ({SEED})")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where text_rewards.json and text_rewards.md go (benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.group_size < 1 or args.repeats < 1:
        parser.error("--prompts, --group-size and --repeats must be positive")

    console = Console(width=max(Console().width, 150))
    if os.environ.get("OMP_NUM_THREADS") != "1":
        console.print("[yellow]note: run with OMP_NUM_THREADS=1 for comparable timings[/yellow]")
    loadavg_start = os.getloadavg()
    registry = rewardkit.load_registry(entry_points=False)
    steps = make_steps(args.prompts, args.group_size, args.seed)
    n = args.prompts * args.group_size
    results: dict[str, dict] = {}
    for variant, step in steps.items():
        results[variant] = {}
        for metric in METRICS:
            console.print(f"timing {metric} on the '{variant}' step ({n} completions) ...")
            times = time_step(step, metric, registry, args.repeats)
            results[variant][metric] = summarise(times, n)
    console.print(f"[green]all {n} scores identical to sacrebleu in every run[/green]")

    report = {
        "benchmark": "text_rewards",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ([f"OMP_NUM_THREADS={omp}"] if (omp := os.environ.get("OMP_NUM_THREADS")) else [])
            + ["python", "benchmarks/text_rewards.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "sacrebleu": sacrebleu.__version__,
            "rewardkit": rewardkit.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_start": [round(x, 2) for x in loadavg_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "prompts": args.prompts,
            "group_size": args.group_size,
            "repeats": args.repeats,
            "seed": args.seed,
            "timer": "time.perf_counter",
            "steps": {v: step_stats(s, registry) for v, s in steps.items()},
            "methods": {
                "rewardkit": "load_registry(entry_points=False).build_reward(metric)(groups)",
                "sentence_fn": "[sacrebleu.sentence_bleu|sentence_chrf(h, [r]) for each h]",
                "reused_obj": "[BLEU(effective_order=True)|CHRF() .sentence_score(h, [r]) ...]",
            },
            "target_speedup_vs_reused_obj": TARGET,
        },
        "results": results,
    }
    rows = table_rows(results)
    render(rows, console)
    for metric in METRICS:
        ratio = results["repeats"][metric]["rewardkit"]["speedup_vs_reused_obj_best"]
        style = "green" if ratio >= TARGET else "red"
        console.print(
            f"[{style}]{metric}: {ratio:.2f}x over the reused-object loop with repeats "
            f"(target {TARGET:.0f}x)[/{style}]"
        )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "text_rewards.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output_dir / "text_rewards.md").write_text(markdown(rows, report))
    console.print(f"wrote {args.output_dir / 'text_rewards.json'} and text_rewards.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
