"""People's names in English and Polish text: a gazetteer of first names plus context.

Why a gazetteer and not an NER model: detection runs on every prompt within a 1 ms budget
for 2 KB (bench/pii_cost.py: this module takes about a tenth of it); a statistical NER
model spends milliseconds on such a prompt on a CPU, and none is installable from PyPI
here: spaCy itself is on PyPI, but its trained pipelines (en_core_web_sm, pl_core_news_sm)
are published outside it (the PyPI packages under those names are third-party copies of
unclear provenance, and there is no Polish one), and the machines reach no other host.
What the gazetteer gives up (bench/pii_quality.py, PERSON recall ~0.89, precision ~0.98):
names whose first name it does not know ("Ptolemy Wright", "Zbyszek"), a surname alone
without a title ("Kowalski said ..."), surname-first ("Nowak Anna") and lower-case names.
What it gives that a model trained on English news would not: Polish inflection (Anny,
Annie, Annę, Jana, Janowi) and Polish forms of address (Pan, Pani, Panem). An NER model
could be added later as an optional, slower detector behind the same `Finding` API.

A name is found when
  * a known first name (any inflected form) is followed by a capitalised surname:
    "Anna Nowak", "Annę Kowalską", "John F. Kennedy", "Jan Maria Rokita";
  * a title or form of address precedes up to three capitalised words: "Mr. Smith",
    "Dr. Jane Doe", "Pani Nowak", "panem Kowalskim" (the title is not part of the span);
  * a known first name stands alone, unless it is also an everyday word, a month or a
    place (`ambiguous_first_names.txt`: "Mark", "Grace", "Jan", "Roman").
A following capitalised word is no surname when it is a month, a weekday, a sentence
opener or a street or institution word (`not_surnames.txt`).

The canonical form is upper-case "FIRST SURNAME" with the first name in its base form and,
when the first name was inflected, the surname's common Polish endings undone (Jana
Kowalskiego -> JAN KOWALSKI, Annie Kowalskiej -> ANNA KOWALSKA), so that one person
written in two grammatical cases is one value. This is best-effort: a noun surname
declined like a feminine noun (Sroka -> Sroki) is not restored, and a form two names
share takes the Polish lemma ("Annie" is ANNA: Anna's dative before the English name).

The data (`pii_data/first_names_*.txt`) was written for Weir: a few hundred common first
names per language; Polish forms are generated from base forms by the declension rules
below, with hand-written exceptions in the data file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_DATA: Final = Path(__file__).with_name("pii_data")


def _lines(name: str) -> list[str]:
    """The non-empty, non-comment lines of a data file."""
    text = (_DATA / name).read_text(encoding="utf-8")
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


# --- Polish declension of first names -------------------------------------------------

# Dative/locative of feminine -a names and locative of masculine names by the stem's last
# consonant: Marta -> Marcie, Olga -> Oldze, Piotr -> Piotrze.
_SOFTENED: Final = {
    "k": "ce",
    "g": "dze",
    "r": "rze",
    "t": "cie",
    "d": "dzie",
    "ł": "le",
    "n": "nie",
    "s": "sie",
    "z": "zie",
    "w": "wie",
    "m": "mie",
    "b": "bie",
    "p": "pie",
    "f": "fie",
}
_SOFT_DIMINUTIVE: Final = ("sia", "zia", "cia", "nia")  # Kasia -> Kasi, Kasię, Kasią, Kasiu


def _feminine_forms(name: str) -> list[str]:
    """Anna -> Anny Annie Annę Anną Anno; Maria -> Marii Marię Marią Mario."""
    stem = name[:-1]
    if name.endswith(_SOFT_DIMINUTIVE):  # Kasia
        return [stem, stem + "ę", stem + "ą", stem + "u"]
    if name.endswith("ia"):  # Maria, Julia
        return [stem + "i", stem + "ę", stem + "ą", stem + "o"]
    if name.endswith("ja"):  # Alicja -> Alicji; Maja -> Mai
        oblique = stem + "i" if stem[-2] not in "aeiouy" else stem[:-1] + "i"
        return [oblique, stem + "ę", stem + "ą", stem + "o"]
    last = stem[-1]
    if last == "l":  # Ola, Izabela: Oli, Olę, Olą, Olu
        return [stem + "i", stem + "ę", stem + "ą", stem + "u"]
    genitive = stem + ("i" if last in "kg" else "y")
    dative = stem[:-1] + _SOFTENED[last] if last in _SOFTENED else genitive
    if stem.endswith("st"):  # Krysta -> Kryście
        dative = stem[:-2] + "ście"
    return [genitive, dative, stem + "ę", stem + "ą", stem + "o"]


def _masculine_forms(name: str) -> list[str]:
    """Jan -> Jana Janowi Janem Janie; Marek -> Marka Markowi Markiem Marku;
    Jerzy -> Jerzego Jerzemu Jerzym."""
    if name.endswith(("y", "i")):  # Jerzy, Antoni: adjectival declension
        stem = name[:-1] if name.endswith("y") else name
        return [stem + "ego", stem + "emu", name + "m"]
    stem = name[:-2] + name[-1] if name.endswith("ek") else name  # fleeting e: Marek
    last = stem[-1]
    instrumental = stem + ("iem" if last in "kg" else "em")
    if stem.endswith("st"):  # August -> Auguście
        locative = stem[:-2] + "ście"
    elif last in _SOFTENED and last not in "kg":
        locative = stem[:-1] + _SOFTENED[last]
    else:  # Tomasz, Marek, Wojciech, Karol, Andrzej: -u
        locative = stem + "u"
    return [stem + "a", stem + "owi", instrumental, locative]


@dataclass(frozen=True, slots=True)
class FirstName:
    lemma: str  # the base (nominative) form
    feminine: bool
    inflected: bool  # this form is not the base form


def _load_first_names() -> dict[str, FirstName]:
    names: dict[str, FirstName] = {}

    def add(form: str, lemma: str, feminine: bool) -> None:
        names.setdefault(form, FirstName(lemma, feminine, form != lemma))

    # Polish first: a form of both lists ("Annie": Anna's dative, and an English name)
    # takes the Polish lemma, so that "Annie Nowak" and "Anna Nowak" are one person.
    for file in ("first_names_pl.txt", "first_names_en.txt"):
        section = ""
        for line in _lines(file):
            if line.startswith("["):
                section = line.strip("[]")
                continue
            lemma, _, given = line.partition(":")
            lemma = lemma.strip()
            feminine = section == "f"
            add(lemma, lemma, feminine)
            if file.endswith("_en.txt"):
                continue
            if given:
                forms = given.split()
            elif section == "m":
                forms = _masculine_forms(lemma)
            else:
                forms = _feminine_forms(lemma)
            for form in forms:
                add(form, lemma, feminine)
    return names


FIRST_NAMES: Final[dict[str, FirstName]] = _load_first_names()
"""Every known first-name form (EN base forms, PL base and inflected forms)."""
AMBIGUOUS: Final[frozenset[str]] = frozenset(_lines("ambiguous_first_names.txt"))
NOT_SURNAMES: Final[frozenset[str]] = frozenset(_lines("not_surnames.txt"))

# Titles and forms of address, with the gender they imply (None: either). Polish "pan"
# forms are matched in lower case too, as they are written mid-sentence.
_TITLES: Final[dict[str, bool | None]] = {
    "mr": False,
    "mrs": True,
    "ms": True,
    "miss": True,
    "mx": None,
    "dr": None,
    "prof": None,
    "sir": False,
    "dame": True,
    "lord": False,
    "lady": True,
    "pan": False,
    "pana": False,
    "panu": False,
    "panem": False,
    "panie": False,
    "pani": True,
    "panią": True,
    "mgr": None,
    "inż": None,
    "hab": None,
}
_NOMINATIVE_TITLES: Final = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir"})

# Upper- and lower-case letters of Latin-1 and Latin Extended-A/B: enough for Polish,
# German, French, Czech, Spanish ... names, as plain character classes (re has no \p{Lu}).
_UP: Final = "A-Z" + "".join(c for c in map(chr, range(0xC0, 0x250)) if c.isupper())
_LO: Final = "a-z" + "".join(c for c in map(chr, range(0xDF, 0x250)) if c.islower())
# Capitalised words ("Anna", "McDonald", "Skłodowska-Curie", "O'Brien"), upper-case words
# ("KOWALSKI") and initials ("F."); the first character class lets the scan skip ahead.
_TOKEN: Final = re.compile(
    rf"[{_UP}](?<!\w.)(?:(?P<word>['\u2019][{_UP}][{_LO}]+(?!\w)"
    rf"|[{_LO}]+(?:[{_UP}][{_LO}]+)?(?:[-'\u2019][{_UP}][{_LO}]+)*(?!\w))"
    rf"|(?P<caps>[{_UP}]+(?:-[{_UP}]{{2,}})?(?!\w))|(?P<initial>\.))"
)
# Titles as capitalised words ("Mr", "Pani") are tokens; lower-case ones ("pan Kowalski",
# "dr Nowak") are looked for right before a capitalised word.
_TITLE_WORDS: Final = frozenset(title.capitalize() for title in _TITLES)
_LOWER_TITLE: Final = re.compile(
    r"(?<!\w)(pan|pana|panu|panem|panie|pani|panią|dr|prof|mgr|inż|hab)\.?[ \u00a0]$"
)
# What may separate the words of one name: a space or two, never a line break; after a
# title, its full stop too ("Dr. Smith", "Dr.Smith").
_GAP: Final = re.compile(r"[ \t\u00a0]{1,2}")
_TITLE_GAP: Final = re.compile(r"\.?[ \t\u00a0]{0,2}")

# A token: (start, end, kind, text); kind is "title", "word", "caps" or "initial".
_Token = tuple[int, int, str, str]


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        value = match.group()
        kind = match.lastgroup or "word"
        if kind == "word" and value in _TITLE_WORDS:
            kind = "title"
        tokens.append((match.start(), match.end(), kind, value))
    return tokens


def _adjacent(text: str, left: _Token, right: _Token) -> bool:
    if left[2] == "title":
        return right[0] > left[1] and _TITLE_GAP.fullmatch(text, left[1], right[0]) is not None
    return 0 < right[0] - left[1] <= 2 and _GAP.fullmatch(text, left[1], right[0]) is not None


def _lower_title_before(text: str, start: int) -> str | None:
    """The lower-case title right before `start` ("pan Kowalski", "dr Nowak"), if any."""
    if start < 3 or text[start - 1] not in " \u00a0":
        return None
    match = _LOWER_TITLE.search(text, max(0, start - 8), start)
    return None if match is None else match.group(1)


def _surname_base(surname: str, feminine: bool | None) -> str:
    """Undo the common Polish case endings of a surname (the first name was inflected)."""
    if surname.isupper():
        return surname
    if feminine is not False:
        for ending, base in (("skiej", "ska"), ("ckiej", "cka"), ("dzkiej", "dzka")):
            if surname.endswith(ending):
                return surname[: -len(ending)] + base
        for ending in ("ską", "cką", "dzką"):
            if surname.endswith(ending):
                return surname[:-1] + "a"
        if feminine:
            return surname
    for endings, base in (
        (("skiego", "skiemu"), "ski"),
        (("ckiego", "ckiemu"), "cki"),
        (("dzkiego", "dzkiemu"), "dzki"),
    ):
        for ending in endings:
            if surname.endswith(ending):
                return surname[: -len(ending)] + base
    for ending in ("skim", "ckim", "dzkim"):
        if surname.endswith(ending):
            return surname[:-1]
    for ending in ("owi", "iem", "em"):
        if surname.endswith(ending) and len(surname) - len(ending) >= 3:
            return surname[: -len(ending)]
    if surname.endswith("a") and len(surname) > 4:
        return surname[:-1]
    return surname


def _canonical(given: list[_Token], surname: _Token | None, feminine: bool | None) -> str:
    parts: list[str] = []
    inflected = False
    for token in given:
        known = FIRST_NAMES.get(token[3]) or FIRST_NAMES.get(token[3].title())
        if known is not None:
            parts.append(known.lemma)
            inflected = inflected or known.inflected
            feminine = known.feminine if feminine is None else feminine
        else:
            parts.append(token[3])
    if surname is not None:
        parts.append(_surname_base(surname[3], feminine) if inflected else surname[3])
    return " ".join(parts).upper()


def _name_word(token: _Token) -> bool:
    """Can this token be part of a name (a given name, a surname, an initial)?"""
    return token[2] in ("word", "caps", "initial") and token[3] not in NOT_SURNAMES


def _after_title(
    text: str, tokens: list[_Token], j: int, title: str
) -> tuple[int, tuple[int, int, str]] | None:
    """The name after a title ("Dr. Jane Doe", "panem Kowalskim"): the index of its last
    token and (start, end, canonical). tokens[j] is the name's first token, or the title."""
    feminine = _TITLES.get(title)
    words: list[_Token] = []
    k = j
    if tokens[j][2] != "title":
        words.append(tokens[j])
    while (
        k + 1 < len(tokens)
        and len(words) < 3
        and _name_word(tokens[k + 1])
        and _adjacent(text, tokens[k], tokens[k + 1])
    ):
        k += 1
        words.append(tokens[k])
    while words and words[-1][2] == "initial":
        words.pop()
        k -= 1
    if not words or words[0][2] == "initial" or not _name_word(words[0]):
        return None
    given = [w for w in words[:-1] if w[2] != "initial"]
    last = words[-1]
    if not given and last[3] in FIRST_NAMES:  # "Pani Anna"
        canonical = _canonical([last], None, feminine)
    elif not given and title not in _NOMINATIVE_TITLES and title not in ("pan", "pani"):
        canonical = _surname_base(last[3], feminine).upper()  # "panem Kowalskim"
    else:
        canonical = _canonical(given, last, feminine)
    return k, (words[0][0], last[1], canonical)


