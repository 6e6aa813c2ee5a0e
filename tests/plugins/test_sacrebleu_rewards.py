"""Parity of the bleu, chrf and ter rewards (plugins/sacrebleu_rewards.py) with sacrebleu.

The plugins re-implement sacrebleu's n-gram matching for speed; these tests prove that every
score is exactly (``==``) what sacrebleu computes, on the deterministic step of conftest.py
(a few hundred completion/reference pairs), for every documented option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

import rewardkit
from rewardkit import Group

# --- The test step -----------------------------------------------------------------------------


def test_the_step_is_deterministic_and_covers_the_cases(groups, step_factory):
    """Reference: none (checks conftest.make_groups): the same step every run, a few hundred
    pairs, and every kind of input the parity tests are meant to cover."""
    assert step_factory() == groups
    pairs = [(c, g.references) for g in groups for c in g.completions]
    texts = [t for g in groups for t in (*g.references, *g.completions)]
    assert len(pairs) >= 300
    assert any(c == "" and all(r.strip() for r in refs) for c, refs in pairs)  # empty hyp
    assert any(c.strip() and refs == ("",) for c, refs in pairs)  # empty reference
    assert ("", ("",)) in pairs  # both empty
    assert any(t and not t.strip() for t in texts)  # whitespace only
    assert any(t.strip() and not any(ch.isalnum() for ch in t) for t in texts)  # punctuation
    for needle in ("ü", "ß", "é", "\u0301", "👍", "我", "日本", "\t", " .", "  ", "42", "\n"):
        assert any(needle in t for t in texts), needle
    assert any(t.endswith(" .") for t in texts) and any(t.endswith("  ") for t in texts)
    assert max(len(t.split()) for t in texts) >= 2000
    assert {len(g.references) for g in groups} >= {1, 2, 3}
    with_repeats = [g for g in groups if len(set(g.completions)) < len(g.completions)]
    assert len(with_repeats) >= 50


# --- BLEU ---------------------------------------------------------------------------------------

# (reward spec, keyword arguments of sacrebleu.sentence_bleu for the same options)
BLEU_CASES = [
    ("bleu", {}),
    ("bleu:tokenize=13a", {"tokenize": "13a"}),
    ("bleu:tokenize=intl", {"tokenize": "intl"}),
    ("bleu:tokenize=zh", {"tokenize": "zh"}),
    ("bleu:tokenize=char", {"tokenize": "char"}),
    ("bleu:tokenize=none", {"tokenize": "none"}),
    ("bleu:smooth=exp", {"smooth_method": "exp"}),
    ("bleu:smooth=floor", {"smooth_method": "floor"}),
    ("bleu:smooth=floor,smooth_value=0.3", {"smooth_method": "floor", "smooth_value": 0.3}),
    ("bleu:smooth=add-k", {"smooth_method": "add-k"}),
    ("bleu:smooth=add-k,smooth_value=2", {"smooth_method": "add-k", "smooth_value": 2.0}),
    ("bleu:smooth=none", {"smooth_method": "none"}),
    ("bleu:smooth=exp,smooth_value=0.5", {"smooth_method": "exp", "smooth_value": 0.5}),
    ("bleu:lowercase=true", {"lowercase": True}),
    (
        "bleu:tokenize=intl,smooth=floor,smooth_value=0.05,lowercase=true",
        {"tokenize": "intl", "smooth_method": "floor", "smooth_value": 0.05, "lowercase": True},
    ),
]


@pytest.mark.parametrize(("spec", "kwargs"), BLEU_CASES, ids=[c[0] for c in BLEU_CASES])
def test_bleu_equals_sentence_bleu(check_parity, spread, spec, kwargs):
    """Reference: sacrebleu.sentence_bleu(hyp, refs, **options, use_effective_order=True)
    .score / 100, for every completion of the step. With default options the scores also spread
    over [0, 1], so this is not a parity of zeros."""

    def expected(hyp: str, refs: tuple[str, ...]) -> float:
        return (
            sacrebleu.sentence_bleu(hyp, list(refs), use_effective_order=True, **kwargs).score / 100
        )

    scores = check_parity(spec, expected)
    if not kwargs:
        spread(scores)  # exact matches score 100.00000000000004 / 100 in sacrebleu (see spread)


@pytest.mark.parametrize("order", [1, 2, 6])
def test_bleu_max_ngram_order_equals_sacrebleu(check_parity, order):
    """Reference: sacrebleu.metrics.BLEU(effective_order=True, max_ngram_order=N)
    .sentence_score(hyp, refs).score / 100 (sentence_bleu has no max_ngram_order argument)."""
    metric = BLEU(effective_order=True, max_ngram_order=order)
    check_parity(
        f"bleu:max_ngram_order={order}",
        lambda hyp, refs: metric.sentence_score(hyp, list(refs)).score / 100,
    )


# --- chrF ---------------------------------------------------------------------------------------

# (reward spec, keyword arguments of sacrebleu.metrics.CHRF for the same options)
CHRF_CASES = [
    ("chrf", {}),
    ("chrf:word_order=2", {"word_order": 2}),
    ("chrf:lowercase=true", {"lowercase": True}),
    ("chrf:whitespace=true", {"whitespace": True}),
    ("chrf:eps_smoothing=true", {"eps_smoothing": True}),
    ("chrf:char_order=4", {"char_order": 4}),
    ("chrf:beta=1", {"beta": 1}),
    (
        "chrf:word_order=2,lowercase=true,whitespace=true,eps_smoothing=true",
        {"word_order": 2, "lowercase": True, "whitespace": True, "eps_smoothing": True},
    ),
]


def _sentence_chrf(hyp: str, refs: Sequence[str], **kwargs) -> float:
    """sacrebleu.sentence_chrf(...).score / 100; sentence_chrf takes ``remove_whitespace`` for
    ``whitespace`` and has no ``lowercase``, so lowercased chrF uses CHRF(...).sentence_score,
    which is what sentence_chrf calls."""
    if kwargs.get("lowercase"):
        return CHRF(**kwargs).sentence_score(hyp, list(refs)).score / 100
    kwargs = dict(kwargs)
    if "whitespace" in kwargs:
        kwargs["remove_whitespace"] = not kwargs.pop("whitespace")
    return sacrebleu.sentence_chrf(hyp, list(refs), **kwargs).score / 100


@pytest.mark.parametrize(("spec", "kwargs"), CHRF_CASES, ids=[c[0] for c in CHRF_CASES])
def test_chrf_equals_sentence_chrf(check_parity, spread, spec, kwargs):
    """Reference: sacrebleu.sentence_chrf(hyp, refs, **options).score / 100 (with lowercase:
    sacrebleu.metrics.CHRF(**options).sentence_score(hyp, refs).score / 100). With default
    options the scores also spread over [0, 1]."""
    scores = check_parity(spec, lambda hyp, refs: _sentence_chrf(hyp, refs, **kwargs))
    if not kwargs:
        spread(scores)


# --- TER ----------------------------------------------------------------------------------------


def _ter_reward(ter: float, mapping: str) -> float:
    """The documented mapping of TER (edits / reference length) to a reward."""
    return 1 - min(ter, 1) if mapping == "clip" else 1 / (1 + ter)


# (reward spec, mapping, keyword arguments of sacrebleu.sentence_ter for the same options)
TER_CASES = [
    ("ter", "clip", {}),
    ("ter:normalized=true,mapping=inverse", "inverse", {"normalized": True}),
    (
        "ter:normalized=true,asian_support=true,case_sensitive=true",
        "clip",
        {"normalized": True, "asian_support": True, "case_sensitive": True},
    ),
    ("ter:no_punct=true,asian_support=true", "clip", {"no_punct": True, "asian_support": True}),
]


@pytest.mark.parametrize(("spec", "mapping", "kwargs"), TER_CASES, ids=[c[0] for c in TER_CASES])
def test_ter_equals_sentence_ter(check_parity, spread, spec, mapping, kwargs):
    """Reference: sacrebleu.sentence_ter(hyp, refs, **options).score / 100 = ter, mapped by
    clip: 1 - min(ter, 1) or inverse: 1 / (1 + ter). The ~2000-word pair is left out: sacrebleu
    needs minutes on it (a ~100-word pair stays in). With default options the scores spread."""

    def expected(hyp: str, refs: tuple[str, ...]) -> float:
        return _ter_reward(sacrebleu.sentence_ter(hyp, list(refs), **kwargs).score / 100, mapping)

    scores = check_parity(spec, expected, skip_long=True)
    if spec == "ter":
        spread(scores)


# --- Corpus scores ------------------------------------------------------------------------------


def _ref_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's reference streams: stream k holds every segment's k-th reference, None where a
    segment has fewer references."""
    width = max(map(len, references))
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _corpus(groups: Sequence[Group], n_refs: int | None) -> tuple[list[str], list[list[str]]]:
    """Every completion with its group's references (only groups with ``n_refs`` references)."""
    chosen = [g for g in groups if n_refs is None or len(g.references) == n_refs]
    hyps = [c for g in chosen for c in g.completions]
    refs = [list(g.references) for g in chosen for _ in g.completions]
    return hyps, refs


