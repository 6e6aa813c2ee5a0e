"""Benchmark: shared-prompt log-probs vs the naive full-sequence pass for one GRPO group.

One group: a ~100-token prompt (text + 88 audio placeholder tokens + text, so mostly audio) and
G = 8 completions of 32 tokens, scored by ``rewardkit.backends.shared_prompt.completion_logprobs``
with ``shared=True`` (audio encoder and prompt forward once, keys/values repeated G times) and
``shared=False`` (the G full sequences in one batch), in the same process, on the same inputs:

* ``no_grad``: log-probs under ``torch.no_grad()`` (pi_old / reference pass), LoRA policy;
* ``train_lora``: forward + backward of the sum of log-probs, PEFT LoRA (r=16) on the LM's
  q/k/v/o projections plus the projector trainable, audio encoder frozen (the GRPO default);
* ``train_full``: forward + backward, every parameter trainable (audio encoder included).

Model: a random-init Qwen2AudioForConditionalGeneration, "small but not tiny": Whisper-style
audio encoder (d_model 256, 4 layers, 4 heads, 128 mel bins, 352 frames -> 88 audio tokens),
Qwen2 LM (hidden 256, 4 layers, 4 heads / 2 KV heads, MLP 1024, vocabulary ``--vocab``), fp32.
Both paths run the LM head only on the positions they score (shared: 1 + G*(T-1), naive: G*T;
Qwen2-Audio's forward has no ``logits_to_keep``, so a pre-hook slices the head's input), so the
speedup comes from the audio encoder (1 vs G runs) and the LM layers (P + G*(T-1) vs G*(P+T-1)
tokens). ``--vocab`` sets how much of the work is the head, which both paths share equally.

Each repeat times both paths back to back (order alternating), after one untimed warm-up each;
medians and minima of ``--repeats`` runs: wall time (time.perf_counter) and this process's CPU
time (time.process_time, single-threaded with OMP_NUM_THREADS=1, so less disturbed when other
processes share the cores). The first run of each mode checks that the two paths agree
(log-probs, and gradients in the training modes: max abs difference).

Run: ``OMP_NUM_THREADS=1 python benchmarks/shared_prompt.py`` (see ``--help``). Results go to
``benchmarks/results/shared_prompt.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from grpo_text import cpu_model

TARGET = 2.0
MODES = ("no_grad", "train_lora", "train_full")


def build_model(args: argparse.Namespace, *, lora: bool) -> Any:
    """The Qwen2-Audio-like model, fp32, eval mode (no dropout); LoRA-wrapped if asked."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    torch.manual_seed(args.seed)
    cfg = Qwen2AudioConfig(
        audio_config=dict(
            d_model=256,
            encoder_layers=4,
            encoder_attention_heads=4,
            encoder_ffn_dim=1024,
            num_mel_bins=128,
            max_source_positions=args.audio_tokens * 2,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=args.vocab,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        ),
        audio_token_index=args.vocab - 1,
    )
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    if not lora:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=r".*language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
        ),
    )
    for name, p in model.named_parameters():
        if "multi_modal_projector" in name:
            p.requires_grad_(True)
    return model


def make_inputs(args: argparse.Namespace) -> tuple[dict, Any, Any]:
    """Prompt inputs (batch 1, P tokens) and G completions [G, T] with their mask."""
    import torch

    gen = torch.Generator().manual_seed(args.seed + 1)
    text = args.prompt_tokens - args.audio_tokens
    before, after = text // 2, text - text // 2
    audio_id = args.vocab - 1
    ids = torch.cat(
        [
            torch.randint(0, audio_id, (1, before), generator=gen),
            torch.full((1, args.audio_tokens), audio_id),
            torch.randint(0, audio_id, (1, after), generator=gen),
        ],
        dim=1,
    )  # [1, P]
    frames = args.audio_tokens * 4  # Qwen2-Audio: 2 * max_source_positions mel frames
    prompt = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        input_features=torch.randn(1, 128, frames, generator=gen),  # [1, mels, frames]
        feature_attention_mask=torch.ones(1, frames, dtype=torch.long),
    )
    tokens = torch.randint(0, audio_id, (args.group_size, args.completion_tokens), generator=gen)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    return prompt, tokens, mask


