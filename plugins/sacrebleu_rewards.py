"""BLEU, chrF and TER rewards on sacrebleu.

Scores equal sacrebleu's ``sentence_bleu`` / ``sentence_chrf`` / ``sentence_ter`` on the same
inputs (tests/plugins/test_sacrebleu_rewards.py checks it on a few hundred pairs). They are faster
because the per-reference work (tokenisation, n-gram statistics) runs once per group and identical
completions are scored once; n-gram matching counts with set intersections instead of per-n-gram
Python loops. The final formulas are sacrebleu's own (``BLEU.compute_bleu``, chrF's
``_compute_f_score``), so no float arithmetic is re-implemented.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import rewardkit

Tokenizer = Literal[
    "13a", "intl", "zh", "char", "none", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200"
]


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacrebleu's reference streams (None pads missing ones)."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


class Bleu(rewardkit.GroupwiseReward):
    """Sentence BLEU with effective order (sacrebleu), divided by 100. Range [0, 1], higher is better.

    Options: tokenize (13a), smooth (exp: none, floor, add-k, exp), smooth_value, lowercase,
    max_ngram_order (4). Empty completion or empty reference: 0.
    """

    name = "bleu"

    def __init__(
        self,
        tokenize: Tokenizer = "13a",
        smooth: Literal["exp", "floor", "add-k", "none"] = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        max_ngram_order: int = 4,
    ):
        from sacrebleu.metrics import BLEU

        if max_ngram_order < 1:
            raise ValueError("max_ngram_order must be at least 1")
        settings = dict(
            tokenize=tokenize,
            smooth_method=smooth,
            smooth_value=smooth_value,
            lowercase=lowercase,
            max_ngram_order=max_ngram_order,
        )
        self.metric = BLEU(effective_order=True, **settings)
        self.corpus_metric = BLEU(**settings)  # corpus BLEU does not use effective order
        self.max_n = max_ngram_order

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        m = self.metric
        info = m._extract_reference_info([m._preprocess_segment(r) for r in references])
        by_order: list[dict[tuple[str, ...], int]] = [{} for _ in range(self.max_n)]
        for gram, count in info["ref_ngrams"].items():
            by_order[len(gram) - 1][gram] = count
        return by_order, info["ref_lens"]

    def score_one(self, prepared: Any, completion: str) -> float:
        ref_by_order, ref_lens = prepared
        tokens = self.metric._preprocess_segment(completion).split()
        correct, total = [0] * self.max_n, [0] * self.max_n
        for n in range(1, self.max_n + 1):
            if len(tokens) < n:
                break
            grams = Counter(zip(*(tokens[i:] for i in range(n))))
            ref = ref_by_order[n - 1]
            total[n - 1] = len(tokens) - n + 1
            correct[n - 1] = sum(min(grams[g], ref[g]) for g in grams.keys() & ref.keys())
        ref_len = self.metric._get_closest_ref_len(len(tokens), ref_lens)
        stats = [len(tokens), ref_len, *correct, *total]
        return self.metric._compute_score_from_stats(stats).score / 100.0

    def corpus_score(self, hypotheses, references):
        result = self.corpus_metric.corpus_score(list(hypotheses), _streams(references))
        return rewardkit.CorpusScore("BLEU", result.score, str(self.corpus_metric.get_signature()))


class Chrf(rewardkit.GroupwiseReward):
    """Sentence chrF (sacrebleu), divided by 100; chrF++ with word_order=2. Range [0, 1], higher is
    better.

    Options: char_order (6), word_order (0), beta (2), lowercase, whitespace, eps_smoothing.
    Empty completion or empty reference: 0.
    """

    name = "chrf"

    def __init__(
        self,
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ):
        from sacrebleu.metrics import CHRF
        from sacrebleu.metrics.helpers import extract_all_char_ngrams, extract_word_ngrams

        if char_order < 1 or word_order < 0:
            raise ValueError("char_order must be at least 1 and word_order at least 0")
        self.metric = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        self._char_ngrams, self._word_ngrams = extract_all_char_ngrams, extract_word_ngrams

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        m = self.metric
        return m._extract_reference_info([m._preprocess_segment(r) for r in references])

    def score_one(self, prepared: Any, completion: str) -> float:
        m = self.metric
        hyp = m._preprocess_segment(completion)
        hyp_ngrams = self._char_ngrams(hyp, m.char_order, m.whitespace)
        if m.word_order:
            words = m._remove_punctuation(hyp)
            hyp_ngrams += [self._word_ngrams(words, n) for n in range(1, m.word_order + 1)]
        hyp_counts = [sum(c.values()) for c in hyp_ngrams]
        best_f, best_stats = -1.0, []
        for ref_ngrams in prepared["ref_ngrams"]:  # like sacrebleu: the best-scoring reference
            stats = []
            for h, r, h_count in zip(hyp_ngrams, ref_ngrams, hyp_counts):
                match = sum(min(h[g], r[g]) for g in h.keys() & r.keys())
                stats += [h_count if r else 0, sum(r.values()), match]
            f = m._compute_f_score(stats)
            if f > best_f:
                best_f, best_stats = f, stats
        return m._compute_score_from_stats(best_stats).score / 100.0

    def corpus_score(self, hypotheses, references):
        result = self.metric.corpus_score(list(hypotheses), _streams(references))
        return rewardkit.CorpusScore("chrF", result.score, str(self.metric.get_signature()))


class Ter(rewardkit.GroupwiseReward):
    """TER as a reward: 1 - min(TER, 1) by default, or 1 / (1 + TER) with mapping=inverse.
    Range [0, 1], higher is better.

    TER (sacrebleu) is edits / reference length: 0 is a perfect match and it exceeds 1 when the
    completion needs more edits than the reference has words. ``clip`` reads as "share of the
    reference that needs no edit" and gives 0 to every completion with TER >= 1; ``inverse`` keeps
    ranking those (1 at TER 0, 0.5 at TER 1). Options: mapping, normalized, no_punct,
    asian_support, case_sensitive.
    """

    name = "ter"

    def __init__(
        self,
        mapping: Literal["clip", "inverse"] = "clip",
        normalized: bool = False,
        no_punct: bool = False,
        asian_support: bool = False,
        case_sensitive: bool = False,
    ):
        from sacrebleu.metrics import TER

        self.mapping = mapping
        self.metric = TER(
            normalized=normalized,
            no_punct=no_punct,
            asian_support=asian_support,
            case_sensitive=case_sensitive,
        )

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        m = self.metric  # sacrebleu preprocesses TER references twice; do the same
        return m._extract_reference_info([m._preprocess_segment(r) for r in references])

    def score_one(self, prepared: Any, completion: str) -> float:
        m = self.metric
        stats = m._compute_segment_statistics(m._preprocess_segment(completion), prepared)
        ter = m._compute_score_from_stats(stats).score / 100.0
        return 1.0 - min(ter, 1.0) if self.mapping == "clip" else 1.0 / (1.0 + ter)

    def corpus_score(self, hypotheses, references):
        result = self.metric.corpus_score(list(hypotheses), _streams(references))
        return rewardkit.CorpusScore("TER", result.score, str(self.metric.get_signature()))


@rewardkit.hookimpl
def register_rewards(register):
    register(Bleu)
    register(Chrf)
    register(Ter)
