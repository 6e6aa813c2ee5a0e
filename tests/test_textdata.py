"""rewardkit.textdata: determinism, disjoint splits, variety, German agreement, QA answers."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from rewardkit import textdata
from rewardkit.textdata import QAItem, TranslationPair, qa_items, translation_pairs

# Prints a fingerprint of some generated data; run here and in subprocesses.
FINGERPRINT = """
import json, sys
from rewardkit.textdata import qa_items, translation_pairs
pairs = translation_pairs(60, seed=5, split="dev")
items = qa_items(60, seed=5, split="test")
rows = [[p.id, p.source, p.reference] for p in pairs]
rows += [[q.id, q.passage, q.question, q.answer] for q in items]
sys.stdout.write(json.dumps(rows))
"""


def test_sizes_ids_and_types():
    assert translation_pairs(0) == [] and qa_items(0) == []
    pairs, items = translation_pairs(37, seed=2), qa_items(23, seed=2, split="test")
    assert len(pairs) == 37 and len(items) == 23
    assert all(isinstance(p, TranslationPair) for p in pairs)
    assert all(isinstance(q, QAItem) for q in items)
    assert [p.id for p in pairs[:2]] == ["st-train-00000", "st-train-00001"]
    assert pairs[-1].id == "st-train-00036" and items[-1].id == "qa-test-00022"


def test_deterministic_and_prefix_stable():
    assert translation_pairs(200, seed=3) == translation_pairs(200, seed=3)
    assert translation_pairs(50, seed=3) == translation_pairs(200, seed=3)[:50]
    assert qa_items(80, seed=3) == qa_items(80, seed=3)
    assert qa_items(20, seed=3) == qa_items(80, seed=3)[:20]
    assert translation_pairs(50, seed=3) != translation_pairs(50, seed=4)
    assert qa_items(50, seed=3) != qa_items(50, seed=4)


def test_deterministic_across_processes(capsys):
    outputs = []
    for hashseed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        done = subprocess.run(
            [sys.executable, "-c", FINGERPRINT], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    exec(FINGERPRINT, {})
    assert outputs[0] == outputs[1] == capsys.readouterr().out
    assert len(json.loads(outputs[0])) == 120


def test_splits_are_disjoint_whatever_the_seed():
    train = {p.source for p in translation_pairs(2000, seed=0)}
    dev = {p.source for p in translation_pairs(300, seed=1, split="dev")}
    test = {p.source for p in translation_pairs(300, seed=0, split="test")}
    assert len(train) == 2000 and len(dev) == 300 and len(test) == 300
    assert not train & dev and not train & test and not dev & test
    qa_train = {q.passage for q in qa_items(1000, seed=0)}
    qa_dev = {q.passage for q in qa_items(200, seed=7, split="dev")}
    qa_test = {q.passage for q in qa_items(200, seed=0, split="test")}
    assert not qa_train & qa_dev and not qa_train & qa_test and not qa_dev & qa_test


def test_split_alias_and_errors():
    assert translation_pairs(5, split="validation") == translation_pairs(5, split="dev")
    with pytest.raises(ValueError, match="train, dev, test"):
        translation_pairs(3, split="held-out")
    with pytest.raises(ValueError, match="n must be"):
        qa_items(-1)


def test_lexical_variety_and_shape():
    pairs = translation_pairs(500)
    assert len({p.source for p in pairs}) >= 300
    assert len({p.reference for p in pairs}) >= 300
    assert len(textdata._TEMPLATES) >= 15
    for side, min_types in (("source", 400), ("reference", 450)):
        tokens = [w.lower() for p in pairs for w in re.findall(r"\w+", getattr(p, side))]
        types = set(tokens)
        assert len(types) >= min_types, side
        assert len(types) / len(tokens) > 0.09, side
    for p in pairs:
        assert 5 <= len(p.source.split()) <= 20, p.source
        assert p.source[-1] in ".?" and p.reference[-1] == p.source[-1], p
        assert p.source[0].isupper() and p.reference[0].isupper(), p
        assert "  " not in p.source + p.reference
    # questions, negations, numbers in digits and in words, several tenses all occur
    sources = [p.source for p in pairs]
    assert sum(s.endswith("?") for s in sources) >= 25
    assert sum(" not " in s or " never " in s or " no " in s for s in sources) >= 25
    assert sum(bool(re.search(r"\d", s)) for s in sources) >= 50
    assert sum(bool(re.search(r"\b(three|seven|twelve|twenty)", s)) for s in sources) >= 10
    assert sum(" will " in f" {s} " or s.startswith("Will ") for s in sources) >= 25


def test_every_template_makes_well_formed_pairs():
    for template in textdata._TEMPLATES:
        r = random.Random(template.__name__)
        for _ in range(40):
            en, de = template(r)
            assert en[-1] in ".?" and de[-1] == en[-1], (template.__name__, en, de)
            assert len(de.split()) >= 3 and "  " not in en + de, (en, de)


# Expected German for a few fixed draws (checked by hand for article, adjective, case and verb
# agreement): accusative kein/possessive + adjective, dative after "mit", strong plural after a
# number, verb-final subordinate clauses, "finden" with an accusative object.
FIXED = {
    "_t_have_none": [
        (
            "My grandparents do not have a clean cup at home.",
            "Meine Großeltern haben zu Hause keine saubere Tasse.",
        ),
        ("Jan does not have a yellow bottle.", "Jan hat keine gelbe Flasche."),
        (
            "My father does not have a blue suitcase at home.",
            "Mein Vater hat zu Hause keinen blauen Koffer.",
        ),
    ],
    "_t_perfect_possessive": [
        (
            "My grandparents washed their big peach on Sunday.",
            "Meine Großeltern haben am Sonntag ihren großen Pfirsich gewaschen.",
        ),
        (
            "Leonie forgot her dirty book yesterday.",
            "Gestern hat Leonie ihr schmutziges Buch vergessen.",
        ),
        (
            "The students needed their fresh plum two days ago.",
            "Die Studenten haben vor zwei Tagen ihre frische Pflaume gebraucht.",
        ),
    ],
    "_t_opinion": [
        (
            "They think that the famous theatre in Vienna is interesting.",
            "Sie finden das berühmte Theater in Wien interessant.",
        ),
        (
            "You think that the small church in Hanover is impressive.",
            "Du findest die kleine Kirche in Hannover beeindruckend.",
        ),
        (
            "My cousin does not think that the small cathedral in Basel is boring.",
            "Meine Cousine findet den kleinen Dom in Basel nicht langweilig.",
        ),
    ],
    "_t_go_with": [
        (
            "My grandparents go to the café with their daughter every Tuesday.",
            "Meine Großeltern gehen jeden Dienstag mit ihrer Tochter ins Café.",
        ),
        (
            "Our neighbours go to the cinema with Nina every Friday.",
            "Unsere Nachbarn gehen jeden Freitag mit Nina ins Kino.",
        ),
        (
            "Anton will go to the town hall with his cousin next week.",
            "Anton wird nächste Woche mit seiner Cousine zum Rathaus gehen.",
        ),
    ],
    "_t_there_are": [
        (
            "There were eleven dirty backpacks in the attic.",
            "Auf dem Dachboden gab es elf schmutzige Rucksäcke.",
        ),
        ("There were four yellow watches in the hall.", "Im Flur gab es vier gelbe Uhren."),
        ("There are 94 cheap tables in the car.", "Im Auto gibt es 94 billige Tische."),
    ],
    "_t_because": [
        (
            "My grandparents could not come to the party because they had no time.",
            "Meine Großeltern konnten nicht zur Party kommen, weil sie keine Zeit hatten.",
        ),
        (
            "They stayed at home on Monday because their chair was broken.",
            "Sie sind am Montag zu Hause geblieben, weil ihr Stuhl kaputt war.",
        ),
        (
            "Anton could not come to the party because he had no time.",
            "Anton konnte nicht zur Party kommen, weil er keine Zeit hatte.",
        ),
    ],
    "_t_visit": [
        (
            "They visit their grandfather in Budapest every Tuesday.",
            "Sie besuchen jeden Dienstag ihren Großvater in Budapest.",
        ),
        (
            "Jan visits his grandfather in Munster every Tuesday.",
            "Jan besucht jeden Dienstag seinen Großvater in Münster.",
        ),
        (
            "Will Karl visit his uncle in Hanover this evening?",
            "Wird Karl heute Abend seinen Onkel in Hannover besuchen?",
        ),
    ],
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_german_agreement_fixed_draws(name):
    r = random.Random(11)
    template = getattr(textdata, name)
    assert [template(r) for _ in range(3)] == FIXED[name]


# Independent table (not the module's): accusative article and adjective ending per gender.
ACC = {
    "kein": {"m": ("keinen", "en"), "f": ("keine", "e"), "n": ("kein", "es")},
    "def": {"m": ("den", "en"), "f": ("die", "e"), "n": ("das", "e")},
}


@pytest.mark.parametrize(("name", "det"), [("_t_have_none", "kein"), ("_t_present_place", "def")])
def test_german_accusative_agreement_on_many_draws(name, det):
    template, r = getattr(textdata, name), random.Random(0)
    by_word = {n.de: n for n in textdata._NOUNS}
    checked = 0
    for _ in range(300):
        _, de = template(r)
        words = de.rstrip(".").split()
        for k in range(2, len(words)):
            noun = by_word.get(words[k])
            if noun and words[k - 2] in {a for a, _ in ACC[det].values()}:
                article, ending = ACC[det][noun.g]
                assert words[k - 2] == article and words[k - 1].endswith(ending), de
                assert not words[k - 1].endswith(ending + "n") or ending == "en", de
                checked += 1
    assert checked >= 250


def test_qa_items_shape_and_variety():
    items = qa_items(500)
    assert len({q.passage for q in items}) == 500
    assert len({q.answer for q in items}) >= 200
    assert len({" ".join(q.question.split()[:3]) for q in items}) >= 60
    for q in items:
        sentences = re.findall(r"[.!?](?:\s|$)", q.passage)
        assert 2 <= len(sentences) <= 4, q.passage
        assert q.question.endswith("?") and q.question[0].isupper(), q
        assert 1 <= len(q.answer.split()) <= 6 and q.answer == q.answer.strip(), q


def _number(word: str) -> int:
    return {textdata._en_number(n): n for n in range(100)}[word]


def test_qa_answers_are_in_or_derivable_from_the_passage():
    items = qa_items(600, seed=1)
    derived = 0
    for q in items:
        passage, answer = q.passage, q.answer
        if q.question.startswith("How many pieces of fruit"):
            a, b = re.search(r"bought (\S+) \w+ and (\S+) \w+\.", passage).groups()
            assert answer == f"{textdata._en_number(_number(a) + _number(b))} pieces of fruit"
        elif q.question.startswith("How old will"):
            age = re.search(r"is (\S+) years old", passage).group(1)
            assert answer == f"{textdata._en_number(_number(age) + 1)} years old"
        elif re.match(r"How many of .*'s colleagues do not", q.question):
            n, m = re.search(r"has (\S+) colleagues, and (\S+) of them", passage).groups()
            assert answer == textdata._en_number(_number(n) - _number(m))
        elif re.match(r"Where does \w+'s \w+ live\?", q.question):
            assert answer.startswith("in ") and f"travelled to {answer[3:]} " in passage
        elif q.question.startswith("In which city is the"):
            assert answer.startswith("in ") and passage.startswith(f"{answer[3:]} has ")
        else:  # extractive: the answer phrase is in the passage
            assert answer.lower() in passage.lower(), q
            continue
        derived += 1
    assert 0 < derived < len(items) // 4
