"""Parity of the meteor reward (plugins/meteor_reward.py) with nltk's METEOR.

WordNet's data is not installed where these tests run (and must not be downloaded), so synonym
matching is tested with a tiny fake WordNet: an object whose ``synsets(word)`` returns objects
with ``lemmas()`` whose items have ``name()``, passed to nltk and, through a monkeypatched
``wordnet_or_none``, to the plugin. Every score must equal (``==``) nltk's on the deterministic
step of conftest.py.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import ClassVar

import pytest
from nltk.tokenize import NLTKWordTokenizer
from nltk.translate.meteor_score import meteor_score

from rewardkit import Group, RewardError

meteor_module = importlib.import_module("rewardkit.plugins.meteor_reward")
nltk_tokenize = NLTKWordTokenizer().tokenize


class NoSynsets:
    """A WordNet stand-in without synsets: METEOR matches exact words and Porter stems only."""

    def synsets(self, word: str) -> list:
        return []


class FakeLemma:
    def __init__(self, name: str):
        self._name = name

    def name(self) -> str:
        return self._name


class FakeSynset:
    def __init__(self, names: list[str]):
        self.names = names

    def lemmas(self) -> list[FakeLemma]:
        return [FakeLemma(n) for n in self.names]


class FakeWordNet:
    """A few synsets, looked up the way nltk's METEOR uses WordNet (``motor_car`` has an
    underscore: nltk ignores multi-word lemmas)."""

    SYNSETS: ClassVar[list[list[str]]] = [
        ["car", "automobile", "auto", "motor_car"],
        ["big", "large"],
        ["fast", "quick", "speedy"],
        ["buy", "purchase"],
        ["happily", "gladly"],
        ["dog", "hound"],
        ["fox", "reynard"],
        ["fire", "flame"],
        ["river", "stream"],
        ["store", "shop"],
        ["report", "account"],
    ]

    def __init__(self):
        self.calls = 0

    def synsets(self, word: str) -> list[FakeSynset]:
        self.calls += 1
        return [FakeSynset(names) for names in self.SYNSETS if word in names]


@functools.cache
def _tokens(tokenize, text: str) -> tuple[str, ...]:
    """``tokenize(text)``, cached: the step's texts recur across completions and tests."""
    return tuple(tokenize(text))


def nltk_meteor(hyp: str, refs, wordnet, tokenize=nltk_tokenize, **params) -> float:
    """The reference: nltk's meteor_score on tokenised references and hypothesis."""
    return meteor_score(
        [list(_tokens(tokenize, r)) for r in refs],
        list(_tokens(tokenize, hyp)),
        wordnet=wordnet,
        **params,
    )


@pytest.fixture
def fake_wordnet(monkeypatch) -> FakeWordNet:
    """A FakeWordNet that the plugin finds as "the installed WordNet"."""
    wordnet = FakeWordNet()
    monkeypatch.setattr(meteor_module, "wordnet_or_none", lambda: wordnet)
    return wordnet


@pytest.fixture
def no_wordnet(monkeypatch) -> None:
    """The plugin finds no WordNet data, wherever the tests run, and has not warned yet."""
    monkeypatch.setattr(meteor_module, "wordnet_or_none", lambda: None)
    monkeypatch.setattr(meteor_module, "_WARNED", False)


# (reward spec, tokeniser, nltk meteor_score keyword arguments)
OFF_CASES = [
    ("meteor:synonyms=off", nltk_tokenize, {}),
    (
        "meteor:synonyms=off,alpha=0.8,beta=2,gamma=0.3",
        nltk_tokenize,
        {"alpha": 0.8, "beta": 2.0, "gamma": 0.3},
    ),
    (
        "meteor:synonyms=off,tokenize=whitespace,alpha=0.5,gamma=0",
        str.split,
        {"alpha": 0.5, "gamma": 0.0},
    ),
]


@pytest.mark.parametrize(("spec", "tokenize", "params"), OFF_CASES, ids=[c[0] for c in OFF_CASES])
def test_meteor_without_synonyms_equals_nltk(check_parity, spread, spec, tokenize, params):
    """Reference: nltk.translate.meteor_score.meteor_score([tokenize(r) for r in refs],
    tokenize(hyp), wordnet=<a stand-in without synsets>, **alpha/beta/gamma), with tokenize =
    NLTKWordTokenizer().tokenize (default) or str.split (tokenize=whitespace). With default
    options the scores also spread over [0, 1]."""
    wordnet = NoSynsets()
    scores = check_parity(spec, lambda h, r: nltk_meteor(h, r, wordnet, tokenize, **params))
    if spec == "meteor:synonyms=off":
        spread(scores)


@pytest.mark.filterwarnings("ignore:WordNet data not found")
def test_meteor_auto_equals_nltk_with_what_is_installed(check_parity):
    """Reference: meteor_score(..., wordnet=W) where W is what the plugin's wordnet_or_none()
    finds on this machine, or a stand-in without synsets when WordNet's data is missing (the
    case here: synonyms=auto falls back to exact and stem matching)."""
    wordnet = meteor_module.wordnet_or_none() or NoSynsets()
    check_parity("meteor", lambda h, r: nltk_meteor(h, r, wordnet))


