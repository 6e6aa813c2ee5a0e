"""Template-generated text data: English->German sentence pairs and English spoken-QA items.

The text side of rewardkit's embedded data sets (a later step voices the English side with
eSpeak). Sentences are composed from templates and word lists with German agreement done by rule
(articles and adjective endings per gender and case, verb forms per person), so the data has real
lexical variety rather than being a lookup table.

* Deterministic: the same arguments give the same items in every run and process (the random
  generator is seeded through SHA-256, never through ``hash()``), and a shorter call is a prefix of
  a longer one.
* Disjoint splits: each candidate is assigned to one of ``SPLITS`` by a hash of its English source
  sentence (QA: its passage), 80/10/10, whatever the seed, so splits never share a sentence.
  Within a split, items are unique.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["SPLITS", "QAItem", "TranslationPair", "qa_items", "translation_pairs"]

T = TypeVar("T")

#: Split name -> its share of the hash buckets [lo, hi) out of 100.
SPLITS: dict[str, tuple[int, int]] = {"train": (0, 80), "dev": (80, 90), "test": (90, 100)}
_SPLIT_ALIASES = {"validation": "dev", "valid": "dev"}


@dataclass(frozen=True)
class TranslationPair:
    """One English source sentence and its German reference translation."""

    id: str
    source: str
    reference: str


@dataclass(frozen=True)
class QAItem:
    """A short English passage, a question about it and a short-phrase answer."""

    id: str
    passage: str
    question: str
    answer: str


# ---------------------------------------------------------------------------------------------
# Numbers


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words of a literal (keeps long vocabulary lists readable)."""
    return tuple(text.split())


def _slashed(text: str) -> tuple[tuple[str, ...], ...]:
    """``"red/rot blue/blau"`` -> ``(("red", "rot"), ("blue", "blau"))``."""
    return tuple(tuple(item.split("/")) for item in text.split())


_EN_ONES = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_EN_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")
_DE_ONES = _words(
    "null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn "
    "fünfzehn sechzehn siebzehn achtzehn neunzehn"
)
_DE_TENS = _words("_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig")


def _en_number(n: int) -> str:
    """English number word for 0-99 ("twenty-one")."""
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def _de_number(n: int) -> str:
    """German number word for 0-99 ("einundzwanzig")."""
    if n < 20:
        return _DE_ONES[n]
    tens, ones = divmod(n, 10)
    if not ones:
        return _DE_TENS[tens]
    return ("ein" if ones == 1 else _DE_ONES[ones]) + "und" + _DE_TENS[tens]


def _count(
    r: random.Random, lo: int = 2, hi: int = 12, digits: tuple[int, int] = (13, 99)
) -> tuple[int, str, str]:
    """A count >= 2 as (value, en, de): a word in [lo, hi] or, half the time, digits."""
    if r.random() < 0.5:
        n = r.randint(*digits)
        return n, str(n), str(n)
    n = r.randint(lo, hi)
    return n, _en_number(n), _de_number(n)


def _time(
    r: random.Random,
    hours: tuple[int, int] = (2, 12),
    clock: tuple[int, int] = (6, 22),
    special: bool = True,
) -> tuple[str, str]:
    """A clock time with its preposition: ("at half past three", "um halb vier"). ``hours``
    bounds the spoken forms, ``clock`` the 24-hour digit forms ("at 14:30", "um 14:30 Uhr");
    ``special`` allows noon and midnight."""
    kind = r.randrange(11 if special else 10)
    h = r.randint(*hours)
    if kind < 3:
        return f"at {_en_number(h)} o'clock", f"um {_de_number(h)} Uhr"
    if kind < 5:
        h = min(h, 11)
        return f"at half past {_en_number(h)}", f"um halb {_de_number(h + 1)}"
    if kind == 5:
        return f"at quarter past {_en_number(h)}", f"um Viertel nach {_de_number(h)}"
    if kind == 6:
        return f"at quarter to {_en_number(h)}", f"um Viertel vor {_de_number(h)}"
    if kind < 10:
        digits = f"{r.randint(*clock)}:{r.choice(range(0, 60, 5)):02d}"
        return f"at {digits}", f"um {digits} Uhr"
    return r.choice((("at midnight", "um Mitternacht"), ("at noon", "um zwölf Uhr mittags")))


# ---------------------------------------------------------------------------------------------
# German grammar: articles and adjective endings per case and gender ("pl" = plural)

