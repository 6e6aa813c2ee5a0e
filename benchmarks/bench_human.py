"""Benchmark: how long ``rewardkit bench --human H --data D --sections human`` takes.

A synthetic MQM-like set shaped like a WMT English->German test set: ``--items`` German
references (default 529) translated by ``--systems`` systems (13), so items x systems judgments
(6,877). Each hypothesis is the reference with 0-4 random edits (a word dropped, two words
swapped, a word replaced); its human score is minus an MQM-style penalty (1 per edit, 5 for a
dropped word standing for a major error) with rater noise, and 0 when there is no edit, so that
most judgments are "no error" ties as in real MQM data. A share ``--unrated`` of the scores is
NaN (unrated). Everything derives from ``--seed``.

The command runs as a user runs it, in a subprocess (``python -m rewardkit bench ...``, with
``--bootstrap`` resamples), once per repeat; the wall time includes start-up and report writing.
Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_human.py``. Results go to
``benchmarks/results/bench_human.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "der",
    "die",
    "das",
    "Hund",
    "Katze",
    "Haus",
    "läuft",
    "schnell",
    "langsam",
    "über",
    "unter",
    "grüne",
    "rote",
    "Wiese",
    "Stadt",
    "morgen",
    "heute",
    "Kinder",
    "spielen",
    "Ball",
    "Garten",
    "alten",
    "neuen",
    "Brücke",
    "Fluss",
    "Sonne",
    "scheint",
    "hell",
]


def synthetic(items: int, systems: int, unrated: float, seed: int) -> tuple[list, list]:
    """Data rows (id, reference, lang) and judgment rows (id, system, hypothesis, score)."""
    rng = random.Random(seed)
    data, judgments = [], []
    for i in range(items):
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24)))
        data.append({"id": f"s{i}", "reference": ref, "lang": "de"})
        for s in range(systems):
            words, penalty = ref.split(), 0.0
            for _ in range(rng.choice((0, 0, 0, 1, 2, 4)) if s else 0):
                kind = rng.choice(("drop", "swap", "replace"))
                k = rng.randrange(len(words))
                if kind == "drop" and len(words) > 2:
                    del words[k]
                    penalty += 5
                elif kind == "swap" and k + 1 < len(words):
                    words[k], words[k + 1] = words[k + 1], words[k]
                    penalty += 1
                else:
                    words[k] = rng.choice(WORDS)
                    penalty += 1
            score = -penalty - (rng.choice((0, 0, 1)) if penalty else 0)
            if rng.random() < unrated:
                score = float("nan")
            judgments.append(
                {"id": f"s{i}", "system": f"sys{s}", "hypothesis": " ".join(words), "score": score}
            )
    return data, judgments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=529)
    parser.add_argument("--systems", type=int, default=13)
    parser.add_argument("--unrated", type=float, default=0.01)
    parser.add_argument("--rewards", default="bleu,chrf,ter")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    data, judgments = synthetic(args.items, args.systems, args.unrated, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench_human_"))
    (work / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (work / "human.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments))
    command = [sys.executable, "-m", "rewardkit", "bench", "--data", str(work / "data.jsonl")]
    command += ["--human", str(work / "human.jsonl"), "--sections", "human"]
    command += ["--bootstrap", str(args.bootstrap), "-o", str(work / "report")]
    for spec in args.rewards.split(","):
        command += ["-r", spec]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))

    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        seconds.append(time.perf_counter() - start)
    results = json.loads((work / "report" / "results.json").read_text())
    headline = {
        spec: {
            "acc_eq": h["acc_eq"]["item"]["accuracy"],
            "acc_eq_untied": h["acc_eq"]["item"]["untied"],
            "all_ties": h["acc_eq"]["item"]["all_ties"],
            "tied_share": h["acc_eq"]["item"]["tied_share"],
            "acc_eq_pooled": h["acc_eq"]["none"]["accuracy"],
            "kendall_tau_b": h["kendall_tau_b"]["value"],
            "system_pearson": h["system"]["pearson"]["value"],
            "system_score": h["system"]["score"],
        }
        for spec, h in results["human"].items()
    }
    out = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15": list(os.getloadavg()),
            "OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
        },
        "settings": vars(args) | {"output_dir": str(args.output_dir)},
        "counts": results["human_counts"],
        "command": " ".join(command[1:]).replace(str(work), "WORK"),
        "seconds": seconds,
        "results": headline,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "bench_human.json").write_text(json.dumps(out, indent=2) + "\n")
    counts = out["counts"]
    lines = [
        "# `rewardkit bench --sections human` on a synthetic MQM-like set",
        "",
        f"{out['date']}; {counts['judgments']} judgments ({counts['unrated']} unrated), "
        f"{counts['items']} items x {counts['systems']} systems; rewards {args.rewards}; "
        f"{args.bootstrap} bootstrap resamples; {out['machine']['cpus']} CPUs, "
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, load average at the end "
        f"{', '.join(f'{v:.2f}' for v in out['machine']['load_average_1_5_15'])}.",
        "",
        "Wall time of the whole command (subprocess, start-up and report included): "
        + ", ".join(f"{s:.1f} s" for s in seconds)
        + ".",
        "",
        "| reward | acc_eq | untied | all-ties | tied | pooled | tau_b | system r |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, h in headline.items():
        cells = [h[k] for k in ("acc_eq", "acc_eq_untied", "all_ties", "tied_share")]
        cells += [h[k] for k in ("acc_eq_pooled", "kendall_tau_b", "system_pearson")]
        lines.append(f"| {spec} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    (args.output_dir / "bench_human.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
