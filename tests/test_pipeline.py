"""The pieces of a GRPO step on real parts, end to end: synthesised speech -> task adapter ->
prompts -> a tiny speech-aware policy samples a group -> a reward scores it."""

from __future__ import annotations

import pytest

import rewardkit
from rewardkit.backends.hf import HFBackend
from rewardkit.plugins.speech_tasks import SpeechTranslation, SpokenQA
from rewardkit.policy import ModelSpec, OptimizerConfig, SamplingConfig


@pytest.mark.parametrize(
    ("task", "folder"), [(SpeechTranslation, "speech_translation"), (SpokenQA, "spoken_qa")]
)
def test_synthesised_data_feeds_a_tiny_policy_and_a_reward(spoken_data, task, folder):
    result = task().load(str(spoken_data / folder), "train")
    examples = result.examples[:2]
    assert len(result.examples) == 10 and result.num_skipped == 0
    assert len(task().load(str(spoken_data / folder), "validation").examples) == 1  # dev.jsonl
    prompts = [task().prompt(e) for e in examples]
    assert all(p.audio is not None and p.sampling_rate == 16_000 for p in prompts)

    backend = HFBackend.build(ModelSpec("tiny-voxtral", lora_r=4), OptimizerConfig())
    sampled = backend.generate(prompts, SamplingConfig(num_samples=3, max_new_tokens=6))
    groups = [
        rewardkit.Group(e.references, tuple(texts), e.source)
        for e, texts in zip(examples, sampled.text)
    ]
    reward = rewardkit.load_registry(entry_points=False).build_reward("bleu=0.5,chrf=0.5")
    out = reward(groups)
    assert [len(row) for row in out.scores] == [3, 3]
    assert all(0.0 <= s <= 1.0 + 1e-9 for row in out.scores for s in row)
