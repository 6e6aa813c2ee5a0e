"""Shared test data for the reward plugins' parity tests.

``make_groups()`` builds, from a fixed seed, the same step every run: 132 groups (one prompt
each: 1-3 references and several completions, some repeated), 1079 (completion, references)
pairs, 895 of them distinct. They cover English and German text with punctuation, accents,
umlauts, emoji, combining characters, Chinese and Japanese, empty / whitespace-only /
punctuation-only strings, numbers, tabs, trailing spaces and tokenised " ." endings, tokeniser
traps, random noise texts, a ~2000-word text and near-duplicates of the reference
(substitutions, synonyms, deletions, insertions and reorderings, at several strengths so that
scores spread over [0, 1] instead of sitting at 0).

The parity tests build each reward through the public path (``load_registry`` then
``build_reward(spec)``), score the whole step in one call and compare every completion with the
reference library, exactly (``==``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

import rewardkit
from rewardkit import Group

SEED = 20240917
#: Groups with a text of more than this many words plus CJK characters count as long (see
#: ``text_size`` and ``check_parity``'s skip_long).
LONG_TEXT_SIZE = 150

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "She sells sea shells by the sea shore, doesn't she?",
    "My car broke down on the highway, so I called a big tow truck.",
    "The automobile industry employs millions of people around the world.",
    "Please send the report by Friday; we need it for the board meeting.",
    'He said: "I\'ll be there at 5 p.m." -- but he never came.',
    "Running, jumping and swimming are the three events of the race.",
    "The children were playing happily in the large garden behind the house.",
    "A fast car is not always a safe car, especially in the rain!",
    "Why didn't you tell me (before the meeting) that the budget was cut?",
    "Dr. Smith's lab published 3 papers in 2023, each cited over 100 times.",
    "The weather today is sunny with a high of 25 degrees and light winds.",
    "We walked along the river, watched the boats, and talked for hours.",
    "Don't forget to buy milk, eggs, bread & butter at the store.",
    "Translation quality is often measured with BLEU, chrF and TER.",
    "The speech model transcribed the audio, then translated it into German.",
    "Our new policy starts on Monday, March 3rd, and applies to all staff.",
    "The cats sat on the mat and the dogs slept by the fire.",
    "Is this the real life, or is this just fantasy?",
]

GERMAN = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Die Straße war nass, weil es die ganze Nacht geregnet hatte.",
    "Können Sie mir bitte sagen, wo der Bahnhof ist?",
    "Wir haben uns gestern im Café getroffen und über Bücher gesprochen.",
    "Das Auto ist größer als das Fahrrad, aber langsamer im Stadtverkehr.",
    "Ärzte, Lehrer und Ingenieure demonstrierten vor dem Rathaus.",
    "Übermorgen fährt der Zug um 7:45 Uhr von Gleis 3 ab.",
    "Die Prüfung war schwierig; trotzdem haben alle Schüler bestanden!",
    "Äpfel, Birnen und Pflaumen wachsen in unserem Garten.",
    "„Guten Morgen“, sagte die Großmutter und öffnete das Fenster.",
]

UNICODE = [
    "Café naïve résumé: the façade of the hôtel was beautiful.",
    "Zoë and Chloë visited São Paulo and Zürich in the spring.",
    "Great job 👍 the party was amazing 🎉🎉 see you soon 😀",
    "Cafe\u0301 and cafe\u0301s: combining accents look the same as precomposed ones.",
    "Ελληνικά και русский текст в одном предложении.",
    "naïve cooperation — “quoted” text… with ellipsis and dashes – here.",
    "The emoji 👩‍👩‍👧 is a family, and 🇩🇪 is a flag.",
    "Straße, STRASSE and straße differ only by case folding.",
]

CJK = [
    "我们明天去北京参观故宫。",
    "今天天气很好，我们一起去公园散步吧！",
    "这个模型把语音翻译成中文，效果很不错。",
    "私は毎朝コーヒーを飲みます。",
    "東京は日本の首都で、とても大きな都市です。",
    "この映画はとても面白かったので、もう一度見たいです。",
    "他说：“我不知道。”然后就走了。",
    "日本語と English が混ざった文です。",
]

NUMBERS = [
    "3.14 1,000 42 2024-05-01 $5.99 50% 7:30",
    "In 1999, 23 of 100 people (23%) paid €1.234,56 each.",
    "Call +49 30 1234567 or 555-0199 before 10:00.",
    "1 2 3 4 5 6 7 8 9 10",
]

# Inputs that stress tokenisers: sacrebleu 13a's entity and <skipped> rules, "-\n" joins and
# newlines, digits next to "." and ",", and whitespace that str.split() knows but " " is not.
TOKENIZER_TRAPS = [
    "&quot;Hello&quot; &amp; goodbye &lt;b&gt;bold&lt;/b&gt; &amp;amp;",
    "The <skipped> part was <skipped>removed, <SKIPPED> stays.",
    "a well-\nknown fact\nsplit over - \n lines",
    "line one\nline two\r\nline three\n",
    "5 .5 and 3. 4 ,5 and 1,000.50 and 3-4 and x-5 and .5. and ,, ..",
    "non\u00a0breaking\u00a0space and ideographic\u3000space",
    "weird\x1cseparators\x1dhere\x85and\u2028there\x0bvt\x0cff",
    "(hi) [there] {you} <me> 'quoted' \"double\" `tick` ~tilde~ a/b a|b",
    "Mr. U.S.A. e.g. i.e. etc... Nr. 5. 3.14. x.y,z",
]

# Pieces of random "noise" texts, which find tokeniser corner cases no hand-written sentence
# does: ASCII punctuation next to letters and digits, entities, <skipped>, line breaks (also
# after "-"), tabs and Unicode spaces, accents, CJK and its punctuation.
NOISE_PIECES = [
    *"abcxyzABC0129",
    *".,-'\"&;<>()[]/$%:?!@#*+=_~|`{}",
    *["é", "ß", "Ü", "ñ", "ø", "e\u0301", "中", "文", "字", "。", "、", "！", "👍"],
    *["&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "-\n", "\n", "\r\n", "...", "--"],
    *["\t", "\u00a0", "\u3000", "\u2028"],
    *[" "] * 14,
    *["the", "cat", "sat", "Der", "Hund", "42", "3.5", "1,000", "U.S.", "don't", "e-mail"],
]

EDGE_STRINGS = [
    "",
    " ",
    "   \t  ",
    "\t",
    "\n",
    "...",
    "!?!",
    "— – … ; : , .",
    "()[]{}<>\"'",
    "。、！？",
    "42",
    "a",
    "Hello world .",
    "Hello world.  ",
    "Hello\tworld\t.",
    " Hello world. ",
]

# Word -> a synonym the near-duplicates may substitute. nltk's METEOR looks synonyms up after
# Porter stemming, so pairs whose stems are the words themselves (car/auto, fast/quick) exercise
# its synonym stage; the others only test that it is harmless.
SYNONYMS = {
    "car": "auto",
    "automobile": "car",
    "big": "large",
    "large": "big",
    "fast": "quick",
    "quick": "fast",
    "dog": "hound",
    "dogs": "hounds",
    "happily": "gladly",
    "buy": "purchase",
    "fire": "flame",
    "river": "stream",
    "store": "shop",
    "report": "account",
}

FILLERS = ["very", "also", "the", "really", "a", "und", "nicht", "maybe"]

VOCABULARY = [
    *sorted({w.strip('.,;:!?"()') for s in ENGLISH for w in s.split()} - {""}),
    *["car", "automobile", "big", "large", "fast", "quick", "auto", "dog", "hound"],
]


def perturb(text: str, rng: random.Random, strength: float) -> str:
    """A near-duplicate of ``text``: each word is, with probability ``strength``, substituted
    (often by a synonym), deleted, duplicated, or swapped with its neighbour."""
    words = text.split()
    out: list[str] = []
    for word in words:
        if rng.random() >= strength:
            out.append(word)
            continue
        bare = word.strip(".,;:!?").lower()
        action = rng.choice(["sub", "syn", "del", "dup", "swap"])
        if bare in SYNONYMS and rng.random() < 0.5:
            action = "syn"
        if action == "syn" and bare in SYNONYMS:
            out.append(word.lower().replace(bare, SYNONYMS[bare]))
        elif action in ("sub", "syn"):
            out.append(rng.choice(FILLERS + VOCABULARY))
        elif action == "dup":
            out += [word, word]
        elif action == "swap" and out:
            out.insert(len(out) - 1, word)
        # "del" (and a swap at the start) drops the word
    return " ".join(out)


def perturb_chars(text: str, rng: random.Random, strength: float) -> str:
    """A near-duplicate for text without spaces (CJK): drop, repeat or swap characters."""
    chars = list(text)
    out: list[str] = []
    for ch in chars:
        r = rng.random()
        if r >= strength:
            out.append(ch)
        elif r < strength / 3:
            continue
        elif r < 2 * strength / 3:
            out += [ch, ch]
        elif out:
            out.insert(len(out) - 1, ch)
    return "".join(out)


def noise_text(rng: random.Random, n_pieces: int) -> str:
    """A random text of ``n_pieces`` NOISE_PIECES."""
    return "".join(rng.choices(NOISE_PIECES, k=n_pieces))


def perturb_noise(text: str, rng: random.Random, strength: float) -> str:
    """A near-duplicate of a noise text: pieces of it dropped, repeated or replaced."""
    out = []
    for ch in text:
        r = rng.random()
        if r >= strength:
            out.append(ch)
        elif r < strength / 3:
            out.append(rng.choice(NOISE_PIECES))
        elif r < 2 * strength / 3:
            out += [ch, ch]
    return "".join(out)


def long_text(rng: random.Random, n_words: int = 2000) -> str:
    """About ``n_words`` words of English-like text with sentence punctuation."""
    words = []
    for i in range(n_words):
        word = rng.choice(VOCABULARY)
        words.append(word + ("." if i % 17 == 16 else ("," if i % 7 == 6 else "")))
    return " ".join(words)


def _completions(ref: str, rng: random.Random, cjk: bool = False) -> list[str]:
    """Completions for one reference: exact copy, near-duplicates at several strengths, an
    unrelated sentence, and repeats of earlier completions (as GRPO sampling produces)."""
    noisy = perturb_chars if cjk else perturb
    completions = [ref] + [noisy(ref, rng, s) for s in (0.1, 0.25, 0.5, 0.8)]
    completions.append(rng.choice(ENGLISH + GERMAN))
    completions.append(rng.choice(completions))  # a repeated completion
    completions.append(completions[1])  # and one more, so the group has duplicates for sure
    return completions


def make_groups(seed: int = SEED) -> list[Group]:
    """The deterministic test step: a list of groups (see the module docstring)."""
    rng = random.Random(seed)
    groups: list[Group] = []

    # Ordinary sentences, one reference, G = 8 with repeats.
    for ref in ENGLISH + GERMAN + UNICODE + NUMBERS + TOKENIZER_TRAPS:
        groups.append(Group(references=[ref], completions=_completions(ref, rng)))
    for ref in CJK:
        groups.append(Group(references=[ref], completions=_completions(ref, rng, cjk=True)))

    # Multi-reference: 2-3 references (paraphrases) per prompt.
    for i, ref in enumerate(ENGLISH[:10] + GERMAN[:4] + CJK[:2]):
        cjk = i >= 14
        noisy = perturb_chars if cjk else perturb
        refs = [ref, noisy(ref, rng, 0.3)] + ([noisy(ref, rng, 0.5)] if i % 2 else [])
        groups.append(Group(references=refs, completions=_completions(ref, rng, cjk=cjk)[:6]))
    groups.append(Group(references=["", ENGLISH[0]], completions=["", ENGLISH[0], "fox"]))
    groups.append(Group(references=["a b c", "a b c d e f g"], completions=["a b c d", "a b"]))

    # Empty, whitespace-only and punctuation-only texts, trailing spaces, " ." and tabs:
    # every edge string against every other (both directions, both empty included).
    for ref in EDGE_STRINGS:
        groups.append(Group(references=[ref], completions=list(EDGE_STRINGS)))
    groups.append(Group(references=[""], completions=["", "", ENGLISH[0], "   "]))
    for i, ref in enumerate(TOKENIZER_TRAPS):  # each trap against the others, as is
        groups.append(Group(references=[ref], completions=[*TOKENIZER_TRAPS[i:], ref.lower()]))
    groups.append(
        Group(
            references=["The cat sat on the mat."],
            completions=[
                "The cat sat on the mat .",
                "The cat sat on the mat.   ",
                "The\tcat\tsat on the mat.",
                "the cat sat on the mat",
                "The cat sat on the mat.\n",
                "THE CAT SAT ON THE MAT.",
            ],
        )
    )

    # Random noise texts (see NOISE_PIECES), against near-duplicates and other noise.
    for i in range(24):
        ref = noise_text(rng, rng.randint(5, 40))
        completions = [ref] + [perturb_noise(ref, rng, s) for s in (0.05, 0.15, 0.3, 0.6)]
        completions += [noise_text(rng, rng.randint(0, 30)), completions[2]]
        refs = [ref, perturb_noise(ref, rng, 0.2)] if i % 4 == 3 else [ref]
        groups.append(Group(references=refs, completions=completions))

    # Groups whose references hold more than 255 distinct characters (chrF takes another code
    # path then): 500 CJK characters without spaces, and two references of "words" of Latin
    # letters with diacritics, Greek and Cyrillic.
    cjk_pool = [chr(0x4E00 + 7 * k) for k in range(400)]
    ref = "".join(rng.choice(cjk_pool) + ("。" if i % 25 == 24 else "") for i in range(500))
    phrase = "我们明天去北京"  # twice in the reference, once in some completions
    ref = phrase + ref[:250] + phrase + ref[250:]
    completions = [*_completions(ref, rng, cjk=True)[:6], phrase, phrase + "参观故宫。"]
    groups.append(Group(references=[ref], completions=completions))
    letters = [chr(c) for c in (*range(0xC0, 0x250), *range(0x391, 0x3CA), *range(0x410, 0x450))]
    refs = [
        " ".join("".join(rng.choices(letters, k=rng.randint(5, 7))) for _ in range(40)) + "."
        for _ in range(2)
    ]
    groups.append(Group(references=refs, completions=[*_completions(refs[0], rng)[:5], refs[1]]))

    # A long text (~2000 words) and a medium one (~100 words): the reference, a light and a
    # heavy edit of it. sacrebleu's TER needs minutes on the long one (its shift search is
    # super-linear), so the TER tests skip groups larger than LONG_TEXT_SIZE (skip_long).
    for n_words, heavy in ((2000, 0.4), (100, 0.2)):
        ref = long_text(rng, n_words)
        groups.append(
            Group(references=[ref], completions=[perturb(ref, rng, 0.05), perturb(ref, rng, heavy)])
        )
    return groups


def text_size(group: Group) -> int:
    """The size of the group's largest text: its words plus its CJK characters (which tokenisers
    such as TER's asian_support split one by one)."""
    return max(
        len(t.split()) + sum(ch >= "\u2e80" for ch in t)
        for t in group.references + group.completions
    )


