"""Does the model listen? Transcript NLL with each utterance's own audio vs another's.

For the first ``--n`` dev utterances of a spoken data set, the reference transcript's NLL per
token (teacher-forced, the ``asr`` task's fixed instruction) is computed twice: with the
utterance's own audio, and with the next utterance's audio (a rotation, so every prompt still
has real speech of the same kind). A model that ignores the audio scores both the same; the gap
(shuffled - own) is how much the audio tells it. Models: a model directory or spec, and any
number of run checkpoints trained from it (``trainable.safetensors``, loaded with the run's LoRA
rank).

Run: ``OMP_NUM_THREADS=1 python benchmarks/listening.py --model DIR --data DATA/speech_translation
[--checkpoint RUN/checkpoints/step-000200 ...]``; results go to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def nll(backend: Any, prompts: list[Any], ids: Any, mask: Any) -> float:
    import torch

    with torch.no_grad():
        logp = backend.logprobs(prompts, ids, mask)
    return float(-logp.sum() / mask.sum())


def measure(model: str, checkpoint: str | None, data: str, n: int, lora_r: int) -> dict[str, Any]:
    from rewardkit.backends.hf import HFBackend
    from rewardkit.plugins.speech_tasks import SpeechRecognition
    from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt
    from rewardkit.train import _pad_stack, encode_reference

    backend = HFBackend.build(ModelSpec(model, lora_r=lora_r), OptimizerConfig())
    if checkpoint:
        backend.load_weights(Path(checkpoint))
    backend.train(False)
    task = SpeechRecognition(templates="fixed")
    examples = task.load(data, "dev").examples[:n]
    own = [task.prompt(e) for e in examples]
    other = [
        Prompt(p.text, own[(i + 1) % len(own)].audio, p.sampling_rate, p.id)
        for i, p in enumerate(own)
    ]
    rows = [encode_reference(backend, e.references[0], 64)[0] for e in examples]
    ids, mask = _pad_stack(rows, backend.tokenizer.pad_token_id)
    ids, mask = ids[:, None], mask[:, None]  # [P, 1, T]: one completion per prompt
    own_nll, other_nll = nll(backend, own, ids, mask), nll(backend, other, ids, mask)
    return {
        "model": model,
        "checkpoint": checkpoint,
        "utterances": len(examples),
        "nll_own_audio": own_nll,
        "nll_other_audio": other_nll,
        "gap": other_nll - own_nll,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a folder with dev.jsonl (transcripts)")
    parser.add_argument("--checkpoint", action="append", default=[])
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [measure(args.model, None, args.data, args.n, args.lora_r)]
    rows += [measure(args.model, c, args.data, args.n, args.lora_r) for c in args.checkpoint]
    for row in rows:
        name = row["checkpoint"] or row["model"]
        print(f"{name}: NLL/token own audio {row['nll_own_audio']:.3f}, other audio "
              f"{row['nll_other_audio']:.3f}, gap {row['gap']:+.3f}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
