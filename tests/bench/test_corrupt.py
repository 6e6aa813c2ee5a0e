"""rewardkit.bench.corrupt: monotone, deterministic ladders; probes; the good comparison output."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest

from rewardkit import textdata
from rewardkit.bench import corrupt
from rewardkit.bench.corrupt import LADDERS, PROBES, good_output, ladder, probe

FIXED = [
    ("de", "Der Zug nach München fährt um 14:30 Uhr ab."),
    ("de", "Ich habe nicht gewusst, dass Anna in Wien wohnt."),
    ("de", "„Wir haben keinen Hund“, sagte Paul."),
    ("en", "Anna's brother never drinks coffee before eight o'clock!"),
    ("en", "There are twenty-one apples, 3 pears and no lemons in the kitchen."),
    ("de", "Ja"),
    ("en", "la la la la."),
]
PAIRS = textdata.translation_pairs(30, seed=9)
REFERENCES = FIXED + [item for p in PAIRS for item in (("de", p.reference), ("en", p.source))]


def _words(text: str) -> list[str]:
    """Words without punctuation, for edit distances that ignore where a period went."""
    return re.findall(r"\w+(?:['’:.,-]\w+)*", text)


def _distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.mark.parametrize("kind", LADDERS)
def test_ladder_is_monotone_and_deterministic(kind):
    for lang, ref in REFERENCES:
        for seed in range(3):
            rungs = ladder(kind, ref, 6, seed, lang)
            assert rungs == ladder(kind, ref, 6, seed, lang)
            assert rungs[0] == ref and 1 <= len(rungs) <= 7
            assert all(a != b for a, b in itertools.pairwise(rungs)), rungs
            dist = [_distance(_words(ref), _words(r)) for r in rungs]
            assert dist == sorted(dist), (kind, rungs, dist)
            assert ladder(kind, ref, 3, seed, lang) == rungs[:4]  # fewer steps: a prefix
            for r in rungs[1:]:
                assert r == r.strip() and "  " not in r


@pytest.mark.parametrize("kind", ["substitute", "delete", "truncate", "negation"])
def test_each_step_is_one_word_edit(kind):
    for lang, ref in REFERENCES:
        rungs = ladder(kind, ref, 6, 1, lang)
        for a, b in itertools.pairwise(rungs):
            assert _distance(_words(a), _words(b)) == 1, (kind, a, b)


def test_substitute_replaces_distinct_words_in_place():
    ref = "Der Zug nach München fährt um acht Uhr ab."
    rungs = ladder("substitute", ref, 20, 4)
    assert len(rungs) == 10  # nine words, each replaced once
    for k, rung in enumerate(rungs):
        changed = [a != b for a, b in zip(_words(ref), _words(rung))]
        assert len(_words(rung)) == 9 and sum(changed) == k and rung.endswith(".")


def test_delete_and_truncate_keep_the_final_mark_and_end_empty():
    ref = "Wo ist der Bahnhof?"
    deleted = ladder("delete", ref, 9, 0)
    assert len(deleted) == 5 and deleted[-1] == ""
    assert all(r.endswith("?") for r in deleted[1:-1])
    assert all(_distance(_words(ref), _words(r)) == k for k, r in enumerate(deleted))
    assert ladder("truncate", ref, 9, 0) == [
        "Wo ist der Bahnhof?",
        "Wo ist der?",
        "Wo ist?",
        "Wo?",
        "",
    ]


def test_reorder_swaps_words_and_moves_further_each_step():
    ref = "Anna kauft heute drei rote Äpfel auf dem Markt."
    rungs = ladder("reorder", ref, 10, 2)
    assert 5 <= len(rungs) <= 10  # nine distinct words: at most nine steps of growing distance
    dist = [_distance(_words(ref), _words(r)) for r in rungs]
    assert dist == sorted(set(dist))  # strictly growing
    for k, (a, b) in enumerate(itertools.pairwise(rungs)):
        assert sorted(_words(b)) == sorted(_words(ref)) and b.endswith(".")
        assert sum(x != y for x, y in zip(_words(a), _words(b))) == 2  # one swap
        if k < 4:  # the first swaps move words no earlier swap touched
            assert sum(x != y for x, y in zip(_words(ref), _words(b))) == 2 * (k + 1)
    assert ladder("reorder", "la la la la.", 3, 0, "en") == ["la la la la."]


def test_number_swap_changes_only_numbers_and_cycles():
    ref = "Der Zug fährt um 14:30 Uhr ab und kostet zwölf Euro."
    rungs = ladder("number_swap", ref, 5, 3)
    assert len(rungs) == 6
    seen = {0: {"14:30"}, 1: {"zwölf"}}
    for rung in rungs[1:]:
        words = _words(rung)
        assert [w for i, w in enumerate(words) if i not in (4, 9)] == [
            w for i, w in enumerate(_words(ref)) if i not in (4, 9)
        ]
        assert re.fullmatch(r"\d{1,2}:\d\d", words[4]) and words[9].isalpha()
    values = [(_words(r)[4], _words(r)[9]) for r in rungs]
    for slot in (0, 1):  # each change gives a value that slot never had before
        changes = [v[slot] for a, v in itertools.pairwise(values) if a[slot] != v[slot]]
        assert len(changes) == len(set(changes)) and not set(changes) & seen[slot]
    en = ladder("number_swap", "She bought twenty-one apples for 3.50 euros.", 2, 0, "en")
    assert len(en) == 3 and "twenty-one" not in en[2] and "3.50" not in en[2]


def test_short_ladders_without_numbers_or_entities():
    ref = "Das Wetter ist heute schön."
    assert ladder("number_swap", ref, 5, 0) == [ref]
    assert ladder("entity_swap", ref, 5, 0) == [ref]
    assert ladder("number_swap", "I have one dog.", 5, 0, "en") == ["I have one dog."]
    for kind in LADDERS:
        assert ladder(kind, "", 4, 0) == [""]
        assert ladder(kind, ref, 0, 0) == [ref]


def test_entity_swap_swaps_known_entities_of_the_same_kind():
    ref = "Annas Bruder ist gestern von Berlin nach Wien gefahren."
    rungs = ladder("entity_swap", ref, 6, 0)
    assert len(rungs) == 7
    names, cities = corrupt._ENTITIES["de"]["name"], corrupt._ENTITIES["de"]["city"]
    for rung in rungs[1:]:
        words = _words(rung)
        assert words[0].endswith("s") and words[0][:-1] in names
        assert words[5] in cities and words[7] in cities
        assert words[1:5] == ["Bruder", "ist", "gestern", "von"]
    en = ladder("entity_swap", "Anna's brother lives in Munich.", 1, 0, "en")[1]
    assert en.split()[0].endswith("'s") and en.split()[-1][:-1] in corrupt._ENTITIES["en"]["city"]
    # every name and city of the embedded data sets is known, in both languages
    for lang, col in (("en", 0), ("de", 1)):
        assert {c[col] for c in textdata._CITIES} <= set(corrupt._ENTITIES[lang]["city"])
        assert {n for n, _ in textdata._NAMES} <= set(corrupt._ENTITIES[lang]["name"])


@pytest.mark.parametrize(
    ("lang", "ref", "first"),
    [
        ("de", "Ich habe den Schlüssel nicht gefunden.", "Ich habe den Schlüssel gefunden."),
        ("de", "Wir haben keinen Hund.", "Wir haben einen Hund."),
        ("de", "Anna kauft die rote Tasche.", "Anna kauft nicht die rote Tasche."),
        ("de", "Am Sonntag hast du Rom besucht.", "Am Sonntag hast du nicht Rom besucht."),
        ("en", "She is happy today.", "She is not happy today."),
        ("en", "I don't like the old house.", "I do like the old house."),
        ("en", "Paul buys the red bag.", "Paul never buys the red bag."),
    ],
)  # fmt: skip
def test_negation_first_step_flips_polarity(lang, ref, first):
    assert ladder("negation", ref, 1, 0, lang) == [ref, first]


def test_negation_later_steps_flip_more_sites():
    ref = "Das alte Haus ist groß und der Garten ist schön."
    rungs = ladder("negation", ref, 10, 0)
    assert 4 <= len(rungs) <= 7  # two verbs, three antonyms (alt, groß, schön)
    assert rungs[1].count("nicht") == 1
    assert any(w in rungs[-1] for w in ("neue", "klein", "hässlich"))


SOURCE = "My brother lives in Berlin."


@pytest.mark.parametrize("lang, ref", REFERENCES[:8] + REFERENCES[-6:])
def test_probes(lang, ref):
    words = _words(ref)
    out = {kind: probe(kind, ref, SOURCE, 5, lang) for kind in PROBES}
    assert out == {kind: probe(kind, ref, SOURCE, 5, lang) for kind in PROBES}  # deterministic
    assert out["empty"] == "" and out["copy_source"] == SOURCE
    rep = _words(out["repeat_ngrams"])
    n = min(3, len(words)) if rep[: len(words)] == words else None
    assert set(rep) <= set(words) and len(words) <= len(rep) <= len(words) + 3, n
    assert len(set(rep)) <= 3 and (len(rep) >= 4 or len(words) < 2)
    assert out["pad"].startswith(ref) and len(out["pad"].split()) == 2 * len(ref.split())
    assert _words(out["truncate"]) == words[: len(words) // 2]
    assert out["case"] in (ref.lower(), ref.upper()) and out["case"] != ref
    assert not any(unicodedata.category(c).startswith("P") for c in out["punctuation"])
    assert out["punctuation"].split() == [
        "".join(c for c in w if not unicodedata.category(c).startswith("P")) for w in ref.split()
    ]
    assert sorted(_words(out["shuffle"])) == sorted(words)
    if len(set(words)) > 1:
        assert out["shuffle"] != ref


def test_probe_edge_cases():
    with pytest.raises(ValueError, match="copy_source"):
        probe("copy_source", "Hallo Welt.", None, 0)
    assert probe("shuffle", "la la la.", None, 0, "en") == "la la la."
    assert probe("truncate", "Ja.", None, 0) == ""
    for kind in set(PROBES) - {"copy_source"}:
        assert probe(kind, "", None, 0) == ""
    assert {probe("case", "Der Hund bellt.", None, s) for s in range(20)} == {
        "der hund bellt.",
        "DER HUND BELLT.",
    }


@pytest.mark.parametrize("lang, ref", REFERENCES)
def test_good_output_differs_in_exactly_one_word(lang, ref):
    for seed in range(3):
        good = good_output(ref, seed, lang)
        assert good == good_output(ref, seed, lang) and good != ref
        a, b = ref.split(), good.split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def test_unknown_kinds_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown ladder kind 'shout'.*" + ", ".join(LADDERS)):
        ladder("shout", "Hallo.", 3, 0)
    with pytest.raises(ValueError, match="unknown probe kind 'shout'.*" + ", ".join(PROBES)):
        probe("shout", "Hallo.", None, 0)
    with pytest.raises(ValueError, match="unknown lang 'fr'; valid: de, en"):
        ladder("delete", "Bonjour.", 3, 0, "fr")
    with pytest.raises(ValueError, match="unknown lang"):
        good_output("Bonjour.", 0, "fr")
    with pytest.raises(ValueError, match="steps"):
        ladder("delete", "Hallo.", -1, 0)
    with pytest.raises(ValueError, match="at least one word"):
        good_output(" ... ", 0)