# (reward spec, sacrebleu metric with the same options; corpus BLEU has effective_order=False)
CORPUS_CASES = [
    ("bleu", lambda: BLEU()),
    (
        "bleu:tokenize=intl,smooth=floor,lowercase=true",
        lambda: BLEU(tokenize="intl", smooth_method="floor", lowercase=True),
    ),
    (
        "bleu:tokenize=char,smooth=add-k,smooth_value=2,max_ngram_order=6",
        lambda: BLEU(tokenize="char", smooth_method="add-k", smooth_value=2.0, max_ngram_order=6),
    ),
    ("chrf", lambda: CHRF()),
    (
        "chrf:word_order=2,lowercase=true,eps_smoothing=true",
        lambda: CHRF(word_order=2, lowercase=True, eps_smoothing=True),
    ),
    ("chrf:char_order=4,whitespace=true", lambda: CHRF(char_order=4, whitespace=True)),
]
# Every BLEU and chrF case with a variable number of references per segment, the default ones
# also with 1 and 2 references; TER (slow in sacrebleu) one case each.
CORPUS_PARAMS = [
    (spec, make, n)
    for spec, make in CORPUS_CASES
    for n in ((1, 2, None) if spec in ("bleu", "chrf") else (None,))
] + [
    ("ter", lambda: TER(), None),
    (
        "ter:mapping=inverse,normalized=true,asian_support=true,case_sensitive=true",
        lambda: TER(normalized=True, asian_support=True, case_sensitive=True),
        2,
    ),
    ("ter:no_punct=true", lambda: TER(no_punct=True), 1),
]


