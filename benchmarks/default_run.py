"""The default run, measured: three GRPO seeds, the SFT control, and their evaluation.

Runs (``--run EXP_DIR``) what the README's "The default run" (``--task speech_translation``,
the default) or "Spoken QA out of the box" (``--task spoken_qa``) reports, each piece skipped
when it is complete and resumed when it was interrupted, so the script can be stopped and
started again:

* ``grpo-seed{0,1,2}``: ``rewardkit train [--task spoken_qa] --seed N`` (seed 0 is the main
  job as a user runs it);
* ``sft-seed0`` (translation), ``sft-seed{0,1,2}`` (spoken QA): the same with ``--algo sft``
  (same data order, steps, lr and schedule);
* ``eval/{start,grpo-seed*,sft-seed*}-{dev,test}-{greedy,sampled}``: ``rewardkit eval`` of the
  task's warm start and of each run's best checkpoint (by greedy dev BLEU), greedy and sampled
  (T 0.9, top-p 0.9, 3 runs: mean ± std), 40 new tokens as in training.

``--collect EXP_DIR`` copies each run's config and validation metrics and each evaluation's
``results.json`` into ``benchmarks/results/default_run/`` (``spoken_qa/``); ``--render`` prints
the README's tables from those files (a test checks the README holds them), so no number is
typed by hand. About 15 minutes per task on the 2-core build machine, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SEEDS = (0, 1, 2)
SPLITS, MODES = ("dev", "test"), ("greedy", "sampled")
SAMPLED_RUNS = 3


@dataclass(frozen=True)
class Study:
    task: str
    results: Path
    start: str  # the bundled warm start `rewardkit train --task TASK` starts from
    sft_seeds: tuple[int, ...]

    @property
    def runs(self) -> list[str]:
        return [f"grpo-seed{s}" for s in SEEDS] + [f"sft-seed{s}" for s in self.sft_seeds]

    @property
    def evals(self) -> list[str]:
        models = ["start", *self.runs]
        return [f"{m}-{split}-{mode}" for m in models for split in SPLITS for mode in MODES]


HERE = Path(__file__).parent / "results"
STUDIES = {
    "speech_translation": Study(
        "speech_translation", HERE / "default_run", "small-voxtral-st", (0,)
    ),
    "spoken_qa": Study("spoken_qa", HERE / "spoken_qa", "small-voxtral-qa", SEEDS),
}


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


def run_all(study: Study, exp: Path) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    task = [] if study.task == "speech_translation" else ["--task", study.task]
    for name in study.runs:
        out = exp / name
        status = _status(out)
        if status == "completed":
            continue
        seed = name.rsplit("seed", 1)[1]
        if status is not None and any((out / "checkpoints").glob("step-*")):
            args = ["train", "--resume", str(out)]
        else:
            args = ["train", *task, "--seed", seed, "--output-dir", str(out)]
            if name.startswith("sft"):
                args += ["--algo", "sft"]
        print(f"{name}: rewardkit {' '.join(args)}", file=sys.stderr)
        _rewardkit(*args, log=exp / f"{name}.log")
    for name in study.evals:
        out = exp / "eval" / name
        if (out / "results.json").is_file():
            continue
        model, split, mode = name.rsplit("-", 2)
        source = study.start if model == "start" else str(exp / model)
        args = ["eval", "--model", source, *task, "--split", split, "--max-new-tokens", "40"]
        args += ["--greedy"] if mode == "greedy" else ["--runs", str(SAMPLED_RUNS)]
        out.parent.mkdir(exist_ok=True)
        print(f"{name}: rewardkit {' '.join(args)}", file=sys.stderr)
        _rewardkit(*args, "-o", str(out), log=exp / "eval" / f"{name}.log")


def collect(study: Study, exp: Path) -> None:
    results = study.results
    results.mkdir(parents=True, exist_ok=True)
    for name in study.runs:
        (results / f"{name}-config.json").write_text((exp / name / "config.json").read_text())
        lines = (exp / name / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        train = [r for r in rows if r.get("split") == "train"]
        summary: dict = {"validation": [r for r in rows if r.get("split") == "validation"]}
        if name.startswith("grpo"):
            lengths = [r["completion_length_mean"] for r in train]
            summary["completion_length_first20"] = sum(lengths[:20]) / 20
            summary["completion_length_last20"] = sum(lengths[-20:]) / 20
        (results / f"{name}-metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name in study.evals:
        data = json.loads((exp / "eval" / name / "results.json").read_text())
        (results / f"eval-{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def _labels(study: Study) -> dict[str, str]:
    labels = {f"grpo-seed{s}": f"GRPO, seed {s}" for s in SEEDS}
    main = "the default run" if study.task == "speech_translation" else f"`--task {study.task}`"
    labels["grpo-seed0"] += f" ({main})"
    labels.update({f"sft-seed{s}": f"SFT, seed {s}" for s in study.sft_seeds})
    first = f"sft-seed{study.sft_seeds[0]}"
    seed = f", seed {study.sft_seeds[0]}" if len(study.sft_seeds) > 1 else ""
    labels[first] = f"SFT on the references (`--algo sft`){seed}"
    return labels


def render(study: Study) -> dict[str, str]:
    """The README's tables: ``bleu`` and ``reward`` (dev curves), ``eval`` (dev and test)."""

    def validation(name: str) -> list[dict]:
        return json.loads((study.results / f"{name}-metrics.json").read_text())["validation"]

    def evaluation(name: str) -> dict:
        return json.loads((study.results / f"eval-{name}.json").read_text())

    labels = _labels(study)
    steps = [r["step"] for r in validation("grpo-seed0")]
    half = [s for s in steps if s >= steps[-1] // 2]
    tables = {}
    curves = (
        ("bleu", "dev corpus BLEU, greedy", 1),
        ("reward", "dev mean sentence BLEU x 100, the reward, greedy", 100),
    )
    for key, title, scale in curves:
        head = " | ".join(map(str, steps))
        lines = [
            f"| step ({title}) | {head} | mean of {half[0]}-{half[-1]} |",
            "|---|" + "---|" * (len(steps) + 1),
        ]
        for name in study.runs:
            value = {r["step"]: r[key if key == "bleu" else "reward_mean"] * scale
                     for r in validation(name)}  # fmt: skip
            mean = sum(value[s] for s in half) / len(half)
            cells = " | ".join(f"{value[s]:.2f}" for s in steps)
            lines.append(f"| {labels[name]} | {cells} | {mean:.2f} |")
        tables[key] = "\n".join(lines) + "\n"
    columns = ["dev greedy", "dev sampled", "test greedy", "test sampled", "test sampled chrF"]
    lines = [
        "| model | best step | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for model in ["start", *study.runs]:
        cells = []
        for split in SPLITS:
            for mode in MODES:
                bleu = evaluation(f"{model}-{split}-{mode}")["metrics"]["BLEU"]
                spread = "" if mode == "greedy" else f" ± {bleu['std']:.2f}"
                cells.append(f"{bleu['mean']:.2f}{spread}")
        chrf = evaluation(f"{model}-test-sampled")["metrics"]["chrF"]
        cells.append(f"{chrf['mean']:.2f} ± {chrf['std']:.2f}")
        if model == "start":
            label, step = f"warm start `{study.start}`", "-"
        else:
            label = labels[model].split(" (")[0]
            checkpoint = evaluation(f"{model}-dev-greedy")["settings"]["checkpoint"]
            step = str(int(Path(checkpoint).name.split("-")[-1]))
        lines.append(f"| {label} | {step} | " + " | ".join(cells) + " |")
    tables["eval"] = "\n".join(lines) + "\n"
    return tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(STUDIES), default="speech_translation")
    parser.add_argument("--run", type=Path, metavar="EXP_DIR")
    parser.add_argument("--collect", type=Path, metavar="EXP_DIR")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    study = STUDIES[args.task]
    if args.run:
        run_all(study, args.run)
    if args.collect:
        collect(study, args.collect)
    if args.render:
        text = "\n".join(render(study).values())
        (study.results / "table.md").write_text(text)
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
