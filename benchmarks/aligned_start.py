"""The aligned start: dev scores of the assembled model before and after the ASR stage.

Collects what the README's recipe ("From `model assemble` to a GRPO run") produced into
``benchmarks/results/aligned_start/``: the ``rewardkit eval`` results (``results.json``) of the
assembled model and of the aligned one on the dev split of each task, the alignment run's
config and metrics, and ``benchmarks/listening.py``'s output; then renders the README's table
from those files (``--render``), so no number in it is typed by hand.

Run: ``python benchmarks/aligned_start.py --collect EXP_DIR`` (the folders named below), then
``python benchmarks/aligned_start.py --render``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "aligned_start"
TASKS = ("asr", "spoken_qa", "speech_translation")
METRICS = ("BLEU", "chrF", "ROUGE-L", "METEOR")


def collect(exp: Path) -> None:
    """Copy eval-ws-TASK/results.json, eval-al-TASK/results.json, align/{config.json,
    metrics.jsonl} and listening.json from ``exp``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        for model in ("ws", "al"):
            source = exp / f"eval-{model}-{task}" / "results.json"
            shutil.copy(source, RESULTS / f"eval-{model}-{task}.json")
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(exp / "align" / name, RESULTS / f"align-{name}")
    shutil.copy(exp / "listening.json", RESULTS / "listening.json")


def render() -> str:
    def scores(model: str, task: str) -> dict[str, float]:
        data = json.loads((RESULTS / f"eval-{model}-{task}.json").read_text())
        return {m: data["metrics"][m]["mean"] for m in METRICS}

    settings = json.loads((RESULTS / "eval-al-asr.json").read_text())["settings"]
    lines = [
        f"Dev split, first {settings['limit']} items, greedy, {settings['max_new_tokens']} new "
        "tokens (`rewardkit eval`):",
        "",
        "| task | model | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---:|" * len(METRICS),
    ]
    for task in TASKS:
        for model, label in (("ws", "assembled"), ("al", "aligned")):
            row = scores(model, task)
            lines.append(
                f"| {task} | {label} | " + " | ".join(f"{row[m]:.2f}" for m in METRICS) + " |"
            )
    listening = json.loads((RESULTS / "listening.json").read_text())
    lines += [
        "",
        f"Transcript NLL per token, {listening[0]['utterances']} dev utterances, with each "
        "utterance's own audio vs the next one's (`benchmarks/listening.py`):",
        "",
        "| model | own audio | other audio | gap |",
        "|---|---:|---:|---:|",
    ]
    for row in listening:
        name = Path(row["checkpoint"]).name if row["checkpoint"] else "assembled"
        lines.append(
            f"| {name} | {row['nll_own_audio']:.3f} | {row['nll_other_audio']:.3f} | "
            f"{row['gap']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", type=Path, metavar="EXP_DIR")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.collect:
        collect(args.collect)
    if args.render:
        text = render()
        (RESULTS / "table.md").write_text(text)
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