@pytest.mark.parametrize(
    ("spec", "make_metric", "n_refs"),
    CORPUS_PARAMS,
    ids=[f"{spec}-nrefs{n or 'var'}" for spec, _, n in CORPUS_PARAMS],
)
def test_corpus_score_equals_sacrebleu(
    builtin_registry, groups, short_groups, spec, make_metric, n_refs
):
    """Reference: sacrebleu.metrics.BLEU/CHRF/TER(same options).corpus_score(hyps, streams) with
    streams padded with None for segments with fewer references: equal score and str(signature)
    (nrefs:1, nrefs:2 and nrefs:var). TER leaves out the ~2000-word pair (minutes in sacrebleu)."""
    hyps, refs = _corpus(short_groups if spec.startswith("ter") else groups, n_refs)
    reward = builtin_registry.build_reward(spec)
    got = reward.corpus_score(hyps, refs)
    metric = make_metric()
    want = metric.corpus_score(hyps, _ref_streams(refs))
    assert got.score == want.score
    assert got.signature == str(metric.get_signature())
    assert f"nrefs:{n_refs or 'var'}" in got.signature


def test_corpus_score_equals_compat_functions(builtin_registry, groups, short_groups):
    """Reference: sacrebleu.corpus_bleu / corpus_chrf / corpus_ter(hyps, streams) with default
    options (TER on the segments with two references)."""
    hyps, refs = _corpus(groups, None)
    streams = _ref_streams(refs)
    bleu = builtin_registry.build_reward("bleu").corpus_score(hyps, refs)
    assert bleu.score == sacrebleu.corpus_bleu(hyps, streams).score
    chrf = builtin_registry.build_reward("chrf").corpus_score(hyps, refs)
    assert chrf.score == sacrebleu.corpus_chrf(hyps, streams).score
    hyps, refs = _corpus(short_groups, 2)
    ter = builtin_registry.build_reward("ter").corpus_score(hyps, refs)
    assert ter.score == sacrebleu.corpus_ter(hyps, _ref_streams(refs)).score
    assert 0 < bleu.score < 100 and 0 < chrf.score < 100 and 0 < ter.score < 100


@pytest.mark.parametrize("spec", ["bleu", "chrf:word_order=2", "ter"])
def test_corpus_resampler_equals_corpus_score_on_the_resample(
    builtin_registry, groups, short_groups, spec
):
    """The resampler (summed sufficient statistics) gives corpus_score of the corpus with each
    segment repeated counts[i] times; TER says lower is better."""
    hyps, refs = _corpus(short_groups if spec == "ter" else groups, 1)
    reward = builtin_registry.build_reward(spec)
    counts = [(3 * i + 1) % 4 for i in range(len(hyps))]  # 1, 0, 3, 2, ...: some left out
    picked = [i for i, c in enumerate(counts) for _ in range(c)]
    want = reward.corpus_score([hyps[i] for i in picked], [refs[i] for i in picked])
    got = reward.corpus_resampler(hyps, refs)(counts)
    assert got == want
    assert got.higher_is_better == (spec != "ter")
    generic = rewardkit.Reward.corpus_resampler(reward, hyps, refs)  # the contract's default
    assert generic(counts) == want