Expected = Callable[[str, tuple[str, ...]], float]


@pytest.fixture(scope="session")
def groups() -> list[Group]:
    """The deterministic test step (see ``make_groups``)."""
    return make_groups()


@pytest.fixture(scope="session")
def step_factory() -> Callable[[], list[Group]]:
    """``make_groups`` itself, to check that the step is deterministic."""
    return make_groups


@pytest.fixture(scope="session")
def short_groups(groups: list[Group]) -> list[Group]:
    """The test step without its long text (for references too slow on it, e.g. TER)."""
    return [g for g in groups if text_size(g) <= LONG_TEXT_SIZE]


@pytest.fixture
def builtin_registry(monkeypatch) -> rewardkit.Registry:
    """A fresh registry of the built-in plugins only (no entry points, no plugin disabled from
    the developer's shell)."""
    monkeypatch.delenv("REWARDKIT_DISABLE_PLUGINS", raising=False)
    return rewardkit.load_registry(entry_points=False)


@pytest.fixture
def check_parity(builtin_registry: rewardkit.Registry, groups: list[Group]):
    """``check_parity(spec, expected, skip_long=False)``: build ``spec`` with the registry,
    score the whole step (every group, or with ``skip_long`` those whose ``text_size`` is at
    most ``LONG_TEXT_SIZE``) in one call, and assert that every completion's score is a float
    exactly equal (``==``) to ``expected(completion, references)``, and that identical
    completions of a group got identical scores. Returns the step's scores."""

    def check(spec: str, expected: Expected, skip_long: bool = False) -> list[list[float]]:
        step = [g for g in groups if not skip_long or text_size(g) <= LONG_TEXT_SIZE]
        reward = builtin_registry.build_reward(spec)
        out = reward(step)
        assert [len(row) for row in out.scores] == [len(g.completions) for g in step]
        cache: dict[tuple[str, tuple[str, ...]], float] = {}
        mismatches = []
        for group, row in zip(step, out.scores):
            by_text: dict[str, set[float]] = {}
            for completion, score in zip(group.completions, row):
                assert isinstance(score, float)
                by_text.setdefault(completion, set()).add(score)
                key = (completion, group.references)
                if key not in cache:
                    cache[key] = expected(completion, group.references)
                if score != cache[key]:
                    mismatches.append((completion, group.references, score, cache[key]))
            assert all(len(s) == 1 for s in by_text.values()), "identical completions differ"
        total = sum(map(len, out.scores))
        assert not mismatches, (
            f"{spec}: {len(mismatches)} of {total} scores differ from the reference "
            f"implementation; first (hyp, refs, got, expected): {mismatches[0]!r}"[:2000]
        )
        return out.scores

    return check


def assert_spread(scores: list[list[float]], middle_share: float = 0.25) -> None:
    """Assert the scores lie in [0, 1] and spread over it (some 0, some ~1, many in between):
    the data tests the interesting part of the range, not just "no match". (sacrebleu scores an
    exact match BLEU 100.00000000000004, float rounding in exp(mean(log p_n)), so BLEU / 100 may
    exceed 1 by a few ulps; the reward keeps sacrebleu's value.)"""
    flat = [s for row in scores for s in row]
    assert all(0.0 <= s <= 1.0 + 1e-12 for s in flat)
    middle = [s for s in flat if 0.05 < s < 0.95]
    assert len(middle) >= middle_share * len(flat), f"{len(middle)} of {len(flat)} mid-range"
    assert min(flat) == 0.0
    assert max(flat) >= 0.99


@pytest.fixture(scope="session")
def spread():
    """``spread(scores)``: see ``assert_spread``."""
    return assert_spread
