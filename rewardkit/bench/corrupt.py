"""Corruption ladders and reward-hacking probes for the metric bench.

A *ladder* degrades a reference step by step: element k carries k edits of one kind, applied
cumulatively (element 0 is the reference itself, each element adds one edit and never undoes an
earlier one), so a good metric's score should fall as k grows. A *probe* is a degenerate output
(empty, a copy of the source, repeated n-grams, padding, ...) that a hackable metric may rank above
a near-perfect answer, :func:`good_output`.

Text is tokenised on whitespace; punctuation stays attached to its word (``"Uhr,"`` edits as
``Uhr`` with a trailing comma) and the sentence-final mark (``.``, ``?``, ``!``) stays at the end.
Everything is deterministic given ``seed`` and the reference (SHA-256 seeding, no ``hash()``), and a
ladder with fewer steps is a prefix of one with more. Vocabularies exist for ``lang`` "de" and "en".
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Callable, Iterator

from rewardkit.textdata import _de_number, _en_number

__all__ = ["LADDERS", "LANGS", "PROBES", "good_output", "ladder", "probe"]

LADDERS: tuple[str, ...] = (
    "substitute",
    "delete",
    "reorder",
    "number_swap",
    "entity_swap",
    "negation",
    "truncate",
)
PROBES: tuple[str, ...] = (
    "empty",
    "copy_source",
    "repeat_ngrams",
    "pad",
    "truncate",
    "case",
    "punctuation",
    "shuffle",
)
LANGS: tuple[str, ...] = ("de", "en")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Replacement words for "substitute": frequent words of each language, of every word class.
_VOCAB = {
    "de": _words(
        "Haus Baum Wasser Hund Katze Auto Garten Fenster Tür Blume Wolke Straße Schule Arbeit "
        "Zeit Woche Abend Nacht Freund Kind Lehrer Lied Spiel Geld Brot Milch Kaffee Tee Berg "
        "Fluss Meer Sonne Regen Schnee Wind Vogel Pferd Zimmer Küche Reise Frage Antwort Farbe "
        "schnell langsam schön gut schlecht warm kalt hell dunkel laut leise leicht schwer früh "
        "spät oft selten heute gestern hier dort bald gern sehr fast schon auch nur oder aber "
        "weil wenn dass ohne gegen unter über neben zwischen laufen gehen kommen spielen lesen "
        "schreiben singen tanzen kochen trinken schlafen lernen fragen sagen denken wohnt macht "
        "bleibt liegt steht sitzt hört ruft zeigt bekommt vielleicht wirklich einfach wieder "
        "zusammen draußen drinnen unten oben links rechts"
    ),
    "en": _words(
        "house tree water dog cat car garden window door flower cloud street school work time "
        "week evening night friend child teacher song game money bread milk coffee tea mountain "
        "river sea sun rain snow wind bird horse room kitchen journey question answer colour "
        "fast slow beautiful good bad warm cold bright dark loud quiet light heavy early late "
        "often rarely today yesterday here there soon gladly very almost already also only or "
        "but because if that without against under over beside between run walk come play read "
        "write sing dance cook drink sleep learn ask say think lives makes stays lies stands "
        "sits hears calls shows gets perhaps really simply again together outside inside down "
        "up left right"
    ),
}

_NAMES = frozenset(
    _words(
        "Anna Maria Julia Laura Sarah Lena Emma Sophie Clara Nina Hannah Eva Lisa Katrin Mia "
        "Greta Marie Ella Johanna Leonie Paul Peter David Daniel Michael Martin Stefan Tom Karl "
        "Oliver Robert Simon Jan Frank Florian Jakob Benjamin Erik Anton Philipp Thomas Lukas "
        "Jonas Felix Leon Elias Noah Finn Max Moritz Tobias Hans Klaus Jürgen Wolfgang Uwe Dieter "
        "Petra Sabine Ursula Monika Birgit Andrea Heike Susanne Lea Lina Amelie Charlotte Paula "
        "Frieda Ida Emil Oskar Theo Henry John James George William Charles Mary Emily Alice "
        "Olivia Sophia Jessica Jennifer Elizabeth Margaret Helen Susan Richard Joseph Edward "
        "Andrew Matthew Christopher Kevin Brian Laura Rachel Ruth"
    )
)
_CITY_PAIRS = tuple(
    (item[0], item[-1])
    for item in (
        p.split("/")
        for p in _words(
            "Berlin Hamburg Munich/München Cologne/Köln Frankfurt Stuttgart Dresden Leipzig Bremen "
            "Hanover/Hannover Nuremberg/Nürnberg Bonn Vienna/Wien Zurich/Zürich Geneva/Genf Bern "
            "Paris London Rome/Rom Prague/Prag Warsaw/Warschau Lisbon/Lissabon Brussels/Brüssel "
            "Copenhagen/Kopenhagen Madrid Oslo Amsterdam Stockholm Dublin Athens/Athen "
            "Venice/Venedig Milan/Mailand Budapest Salzburg Heidelberg Kiel Rostock Freiburg Graz "
            "Basel Munster/Münster Düsseldorf Dortmund Mainz Potsdam Erfurt Kassel Ulm Augsburg "
            "Regensburg Würzburg Lübeck Magdeburg Innsbruck Linz Lucerne/Luzern Lausanne "
            "Florence/Florenz Naples/Neapel Barcelona Seville/Sevilla Porto Marseille Lyon "
            "Bruges/Brügge Antwerp/Antwerpen Rotterdam Helsinki Tallinn Riga Vilnius "
            "Krakow/Krakau Moscow/Moskau Istanbul Cairo/Kairo Tokyo/Tokio Beijing/Peking Sydney "
            "Chicago Boston Toronto Montreal Edinburgh Manchester Liverpool Glasgow Oxford"
        )
    )
)
_COUNTRY_PAIRS = tuple(
    tuple(p.split("/"))
    for p in _words(
        "Germany/Deutschland Austria/Österreich Switzerland/Schweiz France/Frankreich "
        "Italy/Italien Spain/Spanien Portugal/Portugal Poland/Polen Norway/Norwegen "
        "Sweden/Schweden Denmark/Dänemark Finland/Finnland Greece/Griechenland Hungary/Ungarn "
        "Ireland/Irland England/England Scotland/Schottland Canada/Kanada Japan/Japan China/China "
        "Brazil/Brasilien Egypt/Ägypten Mexico/Mexiko India/Indien Belgium/Belgien "
        "Netherlands/Niederlande Croatia/Kroatien"
    )
)


def _entity_table(lang: str) -> dict[str, tuple[str, ...]]:
    col = 0 if lang == "en" else 1
    return {
        "name": tuple(sorted(_NAMES)),
        "city": tuple(p[col] for p in _CITY_PAIRS),
        "country": tuple(p[col] for p in _COUNTRY_PAIRS),
    }


_ENTITIES = {lang: _entity_table(lang) for lang in LANGS}
_ENTITY_KIND = {
    lang: {e: kind for kind, values in table.items() for e in values}
    for lang, table in _ENTITIES.items()
}

_NUMBER_VALUES = {  # number word -> value, 0-99 ("one" left out: mostly a pronoun in English)
    "de": {_de_number(n): n for n in range(100)},
    "en": {_en_number(n): n for n in range(100) if n != 1},
}
_DIGITS = re.compile(r"^(\d+(?:[.,:]\d+)*)(\D*)$")

# Negation: negators (removed to flip polarity), finite verbs (a negator is inserted after them,
# or before an English main verb) and antonyms (polarity flips of single words).
_DE_NEGATORS = frozenset({"nicht", "nie", "niemals"})
_DE_FINITE = frozenset(
    _words(
        "bin bist ist sind seid war warst waren wart habe hast hat haben habt hatte hattest "
        "hatten werde wirst wird werden werdet wurde wurden kann kannst können könnt konnte "
        "konnten muss musst müssen musste mussten will willst wollen wollte wollten soll sollst "
        "sollen sollte sollten darf darfst dürfen durfte durften möchte möchtest möchten mag "
        "magst mögen gibt gab fährt fahren fuhr geht gehen ging kommt kommen kam wohnt wohnen "
        "wohnte lebt leben arbeitet arbeiten kauft kaufen findet finden braucht brauchen sucht "
        "suchen sieht sehen liest lesen isst essen trägt tragen nimmt nehmen bringt bringen "
        "öffnet öffnen schließt kostet kosten besucht besuchen putzt putzen wäscht bestellt "
        "verkauft verliert vergisst repariert macht machen sagt sagte weiß wissen steht stand "
        "liegt lag heißt spielt spielen regnet schneit trifft treffen findest brauche kaufe "
        "gehe komme wohne arbeite"
    )
)
_DE_PRONOUNS = frozenset(_words("ich du er sie es wir ihr man"))
_EN_NEGATORS = frozenset({"not", "never", "no"})
_EN_CONTRACTIONS = {
    "don't": "do",
    "doesn't": "does",
    "didn't": "did",
    "isn't": "is",
    "aren't": "are",
    "wasn't": "was",
    "weren't": "were",
    "won't": "will",
    "can't": "can",
    "cannot": "can",
    "couldn't": "could",
    "shouldn't": "should",
    "wouldn't": "would",
    "hasn't": "has",
    "haven't": "have",
    "hadn't": "had",
}
_EN_AUX = frozenset(
    _words("am is are was were will can could should would must may might has have had do does did")
)
_EN_MAIN = frozenset(
    _words(
        "buys sells finds loses forgets needs looks repairs cleans carries brings takes sees "
        "orders washes eats opens reads lives works goes visits starts finishes leaves costs "
        "thinks meets wants likes says knows comes gets makes runs plays closes turns travels "
        "bought sold found lost forgot brought took saw ate went came left met flew drove gave "
        "got made ran said thought knew paid called stayed lived worked visited travelled "
        "traveled turned cycled started finished opened closed ordered cleaned repaired buy sell "
        "find lose forget need look repair clean carry bring take see order wash eat open live "
        "work go visit start finish leave cost think meet want like know come get make play "
        "close turn travel"
    )
)


def _antonyms(pairs: str) -> dict[str, str]:
    table = {}
    for pair in _words(pairs):
        a, b = pair.split("/")
        table.setdefault(a, b)
        table.setdefault(b, a)
    return table


_DE_ANTONYMS = _antonyms(
    "gut/schlecht groß/klein alt/neu jung/alt früh/spät heiß/kalt warm/kalt schön/hässlich "
    "leicht/schwer sauber/schmutzig voll/leer immer/nie oft/selten viel/wenig richtig/falsch "
    "offen/geschlossen geöffnet/geschlossen lang/kurz schnell/langsam hell/dunkel laut/leise "
    "interessant/langweilig mit/ohne öffnet/schließt frisch/alt reif/unreif "
    "billig/teuer sonnig/bewölkt gern/ungern alles/nichts"
)
_EN_ANTONYMS = _antonyms(
    "good/bad big/small large/small old/new young/old early/late hot/cold warm/cold "
    "beautiful/ugly cheap/expensive light/heavy clean/dirty full/empty always/never often/rarely "
    "many/few much/little right/wrong open/closed opens/closes long/short fast/slow loud/quiet "
    "interesting/boring with/without before/after true/false easy/difficult happy/sad more/less "
    "first/last fresh/stale ripe/unripe sweet/sour sunny/cloudy everything/nothing"
)
_DE_ADJ_ENDINGS = ("e", "en", "er", "es", "em")

_FILLERS = {
    "de": ("und so weiter", "ja genau", "also ähm", "das ist gut", "wie gesagt"),
    "en": ("and so on", "yes indeed", "well um", "that is good", "as I said"),
}

_TOKEN = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)
_FINAL = re.compile(r"[.!?…]")


def _split_token(part: str) -> list[str]:
    """``"„Hallo,"`` -> ``["„", "Hallo", ","]``: leading punctuation, core, trailing."""
    match = _TOKEN.fullmatch(part)
    assert match is not None  # the pattern matches every string
    return list(match.groups())


class _Text:
    """A sentence as tokens ``[lead, core, trail]`` plus its sentence-final punctuation."""

    def __init__(self, reference: str):
        self.tokens = [_split_token(part) for part in reference.split()]
        self.final = ""
        if self.tokens:
            last = self.tokens[-1]
            if not last[1] and _FINAL.search(last[0]):  # "Hallo ." -> final mark on its own
                self.final = last[0] + last[2]
                self.tokens.pop()
            elif _FINAL.search(last[2]):
                self.final, last[2] = last[2], ""
        self.dead: set[int] = set()  # deleted tokens
        self.after: dict[int, str] = {}  # words inserted after token i
        self.before: dict[int, str] = {}  # words inserted before token i

    def words(self) -> list[int]:
        """Indices of live tokens that contain a letter or digit."""
        return [i for i, t in enumerate(self.tokens) if i not in self.dead and _is_word(t[1])]

    def core(self, i: int) -> str:
        return self.tokens[i][1]

    def render(self) -> str:
        parts = []
        for i, tok in enumerate(self.tokens):
            if i in self.before:
                parts.append(self.before[i])
            if i not in self.dead and "".join(tok):
                parts.append("".join(tok))
            if i in self.after:
                parts.append(self.after[i])
        if not any(_is_word(p) for p in parts):
            return ""
        return " ".join(parts) + self.final


def _is_word(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _rng(*parts: object) -> random.Random:
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _match_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; valid: {', '.join(LANGS)}")


# --- ladders -------------------------------------------------------------------------------------


def _substitute(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    order = text.words()
    r.shuffle(order)
    for i in order[:steps]:
        core = text.core(i)
        choices = [w for w in _VOCAB[lang] if w.lower() != core.lower()]
        text.tokens[i][1] = _match_case(r.choice(choices), core)
        yield text.render()


def _delete(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    order = text.words()
    r.shuffle(order)
    for i in order[:steps]:
        text.dead.add(i)
        yield text.render()


def _edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _reorder(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    words = text.words()
    original = [text.core(i) for i in words]
    untouched, distance = set(words), 0
    for _ in range(steps):
        if distance == len(words):  # every word is already out of place
            return
        pairs = [(i, j) for i in words for j in words if text.core(i) < text.core(j)]
        r.shuffle(pairs)
        # swaps of two untouched words first; then any swap, as long as the distance grows
        pairs.sort(key=lambda pair: not (pair[0] in untouched and pair[1] in untouched))
        for pair in pairs[:60]:  # bounded work per step; the ladder ends if none of them helps
            a, b = (text.tokens[k] for k in pair)
            a[1], b[1] = b[1], a[1]
            new_distance = _edit_distance(original, [text.core(i) for i in words])
            if new_distance > distance:
                break
            a[1], b[1] = b[1], a[1]
        else:
            return
        distance = new_distance
        untouched -= set(pair)
        yield text.render()


def _new_number(r: random.Random, core: str, used: set[str], lang: str) -> str:
    """A different, nearby number of the same shape (digits stay digits, words stay words)
    that this position never had (``used``)."""
    words = _NUMBER_VALUES[lang]
    if core.lower() in words:  # "sieben" -> "neun" rather than "neunundachtzig"
        value = words[core.lower()]
        fresh = sorted(
            (abs(v - value), w) for w, v in words.items() if v != value and w not in used
        )
        near = [w for d, w in fresh if d <= max(3, value // 2)] or [w for _, w in fresh[:3]]
        return _match_case(r.choice(near), core)
    m = _DIGITS.match(core)
    assert m is not None
    number, suffix = m.groups()
    for attempt in range(1000):
        groups = re.split(r"([.,:])", number)
        if len(groups) == 3 and groups[1] == ":":  # a clock time
            groups[0] = f"{r.randrange(24):0{len(groups[0])}d}"
            groups[2] = f"{r.randrange(0, 60, 5):02d}"
        else:  # perturb the leading group, keep separators and decimals; widen if needed
            value = int(groups[0])
            span = max(5, value // 2) * (1 + attempt // 20)
            groups[0] = str(max(0, value + r.choice([d for d in range(-span, span + 1) if d])))
        new = "".join(groups) + suffix
        if new.lower() not in used:
            return new
    raise AssertionError(f"no new value for {core!r}")  # pragma: no cover


def _cycle_swaps(
    text: _Text,
    r: random.Random,
    steps: int,
    sites: list[int],
    new: Callable[[int, str, set[str]], str],
) -> Iterator[str]:
    """Change one more site per step; after every site has changed once, change them again."""
    r.shuffle(sites)
    used = {i: {text.core(i).lower()} for i in sites}
    for k in range(steps if sites else 0):
        i = sites[k % len(sites)]
        text.tokens[i][1] = new(i, text.core(i), used[i])
        used[i].add(text.core(i).lower())
        yield text.render()


def _number_swap(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    sites = [
        i
        for i in text.words()
        if text.core(i).lower() in _NUMBER_VALUES[lang] or _DIGITS.match(text.core(i))
    ]
    yield from _cycle_swaps(
        text, r, steps, sites, lambda _, core, used: _new_number(r, core, used, lang)
    )


def _split_entity(core: str, lang: str) -> tuple[str, str] | None:
    """(entity, suffix) for a known entity, also possessive ("Anna's", "Annas")."""
    kinds = _ENTITY_KIND[lang]
    if core in kinds:
        return core, ""
    for suffix in ("'s", "’s", "'"):
        if core.endswith(suffix) and core[: -len(suffix)] in kinds:
            return core[: -len(suffix)], suffix
    if lang == "de" and core.endswith("s") and kinds.get(core[:-1]) == "name":
        return core[:-1], "s"
    return None


def _entity_swap(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    found = {i: _split_entity(text.core(i), lang) for i in text.words()}
    sites = [i for i, entity in found.items() if entity]
    present = {entity[0] for entity in found.values() if entity}
    bases = {i: {found[i][0]} for i in sites}  # type: ignore[index]

    def new(i: int, core: str, used: set[str]) -> str:
        entity, suffix = _split_entity(core, lang)  # type: ignore[misc]
        pool = _ENTITIES[lang][_ENTITY_KIND[lang][entity]]
        choice = r.choice([e for e in pool if e not in present and e not in bases[i]])
        bases[i].add(choice)
        if suffix == "s" and choice.endswith(("s", "x", "z", "ß")):
            suffix = "'"  # German genitive: "Lukas' Bruder"
        elif suffix == "'" and not choice.endswith(("s", "x", "z", "ß")):
            suffix = "s"
        return choice + suffix

    yield from _cycle_swaps(text, r, steps, sites, new)


def _antonym(core: str, lang: str) -> str | None:
    low = core.lower()
    if lang == "en":
        found = _EN_ANTONYMS.get(low)
        return None if found is None else _match_case(found, core)
    if low in _DE_ANTONYMS:
        return _match_case(_DE_ANTONYMS[low], core)
    if core[:1].islower():  # inflected adjectives: "alten" -> "neuen"
        for ending in _DE_ADJ_ENDINGS:
            stem = low[: -len(ending)]
            opposite = _DE_ANTONYMS.get(stem) if low.endswith(ending) else None
            if opposite and not opposite.endswith(("el", "er")):  # not dunkel -> dunkle
                return opposite + ending
    return None


def _is_kein(core: str, lang: str) -> bool:
    return lang == "de" and re.fullmatch(r"kein(e[nmrs]?)?", core.lower()) is not None


def _negation_sites(text: _Text, lang: str) -> tuple[list[tuple], list[tuple]]:
    """(polarity sites, antonym sites); a site is (kind, token index, word)."""
    toks = text.tokens
    negators = _DE_NEGATORS if lang == "de" else _EN_NEGATORS
    is_neg = [
        i not in text.dead and (t[1].lower() in negators or _is_kein(t[1], lang))
        for i, t in enumerate(toks)
    ]
    words = text.words()
    polarity, antonyms = [], []

    def near_negator(i: int) -> bool:
        return (i > 0 and is_neg[i - 1]) or (i + 1 < len(toks) and is_neg[i + 1])

    for n, i in enumerate(words):
        core = toks[i][1]
        low = core.lower()
        if is_neg[i] and not _is_kein(core, lang):
            polarity.append(("remove", i, ""))
        elif _is_kein(core, lang):
            polarity.append(
                ("replace", i, core[1:] if core[0] == "k" else core[1].upper() + core[2:])
            )
        elif lang == "de" and re.fullmatch(r"ein(e[nmrs]?)?", low) and not near_negator(i):
            polarity.append(("replace", i, _match_case("k" + low, core)))
        elif lang == "en" and low in _EN_CONTRACTIONS:
            polarity.append(("replace", i, _match_case(_EN_CONTRACTIONS[low], core)))
        elif lang == "de" and low in _DE_FINITE and n + 1 < len(words) and not toks[i][2]:
            # a finite verb (not clause-final, where it is a participle or infinitive): "nicht"
            # goes after it, or after a subject pronoun that follows it ("hast du nicht")
            target = words[n + 1] if toks[words[n + 1]][1] in _DE_PRONOUNS else i
            if not toks[target][2] and not near_negator(target):
                polarity.append(("after", target, "nicht"))
        elif lang == "en" and low in _EN_AUX and not toks[i][2] and not near_negator(i):
            polarity.append(("after", i, "not"))
        elif lang == "en" and n > 0 and low in _EN_MAIN and not near_negator(i):
            polarity.append(("before", i, "never"))
        elif (opposite := _antonym(core, lang)) is not None:
            antonyms.append(("replace", i, opposite))
    return polarity, antonyms


def _negation(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    polarity, antonyms = _negation_sites(text, lang)
    removals = [s for s in polarity if s[0] == "remove" or _is_kein(text.core(s[1]), lang)]
    removals += [
        s for s in polarity if lang == "en" and text.core(s[1]).lower() in _EN_CONTRACTIONS
    ]
    if removals:
        first = r.choice(removals)
    elif polarity:
        first = r.choice(polarity)
    elif text.words():  # no known verb: negate the clause at its end (de) or after word one (en)
        words = text.words()
        first = ("after", words[-1], "nicht") if lang == "de" else ("after", words[0], "not")
    else:
        return
    rest = [s for s in polarity + antonyms if s[1] != first[1]]
    r.shuffle(rest)
    for kind, i, word in [first, *rest][:steps]:
        if kind == "remove":
            text.dead.add(i)
        elif kind == "replace":
            text.tokens[i][1] = word
        elif kind == "after":
            text.after[i] = word
        else:
            text.before[i] = word
        yield text.render()


def _truncate(text: _Text, r: random.Random, steps: int, lang: str) -> Iterator[str]:
    for _ in range(steps):
        words = text.words()
        if not words:
            return
        text.dead.update(range(words[-1], len(text.tokens)))  # the word and punctuation after it
        yield text.render()


_LADDER_FNS = {
    "substitute": _substitute,
    "delete": _delete,
    "reorder": _reorder,
    "number_swap": _number_swap,
    "entity_swap": _entity_swap,
    "negation": _negation,
    "truncate": _truncate,
}


def ladder(kind: str, reference: str, steps: int, seed: int, lang: str = "de") -> list[str]:
    """The reference and up to ``steps`` cumulatively corrupted versions of it.

    Element k carries k edits of ``kind``; element 0 is ``reference`` exactly and each element
    differs from the one before. A ladder ends early (it always has at least one element) when
    the reference runs out of material for edits:

    * ``substitute``: k words, each replaced once by a different word of ``lang``'s vocabulary;
      at most one step per word.
    * ``delete``: k words removed; ends at "" once every word is gone.
    * ``reorder``: k swaps of two different words (adjacent or not), each chosen so the
      word-level edit distance to the reference grows; words no earlier swap moved go first.
      Ends when no swap can move the text further from the reference.
    * ``number_swap``: k number changes (digits, clock times, number words of ``lang``; English
      "one" is left alone). With fewer numbers than steps, later steps change already-changed
      numbers to yet other values; with no number the ladder is ``[reference]``.
    * ``entity_swap``: k swaps of a capitalised name, city or country from this module's lists
      (possessives like "Anna's", "Annas" too) for another of the same kind, cycling like
      ``number_swap``; with no known entity the ladder is ``[reference]``.
    * ``negation``: k polarity edits at k distinct words. Edit 1 negates: it removes an existing
      negator (de: nicht/nie/niemals, kein -> ein; en: not/never/no, n't -> the bare auxiliary) or,
      if there is none, adds one (de: "nicht" after a finite verb, ein -> kein; en: "not" after
      an auxiliary, "never" before a main verb; with no known verb, de: "nicht" after the last
      word, en: "not" after the first). Each later edit flips one more site: another negator or
      verb as above, or a word swapped for its antonym (immer/nie, alt/neu, open/closed, ...).
      So odd k does not always mean "meaning reversed"; k counts polarity flips.
    * ``truncate``: the last k words dropped (the final mark stays); ends at "".
    """
    if kind not in _LADDER_FNS:
        raise ValueError(f"unknown ladder kind {kind!r}; valid: {', '.join(LADDERS)}")
    _check_lang(lang)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    r = _rng("ladder", kind, seed, lang, reference)
    rungs = [reference]
    for text in _LADDER_FNS[kind](_Text(reference), r, steps, lang):
        if text == rungs[-1]:  # pragma: no cover - every edit changes the text by construction
            break
        rungs.append(text)
    return rungs


# --- probes --------------------------------------------------------------------------------------


def probe(kind: str, reference: str, source: str | None, seed: int, lang: str = "de") -> str:
    """A degenerate output that a hackable metric may rank above :func:`good_output`.

    * ``empty``: "".
    * ``copy_source``: ``source`` verbatim (the English sentence or transcript); a ValueError if
      ``source`` is None.
    * ``repeat_ngrams``: one 2- or 3-word n-gram of the reference, repeated to about the
      reference's length.
    * ``pad``: the reference followed by a filler phrase repeated to as many words again.
    * ``truncate``: the first half of the reference's words (rounded down), final mark kept.
    * ``case``: all lowercase or ALL CAPS (seeded; the other one if the first changes nothing).
    * ``punctuation``: every punctuation character removed.
    * ``shuffle``: the reference's words in a random order different from the original, where
      one exists (the final mark stays at the end).
    """
    if kind not in PROBES:
        raise ValueError(f"unknown probe kind {kind!r}; valid: {', '.join(PROBES)}")
    _check_lang(lang)
    r = _rng("probe", kind, seed, lang, reference)
    text = _Text(reference)
    words = [text.core(i) for i in text.words()]
    if kind == "empty":
        return ""
    if kind == "copy_source":
        if source is None:
            raise ValueError("probe 'copy_source' needs a source text, got None")
        return source
    if kind == "repeat_ngrams":
        if not words:
            return ""
        n = min(r.choice((2, 3)), len(words))
        start = r.randrange(len(words) - n + 1)
        gram = words[start : start + n]
        return " ".join(gram * max(2, -(-len(words) // n))) + text.final
    if kind == "pad":
        n_words = len(reference.split())
        if not n_words:
            return reference
        filler = r.choice(_FILLERS[lang]).split()
        padding = (filler * (n_words // len(filler) + 1))[:n_words]
        return f"{reference.rstrip()} {' '.join(padding)}"
    if kind == "truncate":
        keep = len(words) // 2
        kept = text.words()[:keep]
        text.dead.update(range(kept[-1] + 1 if kept else 0, len(text.tokens)))
        return text.render()
    if kind == "case":
        first, second = (str.lower, str.upper) if r.random() < 0.5 else (str.upper, str.lower)
        return first(reference) if first(reference) != reference else second(reference)
    if kind == "punctuation":
        kept = "".join(ch for ch in reference if not unicodedata.category(ch).startswith("P"))
        return " ".join(kept.split())
    # shuffle
    parts = ["".join(t) for t in text.tokens if "".join(t)]
    if len(set(parts)) > 1:
        original = list(parts)
        while parts == original:
            r.shuffle(parts)
    return (" ".join(parts) + text.final) if parts else reference


def good_output(reference: str, seed: int, lang: str = "de") -> str:
    """A near-perfect answer for the probes: the reference with exactly one word substituted
    (a different word of ``lang``, same capitalisation and punctuation). ValueError if the
    reference has no word."""
    _check_lang(lang)
    text = _Text(reference)
    if not text.words():
        raise ValueError(f"good_output needs a reference with at least one word, got {reference!r}")
    return next(_substitute(text, _rng("good_output", seed, lang, reference), 1, lang))
