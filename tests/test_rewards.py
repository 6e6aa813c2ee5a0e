"""The reward contract: spec parsing, option conversion, group-aware scoring, weighted sums."""

from __future__ import annotations

import math

import pytest

import rewardkit
from rewardkit.rewards import RewardPart, WeightedSum, parse_reward_spec

KNOWN = {"bleu", "chrf", "rougel"}


def parse(spec):
    return parse_reward_spec(spec, KNOWN.__contains__)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bleu", [RewardPart("bleu", {}, 1.0)]),
        (
            "bleu:tokenize=intl,smooth=floor",
            [RewardPart("bleu", {"tokenize": "intl", "smooth": "floor"}, 1.0)],
        ),
        ("bleu=0.7,chrf=0.3", [RewardPart("bleu", {}, 0.7), RewardPart("chrf", {}, 0.3)]),
        (
            "0.7*bleu:tokenize=intl,smooth=floor, 0.3*chrf:word_order=2",
            [
                RewardPart("bleu", {"tokenize": "intl", "smooth": "floor"}, 0.7),
                RewardPart("chrf", {"word_order": "2"}, 0.3),
            ],
        ),
        (
            "bleu:smooth=floor,chrf=0.5",
            [RewardPart("bleu", {"smooth": "floor"}, 1.0), RewardPart("chrf", {}, 0.5)],
        ),
        ("rougeL", [RewardPart("rougel", {}, 1.0)]),
        ("bleu,chrf", [RewardPart("bleu", {}, 1.0), RewardPart("chrf", {}, 1.0)]),
    ],
)
def test_parse_reward_spec(spec, expected):
    assert parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty item"),
        ("bleu,,chrf", "empty item"),
        ("bleu=x", "bad weight 'x'"),
        ("bleu=-1", "bad weight '-1'"),
        ("bleu=0", "bad weight '0'"),
        ("bleu=nan", "bad weight 'nan'"),
        ("abc*bleu", "bad weight 'abc'"),
        ("bleu:tokenize", "must be KEY=VALUE"),
        ("smooth=floor", "neither a known reward nor an option"),
        ("bleu:tokenize=intl,tokenize=13a", "given twice"),
        ("bl-eu", "not a reward name"),
    ],
)
def test_parse_reward_spec_errors(spec, message):
    with pytest.raises(rewardkit.RewardError, match=message):
        parse(spec)


def test_build_converts_typed_options(registry):
    bleu = registry.build_reward("bleu:tokenize=intl,smooth=add-k,smooth_value=2,lowercase=yes")
    assert bleu.metric.smooth_method == "add-k"
    assert bleu.metric.smooth_value == 2.0
    assert bleu.metric.lowercase is True
    chrf = registry.build_reward("chrf:word_order=2")
    assert chrf.metric.word_order == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "blue",
            "unknown reward 'blue'; available: bertscore, bleu, chrf, comet, meteor, rouge1",
        ),
        ("bleu:tokenise=intl", "has no option 'tokenise'; its options: tokenize, smooth"),
        ("bleu:smooth=foo", "choose one of exp, floor, add-k, none"),
        ("bleu:lowercase=maybe", "expected true or false"),
        ("chrf:word_order=two", "expected int"),
        ("bleu:max_ngram_order=0", "max_ngram_order must be at least 1"),
    ],
)
def test_build_errors(registry, spec, message):
    with pytest.raises(rewardkit.RewardkitError, match=message):
        registry.build_reward(spec)


class Counting(rewardkit.GroupwiseReward):
    """Counts calls: prepare once per group, score_one once per distinct completion."""

    name = "counting"

    def __init__(self):
        self.prepared = 0
        self.scored: list[str] = []

    def prepare(self, references, source):
        self.prepared += 1
        return len(references[0])

    def score_one(self, prepared, completion):
        self.scored.append(completion)
        return float(len(completion) == prepared)


def test_groupwise_prepares_once_per_group_and_dedups():
    reward = Counting()
    groups = [
        rewardkit.Group(references=["abc"], completions=["abc", "ab", "abc", "abc"]),
        rewardkit.Group(references=["x"], completions=["y", "y"], source="src"),
    ]
    out = reward(groups)
    assert out.scores == [[1.0, 0.0, 1.0, 1.0], [1.0, 1.0]]
    assert reward.prepared == 2
    assert reward.scored == ["abc", "ab", "y"]
    assert out.diagnostics["unique_fraction"] == pytest.approx(3 / 6)
    assert out.components == {"counting": out.scores}


def test_group_needs_a_reference():
    with pytest.raises(rewardkit.RewardError, match="at least one reference"):
        rewardkit.Group(references=[], completions=["a"])


def test_weighted_sum_is_the_weighted_sum_of_its_components(registry):
    groups = [
        rewardkit.Group(["Der Hund läuft schnell."], ["Der Hund läuft.", "Ein Hund", ""]),
        rewardkit.Group(["Das ist gut."], ["Das ist gut.", "Das ist nicht gut."]),
    ]
    bleu = registry.build_reward("bleu")(groups).scores
    chrf = registry.build_reward("chrf")(groups).scores
    out = registry.build_reward("bleu=0.7,chrf=0.3")(groups)
    assert out.components == {"bleu": bleu, "chrf": chrf}
    for i, row in enumerate(out.scores):
        for j, value in enumerate(row):
            assert value == pytest.approx(0.7 * bleu[i][j] + 0.3 * chrf[i][j], abs=1e-12)
    assert set(out.diagnostics) == {"bleu/unique_fraction", "chrf/unique_fraction"}


def test_same_reward_twice_is_labelled_by_options(registry):
    reward = registry.build_reward("0.5*bleu,0.5*bleu:tokenize=char")
    assert isinstance(reward, WeightedSum)
    assert [label for label, _, _ in reward.parts] == ["bleu", "bleu:tokenize=char"]
    assert reward.range == (0.0, 1.0)


class Broken(rewardkit.Reward):
    """Returns whatever ``result`` says, or raises."""

    name = "broken"
    plugin = "broken_plugin"

    def __init__(self, result=None):
        self.result = result

    def score(self, groups):
        if self.result is None:
            raise KeyError("boom")
        return self.result


GROUPS = [rewardkit.Group(["a"], ["a", "b"])]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (None, r"reward 'broken' \(plugin 'broken_plugin'\) failed while scoring: KeyError"),
        ([[1.0, 1.0]], "returned list, expected RewardOutput"),
        (rewardkit.RewardOutput([[1.0]]), r"shape \[1\], expected one per completion \[2\]"),
        (rewardkit.RewardOutput([[1.0, math.nan]]), "non-finite"),
        (rewardkit.RewardOutput([[1.0, 1]]), "non-float"),
    ],
)
def test_contract_violations_name_the_plugin(result, message):
    with pytest.raises(rewardkit.RewardError, match=message):
        Broken(result)(GROUPS)


def test_corpus_score_format():
    score = rewardkit.CorpusScore("BLEU", 31.4666, "nrefs:1|tok:13a")
    assert score.format() == "BLEU = 31.47 (nrefs:1|tok:13a)"
    assert rewardkit.CorpusScore("mean", 0.5).format() == "mean = 0.50"
