"""ROUGE-1, ROUGE-2 and ROUGE-L F-measure rewards on Google's rouge-score package.

Scores equal ``rouge_scorer.RougeScorer([type], use_stemmer=...).score_multi(refs, hyp)``'s
F-measure; references are tokenised (and their n-grams counted) once per group. rouge-score's
default tokeniser lowercases and keeps only ``[a-z0-9]`` runs, so text in other scripts (German
umlauts split words, CJK vanishes) scores 0 unless it shares such tokens: prefer chrF or BLEU for
non-English targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import rewardkit


class _Rouge(rewardkit.GroupwiseReward):
    order: ClassVar[int | None]  # n for ROUGE-n, None for ROUGE-L

    def __init__(self, use_stemmer: bool = False):
        from rouge_score import rouge_scorer, tokenizers

        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)
        self._lib = rouge_scorer
        self.use_stemmer = use_stemmer

    def signature(self) -> str:
        from importlib.metadata import version

        stemmer = "porter" if self.use_stemmer else "no"
        return f"{self.spec or self.name}|stemmer:{stemmer}|rouge-score:{version('rouge-score')}"

    def _features(self, text: str) -> Any:
        tokens = self._tokenizer.tokenize(text)
        return tokens if self.order is None else self._lib._create_ngrams(tokens, self.order)

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        return [self._features(r) for r in references]

    def score_one(self, prepared: Any, completion: str) -> float:
        hyp = self._features(completion)
        compare = self._lib._score_lcs if self.order is None else self._lib._score_ngrams
        # Multiple references: the best F-measure, as RougeScorer.score_multi picks it.
        return max(compare(ref, hyp).fmeasure for ref in prepared)


class Rouge1(_Rouge):
    """ROUGE-1 F-measure (unigram overlap, rouge-score). Range [0, 1], higher is better.

    Option: use_stemmer (false). English-oriented tokeniser; empty text scores 0.
    """

    name = "rouge1"
    order = 1


class Rouge2(_Rouge):
    """ROUGE-2 F-measure (bigram overlap, rouge-score). Range [0, 1], higher is better.

    Option: use_stemmer (false). English-oriented tokeniser; empty text scores 0.
    """

    name = "rouge2"
    order = 2


class RougeL(_Rouge):
    """ROUGE-L F-measure (longest common subsequence, rouge-score). Range [0, 1], higher is better.

    Option: use_stemmer (false). English-oriented tokeniser; empty text scores 0.
    """

    name = "rougel"  # registry names are lowercase; specs match names case-insensitively (rougeL)
    order = None


@rewardkit.hookimpl
def register_rewards(register):
    register(Rouge1)
    register(Rouge2)
    register(RougeL)
