"""METEOR reward on nltk.

Scores equal ``nltk.translate.meteor_score.meteor_score`` on the same tokens. Text is tokenised with
nltk's Treebank-style ``NLTKWordTokenizer`` (no data download needed) or on whitespace.

Synonym matching needs the WordNet data (``python -m nltk.downloader wordnet``, or a copy under
``$NLTK_DATA``). Without it, METEOR matches exact words and Porter stems only; scores are then equal
to or lower than full METEOR's, and a one-time warning says so. ``synonyms=on`` requires WordNet,
``synonyms=off`` never uses it (reproducible across machines).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import rewardkit

_WARNED = False
ENABLE_HINT = "install it with `python -m nltk.downloader wordnet` (or point $NLTK_DATA at a copy)"


class NoSynonyms:
    """Stands in for nltk's WordNet reader: no synsets, so only exact and stem matches count."""

    def synsets(self, word: str) -> list:
        return []


def wordnet_or_none() -> Any:
    """nltk's WordNet reader if its data is installed locally, else None (never downloads)."""
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
    except LookupError:
        return None
    return wordnet


class Meteor(rewardkit.GroupwiseReward):
    """METEOR (nltk): unigram F-mean with a fragmentation penalty. Range [0, 1], higher is better.

    Options: synonyms (auto: WordNet when its data is installed, else exact + stem matching),
    tokenize (nltk or whitespace), alpha (0.9), beta (3.0), gamma (0.5). Multiple references: the
    best. Empty completion or reference: 0.
    """

    name = "meteor"

    def __init__(
        self,
        synonyms: Literal["auto", "on", "off"] = "auto",
        tokenize: Literal["nltk", "whitespace"] = "nltk",
        alpha: float = 0.9,
        beta: float = 3.0,
        gamma: float = 0.5,
    ):
        global _WARNED
        from nltk.stem.porter import PorterStemmer
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.translate.meteor_score import meteor_score

        wordnet = None if synonyms == "off" else wordnet_or_none()
        if wordnet is None and synonyms == "on":
            raise ValueError(f"synonyms=on needs the WordNet data: {ENABLE_HINT}")
        if wordnet is None and synonyms == "auto" and not _WARNED:
            _WARNED = True
            warnings.warn(
                f"WordNet data not found: METEOR uses exact and stem matching only; {ENABLE_HINT}",
                stacklevel=2,
            )
        self.wordnet = wordnet or NoSynonyms()
        self.uses_synonyms = wordnet is not None
        self._tokenize = NLTKWordTokenizer().tokenize if tokenize == "nltk" else str.split
        self.tokenize = tokenize
        self._meteor = meteor_score
        self._settings = dict(stemmer=PorterStemmer(), alpha=alpha, beta=beta, gamma=gamma)

    def signature(self) -> str:
        from importlib.metadata import version

        synonyms = "wordnet" if self.uses_synonyms else "none"
        return (
            f"{self.spec or self.name}|synonyms:{synonyms}|tok:{self.tokenize}|"
            f"stem:porter|nltk:{version('nltk')}"
        )

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        return [self._tokenize(r) for r in references]

    def score_one(self, prepared: Any, completion: str) -> float:
        return self._meteor(
            prepared, self._tokenize(completion), wordnet=self.wordnet, **self._settings
        )


@rewardkit.hookimpl
def register_rewards(register):
    register(Meteor)
