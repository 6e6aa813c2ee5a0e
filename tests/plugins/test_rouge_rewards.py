"""Parity of the rouge1, rouge2 and rougel rewards (plugins/rouge_rewards.py) with rouge-score.

The plugins tokenise references once per group and score each completion against them; these
tests prove that every score is exactly (``==``) Google's rouge-score F-measure on the
deterministic step of conftest.py (a few hundred completion/reference pairs).
"""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from rewardkit import Group

# (reward spec, rouge-score type, use_stemmer); specs match names case-insensitively (rougeL).
ROUGE_CASES = [
    ("rouge1", "rouge1", False),
    ("rouge1:use_stemmer=true", "rouge1", True),
    ("rouge2", "rouge2", False),
    ("rouge2:use_stemmer=true", "rouge2", True),
    ("rougel", "rougeL", False),
    ("rougeL:use_stemmer=true", "rougeL", True),
]


@pytest.mark.parametrize(
    ("spec", "rouge_type", "stem"), ROUGE_CASES, ids=[c[0] for c in ROUGE_CASES]
)
def test_rouge_equals_rouge_score(check_parity, spread, spec, rouge_type, stem):
    """Reference: rouge_score.rouge_scorer.RougeScorer([type], use_stemmer=...)
    .score_multi(refs, hyp)[type].fmeasure, and .score(ref, hyp)[type].fmeasure for a single
    reference. ROUGE-L leaves out the ~2000-word pair (rouge-score's pure-Python LCS table takes
    seconds on it; see test_rougel_long_text). Without the stemmer the scores also spread over
    [0, 1]."""
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=stem)

    def expected(hyp: str, refs: tuple[str, ...]) -> float:
        if len(refs) == 1:
            return scorer.score(refs[0], hyp)[rouge_type].fmeasure
        return scorer.score_multi(list(refs), hyp)[rouge_type].fmeasure

    scores = check_parity(spec, expected, skip_long=rouge_type == "rougeL")
    if not stem:
        spread(scores)


@pytest.mark.parametrize("spec", ["rougel", "rougel:use_stemmer=true"])
def test_rougel_long_text(builtin_registry, groups, spec):
    """Reference: RougeScorer(["rougeL"], use_stemmer=...).score(ref, hyp)["rougeL"].fmeasure on
    the first 600 words of the step's ~2000-word reference and of its two edits."""
    long_group = max(groups, key=lambda g: len(g.references[0]))
    ref = " ".join(long_group.references[0].split()[:600])
    hyps = [" ".join(c.split()[:600]) for c in long_group.completions]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=spec.endswith("true"))
    out = builtin_registry.build_reward(spec)([Group(references=[ref], completions=hyps)])
    assert out.scores == [[scorer.score(ref, h)["rougeL"].fmeasure for h in hyps]]
    assert 0.3 < min(out.scores[0]) < max(out.scores[0]) < 1


def test_rouge_multi_reference_picks_best(builtin_registry):
    """Reference: RougeScorer(["rouge1", "rouge2", "rougeL"]).score_multi(refs, hyp): the
    reference with the highest F-measure counts, whichever position it has."""
    refs = ["completely different words here", "the cat sat on the mat", "a cat on a mat"]
    hyp = "the cat sat on a mat"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    want = scorer.score_multi(refs, hyp)
    for spec, rouge_type in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougel", "rougeL")):
        for order in (refs, refs[::-1]):
            out = builtin_registry.build_reward(spec)([Group(references=order, completions=[hyp])])
            assert out.scores == [[want[rouge_type].fmeasure]]
            assert 0 < out.scores[0][0] < 1


EMPTY_GROUPS = [
    Group(references=["The cat sat on the mat."], completions=["", "   ", "...", "我们"]),
    Group(references=[""], completions=["The cat sat on the mat.", "x"]),
    Group(references=[""], completions=["", " "]),
    Group(references=["!!!", "\t"], completions=[""]),
]


@pytest.mark.parametrize("spec", ["rouge1", "rouge2", "rougel", "rouge1:use_stemmer=true"])
def test_empty_texts_score_zero(builtin_registry, spec):
    """Reference: rouge-score on texts without [a-z0-9] tokens (empty, whitespace, punctuation,
    CJK): precision = recall = 0 -> F-measure 0.0, also when both sides are empty. Never an
    exception."""
    out = builtin_registry.build_reward(spec)(EMPTY_GROUPS)
    assert out.scores == [[0.0] * 4, [0.0] * 2, [0.0] * 2, [0.0]]
    scorer = rouge_scorer.RougeScorer(["rouge1"])
    assert scorer.score("", "")["rouge1"].fmeasure == 0.0


@pytest.mark.parametrize(
    ("spec", "rouge_type"), [("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougel", "rougeL")]
)
def test_group_deduplication(builtin_registry, spec, rouge_type):
    """Reference: RougeScorer([type]).score(ref, hyp)[type].fmeasure per completion (identical
    completions of a group score the same) and unique_fraction = completions scored /
    completions (here 3 of 7)."""
    step = [
        Group(references=["the cat sat on the mat"], completions=["the cat", "the cat", "a mat"]),
        Group(references=["a dog barks"], completions=["a dog barks"] * 4),
    ]
    out = builtin_registry.build_reward(spec)(step)
    scorer = rouge_scorer.RougeScorer([rouge_type])
    want = [
        [scorer.score(g.references[0], c)[rouge_type].fmeasure for c in g.completions] for g in step
    ]
    assert out.scores == want
    assert out.scores[0][0] == out.scores[0][1] != out.scores[0][2]
    assert out.scores[1] == [1.0] * 4
    assert out.diagnostics["unique_fraction"] == 3 / 7
    assert out.components == {spec: out.scores}
