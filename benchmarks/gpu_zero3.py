"""GPU benchmark (prepared; never run by CI): GRPO steps on a paper-class speech LM under ZeRO-3
bf16, full fine-tuning with the KL term (the reference policy as its own ZeRO-3 inference
engine) through the ``deepspeed`` backend.

The model is built from its config with random weights (``--model``, a model id of
:data:`rewardkit.backends.real_configs.REAL_CONFIGS`; default Granite-Speech 3.3 2B: 16-block
conformer encoder, 2-layer Q-Former projector, 40-layer 2048-wide Granite LM, 3.0 B parameters)
and the tiny Granite tokenizer and audio settings of ``tiny-granite-speech`` (the vocabulary
rows beyond it stay unused). Rank 0 builds and saves it; every rank loads it as a local path.
Prompts: ``--prompts`` utterances of ``--audio-seconds`` of noise per step with a short
instruction; G = ``--group-size`` completions of up to ``--max-new-tokens`` tokens (a random
model rarely stops early; the tokens generated are counted); rewards are random (reward time
is measured by benchmarks/sharded_rewards.py). A step: generate -> advantages -> reference
log-probs -> policy log-probs -> loss (rewardkit's PolicyLoss, dapo, beta 0.02) -> backward
-> step, timed per phase; tokens/s for generation (completion tokens sampled per second) and
training (prompt + completion tokens through forward and backward per second), peak GPU memory
per rank (``torch.cuda.max_memory_allocated``, after warm-up steps reset). Results: a JSON with
the GPU named.

On the GPU machine (one or more GPUs):

    torchrun --nproc-per-node $(nvidia-smi -L | wc -l) benchmarks/gpu_zero3.py \\
        --out benchmarks/results/gpu_zero3.json

CPU dry run (tiny sizes, 2 steps, gloo; what the tests run):

    OMP_NUM_THREADS=1 python benchmarks/gpu_zero3.py --tiny --device cpu --out /tmp/dry.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = "ibm-granite/granite-speech-3.3-2b"


def build_model(model_id: str, tiny: bool, directory: Path, seed: int) -> int:
    """Save a random-init Granite-Speech of ``model_id``'s sizes (or the tiny one) with the tiny
    Granite tokenizer and feature settings to ``directory``; returns its parameter count."""
    import torch
    from transformers import GraniteSpeechConfig, GraniteSpeechForConditionalGeneration

    from rewardkit.backends import tiny as tiny_models
    from rewardkit.backends.real_configs import REAL_CONFIGS

    parts = tiny_models.build_tiny("tiny-granite-speech", seed=seed)
    if not tiny:
        kind, kwargs = REAL_CONFIGS[model_id]
        if kind != "GraniteSpeechConfig":
            raise SystemExit(f"{model_id}: this script builds Granite-Speech models only")
        tok = parts.tokenizer
        text = {**kwargs["text_config"], "pad_token_id": tok.pad_token_id,
                "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}  # fmt: skip
        encoder = {**kwargs["encoder_config"], "input_dim": 2 * tiny_models.N_MELS}
        config = GraniteSpeechConfig(
            **{**kwargs, "text_config": text, "encoder_config": encoder,
               "audio_token_index": tok.convert_tokens_to_ids("<|audio|>"),
               "has_lora_adapter": False},
        )  # fmt: skip
        torch.manual_seed(seed)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = GraniteSpeechForConditionalGeneration(config)
        model.generation_config = parts.model.generation_config
        parts.model = model.to("cpu")
    tiny_models.save_tiny(parts, directory)
    return sum(p.numel() for p in parts.model.parameters())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tiny", action="store_true", help="the tiny Granite-Speech (CPU dry run)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8, help="per step, over all ranks")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--audio-seconds", type=float, default=10.0)
    ap.add_argument("--beta", type=float, default=0.02)
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--zero-stage", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_zero3.json"))
    args = ap.parse_args()
    if args.tiny:  # a quick path through everything: 1 warm-up step and 1 measured
        args.steps, args.warmup, args.prompts, args.group_size = 1, 1, 2, 4
        args.max_new_tokens, args.audio_seconds = min(args.max_new_tokens, 8), 1.0

    import numpy as np
    import torch

    from rewardkit.backends.deepspeed import DeepSpeedBackend, init_process_group
    from rewardkit.losses import LossConfig, PolicyLoss, group_advantages
    from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt, SamplingConfig

    cuda = args.device.startswith("cuda")
    init_process_group(args.device)
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    if args.prompts % world:
        raise SystemExit(f"--prompts {args.prompts} is not divisible by the world size {world}")
    tmp = tempfile.mkdtemp(prefix="rk-gpu-zero3-") if rank == 0 else None
    box = [tmp]
    dist.broadcast_object_list(box)
    model_dir = Path(box[0]) / "model"
    t0 = time.perf_counter()
    params = build_model(args.model, args.tiny, model_dir, args.seed) if rank == 0 else 0
    dist.barrier()
    build_s = time.perf_counter() - t0

    spec = ModelSpec(
        str(model_dir), lora_r=0, bf16=args.bf16, seed=args.seed, device=args.device,
        extra={"zero_stage": args.zero_stage, "prompts_per_rank": args.prompts // world,
               "reference_policy": args.beta > 0},
    )  # fmt: skip
    t0 = time.perf_counter()
    backend = DeepSpeedBackend.build(spec, OptimizerConfig(learning_rate=1e-6, total_steps=100))
    load_s = time.perf_counter() - t0
    loss_fn = PolicyLoss(LossConfig(beta=args.beta, max_completion_length=args.max_new_tokens))
    rng = np.random.default_rng(args.seed)
    samples = int(args.audio_seconds * 16_000)
    prompts = [
        Prompt(text="<audio> Translate the audio into German.", id=f"p{i}",
               audio=(0.1 * rng.standard_normal(samples)).astype(np.float32))
        for i in range(args.prompts)
    ]  # fmt: skip
    mine = list(backend.dist.shard(len(prompts)))
    share = [prompts[i] for i in mine]
    prompt_tokens = sum(backend.prompt_tokens(share))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    steps = []
    for step in range(args.warmup + args.steps):
        if step == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        times: dict[str, float] = {}
        sync()
        t0 = time.perf_counter()
        sampling = SamplingConfig(num_samples=args.group_size, max_new_tokens=args.max_new_tokens,
                                  seed=step)  # fmt: skip
        out = backend.generate(prompts, sampling)
        sync()
        times["generate"] = time.perf_counter() - t0
        gen_tokens = int(out.mask.sum())
        rewards = torch.as_tensor(rng.random((len(prompts), args.group_size)), dtype=torch.float32)
        advantages, _ = group_advantages(rewards.to(out.mask.device))
        ids, mask = out.token_ids[mine], out.mask[mine]
        t0 = time.perf_counter()
        ref = backend.logprobs(share, ids, mask, reference=True) if args.beta > 0 else None
        sync()
        times["reference"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        backend.train(True)
        logp = backend.logprobs(share, ids, mask, grad=True)
        n = len(share) * args.group_size
        loss, stats = loss_fn(
            logp.reshape(n, -1), None, None if ref is None else ref.reshape(n, -1),
            advantages[mine].reshape(n), mask.reshape(n, -1),
            num_tokens_global=int(out.mask.sum()),
        )  # fmt: skip
        backend.backward(loss)
        info = backend.step()
        sync()
        times["train"] = time.perf_counter() - t0
        times["step"] = sum(times.values())
        trained = int(mask.sum()) + prompt_tokens * args.group_size
        steps.append({**times, "generated_tokens": gen_tokens, "trained_tokens_rank": trained,
                      "loss": loss.item(), "kl": float(stats.get("kl", 0.0)), **info})  # fmt: skip
        if rank == 0:
            print(
                f"step {step}: {times['step']:.2f} s (generate {times['generate']:.2f}, "
                f"reference {times['reference']:.2f}, train {times['train']:.2f})",
                flush=True,
            )
    measured = steps[args.warmup :]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    mine_summary = {"peak_gib": peak, "steps": measured}
    every = [None] * world
    dist.all_gather_object(every, mine_summary)
    if rank == 0:

        def median(key: str) -> float:
            values = sorted(s[key] for s in measured)
            return values[len(values) // 2]

        gpu = torch.cuda.get_device_name() if cuda else "none (CPU dry run)"
        report = {
            "benchmark": "gpu_zero3",
            "gpu": gpu,
            "gpus": world,
            "model": "tiny-granite-speech" if args.tiny else args.model,
            "parameters": params,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "build_seconds": build_s,
            "load_seconds": load_s,
            "step_seconds": median("step"),
            "phase_seconds": {k: median(k) for k in ("generate", "reference", "train")},
            "generation_tokens_per_s": median("generated_tokens") / median("generate"),
            "training_tokens_per_s": world * median("trained_tokens_rank") / median("train"),
            "peak_memory_gib_per_rank": [r["peak_gib"] for r in every],
            "steps_rank0": measured,
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "argv": sys.argv,
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "steps_rank0"}, indent=2))
    dist.barrier()
    if rank == 0:
        import shutil

        shutil.rmtree(box[0], ignore_errors=True)
    os._exit(0)  # skip DeepSpeed's and gloo's slow teardown


if __name__ == "__main__":
    if os.environ.get("RK_DUMP_AFTER"):  # debugging a stuck run: every thread's stack
        import faulthandler

        faulthandler.dump_traceback_later(int(os.environ["RK_DUMP_AFTER"]), exit=True)
    sys.exit(main())
