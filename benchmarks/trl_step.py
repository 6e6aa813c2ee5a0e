"""Benchmark: one GRPO step of rewardkit against TRL's ``GRPOTrainer`` on the same text model.

Both sides train the same randomly initialised Qwen2 causal LM (hidden 256, 4 layers, the tiny
causal-LM tokenizer; saved to a temporary folder and loaded from it by both), on the same 32
prompts (``User: Translate into German: <sentence>\\nAssistant:``, tokenised identically) with
the same settings: G = 8, 64 new tokens at temperature 0.7 (top-p 1), sentence BLEU against the
sentence (rewardkit's ``bleu``; TRL gets it through ``rewardkit.integrations.trl.reward_func``),
the DAPO loss, beta 0.02 (a reference pass), epsilon 0.2, mu = 1 (no old-log-prob pass on either
side), TRL's advantage denominator (``std + 1e-4``: rewardkit ``std_mode="add"``), no KL bias
correction, full fine-tuning with torch AdamW at a constant lr, gradient clipping 1.0, one
optimizer step per generation (no gradient accumulation), no gradient checkpointing (TRL's
default turns it on; rewardkit has none), one thread.

rewardkit's step is ``rewardkit.train.grpo_step`` on a trainer built by ``build_trainer`` for
the ``text`` task; TRL's is ``GRPOTrainer.train()`` for ``--steps`` steps. Runs alternate
(``--rounds`` rounds, each side once per round, the order swapped every round); a run's first
step is a warm-up and is not counted. Phases (seconds per step, median over the counted steps):
``generate`` (sampling), ``reward``, ``logprob`` (log-probs without gradient: the reference
pass), ``train`` (the rest of the step: log-probs with gradient, loss, backward, optimizer, and
each side's bookkeeping) and ``step`` (the whole step, wall). For TRL the phases are timed by
wrapping ``_generate``, ``_calculate_rewards`` and ``_get_per_token_logps_and_entropies`` (calls
without gradient) and the step by a callback.

Run: ``OMP_NUM_THREADS=1 python benchmarks/trl_step.py`` (about 15 minutes here). Results go to
``benchmarks/results/trl_step.json`` and ``.md``. TRL is a benchmark-only dependency (it is in
the test extra).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from grpo_text import SENTENCES, cpu_model

PHASES = ("generate", "reward", "logprob", "train", "step")


def build_model(folder: Path, seed: int) -> tuple[Path, int]:
    """The text model, saved with its tokenizer; returns the folder and the parameter count."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rewardkit.backends.tiny import build_tokenizer

    tokenizer = build_tokenizer("causal_lm")
    # no chat template: rewardkit renders "User: {prompt}\nAssistant:", which TRL is given as is
    assert not tokenizer.chat_template
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, sum(p.numel() for p in model.parameters())


