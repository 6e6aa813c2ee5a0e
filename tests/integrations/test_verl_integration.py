"""rewardkit.integrations.verl as verl loads and calls it (verl itself is not installed).

verl imports ``custom_reward_function.path`` with ``importlib.util.spec_from_file_location``
(module name ``custom_module``, not always registered in ``sys.modules``), looks up
``custom_reward_function.name`` and merges ``custom_reward_function.reward_kwargs`` into each
call. Its naive reward manager calls ``compute_score(data_source=..., solution_str=...,
ground_truth=..., extra_info=...)`` per row; its batch manager calls
``compute_score_batch(data_sources=..., solution_strs=..., ground_truths=..., extra_infos=...)``
with ``data_sources`` and ``extra_infos`` as numpy object arrays (``non_tensor_batch``) and the
strings and ground truths as lists.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import sacrebleu

import rewardkit
import rewardkit.integrations.verl as verl_module


def load_like_verl(name: str, reward_kwargs: dict):
    """The reward function as verl's get_custom_reward_fn returns it."""
    spec = importlib.util.spec_from_file_location("custom_module", verl_module.__file__)
    module = importlib.util.module_from_spec(spec)
    assert "custom_module" not in sys.modules
    spec.loader.exec_module(module)
    raw = getattr(module, name)

    def wrapped(*args, **kwargs):
        return raw(*args, **{**kwargs, **reward_kwargs})

    return wrapped


REFS = ["the cat sat on the mat", "der Hund lief schnell nach Hause"]
ROWS = [  # (ground truth, completion): rollout.n = 3 interleaved, then a multi-reference row
    (REFS[0], "the cat sat on a mat"),
    (REFS[0], "a cat"),
    (REFS[0], ""),
    (REFS[1], "der Hund lief nach Hause"),
    (REFS[1], "Hund"),
    (REFS[1], "der Hund lief schnell nach Hause"),
    (REFS, "the dog sat on the mat"),
]


def test_batch_manager_shapes_and_sacrebleu_parity():
    fn = load_like_verl("compute_score_batch", {"reward": "bleu=0.5,chrf=0.5", "details": True})
    n = len(ROWS)
    out = fn(
        data_sources=np.array(["covost2"] * 6 + ["wmt"], dtype=object),
        solution_strs=[c for _, c in ROWS],
        ground_truths=[g for g, _ in ROWS],
        extra_infos=np.array([{"index": i} for i in range(n)], dtype=object),
    )
    assert len(out) == n
    for (truth, completion), item in zip(ROWS, out):
        refs = [truth] if isinstance(truth, str) else truth
        bleu = sacrebleu.sentence_bleu(completion, refs).score / 100
        chrf = sacrebleu.sentence_chrf(completion, refs).score / 100
        assert set(item) == {"score", "bleu", "chrf"}
        assert item["bleu"] == pytest.approx(bleu, abs=1e-12)
        assert item["chrf"] == pytest.approx(chrf, abs=1e-12)
        assert item["score"] == pytest.approx(0.5 * bleu + 0.5 * chrf, abs=1e-12)
    assert out[5]["score"] == pytest.approx(1.0)


def test_naive_manager_one_row_at_a_time_and_source_from_extra_info(monkeypatch):
    fn = load_like_verl("compute_score", {"reward": "chrf"})
    for truth, completion in ROWS[:3]:
        score = fn(
            data_source="covost2",
            solution_str=completion,
            ground_truth=truth,
            extra_info={"source": "Die Katze"},
        )
        assert isinstance(score, float)
        assert score == pytest.approx(sacrebleu.sentence_chrf(completion, [truth]).score / 100)

    seen = []

    class Spy(rewardkit.Reward):
        """Records groups; scores 0."""

        name = "spy"

        def score(self, groups):
            seen.extend(groups)
            return rewardkit.RewardOutput([[0.0] * len(g.completions) for g in groups])

    monkeypatch.setattr(verl_module, "build", lambda spec: Spy())
    scores = verl_module.compute_score_batch(
        ["a", "a", "b"],
        ["x", "y", "z"],
        ["r", "r", "r"],
        [{"src": "s1"}, {"src": "s1"}, {"src": "s2"}],
        source_key="src",
    )
    assert scores == [0.0, 0.0, 0.0]
    assert [(g.source, g.completions) for g in seen] == [("s1", ("x", "y")), ("s2", ("z",))]


def test_mistakes_are_clear_errors():
    fn = load_like_verl("compute_score_batch", {"reward": "bleu", "source_key": "src"})
    with pytest.raises(ValueError, match="extra_info has no string 'src'"):
        fn(["d"], ["x"], ["r"], np.array([None], dtype=object))
    with pytest.raises(ValueError, match="has no ground_truth"):
        verl_module.compute_score("d", "x", None)
    with pytest.raises(rewardkit.RewardkitError, match="unknown reward 'blue'"):
        verl_module.compute_score("d", "x", "r", reward="blue")