def _from_first_name(
    text: str, tokens: list[_Token], i: int
) -> tuple[int, tuple[int, int, str]] | None:
    """The name starting with the known first name tokens[i]: the index of its last token
    and (start, end, canonical)."""
    given = [tokens[i]]
    surname: _Token | None = None
    k = last_given = i
    n = len(tokens)
    upper = tokens[i][2] == "caps"  # "JAN KOWALSKI": the surname in capitals too
    while k + 1 < n and surname is None and _adjacent(text, tokens[k], tokens[k + 1]):
        nxt = tokens[k + 1]
        if not _name_word(nxt) or (upper and nxt[2] != "caps"):
            break
        if nxt[2] == "initial":  # "John F. Kennedy"
            if k + 2 < n and tokens[k + 2][2] in ("word", "caps"):
                k += 1
                continue
            break
        follower = tokens[k + 2] if k + 2 < n else None
        if (
            nxt[2] == "word"
            and nxt[3] in FIRST_NAMES
            and len(given) < 2
            and follower is not None
            and follower[2] in ("word", "caps")
            and _name_word(follower)
            and _adjacent(text, nxt, follower)
        ):
            given.append(nxt)  # "Anna Maria Nowak": a second given name
            last_given = k + 1
        else:
            surname = nxt
        k += 1
    if surname is None:
        k = last_given
        if (len(given) == 1 and given[0][3] in AMBIGUOUS) or upper:
            return None
    end = surname[1] if surname is not None else given[-1][1]
    return k, (given[0][0], end, _canonical(given, surname, None))


def find_names(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical) of each name in `text`, in order, not overlapping."""
    tokens = _tokens(text)
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        start, _, kind, value = tokens[i]
        result: tuple[int, tuple[int, int, str]] | None = None
        if kind == "title":
            j = i
            while (
                j + 1 < len(tokens)
                and tokens[j + 1][2] == "title"
                and _adjacent(text, tokens[j], tokens[j + 1])
            ):
                j += 1  # "Prof. Dr. ..."
            result = _after_title(text, tokens, j, tokens[j][3].lower())
            if result is None:
                i = j + 1
                continue
        elif kind == "word" and value in FIRST_NAMES:
            result = _from_first_name(text, tokens, i)
        elif kind == "caps" and value.title() in FIRST_NAMES:
            result = _from_first_name(text, tokens, i)  # "JAN KOWALSKI"
        elif kind in ("word", "caps") and value not in NOT_SURNAMES:
            title = _lower_title_before(text, start)
            if title is not None:
                result = _after_title(text, tokens, i, title)
        if result is None:
            i += 1
            continue
        last, span = result
        found.append(span)
        i = last + 1
    return found
