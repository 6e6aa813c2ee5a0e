"""rewardkit rewards as TRL reward functions: the calling convention, and a real GRPOTrainer run.

The trainer test runs 2 GRPO steps of TRL's own ``GRPOTrainer`` on a tiny random Qwen2 built
in-process (no downloads), with rewardkit's BLEU and chrF as two reward functions, records what
TRL passed and what they returned, and checks every score against sacrebleu's sentence-level
helpers on the same texts.
"""

from __future__ import annotations

import pytest
import sacrebleu

import rewardkit
from rewardkit.integrations.trl import completion_text, reward_func


class Spy:
    """Wraps a TRL reward function: records each call's rows and outputs, and the groups the
    rewardkit reward received."""

    def __init__(self, func):
        self.func = func
        self.__name__ = func.__name__
        self.calls: list[dict] = []
        self.group_sizes: list[list[int]] = []
        reward = func.reward
        original = reward.score

        def score(groups):
            self.group_sizes.append([len(g.completions) for g in groups])
            return original(groups)

        reward.score = score

    def __call__(self, prompts, completions, **kwargs):
        out = self.func(prompts=prompts, completions=completions, **kwargs)
        self.calls.append(
            {"prompts": list(prompts), "completions": list(completions), "out": list(out)}
            | {"reference": list(kwargs["reference"])}
        )
        return out


def _word_references(tokenizer, width=8):
    """References built from the tiny tokenizer's whole words, 8 per reference, so that random
    completions share unigrams with them and BLEU is not always 0."""
    words = sorted(
        {tokenizer.convert_tokens_to_string([t]).strip() for t in tokenizer.get_vocab()} - {""}
    )
    words = [w for w in words if w.isalpha()]
    return [" ".join(words[i : i + width]) for i in range(0, len(words), width)]


def test_grpo_trainer_two_steps_with_rewardkit_bleu_and_chrf(tmp_path):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.backends.tiny import build_tiny_causal_lm

    parts = build_tiny_causal_lm(seed=0)
    references = _word_references(parts.tokenizer)
    assert len(references) > 10
    prompts = ["The cat", "A dog ran", "Der Hund", "It is", "We", "She said", "Das", "One"]
    data = Dataset.from_dict(
        # several references per prompt (a list column)
        {"prompt": prompts, "reference": [references[k::8] for k in range(8)]}
    )
    # a reward of its own (not the process-wide one reward_func("...") builds): Spy patches it
    weighted = rewardkit.load_registry(entry_points=False).build_reward("bleu=0.5,chrf=0.5")
    funcs = reward_func(weighted, per_component=True)
    assert [f.__name__ for f in funcs] == [
        "rewardkit_bleu_0_5_chrf_0_5_bleu",
        "rewardkit_bleu_0_5_chrf_0_5_chrf",
    ]
    spies = [Spy(f) for f in funcs]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        gradient_checkpointing=False,
        reward_weights=[f.weight for f in funcs],
        seed=0,
    )
    torch.manual_seed(0)
    trainer = GRPOTrainer(
        model=parts.model,
        processing_class=parts.tokenizer,
        reward_funcs=spies,
        args=args,
        train_dataset=data,
    )
    trainer.train()

    bleu, chrf = spies
    assert len(bleu.calls) == len(chrf.calls) == 2  # one call per step
    for spy, metric in ((bleu, sacrebleu.sentence_bleu), (chrf, sacrebleu.sentence_chrf)):
        for call in spy.calls:
            assert len(call["out"]) == len(call["completions"]) == 8
            expected = [
                metric(c, refs).score / 100
                for c, refs in zip(call["completions"], call["reference"])
            ]
            assert call["out"] == pytest.approx(expected, abs=1e-12), spy.__name__
        # TRL's consecutive num_generations completions per prompt became groups of 4
        assert spy.group_sizes == [[4, 4], [4, 4]]
    assert any(v > 0 for call in bleu.calls for v in call["out"])  # the check is not all zeros
    logged = trainer.state.log_history[0]
    for f in funcs:
        assert f"rewards/{f.__name__}/mean" in logged
    mean = sum(bleu.calls[0]["out"] + chrf.calls[0]["out"]) / 16
    assert logged["reward"] == pytest.approx(mean, rel=1e-5)  # weights 0.5 + 0.5


def test_one_function_for_a_weighted_spec_returns_the_sum_and_logs_components():
    func = reward_func("bleu=0.7,chrf=0.3", reference_column="answer")
    assert func.__name__ == "rewardkit_bleu_0_7_chrf_0_3"
    logged = {}
    prompts = ["p1"] * 3 + ["p2"] * 2
    completions = ["the cat sat", "a cat sat", "", "ein Hund", "ein Hund lief"]
    answers = ["the cat sat on the mat"] * 3 + ["ein Hund lief weg"] * 2
    out = func(
        prompts=prompts,
        completions=completions,
        completion_ids=[[0]] * 5,
        answer=answers,
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    expected = [
        0.7 * sacrebleu.sentence_bleu(c, [r]).score / 100
        + 0.3 * sacrebleu.sentence_chrf(c, [r]).score / 100
        for c, r in zip(completions, answers)
    ]
    assert out == pytest.approx(expected, abs=1e-12)
    assert set(logged) == {"rewardkit_bleu_0_7_chrf_0_3/bleu", "rewardkit_bleu_0_7_chrf_0_3/chrf"}


def test_conversational_completions_missing_references_and_a_source_column():
    calls = []

    class Echo(rewardkit.Reward):
        """Scores 1 per completion, recording the groups."""

        name = "echo"

        def score(self, groups):
            calls.append(groups)
            return rewardkit.RewardOutput([[1.0] * len(g.completions) for g in groups])

    func = reward_func(Echo(), source_column="src")
    completions = [
        [{"role": "assistant", "content": "Hallo Welt"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Hallo"}]}],
        [{"role": "assistant", "content": "x"}],
        [{"role": "assistant", "content": "y"}],
    ]
    prompt = [{"role": "user", "content": "Translate: hello world"}]
    out = func(
        prompts=[prompt] * 4,
        completions=completions,
        reference=["hallo welt", "hallo welt", None, "foo"],
        src=["hello world"] * 4,
    )
    assert out == [1.0, 1.0, None, 1.0]  # None where the row has no reference
    (groups,) = calls
    assert [g.completions for g in groups] == [("Hallo Welt", "Hallo"), ("y",)]
    assert groups[0].source == "hello world" and groups[1].references == ("foo",)


def test_mistakes_are_one_line_errors():
    with pytest.raises(rewardkit.RewardkitError, match="unknown reward 'bleuu'"):
        reward_func("bleuu")
    func = reward_func("bleu", reference_column="target")
    with pytest.raises(rewardkit.RewardError, match="needs the dataset column 'target'"):
        func(prompts=["p"], completions=["c"], reference=["r"], trainer_state=None)
    with pytest.raises(rewardkit.RewardError, match="reference must be a string"):
        func(prompts=["p"], completions=["c"], target=[3])
    with pytest.raises(rewardkit.RewardError, match="cannot read a completion"):
        completion_text(7)
