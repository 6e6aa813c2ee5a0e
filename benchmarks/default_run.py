"""The default run, measured: three GRPO seeds, the SFT control, and their evaluation.

Runs (``--run EXP_DIR``) what the README's "The default run" reports, each piece skipped when it
is complete and resumed when it was interrupted, so the script can be stopped and started again:

* ``grpo-seed{0,1,2}``: ``rewardkit train --seed N`` (the default run is seed 0);
* ``sft-seed0``: the same with ``--algo sft`` (same data order, steps, lr and schedule);
* ``eval/{start,grpo-seed*,sft-seed0}-{dev,test}-{greedy,sampled}``: ``rewardkit eval`` of the
  warm start ``small-voxtral-st`` and of each run's best checkpoint (by greedy dev BLEU), greedy
  and sampled (T 0.9, top-p 0.9, 3 runs: mean ± std), 40 new tokens as in training.

``--collect EXP_DIR`` copies each run's config and validation metrics and each evaluation's
``results.json`` into ``benchmarks/results/default_run/``; ``--render`` prints the README's two
tables from those files (a test checks the README holds them), so no number is typed by hand.
About 15 minutes on the 2-core build machine with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "default_run"
SEEDS = (0, 1, 2)
RUNS = [f"grpo-seed{s}" for s in SEEDS] + ["sft-seed0"]
MODELS = ["start", *RUNS]
SPLITS, MODES = ("dev", "test"), ("greedy", "sampled")
EVALS = [f"{m}-{split}-{mode}" for m in MODELS for split in SPLITS for mode in MODES]
SAMPLED_RUNS = 3


def _rewardkit(*args: str, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("w") as out:
        command = ["rewardkit", *args, "--no-progress"]
        subprocess.run(command, check=True, stdout=out, stderr=out, env=env)


def _status(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def run_all(exp: Path) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        out = exp / name
        status = _status(out)
        if status == "completed":
            continue
        seed = name.rsplit("seed", 1)[1]
        if status is not None and any((out / "checkpoints").glob("step-*")):
            args = ["train", "--resume", str(out)]
        else:
            args = ["train", "--seed", seed, "--output-dir", str(out)]
            if name.startswith("sft"):
                args += ["--algo", "sft"]
        print(f"{name}: rewardkit {' '.join(args)}", file=sys.stderr)
        _rewardkit(*args, log=exp / f"{name}.log")
    for name in EVALS:
        out = exp / "eval" / name
        if (out / "results.json").is_file():
            continue
        model, split, mode = name.rsplit("-", 2)
        source = "small-voxtral-st" if model == "start" else str(exp / model)
        args = ["eval", "--model", source, "--split", split, "--max-new-tokens", "40"]
        args += ["--greedy"] if mode == "greedy" else ["--runs", str(SAMPLED_RUNS)]
        out.parent.mkdir(exist_ok=True)
        print(f"{name}: rewardkit {' '.join(args)}", file=sys.stderr)
        _rewardkit(*args, "-o", str(out), log=exp / "eval" / f"{name}.log")


def collect(exp: Path) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        (RESULTS / f"{name}-config.json").write_text((exp / name / "config.json").read_text())
        lines = (exp / name / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        train = [r for r in rows if r.get("split") == "train"]
        keep = [r for r in rows if r.get("split") == "validation"]
        summary: dict = {"validation": keep}
        if name.startswith("grpo"):
            lengths = [r["completion_length_mean"] for r in train]
            summary["completion_length_first20"] = sum(lengths[:20]) / 20
            summary["completion_length_last20"] = sum(lengths[-20:]) / 20
        (RESULTS / f"{name}-metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name in EVALS:
        results = json.loads((exp / "eval" / name / "results.json").read_text())
        (RESULTS / f"eval-{name}.json").write_text(json.dumps(results, indent=1) + "\n")


def _validation(name: str) -> list[dict]:
    return json.loads((RESULTS / f"{name}-metrics.json").read_text())["validation"]


def render() -> str:
    grpo = [f"grpo-seed{s}" for s in SEEDS]
    steps = [r["step"] for r in _validation(grpo[0])]
    half = [s for s in steps if s >= steps[-1] // 2]
    lines = [
        "| step | " + " | ".join(map(str, steps)) + f" | mean of {half[0]}-{half[-1]} |",
        "|---|" + "---|" * (len(steps) + 1),
    ]
    labels = {f"grpo-seed{s}": f"GRPO, seed {s}" for s in SEEDS}
    labels["grpo-seed0"] += " (the default run)"
    labels["sft-seed0"] = "SFT on the references (`--algo sft`)"
    for name in RUNS:
        bleu = {r["step"]: r["bleu"] for r in _validation(name)}
        mean = sum(bleu[s] for s in half) / len(half)
        mark = "**" if name == "grpo-seed0" else ""
        cells = " | ".join(f"{bleu[s]:.2f}" for s in steps)
        lines.append(f"| {labels[name]} | {cells} | {mark}{mean:.2f}{mark} |")
    table2 = [
        "",
        "Corpus BLEU of the warm start and of each run's best checkpoint (by greedy dev BLEU),",
        f"greedy and sampled (T 0.9, top-p 0.9, {SAMPLED_RUNS} runs: mean ± std), 40 new tokens "
        "(`rewardkit eval`):",
        "",
        "| model | best step | dev greedy | dev sampled | test greedy | test sampled |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in MODELS:
        cells = []
        for split in SPLITS:
            for mode in MODES:
                bleu = json.loads((RESULTS / f"eval-{model}-{split}-{mode}.json").read_text())
                bleu = bleu["metrics"]["BLEU"]
                spread = "" if mode == "greedy" else f" ± {bleu['std']:.2f}"
                cells.append(f"{bleu['mean']:.2f}{spread}")
        if model == "start":
            label, step = "warm start `small-voxtral-st`", "-"
        else:
            label = labels[model].split(" (")[0]
            checkpoint = json.loads((RESULTS / f"eval-{model}-dev-greedy.json").read_text())
            step = str(int(Path(checkpoint["settings"]["checkpoint"]).name.split("-")[-1]))
        table2.append(f"| {label} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines + table2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, metavar="EXP_DIR")
    parser.add_argument("--collect", type=Path, metavar="EXP_DIR")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.run:
        run_all(args.run)
    if args.collect:
        collect(args.collect)
    if args.render:
        text = render()
        (RESULTS / "table.md").write_text(text)
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
