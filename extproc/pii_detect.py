"""Personal data in free text: what is found, where, and in a form that compares.

`detect(text)` returns non-overlapping `Finding`s of the `ENTITY_TYPES`; `detect_art9`
returns mentions of the GDPR Art. 9 special categories (topics: reported, never tagged).

Speed (budget: p50 <= 1 ms for a 2 KB prompt; bench/pii_cost.py): the text is scanned a
few times, each time by a regex that starts with one character class or literal, so that
the regex engine skips quickly to the places worth a look. One scan collects the *digit
clusters* (digit runs joined by spaces, dashes, dots, slashes or parentheses, with an
opening "+" or "("; four digits or more): every value made of digits is a run of
consecutive groups of one cluster, so PESEL, NIP, REGON, cards, Polish account numbers,
phones, IPv4 addresses, dates and postal codes are read off the clusters' group shapes
(lengths and separators) in Python instead of by one regex per type over the whole text,
and most clusters (a year, a date) are dismissed by their digit count or shape alone. ID
card and passport numbers are a cluster's digits with letters just before them. IBANs,
UK postcodes, English street addresses, names (`pii_names`) and, when the text could
hold one, IPv6 addresses take one scan each; e-mails start at each "@", Polish streets at
each "ul." / "al." / ... found with str.find, dates of birth only near a birth word.
Detectors run from the most specific type to the least and skip what an earlier one
claimed; the labels before a value are read once per place (`_Text.context`).

Precision comes from validation, not from patterns:
  * check digits, in plain arithmetic (the same rules as python-stdnum's pesel, nip,
    regon and luhn modules, which the unit tests hold them to on 100,000 random numbers,
    at a twentieth of the cost): PESEL with the birth date it encodes, NIP, REGON (9 and
    14 digits), cards (Luhn, plus an issuer prefix and length in use: Visa, Mastercard,
    Amex, Diners, Discover, JCB, UnionPay, Maestro); ID card and passport numbers
    (weights 7,3,1,9,7,3,1,7,3 and 7,3,9,1,7,3,1,7,3 over the characters, letters A=10 ...
    Z=35, the sum divisible by 10); IBAN: mod 97, then `stdnum.iban` for the country's
    length and format (Polish ones, 26 digits, need no lookup; an account number written
    without "PL" is one too). Phone numbers are validated by `phonenumbers` (international
    numbers by country code; national ones as Polish, US or UK numbers), IP addresses by
    `ipaddress`, dates by `datetime.date`;
  * context, the few words before a value (`_LABELS`): a label of something that is not
    personal ("order #", "invoice", "tracking", "version", "timestamp", "zamówienie nr")
    rejects a value; a label naming the value's own type ("PESEL", "tel.", "REGON")
    vouches for it. Values whose shape alone says little need their own label: a REGON
    (every tenth 9-digit number passes its check, and Polish phone numbers have 9 digits),
    a phone number written as bare digits, a lower-case ID card or passport number. A date
    is a date of birth only after a birth word ("born", "DOB", "ur.", "data urodzenia") in
    the same clause; a postal code needs a city after it or an address word before it;
  * amounts (a currency or unit right after the number, or a currency sign before it)
    are never identifiers.

Overlaps: every candidate competes; the more specific, validated type wins (`_PRIORITY`:
an IBAN's digits are not also a card, a PESEL is not also a phone), then the longer span.

`canonical` makes one value written two ways compare equal: identifiers as their digits
and letters only, upper-case (a NIP without "PL", a Polish account number with it);
e-mails lower-cased; phones in E.164; IP addresses as `ipaddress` writes them; dates of
birth in ISO 8601; postal codes as their letters and digits; addresses upper-case without
punctuation; names as `pii_names` explains.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Final, NamedTuple

import phonenumbers
from stdnum import iban as _iban

from extproc.pii_names import find_names
from weir.pii_types import ART9_CATEGORIES, ENTITY_TYPES


@dataclass(frozen=True, slots=True)
class Finding:
    type: str  # one of ENTITY_TYPES (or ART9_CATEGORIES for detect_art9)
    start: int  # character offsets into the text
    end: int
    text: str  # text[start:end]
    canonical: str  # normalised value: the same for the same value written differently


class _Candidate(NamedTuple):
    start: int
    end: int
    type: str
    canonical: str


# Most specific first: on overlap the earlier type wins, then the longer span.
_PRIORITY: Final[dict[str, int]] = {
    t: i
    for i, t in enumerate(
        (
            "EMAIL",
            "IBAN",
            "CREDIT_CARD",
            "PESEL",
            "NIP",
            "REGON",
            "ID_CARD",
            "PASSPORT",
            "IP_ADDRESS",
            "DATE_OF_BIRTH",
            "PHONE",
            "ADDRESS",
            "POSTAL_CODE",
            "PERSON",
        )
    )
}

_SPACES: Final = frozenset(" \u00a0")


def _word_at(text: str, index: int) -> bool:
    """Is there a letter, digit or underscore at `index` (False outside the text)?"""
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


def _char_at(text: str, index: int) -> str:
    """The character at `index`, or a space outside the text."""
    return text[index] if 0 <= index < len(text) else " "


# --- context: the labels before a value -----------------------------------------------------

# Words that label the number after them (lower case). NEG: a number that is not personal.
_LABELS: Final[dict[str, str]] = {
    **dict.fromkeys(("pesel",), "PESEL"),
    **dict.fromkeys(("nip", "vat", "tin"), "NIP"),
    **dict.fromkeys(("regon",), "REGON"),
    **dict.fromkeys(
        ("dowód", "dowodu", "dowodem", "dowodzie", "dowod", "seria", "serii"), "ID_CARD"
    ),
    **dict.fromkeys(("iban", "account", "acct", "konto", "konta", "kontem", "koncie"), "IBAN"),
    **dict.fromkeys(
        (
            *("card", "cards", "karta", "karty", "karcie", "kartą", "kartę", "visa"),
            *("mastercard", "amex", "credit", "debit"),
        ),
        "CREDIT_CARD",
    ),
    **dict.fromkeys(
        ("tel", "mobile", "cell", "kom", "fax", "call", "sms", "whatsapp", "contact"), "PHONE"
    ),
    **dict.fromkeys(
        (
            *("order", "orders", "invoice", "invoices", "inv", "ticket", "tickets", "tracking"),
            *("shipment", "parcel", "ref", "reference", "refs", "transaction", "transactions"),
            *("txn", "case", "sku", "serial", "build", "version", "ver", "batch", "lot", "part"),
            *("model", "isbn", "issn", "timestamp", "epoch", "unix", "zam", "sprawy", "sygn"),
            *("partii", "id", "pin", "kod", "code", "policy", "polisy", "polisa", "umowy"),
        ),
        "NEG",
    ),
}
# Stems of labels (any ending): Polish inflection, English plurals and compounds.
_LABEL_STEMS: Final[tuple[tuple[str, str], ...]] = (
    ("telefon", "PHONE"),
    ("phone", "PHONE"),
    ("komórk", "PHONE"),
    ("zadzwo", "PHONE"),
    ("dzwoń", "PHONE"),
    ("kontakt", "PHONE"),
    ("passport", "PASSPORT"),
    ("paszport", "PASSPORT"),
    ("bank", "IBAN"),
    ("rachun", "IBAN"),
    ("przelew", "IBAN"),
    ("zamówieni", "NEG"),
    ("przesyłk", "NEG"),
    ("paczk", "NEG"),
    ("faktur", "NEG"),
    ("transakcj", "NEG"),
    ("zgłoszeni", "NEG"),
    ("referencyjn", "NEG"),
    ("seryjn", "NEG"),
    ("wersj", "NEG"),
)
# Two-word labels: the second word with the first before it.
_LABEL_PAIRS: Final[dict[tuple[str, str], str]] = {
    ("id", "card"): "ID_CARD",
    ("identity", "card"): "ID_CARD",
    ("identity", "document"): "ID_CARD",
    ("tax", "id"): "NIP",
    ("vat", "id"): "NIP",
    ("vat", "number"): "NIP",
    ("phone", "number"): "PHONE",
    ("account", "number"): "IBAN",
    ("card", "number"): "CREDIT_CARD",
    ("passport", "number"): "PASSPORT",
    ("my", "number"): "PHONE",
    ("mój", "numer"): "PHONE",
    ("moj", "numer"): "PHONE",
    ("your", "number"): "PHONE",
}
_LABEL_WORD: Final = re.compile(r"\w+")
_LAST_DIGIT: Final = re.compile(r"[0-9](?=[^0-9]*$)")
# What may stand between a non-personal label and its number: "order no. 123", "nr: 123".
_NEG_GAP: Final = re.compile(r"[\s#:.,()\-]*(?:(?:no|nr|number|numer|num|id)\.?[\s#:.()\-]*)?")
_CONTEXT_WIDTH: Final = 40


class _Context(NamedTuple):
    own: frozenset[str]  # the types named by labels before the value
    closest: str | None  # the nearest label's type, "NEG", or None

    def accepts(self, type_: str) -> bool:
        return type_ in self.own

    @property
    def negative(self) -> bool:
        return self.closest == "NEG"

    def other(self, type_: str) -> bool:
        """The nearest label names another type (and none names this one)."""
        return self.closest is not None and self.closest != type_ and type_ not in self.own


_NO_CONTEXT: Final = _Context(frozenset(), None)
_HASH: Final = _Context(frozenset(), "NEG")


_LABEL_STEMS_BY_KEY: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    key: tuple(entry for entry in _LABEL_STEMS if entry[0].startswith(key))
    for key in {stem[:4] for stem, _ in _LABEL_STEMS}
}


_PAIR_FIRSTS: Final = frozenset(first for first, _ in _LABEL_PAIRS)


def _label(previous: str, word: str) -> str | None:
    if previous in _PAIR_FIRSTS:
        kind = _LABEL_PAIRS.get((previous, word))
        if kind is not None:
            return kind
    kind = _LABELS.get(word)
    if kind is None and len(word) >= 4:
        for stem, stem_kind in _LABEL_STEMS_BY_KEY.get(word[:4], ()):
            if word.startswith(stem):
                return stem_kind
    return kind


def _context(text: str, start: int) -> _Context:
    """The labels in the few words before `start`, back to the previous digit."""
    window = text[max(0, start - _CONTEXT_WIDTH) : start]
    if window.endswith(("#", "# ")):
        return _HASH
    digit = _LAST_DIGIT.search(window)
    if digit is not None:
        window = window[digit.end() :]
    window = window.lower()
    own: set[str] = set()
    closest: str | None = None
    previous = ""
    for match in _LABEL_WORD.finditer(window):
        word = match.group()
        kind = _label(previous, word)
        previous = word
        if kind is None:
            continue
        if kind == "NEG":
            if _NEG_GAP.fullmatch(window, match.end()) is None:
                continue
        else:
            own.add(kind)
        closest = kind
    if closest is None:
        return _NO_CONTEXT
    return _Context(frozenset(own), closest)


# --- digit clusters -------------------------------------------------------------------------

_CLUSTER: Final = re.compile(r"[0-9+(][0-9]*(?:[ \u00a0\-./()]{1,3}[0-9]+)*")
_UNITS: Final = ("zł", "zl", "pln", "eur", "euro", "usd", "gbp", "chf", "€", "$", "£", "%")
_UNITS_MORE: Final = ("m2", "m²", "kg", "km", "mln", "tys", "k")


_UNIT_INITIALS: Final = frozenset(unit[0] for unit in _UNITS + _UNITS_MORE)


def _amount(text: str, start: int, end: int) -> bool:
    """Is the number at start..end an amount: a currency or unit right after it, or a
    currency sign before it?"""
    if text[max(0, start - 2) : start].strip() in ("$", "€", "£"):
        return True
    tail = text[end : end + 6].lower()
    if tail[:1] in _SPACES:
        tail = tail[1:]
    if tail[:1] not in _UNIT_INITIALS:
        return False
    for unit in _UNITS + _UNITS_MORE:
        if tail.startswith(unit) and not _word_at(tail, len(unit)):
            return True
    return False


class _Group(NamedTuple):
    start: int
    end: int
    digits: str


class _Cluster:
    """Digit groups and the separators between them ("+48 600-123-456"). The groups as
    `_Group`s are made on first use: a long run of numbers ("1 1 1 ...") would otherwise
    cost an object per number for detectors that look only at the lengths."""

    __slots__ = (
        *("_groups", "digits", "end", "lengths", "ndigits", "offsets", "seps", "start", "starts"),
    )

    def __init__(
        self,
        start: int,  # at its "+" or "(" if it opens with one
        end: int,
        starts: tuple[int, ...],  # where each group starts in the text
        seps: tuple[str, ...],  # seps[i] stands between groups i and i + 1
        digits: str,  # all its digits
        offsets: tuple[int, ...],  # where each group's digits start in `digits`, and the end
        lengths: tuple[int, ...],  # each group's number of digits
    ) -> None:
        self.start, self.end, self.starts, self.seps = start, end, starts, seps
        self.digits, self.ndigits = digits, len(digits)
        self.offsets, self.lengths = offsets, lengths
        self._groups: tuple[_Group, ...] | None = None

    @property
    def groups(self) -> tuple[_Group, ...]:
        if self._groups is None:
            digits, offsets = self.digits, self.offsets
            self._groups = tuple(
                _Group(start, start + size, digits[offset : offset + size])
                for start, size, offset in zip(self.starts, self.lengths, offsets, strict=False)
            )
        return self._groups

    def sep_before(self, i: int) -> str | None:
        return self.seps[i - 1] if i > 0 else None

    def sep_after(self, j: int) -> str | None:
        return self.seps[j] if j < len(self.seps) else None


_NON_DIGITS: Final = re.compile(r"([^0-9]+)")


def _clusters(text: str) -> list[_Cluster]:
    """The clusters of the text with four digits or more: shorter numbers ("12%", "5/3",
    "v2.1") are no identifier of any kind here."""
    clusters: list[_Cluster] = []
    for match in _CLUSTER.finditer(text):
        start, end = match.span()
        value = match.group()
        if value[0] in "+(" and not value[1:2].isdigit():
            # "( 22)", "+ 48": the sign belongs to no number
            value = value[1:].lstrip(" \u00a0-./()")
            start = end - len(value)
            if not value or value[0] in "+(":
                continue
        if value[0] == "(" and ")" not in value:  # "(600 123 456)": a bracket, no area code
            value = value[1:]
            start += 1
        if value.isdigit():
            size = len(value)
            if size < 4:
                continue
            clusters.append(_Cluster(start, end, (start,), (), value, (0, size), (size,)))
            continue
        # "+48 (22) 123-45-67" -> ["+", "48", " (", "22", ") ", ...]: digits and separators
        parts = _NON_DIGITS.split(value)
        at = start
        if parts[0] == "":  # it opens with "+" or "("
            at += len(parts[1])
            parts = parts[2:]
        numbers = parts[::2]
        digits = "".join(numbers)
        if len(digits) < 4:
            continue
        lengths = tuple(map(len, numbers))
        starts = tuple(accumulate(map(len, parts), initial=at))[::2]  # where each group starts
        offsets = tuple(accumulate(lengths, initial=0))
        clusters.append(_Cluster(start, end, starts, tuple(parts[1::2]), digits, offsets, lengths))
    return clusters


class _Text:
    """The text being scanned, with what several detectors share, computed once."""

    __slots__ = ("_amounts", "_clusters", "_contexts", "_lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._clusters: list[_Cluster] | None = None
        self._lower: str | None = None
        self._contexts: dict[int, _Context] = {}
        self._amounts: dict[int, bool] = {}

    def amount(self, cluster: _Cluster) -> bool:
        """Is the cluster an amount (a currency or unit after it, a currency sign before)?"""
        found = self._amounts.get(cluster.start)
        if found is None:
            found = self._amounts[cluster.start] = _amount(self.text, cluster.start, cluster.end)
        return found

    def context(self, start: int) -> _Context:
        """The labels before `start` (several detectors ask about the same places)."""
        found = self._contexts.get(start)
        if found is None:
            found = self._contexts[start] = _context(self.text, start)
        return found

    @property
    def clusters(self) -> list[_Cluster]:
        """The digit clusters of four digits or more."""
        if self._clusters is None:
            self._clusters = _clusters(self.text)
        return self._clusters

    @property
    def lower(self) -> str:
        """The text lower-cased: for looking words up, never for offsets."""
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower


class _Run(NamedTuple):
    """Consecutive groups i..j of a cluster: one candidate value."""

    cluster: _Cluster
    i: int
    j: int
    digits: str
    shape: tuple[int, ...]  # the groups' lengths
    seps: tuple[str, ...]  # the separators inside the run

    @property
    def start(self) -> int:
        return self.cluster.starts[self.i]

    @property
    def end(self) -> int:
        return self.cluster.starts[self.j] + self.cluster.lengths[self.j]

    def one_separator(self, allowed: frozenset[str]) -> bool:
        """At most one kind of separator inside, from `allowed`."""
        return not self.seps or (len(set(self.seps)) == 1 and self.seps[0] in allowed)

    def bounded(self, text: str) -> bool:
        """Does the run stand alone: nothing word-like, dashed or dotted right before or
        after it, and, inside a longer cluster, a space between it and its neighbours?"""
        before = self.cluster.sep_before(self.i)
        after = self.cluster.sep_after(self.j)
        if before is not None:
            if not _separates(before):
                return False
        elif text[self.cluster.start] == "+":  # an international phone number
            return False
        else:
            prev = _char_at(text, self.start - 1)
            if (
                prev.isalnum()
                or prev in "_-+/@"
                or (prev in ".," and _digit_at(text, self.start - 2))
            ):
                return False
        if after is not None:
            return _separates(after)
        nxt = _char_at(text, self.end)
        return not (
            nxt.isalnum() or nxt in "_-@" or (nxt in ".," and _digit_at(text, self.end + 1))
        )


def _separates(sep: str) -> bool:
    """Does this separator stand between two values rather than inside one ("600 123",
    "1234 / 5678"), as a space on either side of it shows?"""
    return sep[0] in _SPACES or sep[-1] in _SPACES


def _digit_at(text: str, index: int) -> bool:
    return 0 <= index < len(text) and text[index].isdigit()


# Per set of shapes: the shapes' prefixes, and the lengths a shape's first group has.
_PREFIXES: dict[frozenset[tuple[int, ...]], tuple[frozenset[tuple[int, ...]], frozenset[int]]] = {}


def _runs(cluster: _Cluster, shapes: frozenset[tuple[int, ...]], most: int) -> Iterator[_Run]:
    """The runs whose shape (their groups' lengths) is one of `shapes`, of `most` digits
    at most. A run is only extended while its shape begins one of `shapes`, so that a
    cluster of many groups ("1 2 3 4 ...") costs linear time."""
    known = _PREFIXES.get(shapes)
    if known is None:
        prefixes = frozenset(shape[:k] for shape in shapes for k in range(1, len(shape) + 1))
        known = _PREFIXES[shapes] = (prefixes, frozenset(shape[0] for shape in shapes))
    prefixes, firsts = known
    lengths, offsets = cluster.lengths, cluster.offsets
    for i, first in enumerate(lengths):
        if first not in firsts:
            continue
        for j in range(i, len(lengths)):
            if offsets[j + 1] - offsets[i] > most:
                break
            shape = lengths[i : j + 1]
            if shape not in prefixes:
                break
            if shape in shapes:
                digits = cluster.digits[offsets[i] : offsets[j + 1]]
                yield _Run(cluster, i, j, digits, shape, cluster.seps[i:j])


def _whole(cluster: _Cluster, j: int) -> _Run:
    """The run of the cluster's groups 0..j."""
    return _Run(
        cluster,
        0,
        j,
        cluster.digits[: cluster.offsets[j + 1]],
        cluster.lengths[: j + 1],
        cluster.seps[:j],
    )


# --- check digits ---------------------------------------------------------------------------
# Plain arithmetic: the same rules as python-stdnum's pesel, nip, regon and luhn modules
# (tests/unit/test_pii_detect.py checks them against stdnum on many random numbers), at a
# twentieth of the cost; stdnum itself is used for IBANs of other countries than Poland.


def _weighted_sum(digits: str, weights: tuple[int, ...]) -> int:
    return sum((ord(d) - 48) * w for d, w in zip(digits, weights, strict=False))


# PESEL month codes: 1800s +80, 1900s +0, 2000s +20, 2100s +40, 2200s +60.
_PESEL_CENTURIES: Final = {8: 1800, 0: 1900, 2: 2000, 4: 2100, 6: 2200}


def _pesel_ok(digits: str) -> bool:
    """The check digit, and the birth date it encodes is a real date."""
    if (10 - _weighted_sum(digits, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)) % 10) % 10 != ord(
        digits[10]
    ) - 48:
        return False
    code = int(digits[2:4])  # the month, plus the century's offset
    century = _PESEL_CENTURIES.get(code // 20 * 2)
    if century is None:
        return False
    month = code % 20
    try:
        date(century + int(digits[0:2]), month, int(digits[4:6]))
    except ValueError:
        return False
    return True


def _nip_ok(digits: str) -> bool:
    return _weighted_sum(digits, (6, 5, 7, 2, 3, 4, 5, 6, 7)) % 11 == ord(digits[9]) - 48


def _regon_ok(digits: str) -> bool:
    if len(digits) == 14 and not _regon_ok(digits[:9]):
        return False
    weights = (
        (8, 9, 2, 3, 4, 5, 6, 7) if len(digits) == 9 else (2, 4, 8, 5, 0, 9, 7, 3, 6, 1, 2, 4, 8)
    )
    return _weighted_sum(digits, weights) % 11 % 10 == ord(digits[-1]) - 48


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    """mod 97, and the country's length and format; for Poland (26 digits after "PL")
    that is all stdnum checks, so the common case skips its slower lookup."""
    if not _mod97(value):
        return False
    if value.startswith("PL"):
        return len(value) == 28 and value[2:].isdigit()
    return _iban.is_valid(value)


class _Found(list[_Candidate]):
    """The candidates found so far, indexed by start: asking whether one overlaps a span
    costs a binary search, not a pass over all of them (a text of a thousand findings
    would otherwise cost a million comparisons)."""

    __slots__ = ("_ends", "_longest", "_starts")

    def __init__(self) -> None:
        super().__init__()
        self._starts: list[int] = []  # sorted
        self._ends: list[int] = []  # parallel to _starts
        self._longest = 0

    def append(self, candidate: _Candidate) -> None:
        super().append(candidate)
        at = bisect_right(self._starts, candidate.start)
        self._starts.insert(at, candidate.start)
        self._ends.insert(at, candidate.end)
        self._longest = max(self._longest, candidate.end - candidate.start)

    def overlaps(self, start: int, end: int) -> bool:
        """Does a candidate overlap start..end? Only those starting less than the longest
        candidate's length before `start` can reach into it."""
        low = bisect_right(self._starts, start - self._longest)
        high = bisect_left(self._starts, end, low)
        return any(self._ends[k] > start for k in range(low, high))


def _covered(out: _Found, start: int, end: int) -> bool:
    """Does a candidate found before (by a detector of a more specific type, as they run in
    `_PRIORITY` order) overlap start..end? Then a less specific one would lose anyway."""
    return out.overlaps(start, end)


# --- Polish identifiers made of digits ------------------------------------------------------

_PESEL_SHAPES: Final = frozenset({(11,), (6, 5), (2, 2, 2, 5), (3, 3, 3, 2)})
_NIP_SHAPES: Final = frozenset({(10,), (3, 3, 2, 2), (3, 2, 2, 3)})
_REGON_SHAPES: Final = frozenset({(9,), (14,), (3, 3, 3), (9, 5)})
_POLISH_ID_SHAPES: Final = _PESEL_SHAPES | _NIP_SHAPES | _REGON_SHAPES
_DASH_OR_SPACE: Final = frozenset({"-", " ", "\u00a0"})


def _polish_ids(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """PESEL (accepted unless labelled otherwise), NIP (likewise; bare 10 digits also
    not after another type's label) and REGON (only when labelled REGON)."""
    text = t.text
    for cluster in t.clusters:
        if cluster.ndigits < 9 or t.amount(cluster) or _covered(out, cluster.start, cluster.end):
            continue
        for run in _runs(cluster, _POLISH_ID_SHAPES, 14):
            size = len(run.digits)
            if not run.one_separator(_DASH_OR_SPACE):
                continue
            if size == 11:
                if run.shape not in _PESEL_SHAPES:
                    continue
                if (
                    not _covered(out, run.start, run.end)
                    and run.bounded(text)
                    and _pesel_ok(run.digits)
                ):
                    ctx = t.context(run.start)
                    if ctx.accepts("PESEL") or not (ctx.negative or ctx.closest == "PHONE"):
                        out.append(_Candidate(run.start, run.end, "PESEL", run.digits))
            elif size == 10:
                _nip_candidate(t, run, out)
            elif (
                run.shape in _REGON_SHAPES
                and run.bounded(text)
                and _regon_ok(run.digits)
                and t.context(run.start).accepts("REGON")
            ):
                out.append(_Candidate(run.start, run.end, "REGON", run.digits))


def _nip_candidate(t: _Text, run: _Run, out: _Found) -> None:
    text = t.text
    start = run.start
    # "PL1234563218", "PL 123-456-32-18": the EU VAT prefix belongs to the value
    if run.i == 0 and run.cluster.start == start:
        k = start - 1 if _char_at(text, start - 1) in _SPACES else start
        if text[max(0, k - 2) : k].upper() == "PL" and not _word_at(text, k - 3):
            start = k - 2
    if start == run.start:
        if not run.bounded(text):
            return
    else:
        after = run.cluster.sep_after(run.j)
        if (after is not None and not _separates(after)) or (
            after is None and (_word_at(text, run.end) or _char_at(text, run.end) in "-@")
        ):
            return
    if _covered(out, start, run.end) or not _nip_ok(run.digits):
        return
    ctx = t.context(start)
    if not ctx.accepts("NIP") and (
        ctx.negative or (run.shape == (10,) and start == run.start and ctx.other("NIP"))
    ):
        return
    out.append(_Candidate(start, run.end, "NIP", run.digits))


# --- payment cards --------------------------------------------------------------------------

# Issuer prefixes (as ranges of the first four digits) and lengths of the card schemes in
# use (ISO/IEC 7812): Visa; Mastercard (and its 2-series); American Express; Diners;
# Discover; JCB; UnionPay; Maestro.
_CARD_RULES: Final[tuple[tuple[int, int, frozenset[int]], ...]] = (
    (4000, 4999, frozenset({13, 16, 19})),
    (5100, 5599, frozenset({16})),
    (2221, 2720, frozenset({16})),
    (3400, 3499, frozenset({15})),
    (3700, 3799, frozenset({15})),
    (3000, 3059, frozenset({14, 16})),
    (3600, 3699, frozenset({14, 16})),
    (3800, 3999, frozenset({14, 16})),
    (6011, 6011, frozenset({16, 19})),
    (6440, 6599, frozenset({16, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),
    (6200, 6299, frozenset({16, 17, 18, 19})),
    (8100, 8199, frozenset({16, 17, 18, 19})),
    (5000, 5099, frozenset(range(12, 20))),
    (5600, 6999, frozenset(range(12, 20))),
)


def _card_plausible(digits: str) -> bool:
    prefix = int(digits[:4])
    size = len(digits)
    return any(low <= prefix <= high and size in sizes for low, high, sizes in _CARD_RULES)


# How card numbers are written: one block, groups of four (the last may be shorter), or
# 4-6-5 / 4-6-4 (American Express, Diners).
_CARD_SHAPES: Final = frozenset(
    {(n,) for n in range(12, 20)}
    | {(4,) * fours + (last,) for fours in (2, 3, 4) for last in (1, 2, 3, 4)}
    | {(4, 6, 5), (4, 6, 4)}
)


def _cards(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    text = t.text
    for cluster in t.clusters:
        if cluster.ndigits < 12 or t.amount(cluster) or _covered(out, cluster.start, cluster.end):
            continue
        for run in _runs(cluster, _CARD_SHAPES, 19):
            if len(run.digits) < 12 or not run.one_separator(_DASH_OR_SPACE):
                continue
            if run.digits[0] not in "234568" or _covered(out, run.start, run.end):
                continue
            if run.i and cluster.lengths[run.i - 1] == 4 and cluster.seps[run.i - 1] in run.seps:
                continue  # the tail of a longer run of four-digit groups
            if not (run.bounded(text) and _luhn_ok(run.digits) and _card_plausible(run.digits)):
                continue
            if not t.context(run.start).negative:
                out.append(_Candidate(run.start, run.end, "CREDIT_CARD", run.digits))


# --- IBAN -----------------------------------------------------------------------------------

_IBAN_CANDIDATE: Final = re.compile(r"[A-Z](?<!\w.)[A-Z][0-9][0-9](?:[ \u00a0]?[A-Z0-9]){11,32}")
_NRB_SHAPES: Final = frozenset({(26,), (2, 4, 4, 4, 4, 4, 4)})


def _mod97(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _ibans(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """IBANs of every country, and Polish account numbers (NRB) without their "PL"."""
    text = t.text
    for match in _IBAN_CANDIDATE.finditer(text):
        compact: list[str] = []
        ends: list[int] = []  # ends[k]: the offset just after compact[k]
        for offset in range(match.start(), match.end()):
            if text[offset] not in _SPACES:
                compact.append(text[offset])
                ends.append(offset + 1)
        value = "".join(compact)
        for size in range(len(value), 14, -1):  # the longest valid prefix ending a word
            if _word_at(text, ends[size - 1]):
                continue
            if _iban_ok(value[:size]):
                out.append(_Candidate(match.start(), ends[size - 1], "IBAN", value[:size]))
                break
    for cluster in t.clusters:
        if cluster.ndigits < 26 or t.amount(cluster) or _covered(out, cluster.start, cluster.end):
            continue
        for run in _runs(cluster, _NRB_SHAPES, 26):
            if _covered(out, run.start, run.end):
                continue
            value = "PL" + run.digits
            if (
                run.one_separator(_SPACES)
                and run.bounded(text)
                and _iban_ok(value)
                and not t.context(run.start).negative
            ):
                out.append(_Candidate(run.start, run.end, "IBAN", value))


# --- ID card and passport: letters, then digits ---------------------------------------------

_ID_CARD_WEIGHTS: Final = (7, 3, 1, 9, 7, 3, 1, 7, 3)  # the check digit is the 4th character
_PASSPORT_WEIGHTS: Final = (7, 3, 9, 1, 7, 3, 1, 7, 3)  # the check digit is the 3rd character
# Letter prefixes that label something else: currencies, registers, units, common words.
_NOT_SERIES: Final = frozenset(
    (
        *("EUR", "USD", "PLN", "GBP", "CHF", "JPY", "CZK", "SEK", "NOK", "DKK", "HUF", "CAD"),
        *("AUD", "CNY", "UAH", "RUB", "ISO", "KRS", "PKD", "BDO", "NIP", "TEL", "FAX", "REF"),
        *("INV", "SKU", "ZIP", "DOB", "NR", "NO", "ID", "OK", "US", "UK", "EU", "PL", "DE"),
        *("FR", "TV", "PC", "THE", "AND", "FOR", "ORD", "NUM"),
    )
)


def _weighted_ok(value: str, weights: tuple[int, ...]) -> bool:
    total = 0
    for char, weight in zip(value, weights, strict=True):
        total += (ord(char) - 55 if char.isalpha() else ord(char) - 48) * weight
    return total % 10 == 0


def _id_documents(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """ID cards (ABC 123456) and passports (AB 1234567): upper-case letters, or any case
    when labelled; never after another type's label."""
    text = t.text
    for cluster in t.clusters:
        size = cluster.lengths[0]
        if size not in (6, 7) or cluster.start != cluster.starts[0]:
            continue
        first = cluster.groups[0]
        after = cluster.sep_after(0)
        if after is not None:
            if not _separates(after):
                continue
        elif _word_at(text, first.end) or _char_at(text, first.end) in "-@":
            continue
        type_, weights = (
            ("ID_CARD", _ID_CARD_WEIGHTS) if size == 6 else ("PASSPORT", _PASSPORT_WEIGHTS)
        )
        if type_ not in wanted:
            continue
        k = first.start - 1 if _char_at(text, first.start - 1) in _SPACES else first.start
        start = k - (9 - size)
        letters = text[start:k] if start >= 0 else ""
        if not (letters.isascii() and letters.isalpha() and len(letters) == 9 - size):
            continue
        if _word_at(text, start - 1) or _char_at(text, start - 1) == "-":
            continue
        series = letters.upper()
        if series in _NOT_SERIES or not _weighted_ok(series + first.digits, weights):
            continue
        ctx = t.context(start)
        if not ctx.accepts(type_) and (not letters.isupper() or ctx.negative or ctx.other(type_)):
            continue
        out.append(_Candidate(start, first.end, type_, series + first.digits))


# --- phones ---------------------------------------------------------------------------------

_PHONE_SEPARATORS: Final = frozenset({" ", "\u00a0", "-", ".", ") ", ")", " (", ")-", "/", " - "})
_E164: Final = phonenumbers.PhoneNumberFormat.E164


def _date_like(run: _Run) -> bool:
    """Does the run hold a date (three groups joined by one of . / -), or a year joined to
    its neighbour by - or / ("2019/2020", "2024-03")?"""
    shape, seps = run.shape, run.seps
    for a in range(len(shape) - 2):
        if seps[a] == seps[a + 1] and seps[a] in (".", "/", "-"):
            first, middle, last = shape[a : a + 3]
            if middle <= 2 and (first <= 2 < last == 4 or last <= 2 < first == 4):
                return True
    groups = run.cluster.groups
    return any(
        n == 4 and groups[run.i + a].digits[:2] in ("19", "20") and seps[a] in ("-", "/")
        for a, n in enumerate(shape[:-1])
    )


def _date_shaped(cluster: _Cluster) -> bool:
    """Is the whole cluster a date ("12.06.2024", "2024-03-15", "12/06/2024")?"""
    seps = cluster.seps
    if len(seps) != 2 or seps[0] != seps[1] or seps[0] not in (".", "/", "-"):
        return False
    first, middle, last = cluster.lengths
    return middle <= 2 and (first <= 2 < last == 4 or last <= 2 < first == 4)


def _parse_phone(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, _E164)


def _e164(country: int, national: str) -> str | None:
    """The number in E.164 if `phonenumbers` holds it valid. Built from its parts, as the
    digits are known already: parsing the text again would cost twice as much."""
    number = phonenumbers.PhoneNumber(country_code=country, national_number=int(national))
    return f"+{country}{national}" if phonenumbers.is_valid_number(number) else None


def _international(digits: str) -> str | None:
    """E.164 of "+" `digits`: the country code is the one prefix of 1 to 3 digits that
    is one (country codes are prefix-free)."""
    if digits[:1] in ("", "0"):
        return None
    for size in (1, 2, 3):
        country = int(digits[:size])
        if country in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if len(national) < 4:
                return None
            if national[0] != "0":
                found = _e164(country, national)
                if found is not None:
                    return found
            # a trunk prefix written after the country code ("+44 (0)20 ...", "+1 1 ..."),
            # Italy's leading zeros: the full parser knows each country's rules
            return _parse_phone("+" + digits, None)
    return None


def _national(digits: str) -> str | None:
    """E.164 of a national number: Polish (9 digits), US (10, or 11 with the 1), UK (0 and
    9 or 10 more)."""
    size = len(digits)
    if size == 9 and digits[0] != "0":
        return _e164(48, digits)
    if digits[0] == "0":
        return _e164(44, digits[1:]) if size in (10, 11) and digits[1] != "0" else None
    if size == 10:
        return _e164(1, digits) if digits[0] != "1" else None
    if size == 11 and digits[0] == "1" and digits[1] != "0":
        return _e164(1, digits[1:])
    return None


def _phones(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """International numbers (+48 ..., 0048 ...) unless labelled as something else;
    national ones (Polish, US, UK) when written in groups or labelled as phones."""
    for cluster in t.clusters:
        if (
            cluster.ndigits < 7
            or _date_shaped(cluster)
            or _covered(out, cluster.start, cluster.end)
        ):
            continue
        if t.amount(cluster):
            continue
        count = len(cluster.lengths)
        # the whole cluster, then without its last groups (a phone number, then a count)
        for j in range(count - 1, max(-1, count - 4), -1):
            if cluster.offsets[j + 1] < 7:
                break
            candidate = _phone(t, _whole(cluster, j), out)
            if candidate is not None:
                out.append(candidate)
                break


def _phone(t: _Text, run: _Run, out: _Found) -> _Candidate | None:
    text = t.text
    size = len(run.digits)
    if not 7 <= size <= 15:
        return None
    start, end = run.cluster.start, run.end
    if _covered(out, start, end):
        return None
    after = run.cluster.sep_after(run.j)
    if after is not None and not _separates(after.replace(")", " ")):
        return None
    if _word_at(text, start - 1) or _char_at(text, start - 1) in "-/.@+":
        return None
    if after is None and (_word_at(text, end) or _char_at(text, end) in "-@"):
        return None
    if not _PHONE_SEPARATORS.issuperset(run.seps):
        return None
    if "." in run.seps and set(run.seps) != {"."}:
        return None
    if _date_like(run):
        return None
    ctx = t.context(start)
    if ctx.negative:
        return None
    international = text[start] == "+" or run.digits.startswith("00")
    # national numbers are written in groups of two to four digits ("600 123 456",
    # "(22) 123 45 67", "212-555-0147"), which a ZIP+4 code ("60055-9406") is not
    grouped = len(run.shape) > 1 and all(2 <= n <= 4 for n in run.shape)
    grouped = grouped or text[start] == "("
    if not international and not ctx.accepts("PHONE") and (not grouped or ctx.other("PHONE")):
        return None
    if international:
        e164 = _international(run.digits.removeprefix("00"))
    else:
        e164 = _national(run.digits)
        if e164 is None and size >= 11 and ctx.accepts("PHONE"):
            e164 = _international(run.digits)  # "48600123456"
    return None if e164 is None else _Candidate(start, end, "PHONE", e164)


# --- IP addresses ---------------------------------------------------------------------------

_IPV6_CANDIDATE: Final = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.].)[0-9A-Fa-f]{0,3}:[0-9A-Fa-f:.]*(?:%\w+)?"
)


def _ip_addresses(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """IPv4 from the clusters (four dot-joined groups, not five); IPv6 from its own scan,
    when the text could hold one; both validated by `ipaddress`."""
    text = t.text
    for cluster in t.clusters:
        seps = cluster.seps
        if len(seps) < 3 or t.amount(cluster):
            continue
        for i in range(len(seps) - 2):
            if seps[i : i + 3] != (".", ".", ".") or (i > 0 and seps[i - 1] == "."):
                continue
            if i + 3 < len(seps) and seps[i + 3] == ".":
                continue
            start, end = cluster.starts[i], cluster.starts[i + 3] + cluster.lengths[i + 3]
            if i == 0 and (_word_at(text, start - 1) or _char_at(text, start - 1) in ".-"):
                continue
            if _word_at(text, end) or (_char_at(text, end) == "." and _digit_at(text, end + 1)):
                continue
            try:
                address = ipaddress.IPv4Address(text[start:end])
            except ValueError:
                continue
            if not t.context(start).negative:
                out.append(_Candidate(start, end, "IP_ADDRESS", str(address)))
    if "::" not in text and text.count(":") < 7:  # an IPv6 address has "::" or 7 colons
        return
    for match in _IPV6_CANDIDATE.finditer(text):
        value = match.group()
        scope = ""
        if "%" in value:
            value, _, scope = value.partition("%")
        value = value.rstrip(":.") if not scope else value
        if value.count(":") < 2:
            continue
        end = match.start() + len(value) + (len(scope) + 1 if scope else 0)
        if _word_at(text, end) or _char_at(text, end) == ":":
            continue
        parts = [p for p in value.split(":") if p]
        if len(parts) < 2 and not value.startswith("::"):
            continue
        if not any(c.isdigit() for c in value) and len(parts) < 3:
            continue  # "a::b", "Foo::Bar"
        try:
            address6 = ipaddress.IPv6Address(value + ("%" + scope if scope else ""))
        except ValueError:
            continue
        out.append(_Candidate(match.start(), end, "IP_ADDRESS", str(address6)))


# --- dates of birth -------------------------------------------------------------------------

_MONTHS: Final[dict[str, int]] = {
    name: number
    for number, names in enumerate(
        (
            "january jan styczeń stycznia sty",
            "february feb luty lutego lut",
            "march mar marzec marca",
            "april apr kwiecień kwietnia kwi",
            "may maj maja",
            "june jun czerwiec czerwca cze",
            "july jul lipiec lipca lip",
            "august aug sierpień sierpnia sie",
            "september sep sept wrzesień września wrz",
            "october oct październik października paź",
            "november nov listopad listopada lis",
            "december dec grudzień grudnia gru",
        ),
        start=1,
    )
    for name in names.split()
}
_ROMAN: Final[dict[str, int]] = {
    r: i
    for i, r in enumerate(
        ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"), 1
    )
}
_MONTH_PATTERN: Final = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ROMAN_PATTERN: Final = "|".join(sorted(_ROMAN, key=len, reverse=True))
# A written-out date that ends where its year ends: "12 March 1985", "March 12th, 1985",
# "12 marca 1985", "12 III 1985".
_TEXT_DATE: Final = re.compile(
    rf"(?<!\w)(?:(?P<d1>[0-9]{{1,2}})(?:st|nd|rd|th)?\.?[ \u00a0]+(?:of[ \u00a0]+)?"
    rf"(?:(?P<m1>{_MONTH_PATTERN})\.?|(?-i:(?P<r1>{_ROMAN_PATTERN}))\.?),?[ \u00a0]+"
    rf"|(?P<m2>{_MONTH_PATTERN})\.?[ \u00a0]+(?P<d2>[0-9]{{1,2}})(?:st|nd|rd|th)?,?[ \u00a0]+)"
    rf"(?P<y>[0-9]{{4}})$",
    re.IGNORECASE,
)
_BIRTH_HINTS: Final = ("born", "birth", "dob", "d.o.b", "urodz", "ur.", "b.")
_BIRTH_WORD: Final = re.compile(
    r"(?<!\w)(?:born|birth\w*|b\.|dob|d\.o\.b\.?|urodz\w*|ur\.)", re.IGNORECASE
)
_BIRTH_GAP: Final = 40  # the most characters between the birth word and the date


def _valid_date(year: int, month: int, day: int) -> str | None:
    if not 1850 <= year <= date.today().year:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _numeric_dates(cluster: _Cluster) -> Iterator[tuple[int, int, str]]:
    """(start, end, ISO date) of each d.m.yyyy, yyyy-mm-dd, m/d/yyyy or dd.mm.yy in it."""
    groups, seps = cluster.groups, cluster.seps
    for i in range(len(groups) - 2):
        sep = seps[i]
        if sep not in (".", "/", "-") or seps[i + 1] != sep:
            continue
        a, b, c = (g.digits for g in groups[i : i + 3])
        iso: str | None = None
        if len(a) == 4 and len(b) <= 2 and len(c) <= 2:
            iso = _valid_date(int(a), int(b), int(c))
        elif len(a) <= 2 and len(b) <= 2 and len(c) in (2, 4):
            year = int(c)
            if len(c) == 2:
                if sep == "-":
                    continue
                year += 2000 if year <= date.today().year % 100 else 1900
            # day first (Europe); month first only where day first is impossible (US)
            iso = _valid_date(year, int(b), int(a)) or _valid_date(year, int(a), int(b))
        if iso is not None:
            yield groups[i].start, groups[i + 2].end, iso


def _written_date(text: str, cluster: _Cluster) -> tuple[int, int, str] | None:
    year = cluster.groups[0]
    if len(year.digits) != 4 or cluster.start != year.start:
        return None
    match = _TEXT_DATE.search(text, max(0, year.start - 32), year.end)
    if match is None:
        return None
    day = int(match.group("d1") or match.group("d2"))
    roman = match.group("r1")
    month = _ROMAN[roman] if roman else _MONTHS[(match.group("m1") or match.group("m2")).lower()]
    iso = _valid_date(int(year.digits), month, day)
    return None if iso is None else (match.start(), year.end, iso)


def _after_birth_word(text: str, start: int) -> bool:
    """A birth word shortly before `start`, in the same clause, and no number between."""
    last = None
    for match in _BIRTH_WORD.finditer(text, max(0, start - _BIRTH_GAP - 16), start):
        last = match
    if last is None:
        return False
    between = text[last.end() : start]
    return len(between) <= _BIRTH_GAP and not any(c.isdigit() or c in ".!?;\n" for c in between)


def _birth_hints(lower: str) -> list[int]:
    """Where a birth word may be (found with str.find: cheap), sorted."""
    found: list[int] = []
    for hint in _BIRTH_HINTS:
        at = lower.find(hint)
        while at != -1:
            if at == 0 or not lower[at - 1].isalpha():  # "ur." but not "your."
                found.append(at)
            at = lower.find(hint, at + 1)
    return sorted(found)


def _dates_of_birth(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """Dates (numeric or written out) shortly after a birth word."""
    text, lower = t.text, t.lower
    hints = _birth_hints(lower)
    if not hints:
        return
    exact = len(lower) == len(text)  # lower-casing kept the offsets (it nearly always does)
    for cluster in t.clusters:
        if cluster.ndigits < 4 or (len(cluster.lengths) < 3 and cluster.lengths[0] != 4):
            continue
        if exact:  # a birth word up to ~90 characters before? (before the date regexes)
            near = bisect_left(hints, cluster.start - _BIRTH_GAP - 48)
            if near == len(hints) or hints[near] >= cluster.start:
                continue
        found = list(_numeric_dates(cluster)) if len(cluster.lengths) >= 3 else []
        written = _written_date(text, cluster)
        if written is not None:
            found.append(written)
        for start, end, iso in found:
            if _word_at(text, end) or _word_at(text, start - 1):
                continue
            if _after_birth_word(text, start):
                out.append(_Candidate(start, end, "DATE_OF_BIRTH", iso))


# --- postal codes ---------------------------------------------------------------------------

_US_STATES: Final = frozenset(
    (
        *("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL"),
        *("IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE"),
        *("NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD"),
        *("TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR"),
    )
)
_POSTAL_WORD: Final = re.compile(
    r"(?<!\w)(?:kod\w*|poczt\w*|postal|post ?code|postcode|zip|adres\w*|address\w*|ul\.|al\."
    r"|ulica|ulicy|street|st\.|road|avenue|ave\.|mieszka\w*|lives|live)(?!\w)",
    re.IGNORECASE,
)
_CITY_AFTER: Final = re.compile(r"[ \u00a0]+[A-ZĄĆĘŁŃÓŚŹŻ][a-ząćęłńóśźż]+")
_STATE_BEFORE: Final = re.compile(r"(?:^|[,\s])([A-Z]{2})[ \u00a0]+$")
_ZIP_LABEL: Final = re.compile(r"(?<!\w)(?:zip|postal)(?!\w)", re.IGNORECASE)
_UK_POSTCODE: Final = re.compile(
    r"[A-Z](?<!\w.)[A-Z]?[0-9][A-Z0-9]?[ \u00a0]?[0-9][ABD-HJLNP-UW-Z]{2}(?!\w)"
)
_CAPITALISED_BEFORE: Final = re.compile(r"[A-Z][a-z]+,?[ \u00a0]$")


def _postal_context(text: str, start: int, width: int = 60) -> bool:
    return _POSTAL_WORD.search(text, max(0, start - width), start) is not None


def _postal_codes(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """Polish NN-NNN before a city or near an address word; US ZIP (+4) after a state or
    labelled; UK postcodes after a comma or a town, or labelled."""
    text = t.text
    for cluster in t.clusters:
        lengths = cluster.lengths
        if (2 not in lengths and 5 not in lengths) or t.amount(cluster):
            continue
        groups = cluster.groups
        for i, group in enumerate(groups):
            before, after = cluster.sep_before(i), cluster.sep_after(i)
            if before is not None and before not in (" ", "\u00a0"):
                continue
            if before is None and (_word_at(text, group.start - 1) or text[cluster.start] == "+"):
                continue
            if len(group.digits) == 2 and after == "-" and len(groups[i + 1].digits) == 3:
                end = groups[i + 1].end
                if cluster.sep_after(i + 1) not in (None, " ", "\u00a0") or _word_at(text, end):
                    continue
                if _char_at(text, end) == "-" or t.context(group.start).negative:
                    continue
                if _CITY_AFTER.match(text, end) or _postal_context(text, group.start):
                    value = group.digits + groups[i + 1].digits
                    out.append(_Candidate(group.start, end, "POSTAL_CODE", value))
            elif len(group.digits) == 5:
                end, value = group.end, group.digits
                if after == "-" and len(groups[i + 1].digits) == 4:
                    end, value = groups[i + 1].end, value + groups[i + 1].digits
                elif after is not None and not _separates(after):
                    continue
                if _word_at(text, end):
                    continue
                state = _STATE_BEFORE.search(text, max(0, group.start - 8), group.start)
                if (state is not None and state.group(1) in _US_STATES) or _ZIP_LABEL.search(
                    text, max(0, group.start - 20), group.start
                ):
                    out.append(_Candidate(group.start, end, "POSTAL_CODE", value))
    for match in _UK_POSTCODE.finditer(text):
        start = match.start()
        spaced = not match.group().isalnum()
        near = _postal_context(text, start, 30)
        after_town = text[max(0, start - 2) : start] == ", " or _CAPITALISED_BEFORE.search(
            text, max(0, start - 20), start
        )
        if near or (spaced and after_town):
            value = "".join(c for c in match.group() if c.isalnum())
            out.append(_Candidate(start, match.end(), "POSTAL_CODE", value))


# --- street addresses -----------------------------------------------------------------------

_UPPER_PL: Final = "A-ZĄĆĘŁŃÓŚŹŻ"
# The street's prefix: "ul.", "al.", "pl.", "os." or the word in full.
_STREET_PL: Final = re.compile(
    r"(?<!\w)(?:(?i:ul|al|pl|os)\.|(?i:ulica|ulicy|ulicę|ulicą|aleja|alei|aleje|plac|placu"
    r"|osiedle|osiedlu)(?=[ \u00a0]))"
)
# What a prefix starts with (lower case), for finding candidates with str.find.
_STREET_PL_HINTS: Final = ("ul.", "al.", "pl.", "os.", "ulic", "alej", "alei", "plac", "osiedl")
# After the prefix: the street's name (capitalised words, a number of a date as in
# "3 Maja", abbreviated ranks as in "gen.", "ks.", "św."), the house number and the flat.
_STREET_PL_REST: Final = re.compile(
    rf"[ \u00a0]*(?:(?i:gen|ks|św|marsz|płk|prof|dr|im|bpa|kard|abpa|hr|rtm|mjr|kpt|por|bł)\."
    rf"[ \u00a0]*"
    rf"|[0-9]{{1,2}}[ \u00a0]+(?=[{_UPPER_PL}])"
    rf"|[{_UPPER_PL}][\w'\u2019.-]*[ \u00a0]+){{1,5}}?"
    rf"[0-9]{{1,4}}[A-Za-z]?(?:[ \u00a0]?/[ \u00a0]?[0-9]{{1,4}}[A-Za-z]?)?"
    rf"(?:[ \u00a0]*(?:m\.|lok\.|m|lok)[ \u00a0]*[0-9]{{1,4}})?(?!\w)"
)
_STREET_TYPES: Final = (
    "Street|Avenue|Road|Boulevard|Lane|Drive|Court|Place|Square|Terrace|Way|Close|Crescent"
    "|Highway|Parkway|Row|Mews|Gardens|Grove|Hill|Walk|Circle"
)
_STREET_ABBREVIATIONS: Final = "St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Sq|Hwy|Pkwy|Cir"
# The house number first: "221B Baker Street", "123 Main St.", "350 5th Avenue, Suite 200".
_STREET_EN: Final = re.compile(
    rf"[0-9](?<![\w.\-/][0-9])[0-9]{{0,4}}[A-Za-z]?(?:-[0-9]{{1,5}})?[ \u00a0]+"
    rf"(?:(?:[A-Z][a-z'\u2019.-]*|[0-9]{{1,3}}(?:st|nd|rd|th))[ \u00a0]+){{0,3}}?"
    rf"(?:[A-Z][a-z'\u2019-]*|[0-9]{{1,3}}(?:st|nd|rd|th))[ \u00a0]+"
    rf"(?:(?:{_STREET_TYPES})(?!\w)|(?:{_STREET_ABBREVIATIONS})(?:\.|(?!\w)))"
    rf"(?:[ \u00a0]+(?:NW|NE|SW|SE|N|S|E|W)(?!\w))?"
    rf"(?:,?[ \u00a0]+(?:Apt|Apartment|Suite|Ste|Unit|Flat)\.?[ \u00a0]*#?"
    rf"[0-9]{{1,5}}[A-Za-z]?(?!\w))?"
)
# A flat written before the house number: "Flat 3, 12 Baker St" (matched back from it).
_FLAT_BEFORE: Final = re.compile(
    r"(?<!\w)(?:Flat|Apartment|Apt\.?|Unit|Suite)[ \u00a0]*#?[0-9]{1,5}[A-Za-z]?,?[ \u00a0]+$"
)
_NOT_ADDRESS_CHARS: Final = re.compile(r"[^\w/]+")


def _address_canonical(value: str) -> str:
    compact = value.replace(" /", "/").replace("/ ", "/")
    return _NOT_ADDRESS_CHARS.sub(" ", compact).strip().upper()


def _street_prefixes(t: _Text) -> list[re.Match[str]]:
    """The Polish street prefixes of the text, in order: candidates found with str.find
    on the lower-cased text (fast), each confirmed by the prefix regex."""
    text, lower = t.text, t.lower
    if len(lower) != len(text):  # lower-casing moved offsets (rare letters): scan instead
        return list(_STREET_PL.finditer(text))
    starts: set[int] = set()
    for hint in _STREET_PL_HINTS:
        at = lower.find(hint)
        while at != -1:
            starts.add(at)
            at = lower.find(hint, at + 1)
    found = []
    for start in sorted(starts):
        match = _STREET_PL.match(text, start)
        if match is not None:
            found.append(match)
    return found


def _addresses(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """English-style addresses from their house number ("221B Baker Street"); Polish ones
    from their street prefix ("ul. Długa 5/3")."""
    text = t.text
    for match in _STREET_EN.finditer(text):
        start = match.start()
        flat = _FLAT_BEFORE.search(text, max(0, start - 20), start)
        begin = start if flat is None else flat.start()
        value = text[begin : match.end()]
        out.append(_Candidate(begin, match.end(), "ADDRESS", _address_canonical(value)))
    for prefix in _street_prefixes(t):
        rest = _STREET_PL_REST.match(text, prefix.end())
        if rest is not None:
            value = text[prefix.start() : rest.end()]
            out.append(_Candidate(prefix.start(), rest.end(), "ADDRESS", _address_canonical(value)))


# --- e-mail ---------------------------------------------------------------------------------

_EMAIL_DOMAIN: Final = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])")
_LOCAL_PART_CHARS: Final = frozenset("._%+-'")


def _emails(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    """From each "@": the local part back to where it starts, the domain with its TLD."""
    text = t.text
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and at - start < 64:
            char = text[start - 1]
            if not (char.isalnum() or char in _LOCAL_PART_CHARS):
                break
            start -= 1
        while start < at and not text[start].isalnum():
            start += 1  # a local part starts with a letter or digit
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain is not None and text[at - 1] != ".":
            out.append(_Candidate(start, domain.end(), "EMAIL", text[start : domain.end()].lower()))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


# --- names ----------------------------------------------------------------------------------


def _persons(t: _Text, out: _Found, wanted: frozenset[str]) -> None:
    for start, end, canonical in find_names(t.text):
        out.append(_Candidate(start, end, "PERSON", canonical))


# --- the detectors, their overlaps, the API -------------------------------------------------

_Detector = Callable[[_Text, _Found, frozenset[str]], None]
# Each detector with the types it reports (it may skip those not in its third argument).
_DETECTORS: Final[tuple[tuple[_Detector, frozenset[str]], ...]] = (
    (_emails, frozenset({"EMAIL"})),
    (_ibans, frozenset({"IBAN"})),
    (_cards, frozenset({"CREDIT_CARD"})),
    (_polish_ids, frozenset({"PESEL", "NIP", "REGON"})),
    (_id_documents, frozenset({"ID_CARD", "PASSPORT"})),
    (_ip_addresses, frozenset({"IP_ADDRESS"})),
    (_dates_of_birth, frozenset({"DATE_OF_BIRTH"})),
    (_phones, frozenset({"PHONE"})),
    (_addresses, frozenset({"ADDRESS"})),
    (_postal_codes, frozenset({"POSTAL_CODE"})),
    (_persons, frozenset({"PERSON"})),
)
_ALL: Final = frozenset(ENTITY_TYPES)
_DIGIT_TYPES: Final = _ALL - {"EMAIL", "PERSON", "ADDRESS"}
# When a type is asked for, the types that could claim its characters first are looked
# for too (a PESEL is no PHONE; "ul. Jana Pawła II 5" is an ADDRESS, not a PERSON).
_SHADOWED_BY: Final[dict[str, frozenset[str]]] = {
    **{
        t: frozenset(u for u in _DIGIT_TYPES | {"EMAIL"} if _PRIORITY[u] < _PRIORITY[t])
        for t in _DIGIT_TYPES
    },
    "EMAIL": frozenset(),
    "ADDRESS": frozenset({"EMAIL"}),
    "PERSON": frozenset({"EMAIL", "ADDRESS"}),
}


def _resolve(candidates: list[_Candidate]) -> list[_Candidate]:
    """Non-overlapping candidates by start: the most specific type first, then the longest."""
    candidates.sort(key=lambda c: (_PRIORITY[c.type], c.start - c.end, c.start))
    starts: list[int] = []
    kept: list[_Candidate] = []  # sorted by start, parallel to `starts`
    for candidate in candidates:
        index = bisect_left(starts, candidate.start)
        if index > 0 and kept[index - 1].end > candidate.start:
            continue
        if index < len(kept) and kept[index].start < candidate.end:
            continue
        starts.insert(index, candidate.start)
        kept.insert(index, candidate)
    return kept


# The detectors to run for a set of wanted types (at most 2^14 sets; a few in practice).
_RUN: dict[frozenset[str], frozenset[str]] = {}


def detect(text: str, types: Collection[str] | None = None) -> list[Finding]:
    """Non-overlapping findings sorted by start; `types` limits the detectors (None = all).

    Only the types in `types` are reported. The detectors of more specific types that
    could claim the same characters run as well, so that asking for PHONE alone never
    reports a PESEL's digits as a phone number. An unknown type is a ValueError.
    """
    wanted = _ALL if types is None else frozenset(types)
    run = _RUN.get(wanted)
    if run is None:
        unknown = wanted - _ALL
        if unknown:
            raise ValueError(f"unknown PII types: {', '.join(sorted(unknown))}")
        run = _RUN[wanted] = wanted.union(*(_SHADOWED_BY[t] for t in wanted))
    if not text or not wanted:
        return []
    scanned = _Text(text)
    candidates = _Found()
    for detector, reports in _DETECTORS:
        if reports & run:
            detector(scanned, candidates, run)
    return [
        Finding(c.type, c.start, c.end, text[c.start : c.end], c.canonical)
        for c in _resolve(candidates)
        if c.type in wanted
    ]


# --- GDPR Art. 9 special categories ---------------------------------------------------------


class _Term(NamedTuple):
    category: str
    words: tuple[str, ...]  # lower-cased unless case-sensitive; a stem ends in "*"
    case_sensitive: bool


_STEM_KEY: Final = 4  # stems are indexed by their first four letters


_Trie = dict[str, "_Trie"]  # a character -> the rest; "" marks the end of a word


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, shaped as a trie, so that the regex engine tries
    a few branches at each position instead of every word."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: _Trie) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _load_art9() -> tuple[dict[str, list[_Term]], dict[str, list[_Term]], re.Pattern[str]]:
    """The lexicon: terms by their first word, stems by their first four letters, and a
    regex finding the words that may start a term."""
    exact: dict[str, list[_Term]] = {}
    stems: dict[str, list[_Term]] = {}
    category = ""
    seen: set[_Term] = set()
    path = Path(__file__).with_name("pii_data") / "art9_lexicon.txt"
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            category = line.strip("[]")
            if category not in ART9_CATEGORIES:
                raise ValueError(f"art9_lexicon.txt: unknown category {category}")
            continue
        case_sensitive = line.startswith("=")
        term = line.lstrip("=")
        words = tuple(term.split() if case_sensitive else term.lower().split())
        if any(w.endswith("*") and len(w) - 1 < _STEM_KEY for w in words):
            raise ValueError(f"art9_lexicon.txt: a stem shorter than {_STEM_KEY} letters: {line}")
        entry = _Term(category, words, case_sensitive)
        if entry in seen:
            continue
        seen.add(entry)
        first = words[0].lower()
        if first.endswith("*"):
            stems.setdefault(first[:_STEM_KEY], []).append(entry)
        else:
            exact.setdefault(first, []).append(entry)
    starts = {w for w in exact} | {
        t.words[0].lower().rstrip("*") for ts in stems.values() for t in ts
    }
    finder = re.compile(r"(?<!\w)" + _trie_pattern(starts) + r"[\w'\u2019\-]*\+*")
    return exact, stems, finder


_ART9_EXACT, _ART9_STEMS, _ART9_FINDER = _load_art9()
_ART9_WORD: Final = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*\+*")


def _term_matches(term: _Term, words: list[str], text_gaps: list[str]) -> bool:
    for k, pattern in enumerate(term.words):
        if k >= len(words):
            return False
        if k and not (0 < len(text_gaps[k - 1]) <= 3 and text_gaps[k - 1].isspace()):
            return False
        word = words[k] if term.case_sensitive else words[k].lower()
        if not (word.startswith(pattern[:-1]) if pattern.endswith("*") else word == pattern):
            return False
    return True


def detect_art9(text: str) -> list[Finding]:
    """Special-category mentions (type = category), not overlapping, sorted by start.

    Terms come from `pii_data/art9_lexicon.txt` (English and Polish; Polish inflection
    through stems) and match whole words only, the longest term first. `canonical` is the
    mention lower-cased.
    """
    if not text:
        return []
    lower = text.lower()
    if len(lower) != len(text):  # lower-casing moved offsets (rare letters): no shortcut
        lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    findings: list[Finding] = []
    position = 0
    for hit in _ART9_FINDER.finditer(lower):
        start = hit.start()
        if start < position:
            continue
        first = hit.group()
        terms = _ART9_EXACT.get(first, []) + _ART9_STEMS.get(first[:_STEM_KEY], [])
        if not terms:
            continue
        longest = max(len(term.words) for term in terms)
        words: list[re.Match[str]] = []
        cursor = start
        for _ in range(longest):
            match = _ART9_WORD.search(text, cursor)
            if match is None:
                break
            words.append(match)
            cursor = match.end()
        if not words or words[0].start() != start:
            continue
        texts = [m.group() for m in words]
        gaps = [text[a.end() : b.start()] for a, b in pairwise(words)]
        best: tuple[int, str] | None = None  # (number of words, category)
        for term in terms:
            if (best is None or len(term.words) > best[0]) and _term_matches(term, texts, gaps):
                best = (len(term.words), term.category)
        if best is None:
            continue
        end = words[best[0] - 1].end()
        findings.append(Finding(best[1], start, end, text[start:end], text[start:end].lower()))
        position = end
    return findings