_DEF = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
_EIN = {  # endings of ein, kein and the possessives (mein, dein, sein, ihr, unser)
    "nom": {"m": "", "f": "e", "n": "", "pl": "e"},
    "acc": {"m": "en", "f": "e", "n": "", "pl": "e"},
    "dat": {"m": "em", "f": "er", "n": "em", "pl": "en"},
}
_WEAK = {  # adjective after a definite article
    "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
_MIXED = {  # adjective after an ein-word
    "nom": {"m": "er", "f": "e", "n": "es", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "es", "pl": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
_STRONG_PL = {"nom": "e", "acc": "e", "dat": "en"}  # plural adjective with no article

_PERSONS = ("1sg", "2sg", "3sg", "1pl", "3pl")
_HABEN = dict(zip(_PERSONS, ("habe", "hast", "hat", "haben", "haben")))
_SEIN = dict(zip(_PERSONS, ("bin", "bist", "ist", "sind", "sind")))
_WERDEN = dict(zip(_PERSONS, ("werde", "wirst", "wird", "werden", "werden")))
_WAR = dict(zip(_PERSONS, ("war", "warst", "war", "waren", "waren")))
_HATTE = dict(zip(_PERSONS, ("hatte", "hattest", "hatte", "hatten", "hatten")))
_KONNTE = dict(zip(_PERSONS, ("konnte", "konntest", "konnte", "konnten", "konnten")))
_EN_BE = dict(zip(_PERSONS, ("am", "are", "is", "are", "are")))
_EN_WAS = dict(zip(_PERSONS, ("was", "were", "was", "were", "were")))
_EN_HAVE = dict(zip(_PERSONS, ("have", "have", "has", "have", "have")))
_EN_DO = dict(zip(_PERSONS, ("do", "do", "does", "do", "do")))


def _de_regular(inf: str, du: str | None = None, er: str | None = None) -> dict[str, str]:
    """Present-tense forms of a German verb in -en; ``du``/``er`` override stem changes."""
    stem = inf[:-2]
    e = "e" if stem.endswith(("t", "d")) or stem.endswith("fn") else ""
    return {
        "1sg": stem + "e",
        "2sg": du or (stem + e + ("t" if stem.endswith(("s", "ß", "z")) else "st")),
        "3sg": er or (stem + e + "t"),
        "1pl": inf,
        "3pl": inf,
    }


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(word: str) -> str:
    """The English indefinite article for the word that follows it."""
    word = word.lower()
    if word.startswith(("uni", "use", "usu", "eu", "one")):
        return "a"
    return "an" if word[:1] in "aeiou" or word.startswith(("hour", "honest")) else "a"


@dataclass(frozen=True)
class _Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    g: str  # m, f, n
    tags: frozenset[str]


def _nouns(rows: str, base_tag: str) -> tuple[_Noun, ...]:
    out = []
    for row in rows.strip().splitlines():
        en, en_pl, de, de_pl, g, *tags = row.split("|")
        tag_set = frozenset([base_tag, *(t for t in tags[0].split() if t)] if tags else [base_tag])
        out.append(_Noun(en, en_pl, de, de_pl, g, tag_set))
    return tuple(out)


_THINGS = _nouns(
    """
key|keys|Schlüssel|Schlüssel|m|
bag|bags|Tasche|Taschen|f|open
book|books|Buch|Bücher|n|read
umbrella|umbrellas|Regenschirm|Regenschirme|m|fix
lamp|lamps|Lampe|Lampen|f|fix clean
chair|chairs|Stuhl|Stühle|m|fix clean
table|tables|Tisch|Tische|m|fix clean
bicycle|bicycles|Fahrrad|Fahrräder|n|fix clean
phone|phones|Handy|Handys|n|fix
ticket|tickets|Fahrkarte|Fahrkarten|f|
letter|letters|Brief|Briefe|m|open read
camera|cameras|Kamera|Kameras|f|fix
watch|watches|Uhr|Uhren|f|fix
jacket|jackets|Jacke|Jacken|f|wash
cup|cups|Tasse|Tassen|f|wash
bottle|bottles|Flasche|Flaschen|f|open
laptop|laptops|Laptop|Laptops|m|fix open
suitcase|suitcases|Koffer|Koffer|m|open
picture|pictures|Bild|Bilder|n|
coat|coats|Mantel|Mäntel|m|wash
hat|hats|Hut|Hüte|m|
plate|plates|Teller|Teller|m|wash
glass|glasses|Glas|Gläser|n|wash
box|boxes|Kiste|Kisten|f|open
newspaper|newspapers|Zeitung|Zeitungen|f|read
map|maps|Landkarte|Landkarten|f|read
pen|pens|Kugelschreiber|Kugelschreiber|m|
magazine|magazines|Zeitschrift|Zeitschriften|f|read
backpack|backpacks|Rucksack|Rucksäcke|m|open
""",
    "thing",
)
_FOODS = _nouns(
    """
apple|apples|Apfel|Äpfel|m|wash
cake|cakes|Kuchen|Kuchen|m|
orange|oranges|Orange|Orangen|f|
egg|eggs|Ei|Eier|n|
pear|pears|Birne|Birnen|f|wash
banana|bananas|Banane|Bananen|f|
tomato|tomatoes|Tomate|Tomaten|f|wash
lemon|lemons|Zitrone|Zitronen|f|
pizza|pizzas|Pizza|Pizzen|f|
peach|peaches|Pfirsich|Pfirsiche|m|wash
plum|plums|Pflaume|Pflaumen|f|wash
cucumber|cucumbers|Gurke|Gurken|f|wash
""",
    "food",
)
_NOUNS = _THINGS + _FOODS

_THING_ADJ = _slashed(
    "red/rot blue/blau green/grün black/schwarz white/weiß yellow/gelb grey/grau brown/braun "
    "old/alt new/neu small/klein big/groß heavy/schwer light/leicht cheap/billig "
    "beautiful/schön clean/sauber dirty/schmutzig"
)
_FOOD_ADJ = _slashed("fresh/frisch ripe/reif sweet/süß small/klein big/groß cheap/billig")


@dataclass(frozen=True)
class _Verb:
    en: str
    en3: str
    en_past: str
    de: dict[str, str]
    de_inf: str
    de_pp: str
    takes: frozenset[str]

    def en_pres(self, person: str) -> str:
        return self.en3 if person == "3sg" else self.en


def _verb(
    en: str, de_inf: str, de_pp: str, takes: str, du: str | None = None, er: str | None = None
) -> _Verb:
    base, third, past = en.split("/")
    return _Verb(
        base, third, past, _de_regular(de_inf, du, er), de_inf, de_pp, frozenset(takes.split())
    )


_VERBS = (
    _verb("buy/buys/bought", "kaufen", "gekauft", "thing food"),
    _verb("sell/sells/sold", "verkaufen", "verkauft", "thing"),
    _verb("find/finds/found", "finden", "gefunden", "thing"),
    _verb("lose/loses/lost", "verlieren", "verloren", "thing"),
    _verb("forget/forgets/forgot", "vergessen", "vergessen", "thing", "vergisst", "vergisst"),
    _verb("need/needs/needed", "brauchen", "gebraucht", "thing food"),
    _verb("look for/looks for/looked for", "suchen", "gesucht", "thing"),
    _verb("repair/repairs/repaired", "reparieren", "repariert", "fix"),
    _verb("clean/cleans/cleaned", "putzen", "geputzt", "clean"),
    _verb("carry/carries/carried", "tragen", "getragen", "thing", "trägst", "trägt"),
    _verb("bring/brings/brought", "bringen", "gebracht", "thing food"),
    _verb("take/takes/took", "nehmen", "genommen", "thing food", "nimmst", "nimmt"),
    _verb("see/sees/saw", "sehen", "gesehen", "thing", "siehst", "sieht"),
    _verb("order/orders/ordered", "bestellen", "bestellt", "thing food"),
    _verb("wash/washes/washed", "waschen", "gewaschen", "wash", "wäschst", "wäscht"),
    _verb("eat/eats/ate", "essen", "gegessen", "food", "isst", "isst"),
    _verb("open/opens/opened", "öffnen", "geöffnet", "open"),
    _verb("read/reads/read", "lesen", "gelesen", "read", "liest", "liest"),
)
_WHERE_VERBS = tuple(
    v for v in _VERBS if v.de_inf in ("finden", "verlieren", "kaufen", "vergessen")
)

# First names with grammatical gender; none ends in s, x or z, so "Annas Bruder" is regular.
_NAMES = tuple(
    [
        (n, "f")
        for n in _words(
            "Anna Maria Julia Laura Sarah Lena Emma Sophie Clara Nina Hannah Eva Lisa Katrin Mia "
            "Greta Marie Ella Johanna Leonie"
        )
    ]
    + [
        (n, "m")
        for n in _words(
            "Paul Peter David Daniel Michael Martin Stefan Tom Karl Oliver Robert Simon Jan Frank "
            "Florian Jakob Benjamin Erik Anton Philipp"
        )
    ]
)
# (en, de); most cities are spelled the same in both languages
_CITIES = tuple(
    (item[0], item[-1])
    for item in _slashed(
        "Berlin Hamburg Munich/München Cologne/Köln Frankfurt Stuttgart Dresden Leipzig Bremen "
        "Hanover/Hannover Nuremberg/Nürnberg Bonn Vienna/Wien Zurich/Zürich Geneva/Genf Bern "
        "Paris London Rome/Rom Prague/Prag Warsaw/Warschau Lisbon/Lissabon Brussels/Brüssel "
        "Copenhagen/Kopenhagen Madrid Oslo Amsterdam Stockholm Dublin Athens/Athen "
        "Venice/Venedig Milan/Mailand Budapest Salzburg Heidelberg Kiel Rostock Freiburg Graz "
        "Basel Munster/Münster"
    )
)
_WEEKDAYS = _slashed(
    "Monday/Montag Tuesday/Dienstag Wednesday/Mittwoch Thursday/Donnerstag Friday/Freitag "
    "Saturday/Samstag Sunday/Sonntag"
)
_RELATIVES = _slashed(
    "brother/Bruder/m sister/Schwester/f father/Vater/m mother/Mutter/f uncle/Onkel/m "
    "aunt/Tante/f grandmother/Großmutter/f grandfather/Großvater/m son/Sohn/m "
    "daughter/Tochter/f cousin/Cousine/f husband/Mann/m wife/Frau/f"
)
_PROFESSIONS = _slashed(
    "teacher/Lehrer/Lehrerin doctor/Arzt/Ärztin baker/Bäcker/Bäckerin "
    "nurse/Krankenpfleger/Krankenpflegerin engineer/Ingenieur/Ingenieurin cook/Koch/Köchin "
    "pilot/Pilot/Pilotin lawyer/Anwalt/Anwältin journalist/Journalist/Journalistin "
    "architect/Architekt/Architektin gardener/Gärtner/Gärtnerin "
    "police_officer/Polizist/Polizistin bus_driver/Busfahrer/Busfahrerin "
    "pharmacist/Apotheker/Apothekerin"
)
_PROFESSIONS = tuple((en.replace("_", " "), m, f) for en, m, f in _PROFESSIONS)

# (en location, de location [dative], en direction, de direction [accusative])
_PLACES = (
    ("at the station", "am Bahnhof", "to the station", "zum Bahnhof"),
    ("at the cinema", "im Kino", "to the cinema", "ins Kino"),
    ("at the museum", "im Museum", "to the museum", "ins Museum"),
    ("in the park", "im Park", "to the park", "in den Park"),
    ("at the market", "auf dem Markt", "to the market", "auf den Markt"),
    ("in the library", "in der Bibliothek", "to the library", "in die Bibliothek"),
    ("in front of the town hall", "vor dem Rathaus", "to the town hall", "zum Rathaus"),
    ("at the café", "im Café", "to the café", "ins Café"),
    ("at the swimming pool", "im Schwimmbad", "to the swimming pool", "ins Schwimmbad"),
    ("at the theatre", "im Theater", "to the theatre", "ins Theater"),
    ("at the zoo", "im Zoo", "to the zoo", "in den Zoo"),
    ("at the bakery", "in der Bäckerei", "to the bakery", "zur Bäckerei"),
    ("at the harbour", "am Hafen", "to the harbour", "zum Hafen"),
    ("at the university", "an der Universität", "to the university", "zur Universität"),
)
_ROOMS = (
    ("in the kitchen", "in der Küche", "to the kitchen", "in die Küche"),
    ("in the garden", "im Garten", "to the garden", "in den Garten"),
    ("in the office", "im Büro", "to the office", "ins Büro"),
    ("in the cellar", "im Keller", "to the cellar", "in den Keller"),
    ("in the car", "im Auto", "to the car", "zum Auto"),
    ("in the living room", "im Wohnzimmer", "to the living room", "ins Wohnzimmer"),
    ("in the bedroom", "im Schlafzimmer", "to the bedroom", "ins Schlafzimmer"),
    ("in the attic", "auf dem Dachboden", "to the attic", "auf den Dachboden"),
    ("in the hall", "im Flur", "to the hall", "in den Flur"),
    ("in the classroom", "im Klassenzimmer", "to the classroom", "ins Klassenzimmer"),
)
_VEHICLES = (
    ("train", "Zug", "m"),
    ("bus", "Bus", "m"),
    ("ferry", "Fähre", "f"),
    ("night train", "Nachtzug", "m"),
    ("coach", "Fernbus", "m"),
    ("regional train", "Regionalzug", "m"),
)
# (en past, en infinitive, en "by ...", de "mit ...", de participle, de infinitive)
_MODES = (
    ("travelled", "travel", " by train", "mit dem Zug ", "gefahren", "fahren"),
    ("travelled", "travel", " by bus", "mit dem Bus ", "gefahren", "fahren"),
    ("drove", "drive", "", "mit dem Auto ", "gefahren", "fahren"),
    ("cycled", "cycle", "", "mit dem Fahrrad ", "gefahren", "fahren"),
    ("travelled", "travel", " by ship", "mit dem Schiff ", "gefahren", "fahren"),
    ("flew", "fly", "", "", "geflogen", "fliegen"),
    ("took the night train", "take the night train", "", "mit dem Nachtzug ", "gefahren", "fahren"),
)
_BUILDINGS = (
    ("tower", "Turm", "m"),
    ("church", "Kirche", "f"),
    ("bridge", "Brücke", "f"),
    ("castle", "Schloss", "n"),
    ("museum", "Museum", "n"),
    ("station", "Bahnhof", "m"),
    ("library", "Bibliothek", "f"),
    ("theatre", "Theater", "n"),
    ("town hall", "Rathaus", "n"),
    ("cathedral", "Dom", "m"),
    ("market square", "Marktplatz", "m"),
    ("opera house", "Opernhaus", "n"),
)
_BUILDING_ADJ = (
    ("old", "alt"),
    ("new", "neu"),
    ("big", "groß"),
    ("small", "klein"),
    ("famous", "berühmt"),
    ("historic", "historisch"),
)
_OPINIONS = (
    ("beautiful", "schön"),
    ("ugly", "hässlich"),
    ("impressive", "beeindruckend"),
    ("boring", "langweilig"),
    ("interesting", "interessant"),
    ("too modern", "zu modern"),
)
_SHOPS = (
    ("shop", "Laden", "m"),
    ("bakery", "Bäckerei", "f"),
    ("pharmacy", "Apotheke", "f"),
    ("post office", "Post", "f"),
    ("supermarket", "Supermarkt", "m"),
    ("bookshop", "Buchhandlung", "f"),
    ("library", "Bibliothek", "f"),
    ("museum", "Museum", "n"),
    ("swimming pool", "Schwimmbad", "n"),
    ("bank", "Bank", "f"),
)
_WEATHER_ADJ = (
    ("cold", "kalt"),
    ("warm", "warm"),
    ("hot", "heiß"),
    ("sunny", "sonnig"),
    ("windy", "windig"),
    ("foggy", "neblig"),
    ("cloudy", "bewölkt"),
)
_OCCASIONS = (
    ("the party", "die Party"),
    ("the trip", "die Reise"),
    ("the weekend", "das Wochenende"),
    ("the picnic", "das Picknick"),
    ("the holiday", "den Urlaub"),
    ("the wedding", "die Hochzeit"),
)


def _np_de(noun: _Noun, case: str, det: str, adj: str | None = None, plural: bool = False) -> str:
    """A German noun phrase. ``det``: "def", "none" (plural, strong) or an ein-word stem
    ("ein", "kein", "mein", "sein", "ihr", ...)."""
    g = "pl" if plural else noun.g
    word = noun.de_pl if plural else noun.de
    if plural and case == "dat" and not word.endswith(("n", "s")):
        word += "n"
    if det == "def":
        article, ending = _DEF[case][g], _WEAK[case][g]
    elif det == "none":
        article, ending = "", _STRONG_PL[case]
    else:
        article, ending = det + _EIN[case][g], _MIXED[case][g]
    return " ".join(p for p in (article, adj + ending if adj else "", word) if p)


def _np_en(noun: _Noun, det: str, adj: str | None = None, plural: bool = False) -> str:
    head = " ".join(p for p in (adj, noun.en_pl if plural else noun.en) if p)
    if det == "a":
        return f"{_a(head)} {head}"
    return f"{det} {head}" if det else head


@dataclass(frozen=True)
class _Subject:
    en: str
    de: str
    person: str
    en_poss: str
    de_poss: str  # ein-word stem
    en_pron: str
    de_pron: str


def _name(r: random.Random, avoid: Sequence[str] = ()) -> tuple[str, str]:
    return r.choice([n for n in _NAMES if n[0] not in avoid])


def _name_subject(name: str, g: str) -> _Subject:
    if g == "f":
        return _Subject(name, name, "3sg", "her", "ihr", "she", "sie")
    return _Subject(name, name, "3sg", "his", "sein", "he", "er")


def _subject(r: random.Random, kinds: str = "name pron rel plural") -> _Subject:
    """A sentence subject: a name, a pronoun, a relative ("my sister") or a plural group."""
    kind = r.choice(kinds.split())
    if kind == "name" or (kind == "pron" and r.random() < 0.3):
        return _name_subject(*_name(r))
    if kind == "pron":
        return r.choice(
            (
                _Subject("I", "ich", "1sg", "my", "mein", "I", "ich"),
                _Subject("you", "du", "2sg", "your", "dein", "you", "du"),
                _Subject("we", "wir", "1pl", "our", "unser", "we", "wir"),
                _Subject("they", "sie", "3pl", "their", "ihr", "they", "sie"),
            )
        )
    if kind == "rel":
        en_rel, de_rel, g = r.choice(_RELATIVES)
        en_p, de_p = r.choice((("my", "mein"), ("our", "unser"), ("your", "dein")))
        de = f"{de_p}{_EIN['nom'][g]} {de_rel}"
        if g == "f":
            return _Subject(f"{en_p} {en_rel}", de, "3sg", "her", "ihr", "she", "sie")
        return _Subject(f"{en_p} {en_rel}", de, "3sg", "his", "sein", "he", "er")
    if r.random() < 0.4:
        (a, _), (b, _) = r.sample(_NAMES, 2)
        return _Subject(f"{a} and {b}", f"{a} und {b}", "3pl", "their", "ihr", "they", "sie")
    en, de = r.choice(
        (
            ("my parents", "meine Eltern"),
            ("our neighbours", "unsere Nachbarn"),
            ("the children", "die Kinder"),
            ("my grandparents", "meine Großeltern"),
            ("the students", "die Studenten"),
            ("my friends", "meine Freunde"),
        )
    )
    return _Subject(en, de, "3pl", "their", "ihr", "they", "sie")


def _verb_noun(r: random.Random, verbs: Sequence[_Verb] = _VERBS) -> tuple[_Verb, _Noun]:
    verb = r.choice(verbs)
    return verb, r.choice([n for n in _NOUNS if n.tags & verb.takes])


def _adj(r: random.Random, noun: _Noun) -> tuple[str, str]:
    return r.choice(_FOOD_ADJ if "food" in noun.tags else _THING_ADJ)


def _day(r: random.Random) -> tuple[str, str]:
    en, de = r.choice(_WEEKDAYS)
    return f"on {en}", f"am {de}"


def _when_past(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.4:
        return _day(r)
    if r.random() < 0.25:
        n = r.randint(2, 12)
        en, de = _en_number(n), _de_number(n)
        unit_en, unit_de = r.choice((("days", "Tagen"), ("weeks", "Wochen"), ("months", "Monaten")))
        return f"{en} {unit_en} ago", f"vor {de} {unit_de}"
    return r.choice(
        (
            ("yesterday", "gestern"),
            ("last week", "letzte Woche"),
            ("last month", "letzten Monat"),
            ("last year", "letztes Jahr"),
            ("last summer", "letzten Sommer"),
            ("yesterday evening", "gestern Abend"),
        )
    )


def _when_future(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.4:
        return _day(r)
    return r.choice(
        (
            ("tomorrow", "morgen"),
            ("next week", "nächste Woche"),
            ("next month", "nächsten Monat"),
            ("next year", "nächstes Jahr"),
            ("tomorrow morning", "morgen früh"),
            ("this evening", "heute Abend"),
            ("next summer", "nächsten Sommer"),
        )
    )


def _front(r: random.Random, when_en: str, clause_en: str) -> str:
    """An English clause with its time adverb at the front or the end."""
    if r.random() < 0.3:
        return f"{_cap(when_en)} {clause_en}"
    return f"{_cap(clause_en)} {when_en}"


def _de_v2(r: random.Random, when: str, finite: str, subj: str, rest: str) -> str:
    """A German main clause, time adverb fronted (with inversion) or after the finite verb."""
    rest = f" {rest}" if rest else ""
    if r.random() < 0.5:
        return f"{_cap(when)} {finite} {subj}{rest}"
    return f"{_cap(subj)} {finite} {when}{rest}"


# ---------------------------------------------------------------------------------------------
# Translation templates: each returns (English source, German reference).

Template = Callable[[random.Random], tuple[str, str]]


def _t_present_place(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r)
    (adj_en, adj_de), (city_en, city_de) = _adj(r, noun), r.choice(_CITIES)
    return (
        f"{_cap(s.en)} {v.en_pres(s.person)} {_np_en(noun, 'the', adj_en)} in {city_en}.",
        f"{_cap(s.de)} {v.de[s.person]} {_np_de(noun, 'acc', 'def', adj_de)} in {city_de}.",
    )


def _t_perfect_possessive(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r)
    (adj_en, adj_de), (when_en, when_de) = _adj(r, noun), _when_past(r)
    obj_de = _np_de(noun, "acc", s.de_poss, adj_de)
    return (
        _front(r, when_en, f"{s.en} {v.en_past} {s.en_poss} {adj_en} {noun.en}") + ".",
        _de_v2(r, when_de, _HABEN[s.person], s.de, f"{obj_de} {v.de_pp}") + ".",
    )


def _t_future_plural(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r)
    (adj_en, adj_de), (when_en, when_de) = _adj(r, noun), _when_future(r)
    _, n_en, n_de = _count(r)
    obj_de = f"{n_de} {_np_de(noun, 'acc', 'none', adj_de, plural=True)}"
    return (
        _front(r, when_en, f"{s.en} will {v.en} {n_en} {adj_en} {noun.en_pl}") + ".",
        _de_v2(r, when_de, _WERDEN[s.person], s.de, f"{obj_de} {v.de_inf}") + ".",
    )


def _t_negated_definite(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r)
    adj_en, adj_de = _adj(r, noun)
    obj_en, obj_de = _np_en(noun, "the", adj_en), _np_de(noun, "acc", "def", adj_de)
    if r.random() < 0.5:
        return (
            f"{_cap(s.en)} {_EN_DO[s.person]} not {v.en} {obj_en}.",
            f"{_cap(s.de)} {v.de[s.person]} {obj_de} nicht.",
        )
    when_en, when_de = _when_past(r)
    return (
        f"{_cap(s.en)} did not {v.en} {obj_en} {when_en}.",
        f"{_cap(s.de)} {_HABEN[s.person]} {obj_de} {when_de} nicht {v.de_pp}.",
    )


def _t_have_none(r: random.Random) -> tuple[str, str]:
    s, noun = _subject(r), r.choice(_THINGS)
    adj_en, adj_de = _adj(r, noun)
    obj_en, obj_de = _np_en(noun, "a", adj_en), _np_de(noun, "acc", "kein", adj_de)
    if r.random() < 0.5:
        return (
            f"{_cap(s.en)} {_EN_DO[s.person]} not have {obj_en}.",
            f"{_cap(s.de)} {_HABEN[s.person]} {obj_de}.",
        )
    return (
        f"{_cap(s.en)} {_EN_DO[s.person]} not have {obj_en} at home.",
        f"{_cap(s.de)} {_HABEN[s.person]} zu Hause {obj_de}.",
    )


def _vehicle_phrase(r: random.Random) -> tuple[str, str]:
    veh_en, veh_de, g = r.choice(_VEHICLES)
    (o_en, o_de), (d_en, d_de) = r.sample(_CITIES, 2)
    if r.random() < 0.4:
        return (
            f"the {veh_en} from {o_en} to {d_en}",
            f"{_DEF['nom'][g]} {veh_de} von {o_de} nach {d_de}",
        )
    return f"the {veh_en} to {d_en}", f"{_DEF['nom'][g]} {veh_de} nach {d_de}"


def _t_departure(r: random.Random) -> tuple[str, str]:
    (np_en, np_de), (t_en, t_de) = _vehicle_phrase(r), _time(r)
    tense = r.randrange(4)
    if tense == 0:
        return f"{_cap(np_en)} leaves {t_en}.", f"{_cap(np_de)} fährt {t_de} ab."
    if tense == 1:
        return f"{_cap(np_en)} left {t_en}.", f"{_cap(np_de)} ist {t_de} abgefahren."
    if tense == 2:
        return f"{_cap(np_en)} will leave {t_en}.", f"{_cap(np_de)} wird {t_de} abfahren."
    return (
        f"{_cap(np_en)} did not leave {t_en}.",
        f"{_cap(np_de)} ist nicht {t_de} abgefahren.",
    )


def _t_departure_question(r: random.Random) -> tuple[str, str]:
    np_en, np_de = _vehicle_phrase(r)
    kind = r.randrange(4)
    if kind == 0:
        return f"When does {np_en} leave?", f"Wann fährt {np_de} ab?"
    if kind == 1:
        return f"When did {np_en} leave?", f"Wann ist {np_de} abgefahren?"
    if kind == 2:
        return f"From which platform does {np_en} leave?", f"Von welchem Gleis fährt {np_de} ab?"
    t_en, t_de = _time(r)
    return f"Does {np_en} leave {t_en}?", f"Fährt {np_de} {t_de} ab?"


def _t_yes_no_question(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r)
    adj_en, adj_de = _adj(r, noun) if r.random() < 0.5 else (None, None)
    obj_en, obj_de = _np_en(noun, "the", adj_en), _np_de(noun, "acc", "def", adj_de)
    if r.random() < 0.5:
        when_en, when_de = _when_past(r)
        return (
            f"Did {s.en} {v.en} {obj_en} {when_en}?",
            f"{_cap(_HABEN[s.person])} {s.de} {when_de} {obj_de} {v.de_pp}?",
        )
    return (
        f"{_EN_DO[s.person].capitalize()} {s.en} {v.en} {obj_en}?",
        f"{_cap(v.de[s.person])} {s.de} {obj_de}?",
    )


def _possessor(r: random.Random, g: str) -> tuple[str, str]:
    """A possessive determiner for a nominative noun of gender g: ("your", "deine")."""
    kind = r.randrange(4)
    if kind == 3:
        name, _ = _name(r)
        return f"{name}'s", f"{name}s"
    en, de = (("my", "mein"), ("your", "dein"), ("our", "unser"))[kind]
    return en, de + _EIN["nom"][g]


def _t_residence(r: random.Random) -> tuple[str, str]:
    rel_en, rel_de, g = r.choice(_RELATIVES)
    poss_en, poss_de = _possessor(r, g)
    city_en, city_de = r.choice(_CITIES)
    subj_en, subj_de = f"{poss_en} {rel_en}", f"{poss_de} {rel_de}"
    kind = r.randrange(4)
    if kind == 0:
        return (
            f"Does {subj_en} still live in {city_en}?",
            f"Wohnt {subj_de} noch in {city_de}?",
        )
    if kind == 1:
        _, n_en, n_de = _count(r, 2, 12, (13, 60))
        return (
            f"{_cap(subj_en)} has lived in {city_en} for {n_en} years.",
            f"{_cap(subj_de)} wohnt seit {n_de} Jahren in {city_de}.",
        )
    if kind == 2:
        year = r.randint(1980, 2023)
        return (
            f"{_cap(subj_en)} lived in {city_en} until {year}.",
            f"{_cap(subj_de)} hat bis {year} in {city_de} gewohnt.",
        )
    return (
        f"{_cap(subj_en)} no longer lives in {city_en}.",
        f"{_cap(subj_de)} wohnt nicht mehr in {city_de}.",
    )


def _t_there_are(r: random.Random) -> tuple[str, str]:
    noun = r.choice(_NOUNS)
    (adj_en, adj_de), (room_en, room_de, _, _) = _adj(r, noun), r.choice(_ROOMS)
    kind = r.randrange(5)
    if kind == 4:
        return (
            f"There are no {noun.en_pl} {room_en}.",
            f"{_cap(room_de)} gibt es {_np_de(noun, 'acc', 'kein', plural=True)}.",
        )
    _, n_en, n_de = _count(r)
    be_en, be_de = ("are", "gibt") if kind < 2 else ("were", "gab")
    return (
        f"There {be_en} {n_en} {adj_en} {noun.en_pl} {room_en}.",
        f"{_cap(room_de)} {be_de} es {n_de} {_np_de(noun, 'acc', 'none', adj_de, plural=True)}.",
    )


def _t_weather(r: random.Random) -> tuple[str, str]:
    city_en, city_de = r.choice(_CITIES)
    kind = r.randrange(6)
    (w_en, w_de, w_pp) = r.choice(
        (("rain", "regnen", "geregnet"), ("snow", "schneien", "geschneit"))
    )
    if kind == 0:
        when_en, when_de = r.choice(
            (_day(r), ("tomorrow", "morgen"), ("this evening", "heute Abend"))
        )
        return (
            _front(r, when_en, f"it will {w_en} in {city_en}") + ".",
            _de_v2(r, when_de, "wird", "es", f"in {city_de} {w_de}") + ".",
        )
    if kind in (1, 2):
        when_en, when_de = _when_past(r)
        if kind == 2:
            return (
                f"It did not {w_en} in {city_en} {when_en}.",
                _de_v2(r, when_de, "hat", "es", f"in {city_de} nicht {w_pp}") + ".",
            )
        return (
            _front(r, when_en, f"it {w_en}ed in {city_en}") + ".",
            _de_v2(r, when_de, "hat", "es", f"in {city_de} {w_pp}") + ".",
        )
    (a_en, a_de) = r.choice(_WEATHER_ADJ)
    very_en, very_de = r.choice((("", ""), ("very ", "sehr "), ("quite ", "ziemlich ")))
    if kind == 3:
        return (
            f"It is {very_en}{a_en} in {city_en} today.",
            _de_v2(r, "heute", "ist", "es", f"in {city_de} {very_de}{a_de}") + ".",
        )
    when_en, when_de = _when_past(r)
    if kind == 4:
        return (
            _front(r, when_en, f"it was {very_en}{a_en} in {city_en}") + ".",
            _de_v2(r, when_de, "war", "es", f"in {city_de} {very_de}{a_de}") + ".",
        )
    _, n_en, n_de = _count(r, 2, 12, (13, 38))
    minus = r.random() < 0.25
    n_en, n_de = ("minus " + n_en, "minus " + n_de) if minus else (n_en, n_de)
    return (
        _front(r, when_en, f"it was {n_en} degrees in {city_en}") + ".",
        _de_v2(r, when_de, "waren", "es", f"in {city_de} {n_de} Grad") + ".",
    )


def _t_meet(r: random.Random) -> tuple[str, str]:
    a, _ = _name(r)
    if r.random() < 0.3:
        en, de, refl = f"{a} and I", f"{a} und ich", "uns"
    else:
        b, _ = _name(r, (a,))
        en, de, refl = f"{a} and {b}", f"{a} und {b}", "sich"
    (p_en, p_de, _, _), (t_en, t_de) = r.choice(_PLACES), _time(r)
    if r.random() < 0.4:
        d_en, d_de = _day(r)
        t_en, t_de = f"{t_en} {d_en}", f"{d_de} {t_de}"
    tense = r.randrange(3)
    if tense == 0:
        return f"{en} meet {p_en} {t_en}.", f"{de} treffen {refl} {t_de} {p_de}."
    if tense == 1:
        return f"{en} met {p_en} {t_en}.", f"{de} haben {refl} {t_de} {p_de} getroffen."
    return f"{en} will meet {p_en} {t_en}.", f"{de} werden {refl} {t_de} {p_de} treffen."


def _companion(r: random.Random, s: _Subject) -> tuple[str, str]:
    """'with ...': a name, or a relative with the subject's possessive (dative)."""
    if r.random() < 0.5:
        name, _ = _name(r, s.en.split())
        return name, name
    rel_en, rel_de, g = r.choice(_RELATIVES)
    return f"{s.en_poss} {rel_en}", f"{s.de_poss}{_EIN['dat'][g]} {rel_de}"


def _t_go_with(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    (_, _, dir_en, dir_de), (c_en, c_de) = r.choice(_PLACES), _companion(r, s)
    tense = r.randrange(3)
    if tense == 0:
        day_en, day_de = r.choice(_WEEKDAYS)
        go = "goes" if s.person == "3sg" else "go"
        return (
            f"{_cap(s.en)} {go} {dir_en} with {c_en} every {day_en}.",
            f"{_cap(s.de)} {_de_regular('gehen')[s.person]} jeden {day_de} mit {c_de} {dir_de}.",
        )
    if tense == 1:
        when_en, when_de = _when_past(r)
        return (
            _front(r, when_en, f"{s.en} went {dir_en} with {c_en}") + ".",
            _de_v2(r, when_de, _SEIN[s.person], s.de, f"mit {c_de} {dir_de} gegangen") + ".",
        )
    when_en, when_de = _when_future(r)
    return (
        _front(r, when_en, f"{s.en} will go {dir_en} with {c_en}") + ".",
        _de_v2(r, when_de, _WERDEN[s.person], s.de, f"mit {c_de} {dir_de} gehen") + ".",
    )


def _t_travel(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    (o_en, o_de), (d_en, d_de) = r.sample(_CITIES, 2)
    past_en, inf_en, by_en, by_de, pp, inf_de = r.choice(_MODES)
    route_de = f"{by_de}von {o_de} nach {d_de}"
    if r.random() < 0.6:
        when_en, when_de = _when_past(r)
        return (
            _front(r, when_en, f"{s.en} {past_en} from {o_en} to {d_en}{by_en}") + ".",
            _de_v2(r, when_de, _SEIN[s.person], s.de, f"{route_de} {pp}") + ".",
        )
    when_en, when_de = _when_future(r)
    return (
        _front(r, when_en, f"{s.en} will {inf_en} from {o_en} to {d_en}{by_en}") + ".",
        _de_v2(r, when_de, _WERDEN[s.person], s.de, f"{route_de} {inf_de}") + ".",
    )


def _t_age(r: random.Random) -> tuple[str, str]:
    s = _subject(r, "name pron rel")
    age = r.randint(18, 95)
    a_en, a_de = (_en_number(age), _de_number(age)) if r.random() < 0.6 else (str(age),) * 2
    kind = r.randrange(3)
    if kind == 0:
        return (
            f"{_cap(s.en)} {_EN_BE[s.person]} {a_en} years old.",
            f"{_cap(s.de)} {_SEIN[s.person]} {a_de} Jahre alt.",
        )
    if kind == 1:
        when_en, when_de = _when_past(r)
        return (
            _front(r, when_en, f"{s.en} turned {a_en}") + ".",
            _de_v2(r, when_de, _SEIN[s.person], s.de, f"{a_de} geworden") + ".",
        )
    when_en, when_de = _when_future(r)
    return (
        f"{_cap(s.en)} will be {a_en} {when_en}.",
        f"{_cap(s.de)} {_WERDEN[s.person]} {when_de} {a_de}.",
    )


def _price(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.25:
        euros, cents = r.randint(2, 99), r.choice((10, 20, 50, 90, 95, 99))
        return f"{euros}.{cents}", f"{euros},{cents}"
    _, en, de = _count(r, 2, 20, (21, 300))
    return en, de


def _t_price(r: random.Random) -> tuple[str, str]:
    noun = r.choice(_NOUNS)
    (adj_en, adj_de), (p_en, p_de) = _adj(r, noun), _price(r)
    kind = r.randrange(3)
    if kind == 0:
        return (
            f"{_cap(_np_en(noun, 'the', adj_en))} costs {p_en} euros.",
            f"{_cap(_np_de(noun, 'nom', 'def', adj_de))} kostet {p_de} Euro.",
        )
    if kind == 1:
        return (
            f"How much does {_np_en(noun, 'the', adj_en)} cost?",
            f"Wie viel kostet {_np_de(noun, 'nom', 'def', adj_de)}?",
        )
    s = _subject(r)
    return (
        f"{_cap(s.en)} paid {p_en} euros for {_np_en(noun, 'the', adj_en)}.",
        f"{_cap(s.de)} {_HABEN[s.person]} {p_de} Euro für "
        f"{_np_de(noun, 'acc', 'def', adj_de)} bezahlt.",
    )


def _t_how_many(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    if r.random() < 0.6:
        v, noun = _verb_noun(r)
        when_en, when_de = _when_past(r)
        return (
            f"How many {noun.en_pl} did {s.en} {v.en} {when_en}?",
            f"Wie viele {noun.de_pl} {_HABEN[s.person]} {s.de} {when_de} {v.de_pp}?",
        )
    noun = r.choice(_NOUNS)
    occ_en, occ_de = r.choice(_OCCASIONS)
    need = next(v for v in _VERBS if v.de_inf == "brauchen")
    return (
        f"How many {noun.en_pl} {_EN_DO[s.person]} {s.en} need for {occ_en}?",
        f"Wie viele {noun.de_pl} {need.de[s.person]} {s.de} für {occ_de}?",
    )


def _t_imperative(r: random.Random) -> tuple[str, str]:
    noun = r.choice(_THINGS)
    adj_en, adj_de = _adj(r, noun)
    obj_en, obj_de = _np_en(noun, "the", adj_en), _np_de(noun, "acc", "def", adj_de)
    formal = r.random() < 0.5
    if r.random() < 0.3:
        verb_de = "vergessen Sie" if formal else "vergiss"
        return f"Please do not forget {obj_en}.", f"Bitte {verb_de} {obj_de} nicht."
    en, imp, inf = r.choice((("bring", "bring", "bringen"), ("carry", "trag", "tragen")))
    _, _, dir_en, dir_de = r.choice(_ROOMS)
    verb_de = f"{inf} Sie" if formal else imp
    return f"Please {en} {obj_en} {dir_en}.", f"Bitte {verb_de} {obj_de} {dir_de}."


def _t_been_to(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    city_en, city_de = r.choice(_CITIES)
    kind = r.randrange(3)
    if kind == 0:
        return (
            f"{_cap(s.en)} {_EN_HAVE[s.person]} never been to {city_en}.",
            f"{_cap(s.de)} {_WAR[s.person]} noch nie in {city_de}.",
        )
    if kind == 1:
        n, n_en, n_de = _count(r, 2, 12, (13, 40))
        times_en = "twice" if n == 2 else f"{n_en} times"
        times_de = f"{n_de}-mal" if n_de.isdigit() else f"{n_de}mal"
        return (
            f"{_cap(s.en)} {_EN_HAVE[s.person]} already visited {city_en} {times_en}.",
            f"{_cap(s.de)} {_HABEN[s.person]} {city_de} schon {times_de} besucht.",
        )
    when_en, when_de = _when_past(r)
    return (
        _front(r, when_en, f"{s.en} visited {city_en} for the first time") + ".",
        _de_v2(r, when_de, _HABEN[s.person], s.de, f"zum ersten Mal {city_de} besucht") + ".",
    )


def _t_opinion(r: random.Random) -> tuple[str, str]:
    s = _subject(r, "name pron rel")
    b_en, b_de, g = r.choice(_BUILDINGS)
    (a_en, a_de), (o_en, o_de) = r.choice(_BUILDING_ADJ), r.choice(_OPINIONS)
    city_en, city_de = r.choice(_CITIES)
    very_en, very_de = r.choice((("", ""), ("very ", "sehr "), ("really ", "wirklich ")))
    if o_en.startswith("too"):
        very_en = very_de = ""
    obj_de = f"{_DEF['acc'][g]} {a_de}{_WEAK['acc'][g]} {b_de} in {city_de}"
    think = "thinks" if s.person == "3sg" else "think"
    finden = _de_regular("finden")[s.person]
    if r.random() < 0.25:
        return (
            f"{_cap(s.en)} {_EN_DO[s.person]} not think that the {a_en} {b_en} in {city_en} "
            f"is {o_en}.",
            f"{_cap(s.de)} {finden} {obj_de} nicht {o_de}.",
        )
    return (
        f"{_cap(s.en)} {think} that the {a_en} {b_en} in {city_en} is {very_en}{o_en}.",
        f"{_cap(s.de)} {finden} {obj_de} {very_de}{o_de}.",
    )


def _t_works_as(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.7:
        name, g = _name(r)
        subj_en = subj_de = name
    else:
        rel_en, rel_de, g = r.choice(_RELATIVES)
        poss_en, poss_de = _possessor(r, g)
        subj_en, subj_de = f"{poss_en} {rel_en}", f"{poss_de} {rel_de}"
    prof_en, prof_m, prof_f = r.choice(_PROFESSIONS)
    prof_de, prof_en = (prof_f if g == "f" else prof_m), f"{_a(prof_en)} {prof_en}"
    city_en, city_de = r.choice(_CITIES)
    kind = r.randrange(4)
    if kind == 0:
        year = r.randint(1990, 2023)
        return (
            f"{_cap(subj_en)} has worked as {prof_en} in {city_en} since {year}.",
            f"Seit {year} arbeitet {subj_de} als {prof_de} in {city_de}.",
        )
    if kind == 1:
        _, n_en, n_de = _count(r, 2, 12, (13, 40))
        return (
            f"{_cap(subj_en)} worked as {prof_en} in {city_en} for {n_en} years.",
            f"{_cap(subj_de)} hat {n_de} Jahre lang als {prof_de} in {city_de} gearbeitet.",
        )
    if kind == 2:
        return (
            f"{_cap(subj_en)} would like to work as {prof_en} in {city_en}.",
            f"{_cap(subj_de)} möchte als {prof_de} in {city_de} arbeiten.",
        )
    return (
        f"{_cap(subj_en)} no longer works as {prof_en} in {city_en}.",
        f"{_cap(subj_de)} arbeitet nicht mehr als {prof_de} in {city_de}.",
    )


def _t_visit(r: random.Random) -> tuple[str, str]:
    s = _subject(r, "name pron rel")
    rel_en, rel_de, g = r.choice(_RELATIVES)
    obj_en, obj_de = f"{s.en_poss} {rel_en}", f"{s.de_poss}{_EIN['acc'][g]} {rel_de}"
    city_en, city_de = r.choice(_CITIES)
    if r.random() < 0.5:
        when_en, when_de = _when_future(r)
        return (
            f"Will {s.en} visit {obj_en} in {city_en} {when_en}?",
            f"{_cap(_WERDEN[s.person])} {s.de} {when_de} {obj_de} in {city_de} besuchen?",
        )
    day_en, day_de = r.choice(_WEEKDAYS)
    visit = "visits" if s.person == "3sg" else "visit"
    return (
        f"{_cap(s.en)} {visit} {obj_en} in {city_en} every {day_en}.",
        f"{_cap(s.de)} {_de_regular('besuchen')[s.person]} jeden {day_de} {obj_de} in {city_de}.",
    )


def _t_call(r: random.Random) -> tuple[str, str]:
    s = _subject(r, "name pron rel")
    rel_en, rel_de, g = r.choice(_RELATIVES)
    obj_en, obj_de = f"{s.en_poss} {rel_en}", f"{s.de_poss}{_EIN['acc'][g]} {rel_de}"
    (t_en, t_de), kind = _time(r), r.randrange(3)
    if kind == 0:
        when_en, when_de = _when_past(r)
        return (
            f"{_cap(s.en)} called {obj_en} {t_en} {when_en}.",
            f"{_cap(s.de)} {_HABEN[s.person]} {when_de} {t_de} {obj_de} angerufen.",
        )
    if kind == 1:
        when_en, when_de = r.choice((_day(r), ("tomorrow", "morgen")))
        return (
            f"{_cap(s.en)} will call {obj_en} {t_en} {when_en}.",
            f"{_cap(s.de)} {_WERDEN[s.person]} {when_de} {t_de} {obj_de} anrufen.",
        )
    when_en, when_de = _when_past(r)
    return (
        f"{_cap(s.en)} did not call {obj_en} {when_en}.",
        f"{_cap(s.de)} {_HABEN[s.person]} {obj_de} {when_de} nicht angerufen.",
    )


def _t_opening_hours(r: random.Random) -> tuple[str, str]:
    shop_en, shop_de, g = r.choice(_SHOPS)
    np_en, np_de = f"the {shop_en}", f"{_DEF['nom'][g]} {shop_de}"
    day_en, day_de = r.choice(_WEEKDAYS)
    days_de = day_de.lower() + "s"
    kind = r.randrange(3)
    if kind == 2:
        return (
            f"{_cap(np_en)} is not open on {day_en}s.",
            f"{_cap(np_de)} ist {days_de} nicht geöffnet.",
        )
    (t1_en, t1_de), (t2_en, t2_de) = _time(r, (6, 10), (6, 10), False), _time(r, (4, 8), (16, 20))
    clause_en = f"{np_en} opens {t1_en} and closes {t2_en}"
    if kind == 0:
        return f"{_cap(clause_en)}.", f"{_cap(np_de)} öffnet {t1_de} und schließt {t2_de}."
    return (
        f"On {day_en}s {clause_en}.",
        f"{_cap(days_de)} öffnet {np_de} {t1_de} und schließt {t2_de}.",
    )


def _t_because(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    p = s.person
    kind = r.randrange(5)
    if kind < 2:
        a_en, a_de = r.choice((("ill", "krank"), ("tired", "müde"), ("busy", "beschäftigt")))
        why_en = f"{s.en_pron} {_EN_WAS[p]} {a_en}"
        why_de = f"{s.de_pron} {a_de} {_WAR[p]}"
    elif kind == 2:
        why_en, why_de = "it was raining", "es geregnet hat"
    elif kind == 3:
        why_en, why_de = f"{s.en_pron} had no time", f"{s.de_pron} keine Zeit {_HATTE[p]}"
    else:
        noun = r.choice([n for n in _THINGS if "fix" in n.tags])
        why_en = f"{s.en_poss} {noun.en} was broken"
        why_de = f"{_np_de(noun, 'nom', s.de_poss)} kaputt war"
    if r.random() < 0.5:
        when_en, when_de = _when_past(r)
        return (
            f"{_cap(s.en)} stayed at home {when_en} because {why_en}.",
            f"{_cap(s.de)} {_SEIN[p]} {when_de} zu Hause geblieben, weil {why_de}.",
        )
    occ_en, occ_de = r.choice((("the party", "zur Party"), ("the meeting", "zum Treffen")))
    return (
        f"{_cap(s.en)} could not come to {occ_en} because {why_en}.",
        f"{_cap(s.de)} {_KONNTE[p]} nicht {occ_de} kommen, weil {why_de}.",
    )


def _t_shopping_list(r: random.Random) -> tuple[str, str]:
    s = _subject(r)
    a, b = r.sample(_FOODS, 2)
    (_, a_en, a_de), (_, b_en, b_de) = _count(r, 2, 12, (13, 30)), _count(r, 2, 12, (13, 30))
    p_en, p_de = r.choice(
        (
            ("at the market", "auf dem Markt"),
            ("at the bakery", "in der Bäckerei"),
            ("at the supermarket", "im Supermarkt"),
            ("in the village shop", "im Dorfladen"),
        )
    )
    return (
        f"{_cap(s.en)} bought {a_en} {a.en_pl} and {b_en} {b.en_pl} {p_en}.",
        f"{_cap(s.de)} {_HABEN[s.person]} {p_de} {a_de} {a.de_pl} und {b_de} {b.de_pl} gekauft.",
    )


def _t_where_question(r: random.Random) -> tuple[str, str]:
    s, (v, noun) = _subject(r), _verb_noun(r, _WHERE_VERBS)
    adj_en, adj_de = _adj(r, noun)
    return (
        f"Where did {s.en} {v.en} {s.en_poss} {adj_en} {noun.en}?",
        f"Wo {_HABEN[s.person]} {s.de} {_np_de(noun, 'acc', s.de_poss, adj_de)} {v.de_pp}?",
    )


_TEMPLATES: tuple[Template, ...] = (
    _t_present_place,
    _t_perfect_possessive,
    _t_future_plural,
    _t_negated_definite,
    _t_have_none,
    _t_departure,
    _t_departure_question,
    _t_yes_no_question,
    _t_residence,
    _t_there_are,
    _t_weather,
    _t_meet,
    _t_go_with,
    _t_travel,
    _t_age,
    _t_price,
    _t_how_many,
    _t_imperative,
    _t_been_to,
    _t_opinion,
    _t_works_as,
    _t_visit,
    _t_call,
    _t_opening_hours,
    _t_because,
    _t_shopping_list,
    _t_where_question,
)


# ---------------------------------------------------------------------------------------------
# QA passages: each returns (passage, [(question, answer), ...]).

QAChoices = tuple[str, list[tuple[str, str]]]

_FRUITS = _words("apples pears oranges bananas lemons peaches plums mangoes kiwis")
_EVENTS = (
    "concert",
    "football match",
    "book fair",
    "film festival",
    "wine festival",
    "marathon",
    "jazz evening",
    "flea market",
)
_WORKPLACES = (
    "a bakery",
    "a hospital",
    "a bookshop",
    "a school",
    "a hotel",
    "a bank",
    "a post office",
    "a garden centre",
    "an airport",
    "a museum",
)
_SMALL_BUSINESSES = (
    "bakery",
    "bookshop",
    "café",
    "flower shop",
    "bicycle shop",
    "hotel",
    "restaurant",
)
_LOST_THINGS = ("umbrella", "wallet", "key", "phone", "bag", "watch", "jacket", "camera", "hat")
_LANDMARK_ADJ = ("old", "famous", "beautiful", "historic", "white", "red")
_LANDMARKS = (
    "tower",
    "church",
    "bridge",
    "castle",
    "cathedral",
    "lighthouse",
    "town hall",
    "museum",
)


def _crowd(r: random.Random) -> str:
    if r.random() < 0.5:
        return str(r.randrange(150, 1000, 50))
    return f"{r.randrange(1000, 20001, 500):,}"


def _pronouns(g: str) -> tuple[str, str]:
    return ("she", "her") if g == "f" else ("he", "his")


def _p_trip(r: random.Random) -> QAChoices:
    name, g = _name(r)
    pron, poss = _pronouns(g)
    prof = r.choice(_PROFESSIONS)[0]
    (c1, _), (c2, _) = r.sample(_CITIES, 2)
    day = r.choice(_WEEKDAYS)[0]
    mode = r.choice(("train", "bus", "car", "plane", "ferry", "bike"))
    rel = r.choice(_RELATIVES)[0]
    hours = _en_number(r.randint(2, 9))
    text = (
        f"{name} is {_a(prof)} {prof} from {c1}. On {day} {pron} travelled to {c2} by {mode} "
        f"to visit {poss} {rel}. The journey took {hours} hours."
    )
    qa = [
        (f"Where is {name} from?", f"from {c1}"),
        (f"What does {name} do for a living?", f"{_a(prof)} {prof}"),
        (f"When did {name} travel to {c2}?", f"on {day}"),
        (f"How did {name} travel to {c2}?", f"by {mode}"),
        (f"Whom did {name} visit in {c2}?", f"{poss} {rel}"),
        ("How long did the journey take?", f"{hours} hours"),
        (f"Where does {name}'s {rel} live?", f"in {c2}"),
    ]
    if r.random() < 0.5:
        days = _en_number(r.randint(2, 12))
        text += f" {_cap(pron)} came back home {days} days later."
        qa.append((f"How many days did {name} stay in {c2}?", f"{days} days"))
    return text, qa


def _p_market(r: random.Random) -> QAChoices:
    (name, g), day = _name(r), r.choice(_WEEKDAYS)[0]
    pron, poss = _pronouns(g)
    city, _ = r.choice(_CITIES)
    t, _ = _time(r, (6, 11), (6, 11), special=False)
    f1, f2 = r.sample(_FRUITS, 2)
    n1, n2 = r.randint(2, 9), r.randint(2, 9)
    text = (
        f"On {day} {name} went to the market in {city} {t}. {_cap(pron)} bought "
        f"{_en_number(n1)} {f1} and {_en_number(n2)} {f2}."
    )
    qa = [
        (f"How many {f1} did {name} buy?", f"{_en_number(n1)} {f1}"),
        (f"How many {f2} did {name} buy at the market?", f"{_en_number(n2)} {f2}"),
        (f"When did {name} go to the market?", t),
        (f"On which day did {name} go to the market?", f"on {day}"),
        (f"In which city did {name} go to the market?", f"in {city}"),
        (
            f"How many pieces of fruit did {name} buy in total?",
            f"{_en_number(n1 + n2)} pieces of fruit",
        ),
    ]
    if r.random() < 0.6:
        friend, _ = _name(r, (name,))
        text += f" On the way home {pron} met {poss} friend {friend}."
        qa.append((f"Whom did {name} meet on the way home?", f"{poss} friend {friend}"))
    return text, qa


def _p_event(r: random.Random) -> QAChoices:
    event, (city, _) = r.choice(_EVENTS), r.choice(_CITIES)
    t, _ = _time(r, (2, 11))
    day, crowd, (name, _) = r.choice(_WEEKDAYS)[0], _crowd(r), _name(r)
    text = (
        f"The {event} in {city} starts {t} on {day}. About {crowd} people are expected. "
        f"It is organised by {name}."
    )
    qa = [
        (f"When does the {event} start?", t),
        (f"On which day is the {event}?", f"on {day}"),
        (f"How many people are expected at the {event}?", f"about {crowd} people"),
        (f"Who organises the {event}?", name),
        (f"Where does the {event} take place?", f"in {city}"),
    ]
    if r.random() < 0.5:
        price = r.randint(5, 90)
        text += f" Tickets cost {price} euros."
        qa.append((f"How much does a ticket for the {event} cost?", f"{price} euros"))
    return text, qa


def _p_landmark(r: random.Random) -> QAChoices:
    (city, _), adj, building = r.choice(_CITIES), r.choice(_LANDMARK_ADJ), r.choice(_LANDMARKS)
    year, height, crowd = r.randint(1150, 1990), r.randint(12, 160), _crowd(r)
    text = (
        f"{city} has {_a(adj)} {adj} {building} that was built in {year}. It is {height} metres "
        f"tall, and about {crowd} tourists visit it every year."
    )
    qa = [
        (f"When was the {building} in {city} built?", f"in {year}"),
        (f"How tall is the {building} in {city}?", f"{height} metres"),
        (f"How many tourists visit the {building} every year?", f"about {crowd} tourists"),
        (f"In which city is the {adj} {building}?", f"in {city}"),
    ]
    if r.random() < 0.6:
        (name, _), since = _name(r), r.randint(1995, 2023)
        text += f" {name} has worked there as a guide since {since}."
        qa.append((f"Who works as a guide at the {building}?", name))
        qa.append((f"Since when has {name} worked as a guide?", f"since {since}"))
    return text, qa


def _p_work(r: random.Random) -> QAChoices:
    (name, g), place, (city, _) = _name(r), r.choice(_WORKPLACES), r.choice(_CITIES)
    pron, _ = _pronouns(g)
    (t1, _), (t2, _) = _time(r, (5, 9), (5, 9), False), _time(r, (2, 7), (14, 19), False)
    text = f"{name} works at {place} in {city}. {_cap(pron)} starts work {t1} and finishes {t2}."
    qa = [
        (f"Where does {name} work?", f"at {place} in {city}"),
        (f"When does {name} start work?", t1),
        (f"When does {name} finish work?", t2),
    ]
    if r.random() < 0.7:
        n = r.randint(3, 12)
        m = r.randint(1, n - 1)
        text += (
            f" {_cap(pron)} has {_en_number(n)} colleagues, and {_en_number(m)} of them "
            f"{'cycles' if m == 1 else 'cycle'} to work."
        )
        qa.append((f"How many colleagues does {name} have?", f"{_en_number(n)} colleagues"))
        qa.append(
            (f"How many of {name}'s colleagues do not cycle to work?", f"{_en_number(n - m)}")
        )
    return text, qa


def _p_lost(r: random.Random) -> QAChoices:
    (name, g), day = _name(r), r.choice(_WEEKDAYS)[0]
    pron, poss = _pronouns(g)
    thing, colour = (
        r.choice(_LOST_THINGS),
        r.choice(("red", "blue", "black", "green", "old", "new")),
    )
    (place, *_), hours = r.choice(_PLACES), _en_number(r.randint(2, 6))
    text = (
        f"On {day} {name} lost {poss} {colour} {thing} {place}. {_cap(pron)} looked for it for "
        f"{hours} hours."
    )
    qa = [
        (f"What did {name} lose on {day}?", f"{poss} {colour} {thing}"),
        (f"Where did {name} lose {poss} {thing}?", place),
        (f"How long did {name} look for {poss} {thing}?", f"for {hours} hours"),
        (f"When did {name} lose {poss} {thing}?", f"on {day}"),
    ]
    if r.random() < 0.7:
        (finder, _), (place2, *_) = _name(r, (name,)), r.choice(_PLACES)
        t, _ = _time(r, (5, 10), (17, 22), False)
        text += f" In the evening {poss} neighbour {finder} found it {place2} {t}."
        qa.append((f"Who found {name}'s {thing}?", f"{poss} neighbour {finder}"))
        qa.append((f"Where was the {thing} found?", place2))
        qa.append((f"When was the {thing} found?", t))
    return text, qa


def _p_family(r: random.Random) -> QAChoices:
    (name, g), age = _name(r), r.randint(30, 80)
    _, poss = _pronouns(g)
    (city, _), (city2, _) = r.sample(_CITIES, 2)
    children = _en_number(r.randint(2, 6))
    rel_en, _, rel_g = r.choice(_RELATIVES[:8])
    name2, _ = r.choice([n for n in _NAMES if n[1] == rel_g and n[0] != name])
    pron2, _ = _pronouns(rel_g)
    business = r.choice(_SMALL_BUSINESSES)
    text = (
        f"{name} is {_en_number(age)} years old and lives in {city} with {poss} {children} "
        f"children. {_cap(poss)} {rel_en} {name2} lives in {city2}, where {pron2} runs "
        f"{_a(business)} {business}."
    )
    qa = [
        (f"How old is {name}?", f"{_en_number(age)} years old"),
        (f"How many children does {name} have?", f"{children} children"),
        (f"Where does {name2} live?", f"in {city2}"),
        (f"What does {name2} run in {city2}?", f"{_a(business)} {business}"),
        (f"Where does {name} live?", f"in {city}"),
        (f"How old will {name} be next year?", f"{_en_number(age + 1)} years old"),
    ]
    return text, qa


_PASSAGES: tuple[Callable[[random.Random], QAChoices], ...] = (
    _p_trip,
    _p_market,
    _p_event,
    _p_landmark,
    _p_work,
    _p_lost,
    _p_family,
)


# ---------------------------------------------------------------------------------------------
# Public API


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _check(n: int, split: str) -> tuple[str, int, int]:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    name = _SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)} (or 'validation')")
    return (name, *SPLITS[name])


def _generate(
    kind: str,
    n: int,
    seed: int,
    split: str,
    make: Callable[[random.Random], T],
    key: Callable[[T], str],
) -> tuple[str, list[T]]:
    """(canonical split name, n unique items whose key hashes into the split's buckets)."""
    name, lo, hi = _check(n, split)
    r = random.Random(_digest(f"rewardkit.textdata|{kind}|{seed}|{name}"))
    out: list[T] = []
    seen: set[str] = set()
    for _ in range(100 * n + 1000):
        if len(out) == n:
            return name, out
        item = make(r)
        k = key(item)
        if k not in seen and lo <= _digest(f"split|{k}") % 100 < hi:
            seen.add(k)
            out.append(item)
    if len(out) < n:  # pragma: no cover - the templates allow millions of items
        raise ValueError(f"cannot make {n} unique {kind} items for split {split!r}")
    return name, out


def translation_pairs(n: int, seed: int = 0, split: str = "train") -> list[TranslationPair]:
    """n English->German sentence pairs, ids ``st-{split}-{index:05d}``.

    ``split`` is "train", "dev" (alias "validation") or "test"; splits never share a source
    sentence. The same arguments always give the same pairs, and fewer items are a prefix.
    """

    def make(r: random.Random) -> tuple[str, str]:
        while True:  # a few templates can come out shorter than five words; draw again
            en, de = r.choice(_TEMPLATES)(r)
            if 5 <= len(en.split()) <= 20:
                return en, de

    name, pairs = _generate("st", n, seed, split, make, lambda pair: pair[0])
    return [TranslationPair(f"st-{name}-{i:05d}", en, de) for i, (en, de) in enumerate(pairs)]


def qa_items(n: int, seed: int = 0, split: str = "train") -> list[QAItem]:
    """n English QA items (passage, question, short answer), ids ``qa-{split}-{index:05d}``.

    The answer is a short phrase ("at seven o'clock", "in Hamburg", "three apples"), found
    verbatim in the passage (up to case) except for a few question types that need one step of
    inference (a sum, a difference, next year's age, the city someone travelled to). Splits never
    share a passage; within a split passages are unique.
    """

    def make(r: random.Random) -> tuple[str, str, str]:
        passage, choices = r.choice(_PASSAGES)(r)
        return (passage, *r.choice(choices))

    name, items = _generate("qa", n, seed, split, make, lambda item: item[0])
    return [QAItem(f"qa-{name}-{i:05d}", p, q, a) for i, (p, q, a) in enumerate(items)]