@pytest.mark.parametrize(
    "spec", ["meteor:synonyms=on", "meteor:synonyms=on,tokenize=whitespace,beta=2"]
)
def test_meteor_with_fake_wordnet_equals_nltk(
    check_parity, builtin_registry, groups, fake_wordnet, spec
):
    """Reference: meteor_score(..., wordnet=FakeWordNet) with the same fake object the plugin
    gets from wordnet_or_none (synonyms=on). The step's near-duplicates substitute synonyms
    (car/auto, fast/quick, river/stream, ...), so the synonym stage decides a number of scores:
    they are higher than with synonyms=off."""
    tokenize, params = (str.split, {"beta": 2.0}) if "beta" in spec else (nltk_tokenize, {})
    scores = check_parity(spec, lambda h, r: nltk_meteor(h, r, fake_wordnet, tokenize, **params))
    assert fake_wordnet.calls > 0
    if spec == "meteor:synonyms=on":  # synonyms decide some scores of the step
        off = builtin_registry.build_reward("meteor:synonyms=off")(groups).scores
        rises = [a > b for row_on, row_off in zip(scores, off) for a, b in zip(row_on, row_off)]
        assert sum(rises) >= 10


def test_synonyms_raise_the_score(builtin_registry, fake_wordnet):
    """Reference: meteor_score with FakeWordNet vs with a stand-in without synsets: synonyms
    (car/auto, fast/quick, dog/hound) match with synonyms=on (and auto, which finds the fake)
    only, so the score rises. As in nltk, synonyms are looked up after the stem stage, on the
    stems of still unmatched words: "automobile" (stem "automobil") finds no synset, so it stays
    unmatched either way."""
    step = [
        Group(
            references=["My car is big and fast.", "A dog and an automobile."],
            completions=[
                "My auto is big and quick.",
                "My car is big and fast.",
                "My automobile is big and fast.",
                "A hound and an auto.",
            ],
        )
    ]
    on = builtin_registry.build_reward("meteor:synonyms=on")(step).scores[0]
    off = builtin_registry.build_reward("meteor:synonyms=off")(step).scores[0]
    assert builtin_registry.build_reward("meteor")(step).scores[0] == on  # auto finds WordNet
    refs = step[0].references
    assert on == [nltk_meteor(h, refs, fake_wordnet) for h in step[0].completions]
    assert off == [nltk_meteor(h, refs, NoSynsets()) for h in step[0].completions]
    assert on[0] > 0.99 > off[0] > 0
    assert on[1] == off[1] > 0.99  # an exact copy needs no synonyms
    assert on[2] == off[2] < on[0]  # "automobile" is stemmed before the synonym lookup
    assert on[3] > off[3]


def test_synonyms_on_without_wordnet_is_an_error(builtin_registry, no_wordnet):
    """Reference: none (behaviour): synonyms=on without WordNet's data is a RewardError from
    registry.build_reward that says how to install it."""
    with pytest.raises(RewardError, match=r"nltk\.downloader"):
        builtin_registry.build_reward("meteor:synonyms=on")


def test_synonyms_auto_without_wordnet_warns_once(builtin_registry, no_wordnet):
    """Reference: nltk's meteor_score with a stand-in without synsets: synonyms=auto without
    WordNet falls back to exact and stem matching, warns once per process (not once per reward)
    and still scores; synonyms=off never warns."""
    step = [Group(references=["My car is big."], completions=["My automobile is big."])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = builtin_registry.build_reward("meteor")
        builtin_registry.build_reward("meteor:synonyms=auto")
        builtin_registry.build_reward("meteor:synonyms=off")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "WordNet" in messages[0]
    assert "nltk.downloader" in messages[0]
    want = nltk_meteor(step[0].completions[0], step[0].references, NoSynsets())
    assert first(step).scores == [[want]]


EMPTY_GROUPS = [
    Group(references=["The cat sat on the mat."], completions=["", "   ", "\t"]),
    Group(references=[""], completions=["The cat sat on the mat.", "x"]),
    Group(references=[""], completions=["", " "]),
    Group(references=["   ", ""], completions=[""]),
]


@pytest.mark.parametrize(
    "spec", ["meteor:synonyms=off", "meteor:synonyms=off,tokenize=whitespace", "meteor:synonyms=on"]
)
def test_empty_texts_score_zero(builtin_registry, fake_wordnet, spec):
    """Reference: nltk's meteor_score on empty token lists: no match -> 0.0 (nltk returns 0 on
    its ZeroDivisionError), also when both sides are empty. Never an exception."""
    out = builtin_registry.build_reward(spec)(EMPTY_GROUPS)
    assert out.scores == [[0.0] * 3, [0.0] * 2, [0.0] * 2, [0.0]]
    assert meteor_score([[]], [], wordnet=NoSynsets()) == 0.0


def test_group_deduplication(builtin_registry):
    """Reference: nltk's meteor_score per completion (identical completions of a group score the
    same) and unique_fraction = completions scored / completions (here 3 of 7)."""
    step = [
        Group(references=["the cat sat on the mat"], completions=["the cat", "the cat", "a mat"]),
        Group(references=["a dog barks"], completions=["a dog barks"] * 4),
    ]
    out = builtin_registry.build_reward("meteor:synonyms=off")(step)
    want = [[nltk_meteor(c, g.references, NoSynsets()) for c in g.completions] for g in step]
    assert out.scores == want
    assert out.scores[0][0] == out.scores[0][1] != out.scores[0][2]
    assert len(set(out.scores[1])) == 1
    assert out.diagnostics["unique_fraction"] == 3 / 7
    assert out.components == {"meteor": out.scores}
