"""Benchmark: the README's training demo (and its eval example) under three thread setups.

Each setting runs the same two commands in a fresh subprocess, one after the other:

    rewardkit [--threads N] train --model tiny-voxtral --lora-r 8 --task speech_translation \
      --data-size 100 --steps 6 --batch-size 2 --group-size 4 --max-new-tokens 12 \
      --eval-interval 3 --reward bleu=0.5,chrf=0.5 --output-dir DIR
    rewardkit [--threads N] eval --model DIR --split test --runs 3

Settings: ``default`` (no OMP_NUM_THREADS, no --threads: what a new user gets; rewardkit
now picks one thread), ``omp1`` (``OMP_NUM_THREADS=1``, what the README used to prefix) and
``cores`` (``--threads <usable cores>``: torch's own default, what a run without the variable
got before rewardkit chose). Rounds alternate the order of the settings. The data set is built
once beforehand in a temporary cache (not timed). Wall time per command, the settings' medians,
and the load average before and after each command are recorded: the machine may be shared.

Run: ``python benchmarks/threads.py [--rounds N] [--timeout S]`` (it removes OMP_NUM_THREADS
from the subprocesses' environment). Results go to
``benchmarks/results/threads.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRAIN = [
    *("train", "--model", "tiny-voxtral", "--lora-r", "8", "--task", "speech_translation"),
    *("--data-size", "100", "--steps", "6", "--batch-size", "2", "--group-size", "4"),
    *("--max-new-tokens", "12", "--eval-interval", "3", "--reward", "bleu=0.5,chrf=0.5"),
    *("--no-progress", "--output-dir", "{run}"),
]
EVAL = ["eval", "--model", "{run}", "--split", "test", "--runs", "3", "--no-progress"]
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
SETTINGS = {
    "default": ([], {}),
    "omp1": ([], {"OMP_NUM_THREADS": "1"}),
    "cores": (["--threads", str(CORES)], {}),
}


def run(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One rewardkit command in a subprocess: wall seconds, exit code, load before and after."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rewardkit", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:  # stopped: the time is a lower bound
        code, err = None, f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    if code != 0:
        print(err[-2000:], file=sys.stderr)
    return {
        "seconds": round(seconds, 2),
        "exit_code": code,
        "timed_out": code is None,
        "thread_note": next((line for line in err.splitlines() if "CPU thread" in line), None),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    results: list[dict[str, Any]] = []
    start_load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        base["REWARDKIT_CACHE"] = str(Path(tmp) / "cache")
        data = subprocess.run(  # build the 100-item set once, not timed
            [sys.executable, "-m", "rewardkit", "data", "make", "--size", "100", "--task", "st"],
            env=base,
            capture_output=True,
            text=True,
        )
        data.check_returncode()
        for round_ in range(args.rounds):
            order = list(SETTINGS) if round_ % 2 == 0 else list(reversed(SETTINGS))
            for name in order:
                flags, extra = SETTINGS[name]
                env = {**base, **extra}
                folder = Path(tmp) / f"{name}-{round_}"
                train = [*flags, *(a.format(run=folder) for a in TRAIN)]
                evaluate = [*flags, *(a.format(run=folder) for a in EVAL)]
                for command, argv in (("train", train), ("eval", evaluate)):
                    row = {"setting": name, "round": round_, "command": command}
                    row.update(run(argv, env, args.timeout))
                    print(json.dumps(row), flush=True)
                    results.append(row)
    end_load = os.getloadavg()

    summary = {}
    for name in SETTINGS:
        for command in ("train", "eval"):
            times = [
                r["seconds"]
                for r in results
                if (r["setting"], r["command"], r["exit_code"]) == (name, command, 0)
            ]
            summary[f"{name}/{command}"] = statistics.median(times) if times else None
    machine = {
        "cpu": _cpu_name(),
        "usable_cores": CORES,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in start_load],
        "load_average_end": [round(x, 2) for x in end_load],
    }
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/threads.py " + " ".join(sys.argv[1:]),
        "train": " ".join(TRAIN),
        "eval": " ".join(EVAL),
        "settings": {k: {"flags": v[0], "env": v[1]} for k, v in SETTINGS.items()},
        "machine": machine,
        "runs": results,
        "median_seconds": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "threads.md").write_text(_markdown(out))
    print(_markdown(out))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _markdown(out: dict[str, Any]) -> str:
    med = out["median_seconds"]
    labels = {
        "default": "nothing set (rewardkit picks 1 thread)",
        "omp1": "`OMP_NUM_THREADS=1`",
        "cores": f"`--threads {out['machine']['usable_cores']}` (torch's own default)",
    }

    def cell(key: str) -> str:
        if med[key] is not None:
            return f"{med[key]:.1f}"
        name, command = key.split("/")
        stopped = [
            r["seconds"]
            for r in out["runs"]
            if (r["setting"], r["command"]) == (name, command) and r["timed_out"]
        ]
        return f"> {min(stopped):.0f} (stopped)" if stopped else "failed"

    lines = [
        "# The README's training demo under three thread setups",
        "",
        f"Run on {out['date']}: `{out['command']}`.",
        "",
        "| setting | train demo, s | eval example, s |",
        "|---|---:|---:|",
    ]
    for name in SETTINGS:
        lines.append(f"| {labels[name]} | {cell(name + '/train')} | {cell(name + '/eval')} |")
    lines += [
        "",
        "Median wall seconds per command (each a fresh process, data built beforehand).",
        "",
        "| round | setting | command | s | load before (1, 5, 15 min) | load after |",
        "|---|---|---|---:|---|---|",
    ]
    for r in out["runs"]:
        seconds = f"{r['seconds']:.1f}"
        if r["exit_code"] != 0:
            seconds += " (stopped)" if r["timed_out"] else " (failed)"
        lines.append(
            f"| {r['round']} | {r['setting']} | {r['command']} | {seconds} | "
            f"{r['load_before']} | {r['load_after']} |"
        )
    m = out["machine"]
    lines += [
        "",
        "## Commands and machine",
        "",
        f"- train: `rewardkit {out['train']}`",
        f"- eval: `rewardkit {out['eval']}`",
        f"- CPU: {m['cpu']}, {m['usable_cores']} usable cores; {m['platform']}; "
        f"Python {m['python']}",
        f"- load average (1, 5, 15 min) at start {m['load_average_start']}, at end "
        f"{m['load_average_end']}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