def run_once(model: Any, prompt: dict, tokens: Any, mask: Any, *, shared: bool, mode: str):
    """One pass; returns ((wall s, CPU s), log-probs, grads or None)."""
    import torch

    from rewardkit.backends.shared_prompt import completion_logprobs

    model.zero_grad(set_to_none=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "no_grad":
        with torch.no_grad():
            lp = completion_logprobs(model, prompt, tokens, mask, shared=shared)
        seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
        return seconds, lp, None
    lp = completion_logprobs(model, prompt, tokens, mask, shared=shared)
    lp.sum().backward()
    seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return seconds, lp.detach(), grads


def bench_mode(model: Any, inputs: tuple, mode: str, repeats: int) -> dict:
    prompt, tokens, mask = inputs
    times: dict[str, list[float]] = {"shared": [], "naive": []}
    cpu: dict[str, list[float]] = {"shared": [], "naive": []}
    check: dict[str, float] = {}
    for shared in (True, False):  # warm-up
        run_once(model, prompt, tokens, mask, shared=shared, mode=mode)
    for i in range(repeats):
        order = (True, False) if i % 2 == 0 else (False, True)
        out = {}
        for shared in order:
            seconds, lp, grads = run_once(model, prompt, tokens, mask, shared=shared, mode=mode)
            times["shared" if shared else "naive"].append(seconds[0])
            cpu["shared" if shared else "naive"].append(seconds[1])
            out[shared] = (lp, grads)
        if i == 0:
            (lp_s, g_s), (lp_n, g_n) = out[True], out[False]
            check["logprob_max_abs_diff"] = (lp_s - lp_n).abs().max().item()
            if g_s is not None:
                assert g_s.keys() == g_n.keys()
                check["grad_max_abs_diff"] = max((g_s[k] - g_n[k]).abs().max().item() for k in g_s)
                check["grad_max_abs"] = max(g.abs().max().item() for g in g_s.values())
                check["trainable_tensors"] = len(g_s)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "seconds": times,
        "cpu_seconds": cpu,
        "cpu_median_s": cpu_med,
        "cpu_speedup_median": cpu_med["naive"] / cpu_med["shared"],
        "median_s": med,
        "min_s": {k: min(v) for k, v in times.items()},
        "speedup_median": med["naive"] / med["shared"],
        "speedup_min": min(times["naive"]) / min(times["shared"]),
        "check": check,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=100)
    ap.add_argument("--audio-tokens", type=int, default=88)
    ap.add_argument("--completion-tokens", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    import warnings

    import peft
    import torch
    import transformers

    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")

    import rewardkit

    loadavg_start = list(os.getloadavg())
    inputs = make_inputs(args)
    results: dict[str, dict] = {}
    lora_model = build_model(args, lora=True)
    n_params = sum(p.numel() for n, p in lora_model.named_parameters() if "lora_" not in n)
    n_lora_trainable = sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    base = lora_model.get_base_model()
    head_ratio = base.lm_head.weight.numel() / sum(
        p.numel()
        for n, p in base.model.language_model.layers.named_parameters()
        if "lora_" not in n
    )
    for mode in ("no_grad", "train_lora"):
        results[mode] = bench_mode(lora_model, inputs, mode, args.repeats)
    del lora_model
    full_model = build_model(args, lora=False)
    results["train_full"] = bench_mode(full_model, inputs, "train_full", args.repeats)

    machine = {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "rewardkit": rewardkit.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": loadavg_start,
        "loadavg_end": list(os.getloadavg()),
    }
    settings = {
        "model": "Qwen2AudioForConditionalGeneration (random init, fp32, eval mode)",
        "audio_encoder": "d_model 256, 4 layers, 4 heads, FFN 1024, 128 mel bins, "
        f"{args.audio_tokens * 4} frames -> {args.audio_tokens} audio tokens",
        "language_model": f"Qwen2, hidden 256, 4 layers, 4 heads / 2 KV heads, MLP 1024, "
        f"vocab {args.vocab}",
        "parameters": n_params,
        "lora_trainable_parameters": n_lora_trainable,
        "lm_head_to_lm_layers_weight_ratio": round(head_ratio, 3),
        "group_size": args.group_size,
        "prompt_tokens": args.prompt_tokens,
        "audio_tokens": args.audio_tokens,
        "completion_tokens": args.completion_tokens,
        "repeats": args.repeats,
        "warmup": 1,
        "seed": args.seed,
        "timer": "time.perf_counter (wall) and time.process_time (CPU), shared and naive back "
        "to back, order alternating",
        "modes": {
            "no_grad": "torch.no_grad() log-probs, LoRA policy",
            "train_lora": "forward + backward of logprobs.sum(); LoRA r=16 on LM q/k/v/o + "
            "projector trainable, encoder frozen",
            "train_full": "forward + backward of logprobs.sum(); every parameter trainable",
        },
        "target_speedup": TARGET,
    }
    report = {
        "benchmark": "shared_prompt",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "OMP_NUM_THREADS=1 python benchmarks/shared_prompt.py",
        "machine": machine,
        "settings": settings,
        "results": results,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "shared_prompt.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.output_dir / "shared_prompt.md").write_text(md)
    print(md)
    ok = all(r["speedup_median"] >= TARGET for r in results.values())
    return 0 if ok else 1


def markdown(report: dict) -> str:
    m, s, r = report["machine"], report["settings"], report["results"]
    rows = [
        "| pass | shared s | naive s | speedup (median) | speedup (min) | CPU-time speedup "
        "(median) | max abs diff log-probs | max abs diff grads (max abs grad) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        x = r[mode]
        grad = x["check"].get("grad_max_abs_diff")
        grad_cell = "" if grad is None else f"{grad:.1e} ({x['check']['grad_max_abs']:.1e})"
        rows.append(
            f"| {mode} | {x['median_s']['shared']:.4f} ({x['min_s']['shared']:.4f}) "
            f"| {x['median_s']['naive']:.4f} ({x['min_s']['naive']:.4f}) "
            f"| {x['speedup_median']:.2f}x | {x['speedup_min']:.2f}x "
            f"| {x['cpu_speedup_median']:.2f}x "
            f"| {x['check']['logprob_max_abs_diff']:.1e} "
            f"| {grad_cell} |"
        )
    verdict = ", ".join(
        f"{mode} {r[mode]['speedup_median']:.2f}x "
        f"({'met' if r[mode]['speedup_median'] >= s['target_speedup'] else 'NOT met'})"
        for mode in MODES
    )
    return "\n".join(
        [
            "# Shared-prompt log-probs: shared vs naive (one GRPO group)",
            "",
            f"Run on {report['date']}: `{report['command']}`.",
            "",
            *rows,
            "",
            f"Wall seconds per group: median of {s['repeats']} runs (minimum in brackets); "
            "speedup = naive / shared; CPU-time speedup: the same from the process's CPU time "
            "(less disturbed by other load on the machine). `shared`: audio encoder and prompt "
            "forward once (batch 1), keys/values repeated G times, completions on top; `naive`: "
            "the G full sequences in one batch. The last two columns compare the two paths in "
            "the first run (fp32).",
            "",
            f"- target {s['target_speedup']:.0f}x: {verdict}",
            "",
            "## Machine",
            "",
            f"- CPU: {m['cpu_model']}, {m['cores']} cores visible; {m['platform']}",
            f"- Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
            f"peft {m['peft']}, rewardkit {m['rewardkit']}",
            f"- OMP_NUM_THREADS={m['omp_num_threads']} (torch threads {m['torch_threads']}); "
            f"load average (1, 5, 15 min) at start {m['loadavg_start']}, at end "
            f"{m['loadavg_end']}",
            "",
            "## Settings",
            "",
            f"- model: {s['model']}, {s['parameters']:,} parameters",
            f"- audio encoder: {s['audio_encoder']}",
            f"- language model: {s['language_model']}",
            f"- group: G={s['group_size']} completions of {s['completion_tokens']} tokens after "
            f"one {s['prompt_tokens']}-token prompt ({s['audio_tokens']} audio tokens)",
            *(f"- `{k}`: {v}" for k, v in s["modes"].items()),
            f"- LoRA trainable parameters: {s['lora_trainable_parameters']:,}",
            f"- LM head / LM layers weights: {s['lm_head_to_lm_layers_weight_ratio']} (per-token "
            "FLOPs ratio; Qwen2-Audio-7B: about 0.1). The head and the log-softmax run on the "
            "G*T scored positions in both paths, so a larger ratio (bigger vocabulary, smaller "
            "hidden size) lowers the speedup; the encoder and LM layers are what sharing saves.",
            f"- {s['repeats']} timed runs per path after {s['warmup']} warm-up; {s['timer']}",
            "",
            "## Rerun",
            "",
            "```",
            "OMP_NUM_THREADS=1 python benchmarks/shared_prompt.py [--group-size 8] "
            "[--prompt-tokens 100] [--audio-tokens 88] [--completion-tokens 32] [--vocab 8192] "
            "[--repeats 15] [--output-dir benchmarks/results]",
            "```",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