def write_data(folder: Path, prompts: int) -> tuple[Path, list[dict[str, str]]]:
    rows = [
        {"id": f"p{i}", "prompt": f"Translate into German: {s}", "reference": s}
        for i, s in enumerate((SENTENCES * (prompts // len(SENTENCES) + 1))[:prompts])
    ]
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, rows


def run_rewardkit(args: argparse.Namespace, model: Path, data: Path, out: Path) -> list[dict]:
    """``args.steps`` steps of rewardkit's grpo_step; per-step phase times."""
    from rewardkit.registry import load_registry
    from rewardkit.train import TrainConfig, build_trainer, grpo_step

    cfg = TrainConfig(
        task="text", data=str(data), model=str(model), reward="bleu", lora_r=0,
        learning_rate=args.lr, lr_schedule="constant", steps=args.steps,
        batch_size=args.prompts, group_size=args.group_size, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, tempered_logprobs=True, beta=args.beta, loss_type="dapo",
        std_mode="add", eval_interval=0, save=False, seed=args.seed, output_dir=str(out),
        progress=False, tensorboard=False, plot=False,
    )  # fmt: skip
    tr = build_trainer(cfg, load_registry(entry_points=False))
    steps = []
    for step in range(1, args.steps + 1):
        tr.step = step
        batch = [tr.train_examples[i] for i in tr.order.next(cfg.batch_size)]
        t0 = time.perf_counter()
        metrics = grpo_step(tr, batch)
        wall = time.perf_counter() - t0
        phases = {k: metrics[f"time_{k}"] for k in ("generate", "reward", "logprob")}
        phases["train"] = wall - sum(phases.values())
        phases["step"] = wall
        steps.append({**phases, "completion_length": metrics["completion_length_mean"]})
    return steps


class _Timer:
    """Seconds spent in wrapped methods, per phase, since the last reset."""

    def __init__(self) -> None:
        self.times: dict[str, float] = defaultdict(float)
        self.lengths: list[float] = []

    def wrap(self, obj: Any, name: str, phase: str, only_without_grad: bool = False) -> None:
        import torch

        original = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            if only_without_grad and torch.is_grad_enabled():
                return original(*a, **k)
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                self.times[phase] += time.perf_counter() - t0

        setattr(obj, name, timed)


def run_trl(args: argparse.Namespace, model: Path, rows: list[dict], out: Path) -> list[dict]:
    """``args.steps`` steps of TRL's GRPOTrainer; per-step phase times."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.integrations.trl import reward_func

    config = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, seed=args.seed,
        per_device_train_batch_size=args.prompts * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens,
        temperature=args.temperature, top_p=1.0, beta=args.beta, loss_type="dapo",
        epsilon=0.2, scale_rewards="group", num_iterations=1, use_bias_correction_kl=False,
        gradient_checkpointing=False, optim="adamw_torch", lr_scheduler_type="constant",
        learning_rate=args.lr, max_grad_norm=1.0, max_steps=args.steps, report_to=[],
        logging_steps=10_000, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    prompts = [f"User: {r['prompt']}\nAssistant:" for r in rows]  # rewardkit's fallback template
    data = Dataset.from_dict({"prompt": prompts, "reference": [r["reference"] for r in rows]})
    trainer = GRPOTrainer(
        model=str(model), reward_funcs=reward_func("bleu"), args=config, train_dataset=data
    )
    timer = _Timer()
    timer.wrap(trainer, "_generate", "generate")
    timer.wrap(trainer, "_calculate_rewards", "reward")
    timer.wrap(trainer, "_get_per_token_logps_and_entropies", "logprob", only_without_grad=True)
    steps: list[dict] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            timer.times.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            wall = time.perf_counter() - self.t0
            phases = {p: timer.times[p] for p in ("generate", "reward", "logprob")}
            phases["train"] = wall - sum(phases.values())
            phases["step"] = wall
            lengths = trainer._metrics["train"].get("completions/mean_length", [float("nan")])
            steps.append({**phases, "completion_length": lengths[-1]})

    trainer.add_callback(StepTimes())
    trainer.train()
    return steps


def counted(runs: list[list[dict]]) -> list[dict]:
    """Every run's steps but its first (the warm-up)."""
    return [step for run in runs for step in run[1:]]


def median(steps: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--beta", type=float, default=0.02)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=4, help="steps per run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="trl_step", help="result file name (without suffix)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (a run's first step is not counted)")

    import torch
    import transformers
    import trl

    import rewardkit

    torch.set_num_threads(1)
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(prefix="trl_step-"))
    model, params = build_model(work / "model", args.seed)
    data, rows = write_data(work, args.prompts)
    runs: dict[str, list[list[dict]]] = {"rewardkit": [], "trl": []}
    for r in range(args.rounds):
        order = ("trl", "rewardkit") if r % 2 == 0 else ("rewardkit", "trl")
        for side in order:
            out = work / f"{side}-{r}"
            t0 = time.perf_counter()
            steps = (run_rewardkit(args, model, data, out) if side == "rewardkit"
                     else run_trl(args, model, rows, out))  # fmt: skip
            runs[side].append(steps)
            print(f"round {r} {side}: {len(steps)} steps, run {time.perf_counter() - t0:.1f} s, "
                  f"steps {[round(s['step'], 2) for s in steps]}", file=sys.stderr)  # fmt: skip
    load_end = os.getloadavg()

    summary = {side: {p: median(counted(r), p) for p in (*PHASES, "completion_length")}
               for side, r in runs.items()}  # fmt: skip
    ratio = {p: summary["trl"][p] / summary["rewardkit"][p] for p in PHASES}
    result = {
        "started": started,
        "command": "OMP_NUM_THREADS=1 python benchmarks/trl_step.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": torch.get_num_threads(),
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "rewardkit": rewardkit.__version__,
        },
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "output_dir"},
            "parameters": params,
            "loss_type": "dapo",
            "epsilon": 0.2,
            "mu": 1,
            "advantage_denominator": "std + 1e-4",
            "kl_bias_correction": False,
            "gradient_checkpointing": False,
            "optimizer": "torch AdamW, constant lr",
            "reward": "bleu",
        },
        "median_seconds": summary,
        "ratio_trl_over_rewardkit": ratio,
        "runs": runs,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    s, m, v = result["settings"], result["machine"], result["versions"]
    med, ratio = result["median_seconds"], result["ratio_trl_over_rewardkit"]
    n = {side: sum(len(run) - 1 for run in runs) for side, runs in result["runs"].items()}
    lines = [
        "# One GRPO step: rewardkit vs TRL's GRPOTrainer (same text model, same settings)",
        "",
        f"Run on {result['started']}: `{result['command']}`.",
        "",
        "| phase | rewardkit s | TRL s | TRL / rewardkit |",
        "|---|---:|---:|---:|",
        *[
            f"| {p} | {med['rewardkit'][p]:.2f} | {med['trl'][p]:.2f} | {ratio[p]:.2f}x |"
            for p in PHASES
        ],
        f"| completion length (tokens) | {med['rewardkit']['completion_length']:.1f} | "
        f"{med['trl']['completion_length']:.1f} | |",
        "",
        f"Seconds per step: median of {n['rewardkit']} (rewardkit) and {n['trl']} (TRL) steps "
        f"from {s['rounds']} alternating runs of {s['steps']} steps each (a run's first step not "
        "counted). `logprob`: log-probs without gradient (the reference pass); `train`: the rest "
        "of the step (log-probs with gradient, loss, backward, AdamW, bookkeeping).",
        "",
        "## Settings",
        "",
        f"- model: Qwen2ForCausalLM, random init, fp32, {s['parameters']:,} parameters "
        "(hidden 256, 4 layers, 4 heads / 2 KV heads, MLP 1024, the tiny causal-LM tokenizer), "
        "full fine-tuning, loaded by both from the same folder",
        f"- {s['prompts']} prompts x G = {s['group_size']}, {s['max_new_tokens']} new tokens, "
        f"temperature {s['temperature']}, top-p 1, reward {s['reward']}",
        f"- loss {s['loss_type']}, beta {s['beta']}, epsilon {s['epsilon']}, mu {s['mu']}, "
        f"advantages / ({s['advantage_denominator']}), log-probs of logits / temperature (both), "
        "KL bias correction off, "
        f"gradient checkpointing off, {s['optimizer']} (lr {s['lr']}), max grad norm 1.0",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores visible; {m['platform']}",
        f"- OMP_NUM_THREADS={m['omp_num_threads']} (torch threads {m['torch_threads']}); load "
        f"average (1, 5, 15 min) at start {list(m['load_average_start'])}, at end "
        f"{list(m['load_average_end'])}",
        f"- Python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, "
        f"trl {v['trl']}, rewardkit {v['rewardkit']}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
