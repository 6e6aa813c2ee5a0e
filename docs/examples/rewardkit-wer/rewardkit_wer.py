"""A word error rate reward for rewardkit, computed with jiwer.

A worked example of a third-party plugin: it uses only rewardkit's public API and is found through
the entry point ``wer = "rewardkit_wer"`` of group ``rewardkit`` in its pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Sequence

import rewardkit


class WordErrorRate(rewardkit.GroupwiseReward):
    """Word accuracy: 1 - min(WER, 1) against the best reference (jiwer). Range [0, 1].

    Higher is better. Options: lowercase (false), remove_punctuation (false; removes Unicode
    punctuation without inserting a space, so "don't" becomes "dont"), applied to completion and
    references alike before jiwer splits words on spaces. With several references the lowest WER
    counts. An empty reference (no words after normalisation) gives 1.0 to an empty completion
    and 0.0 to any other.
    """

    name = "wer"

    def __init__(self, lowercase: bool = False, remove_punctuation: bool = False):
        import jiwer  # imported here, not at module level, so `rewardkit plugins` stays fast

        steps: list[jiwer.AbstractTransform] = []
        if remove_punctuation:
            steps.append(jiwer.RemovePunctuation())
        if lowercase:
            steps.append(jiwer.ToLowerCase())
        # The same transform jiwer.wer applies by default, after the options: text -> [[words]].
        self._words = jiwer.Compose([*steps, jiwer.transformations.wer_default])
        self._unchanged = jiwer.Compose([])  # the input is already split into words
        self._process_words = jiwer.process_words

    def prepare(self, references: Sequence[str], source: str | None) -> list[list[str]]:
        """Normalise and split each reference into words, once per group."""
        return [self._words(reference)[0] for reference in references]

    def score_one(self, prepared: list[list[str]], completion: str) -> float:
        """1 - min(WER, 1) against the reference with the lowest WER."""
        hypothesis = self._words(completion)[0]
        return max(self._accuracy(reference, hypothesis) for reference in prepared)

    def _accuracy(self, reference: list[str], hypothesis: list[str]) -> float:
        if not reference:  # WER is undefined (jiwer 3 raises): empty matches only empty
            return 0.0 if hypothesis else 1.0
        output = self._process_words([reference], [hypothesis], self._unchanged, self._unchanged)
        return 1.0 - min(float(output.wer), 1.0)


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``wer`` reward."""
    register(WordErrorRate)
