"""BLEU, chrF and TER rewards on sacrebleu.

Scores equal sacrebleu's ``sentence_bleu`` / ``sentence_chrf`` / ``sentence_ter`` on the same
inputs (tests/plugins/test_sacrebleu_rewards.py checks it). They are faster because the
per-reference work (tokenisation, n-gram statistics) runs once per group, identical completions
are scored once, and matches are counted without per-n-gram Python loops: BLEU tokenises word by
word through a cache (:meth:`Bleu._tokens`), counts with set intersections
(:func:`_clipped_matches`) and scores identical statistics once; chrF codes character n-grams as
integers and counts with numpy (:meth:`Chrf._codes`), or with set intersections when a group's
alphabet is too large to code. The final formulas are sacrebleu's own (``BLEU.compute_bleu``,
chrF's ``_compute_f_score``), so no float arithmetic is re-implemented.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from itertools import compress
from operator import add
from typing import Any, Literal

import rewardkit

Tokenizer = Literal[
    "13a", "intl", "zh", "char", "none", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200"
]


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacrebleu's reference streams (None pads missing ones)."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _resampler(metric, name, hypotheses, references, higher_is_better=True):
    """Corpus scores of resampled corpora from per-segment sufficient statistics, extracted
    once: the counts-weighted sum of the statistics, scored as sacrebleu's corpus_score scores
    their plain sum (sacrebleu's own bootstrap does the same)."""
    import numpy as np

    segment_stats = np.array(
        metric._extract_corpus_statistics(list(hypotheses), _streams(references)), dtype=float
    )
    signature = str(metric.get_signature())

    def resample(counts):
        totals = np.asarray(counts, dtype=float) @ segment_stats
        score = metric._compute_score_from_stats(totals.tolist()).score
        return rewardkit.CorpusScore(name, score, signature, higher_is_better)

    return resample


#: Entries a per-reward cache (BLEU's word tokenisations and scores) holds before it is emptied.
_CACHE_LIMIT = 1 << 17


def _signature(reward: rewardkit.Reward, metric: Any) -> str:
    """The reward's spec with sacrebleu's signature of its sentence-level metric (the number of
    references varies from group to group: nrefs:var)."""
    probe = copy.copy(metric)
    probe.num_refs = -1
    return f"{reward.spec or reward.name}|{probe.get_signature()}"


def _clipped_matches(
    grams: Sequence, ref_keys: set, ref_multi: dict, distinct: bool = False
) -> tuple[int, bool]:
    """sum(min(hyp count, ref count)) over the n-grams of one order, as sacrebleu counts matches.

    ``grams`` are the hypothesis n-grams (a string when they are its characters), ``ref_keys``
    the distinct reference n-grams and ``ref_multi`` those the reference holds more than once,
    with their counts. A shared n-gram adds 1 and, when both sides repeat it,
    min(hyp count, ref count) - 1 more: a set intersection plus a correction over the few shared
    n-grams the reference repeats. ``distinct``: the hypothesis n-grams are known to be all
    different (then so are those of every higher order); returned updated with the count.
    """
    common = ref_keys.intersection(grams)
    matches = len(common)
    if matches and ref_multi and not distinct:
        repeated = ref_multi.keys() & common
        if repeated:
            if isinstance(grams, str):  # characters: str.count counts them exactly
                counts = map(grams.count, repeated)
            elif len(set(grams)) == len(grams):
                return matches, True
            elif len(repeated) < 3:
                counts = map(grams.count, repeated)
            else:
                counts = map(Counter(grams).__getitem__, repeated)
            matches += sum(map(min, counts, map(ref_multi.__getitem__, repeated))) - len(repeated)
    return matches, distinct


def _repeated(counts: dict) -> dict:
    """The n-grams counted more than once, with their counts."""
    return dict(compress(counts.items(), map((1).__lt__, counts.values())))


def _split_counts(counts: dict) -> tuple[set, dict, int]:
    """Reference n-gram counts -> (distinct n-grams, those repeated with their counts, total)."""
    return set(counts), _repeated(counts), sum(counts.values())


class _CharIds(dict):
    """A ``str.translate`` table: a reference character's ordinal -> its id, any other -> 0."""

    def __missing__(self, key: int) -> int:
        return 0


_INT64_MAX = (1 << 63) - 1


class Bleu(rewardkit.GroupwiseReward):
    """Sentence BLEU with effective order (sacrebleu), divided by 100. Range [0, 1], higher better.

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
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

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
        self._word_tokenizer = type(self.metric.tokenizer) is Tokenizer13a
        self._words: dict[str, tuple[str, ...]] = {}  # word -> its 13a tokens
        self._scores: dict[tuple[int, ...], float] = {}  # BLEU statistics -> score

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        """As _extract_reference_info: per order the reference n-grams (unigrams keyed by the
        token itself) and those repeated, with the most times any one reference has them; and
        the reference lengths."""
        refs = [self._tokens(r) for r in references]
        orders = []
        for n in range(self.max_n):
            grams = [list(zip(*(t[i:] for i in range(n + 1)))) if n else t for t in refs]
            if len(grams) == 1:
                keys = set(grams[0])
                repeated = {} if len(keys) == len(grams[0]) else _repeated(Counter(grams[0]))
                orders.append((keys, repeated))
            else:
                merged: Counter = Counter()
                for counts in map(Counter, grams):
                    for gram, count in counts.items():
                        merged[gram] = max(merged[gram], count)
                orders.append((set(merged), _repeated(merged)))
        return orders, [len(t) for t in refs]

    def _tokens(self, text: str) -> list[str]:
        """``metric._preprocess_segment(text).split()``, with 13a tokenisation done per word.

        The 13a rules (sacrebleu's regexes) never act across whitespace, so tokenising each
        whitespace-separated word alone gives the same tokens; the words are cached. A text with a
        newline inside goes whole to sacrebleu: 13a joins words split by "-\\n" at a line break.
        """
        m = self.metric
        if not self._word_tokenizer:
            return m._preprocess_segment(text).split()
        line = (text.lower() if m.lowercase else text).rstrip()
        if "\n" in line:
            return m._preprocess_segment(text).split()
        words, tokens = self._words, []
        for word in line.split():
            cached = words.get(word)
            if cached is None:
                if len(words) >= _CACHE_LIMIT:
                    words.clear()
                # 13a only splits at ASCII punctuation: an alphanumeric word stays whole.
                split = (word,) if word.isalnum() else tuple(m.tokenizer(word).split())
                cached = words[word] = split
            tokens += cached
        return tokens

    def score_one(self, prepared: Any, completion: str) -> float:
        m, (ref_orders, ref_lens) = self.metric, prepared
        tokens = self._tokens(completion)
        length, max_n = len(tokens), self.max_n
        correct = [0] * max_n
        total = [max(length - n, 0) for n in range(max_n)]  # n-grams of order n + 1
        grams: list = tokens
        shifted = [tokens[i:] for i in range(1, max_n)]
        distinct = False
        for n, (ref_keys, ref_multi) in enumerate(ref_orders):
            if n:
                grams = list(zip(tokens, *shifted[:n]))
            correct[n], distinct = _clipped_matches(grams, ref_keys, ref_multi, distinct)
            if not correct[n]:  # no n-gram shared: no longer one either
                break
        # one reference: the length _get_closest_ref_len returns is its length
        ref_len = ref_lens[0] if len(ref_lens) == 1 else m._get_closest_ref_len(length, ref_lens)
        stats = (length, ref_len, *correct, *total)
        score = self._scores.get(stats)
        if score is None:
            if len(self._scores) >= _CACHE_LIMIT:
                self._scores.clear()
            score = self._scores[stats] = m._compute_score_from_stats(list(stats)).score / 100.0
        return score

    def signature(self) -> str:
        return _signature(self, self.metric)

    def corpus_score(self, hypotheses, references):
        result = self.corpus_metric.corpus_score(list(hypotheses), _streams(references))
        return rewardkit.CorpusScore("BLEU", result.score, str(self.corpus_metric.get_signature()))

    def corpus_resampler(self, hypotheses, references):
        return _resampler(self.corpus_metric, "BLEU", hypotheses, references)


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
        import numpy
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
        self._np = numpy
        self._char_ngrams, self._word_ngrams = extract_all_char_ngrams, extract_word_ngrams

    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        """Per reference its character and word n-gram statistics, as _extract_reference_info
        collects them; character n-grams as integer codes when the group's alphabet allows."""
        m, np = self.metric, self._np
        refs = [m._preprocess_segment(r) for r in references]
        lines = [r if m.whitespace else "".join(r.split()) for r in refs]
        alphabet = sorted(set().union(*lines))
        base = len(alphabet) + 1
        coded = base <= 256 and base**m.char_order < 1 << 62  # codes fit in int64
        table = _CharIds({ord(c): i for i, c in enumerate(alphabet, 1)}) if coded else None
        prepared = []
        for ref, line in zip(refs, lines):
            if coded:
                unique, counts = np.unique(self._codes(line, table, base), return_counts=True)
                orders = min(len(line), m.char_order)  # orders with n-grams, in order in `unique`
                starts = unique.searchsorted([base**k for k in range(1, orders + 1)])
                totals = [max(len(line) - n, 0) for n in range(m.char_order)]
                chars = (np.append(unique, _INT64_MAX), counts, starts, totals)
            else:
                chars = [
                    _split_counts(c) for c in self._char_ngrams(ref, m.char_order, m.whitespace)
                ]
            ref_words = m._remove_punctuation(ref) if m.word_order else []
            words = [
                _split_counts(self._word_ngrams(ref_words, n)) for n in range(1, m.word_order + 1)
            ]
            prepared.append((chars, words))
        return (table, base) if coded else None, prepared

    def _codes(self, line: str, table: dict, base: int) -> Any:
        """Integer codes of the character n-grams of ``line``, orders 1..char_order, one array.

        With d_1..d_k the ids of an n-gram's characters (1, 2, ... for the group's reference
        characters, 0 for any other), its code is base**k + sum(d_j * base**(k - j)): n-grams of
        reference characters get one code each, never that of an n-gram with another character,
        and order k fills [base**k, 2 * base**k), so orders never mix.
        """
        np = self._np
        ids = np.frombuffer(line.translate(table).encode("latin-1"), np.uint8).astype(np.int64)
        codes = [ids + base]
        for k in range(1, self.metric.char_order):
            codes.append(codes[-1][:-1] * base + ids[k:])
        return np.concatenate(codes)

    def score_one(self, prepared: Any, completion: str) -> float:
        m, np = self.metric, self._np
        coding, refs = prepared
        hyp = m._preprocess_segment(completion)
        line = hyp if m.whitespace else "".join(hyp.split())  # as extract_all_char_ngrams
        size, char_order = len(line), m.char_order
        counts = [size - n if size > n else 0 for n in range(char_order)]
        if coding:
            codes = self._codes(line, *coding)
        else:
            char_grams: list[Sequence[str]] = [line]  # order n + 1, built on demand from order n
            distinct_from = char_order  # the char n-grams of this order and higher all differ
        word_grams = []
        if m.word_order:
            words = m._remove_punctuation(hyp)
            for n in range(1, m.word_order + 1):  # as extract_word_ngrams
                word_grams.append([" ".join(words[i : i + n]) for i in range(len(words) - n + 1)])
        best_f = -1.0
        for chars, ref_words in refs:  # like sacrebleu: the best-scoring reference
            stats: list[int] = []
            if coding:
                ref_codes, ref_counts, starts, totals = chars
                matches = [0] * char_order
                if len(starts) and size:
                    found = ref_codes.searchsorted(codes)
                    hit = ref_codes[found] == codes
                    hyp_counts = np.bincount(found[hit], minlength=len(ref_counts))
                    clipped = np.minimum(hyp_counts, ref_counts)
                    matches[: len(starts)] = np.add.reduceat(clipped, starts).tolist()
                for count, total, match in zip(counts, totals, matches):
                    stats += (count if total else 0, total, match)
            else:
                matching = True  # no n-gram shared at some order: no longer one either
                for n, (ref_keys, ref_multi, total) in enumerate(chars):
                    match = 0
                    if matching and counts[n] and total:
                        if n == len(char_grams):
                            char_grams.append(list(map(add, char_grams[-1], line[n:])))
                        match, distinct = _clipped_matches(
                            char_grams[n], ref_keys, ref_multi, n >= distinct_from
                        )
                        if distinct:
                            distinct_from = min(distinct_from, n)
                    matching = match > 0
                    stats += (counts[n] if total else 0, total, match)
            for grams, (ref_keys, ref_multi, total) in zip(word_grams, ref_words):
                match = _clipped_matches(grams, ref_keys, ref_multi)[0] if total else 0
                stats += (len(grams) if total else 0, total, match)
            best_f = max(best_f, m._compute_f_score(stats))
        # sacrebleu scores the best statistics again with the same _compute_f_score: same number.
        return best_f / 100.0

    def signature(self) -> str:
        return _signature(self, self.metric)

    def corpus_score(self, hypotheses, references):
        result = self.metric.corpus_score(list(hypotheses), _streams(references))
        return rewardkit.CorpusScore("chrF", result.score, str(self.metric.get_signature()))

    def corpus_resampler(self, hypotheses, references):
        return _resampler(self.metric, "chrF", hypotheses, references)


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

    def signature(self) -> str:
        return _signature(self, self.metric)

    def corpus_score(self, hypotheses, references):
        result = self.metric.corpus_score(list(hypotheses), _streams(references))
        signature = str(self.metric.get_signature())
        return rewardkit.CorpusScore("TER", result.score, signature, higher_is_better=False)

    def corpus_resampler(self, hypotheses, references):
        return _resampler(self.metric, "TER", hypotheses, references, higher_is_better=False)


@rewardkit.hookimpl
def register_rewards(register):
    register(Bleu)
    register(Chrf)
    register(Ter)
