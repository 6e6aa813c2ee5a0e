"""The CUDA paths, checked on a machine with a GPU (never in CI): the tiny end-to-end GRPO run
(tiny-voxtral, LoRA r=8; chrF reward, as BLEU is 0 for a random model's outputs) on the ``hf``
backend and on the ``deepspeed`` backend (NCCL, ZeRO-2 and ZeRO-3), in fp32 and bf16, each as
``rewardkit train --device cuda``.

It prints one row per run (exit status, wall time, train reward at the first and last steps,
validation reward, finite losses and gradient norms) and compares the fp32 runs of the two
backends step by step (same seed and data: equal rewards expected, losses and gradient norms
within GPU rounding). Results go to ``benchmarks/results/cuda_check.json`` (or ``--out``).

    python benchmarks/cuda_check.py --data DIR_WITH_speech_translation [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rewardkit.rundir import RunDir

COMMON = [
    "--model=tiny-voxtral", "--lora-r=8", "--task=speech_translation",
    "--steps=12", "--batch-size=4", "--group-size=8", "--max-new-tokens=16", "--eval-interval=4",
    "--eval-examples=16", "--learning-rate=0.01", "--reward=chrf", "--no-progress", "--no-plot",
    "--no-tensorboard", "--sft-warmup-steps=0", "--beta=0.02", "--no-eval-greedy",
    "--eval-metric=reward",
]  # fmt: skip
RUNS = {
    "hf-fp32": ["--backend=hf"],
    "deepspeed-zero3-fp32": ["--backend=deepspeed", "--zero-stage=3"],
    "hf-bf16": ["--backend=hf", "--bf16"],
    "deepspeed-zero2-bf16": ["--backend=deepspeed", "--zero-stage=2", "--bf16"],
    "deepspeed-zero3-bf16": ["--backend=deepspeed", "--zero-stage=3", "--bf16"],
}
PARITY = ("hf-fp32", "deepspeed-zero3-fp32")
KEYS = ("step", "reward_mean", "loss", "kl", "grad_norm")


def run(name: str, data: str, root: Path, device: str) -> dict:
    out = root / name
    cmd = [sys.executable, "-m", "rewardkit", "--debug", "train", f"--device={device}",
           *COMMON, *RUNS[name], "--data", data, "--output-dir", str(out)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    run_dir = RunDir(out)  # no metrics (a failed run): empty lists
    train, val = run_dir.read_metrics("train"), run_dir.read_metrics("validation")
    finite = all(math.isfinite(r.get(k, 0.0)) for r in train for k in ("loss", "grad_norm", "kl"))
    return {
        "name": name,
        "args": RUNS[name],
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "steps": len(train),
        "train_reward_first": train[0]["reward_mean"] if train else None,
        "train_reward_last": train[-1]["reward_mean"] if train else None,
        "validation_reward": [r["reward_mean"] for r in val],
        "finite": finite,
        "train": [{k: r.get(k) for k in KEYS} for r in train],
        "stderr_tail": proc.stderr[-1500:] if proc.returncode else "",
    }


def parity(a: dict, b: dict) -> dict:
    pairs = list(zip(a["train"], b["train"]))

    def rel(x: float, y: float) -> float:
        return abs(x - y) / max(abs(x), abs(y), 1e-12)

    return {
        "runs": [a["name"], b["name"]],
        "steps_compared": len(pairs),
        "equal_rewards": all(x["reward_mean"] == y["reward_mean"] for x, y in pairs),
        "max_rel_diff_grad_norm": max(
            (rel(x["grad_norm"], y["grad_norm"]) for x, y in pairs), default=None
        ),
        "max_abs_diff_loss": max((abs(x["loss"] - y["loss"]) for x, y in pairs), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the speech_translation data folder")
    parser.add_argument("--out", default="benchmarks/results/cuda_check.json")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    args = parser.parse_args()

    import torch

    machine = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        import deepspeed

        machine["deepspeed"] = deepspeed.__version__
    except ImportError:
        machine["deepspeed"] = None
    print(json.dumps(machine))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            result = run(name, args.data, Path(tmp), args.device)
            results.append(result)
            print(f"{name:22s} rc={result['returncode']} {result['wall_s']:6.1f}s "
                  f"steps={result['steps']} reward {result['train_reward_first']} -> "
                  f"{result['train_reward_last']} val={result['validation_reward']} "
                  f"finite={result['finite']}", flush=True)  # fmt: skip
            if result["returncode"]:
                print(result["stderr_tail"], flush=True)
    by_name = {r["name"]: r for r in results}
    check = parity(by_name[PARITY[0]], by_name[PARITY[1]])
    print(json.dumps(check))
    report = {"machine": machine, "device": args.device, "settings": COMMON, "runs": results,
              "parity": check}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