# --- Empty texts and groups ---------------------------------------------------------------------

EMPTY_GROUPS = [
    Group(references=["The cat sat on the mat."], completions=["", "   ", "\t"]),
    Group(references=[""], completions=["The cat sat on the mat.", "x"]),
    Group(references=[""], completions=["", " "]),
    Group(references=["   "], completions=[""]),
]

# spec -> (empty completion, empty reference, both empty): values the libraries define.
EMPTY_EXPECTED = {
    "bleu": (0.0, 0.0, 0.0),  # sacrebleu: no n-gram matches -> BLEU 0
    "bleu:smooth=add-k": (0.0, 0.0, 0.0),
    "bleu:tokenize=char": (0.0, 0.0, 0.0),
    "chrf": (0.0, 0.0, 0.0),  # no matching character n-grams -> 0
    "chrf:word_order=2": (0.0, 0.0, 0.0),
    "ter": (0.0, 0.0, 1.0),  # TER 1 (all edits) -> 0; both empty: TER 0 -> 1
    "ter:mapping=inverse": (0.5, 0.5, 1.0),
}


@pytest.mark.parametrize("spec", sorted(EMPTY_EXPECTED))
def test_empty_texts_have_defined_scores(builtin_registry, spec):
    """Reference: sacrebleu's sentence scores on empty / whitespace-only text: BLEU and chrF 0;
    TER 1 (empty completion or empty reference) or 0 (both empty), mapped to the reward. Never an
    exception, always a finite float."""
    out = builtin_registry.build_reward(spec)(EMPTY_GROUPS)
    empty_hyp, empty_ref, both = EMPTY_EXPECTED[spec]
    assert out.scores == [[empty_hyp] * 3, [empty_ref] * 2, [both] * 2, [both]]


@pytest.mark.parametrize("spec", ["chrf:eps_smoothing=true", "chrf:whitespace=true"])
def test_empty_texts_chrf_options(builtin_registry, spec):
    """Reference: sacrebleu.metrics.CHRF(same options).sentence_score(hyp, refs).score / 100 on
    empty texts (with eps_smoothing the library gives a tiny positive score, not 0)."""
    kwargs = {spec.split(":")[1].split("=")[0]: True}
    metric = CHRF(**kwargs)
    out = builtin_registry.build_reward(spec)(EMPTY_GROUPS)
    for group, row in zip(EMPTY_GROUPS, out.scores):
        for hyp, score in zip(group.completions, row):
            assert math.isfinite(score)
            assert score == metric.sentence_score(hyp, list(group.references)).score / 100


DEDUP_CASES = [
    ("bleu", lambda h, r: sacrebleu.sentence_bleu(h, r).score / 100),
    ("bleu:tokenize=zh", lambda h, r: sacrebleu.sentence_bleu(h, r, tokenize="zh").score / 100),
    ("chrf", lambda h, r: sacrebleu.sentence_chrf(h, r).score / 100),
    ("chrf:word_order=2", lambda h, r: sacrebleu.sentence_chrf(h, r, word_order=2).score / 100),
    ("ter", lambda h, r: _ter_reward(sacrebleu.sentence_ter(h, r).score / 100, "clip")),
]


@pytest.mark.parametrize(("spec", "reference"), DEDUP_CASES, ids=[c[0] for c in DEDUP_CASES])
def test_group_deduplication(builtin_registry, spec, reference):
    """Reference: sacrebleu's sentence score of each completion (identical completions of a group
    score the same) and unique_fraction = completions scored / completions (here 3 of 7)."""
    step = [
        Group(references=["the cat sat on the mat"], completions=["the cat", "the cat", "a mat"]),
        Group(references=["ein Hund"], completions=["ein Hund"] * 4),
    ]
    out = builtin_registry.build_reward(spec)(step)
    assert out.scores == [[reference(c, list(g.references)) for c in g.completions] for g in step]
    assert out.scores[0][0] == out.scores[0][1] != out.scores[0][2]
    assert len(set(out.scores[1])) == 1
    assert out.diagnostics["unique_fraction"] == 3 / 7
    assert out.components == {spec.split(":")[0]: out.scores}
