"""Build the labelled PII corpus: tests/pii_corpus/corpus.jsonl (committed; rebuild with
`.venv/bin/python tests/pii_corpus/build.py`, deterministic: fixed seed, no clock).

Each line: {"id", "lang" ("en"|"pl"), "kind", "text", "spans": [{"type", "start", "end"}]}.
`kind` says how the sample was made: "positive" (generated, values with valid check
digits), "negative" (generated hard negatives: wrong check digits, order/invoice/tracking
numbers, versions, dates that are no birth dates, amounts, timestamps, look-alike digits)
or "handwritten" (sentences written by hand, mixing entities and traps).

Samples are written with inline marks, `[[TYPE|text]]`, turned into spans here. The
identifiers are generated with check digits computed by this file's own code (then
confirmed with python-stdnum and phonenumbers), not by the detector under test.

Labelling conventions (what a span covers):
  * PERSON: the name without its title ("Mr. [[Smith]]", "pani [[Anna Nowak]]"), in the
    grammatical case it is written in; middle names and initials included.
  * PHONE: from its "+" or "(" to its last digit, without the "tel." label.
  * ADDRESS: the street prefix ("ul.", "al.") or house number through the street name and
    number, with the flat ("/3", "m. 4", "Apt 4B"); not the postal code or the town.
  * POSTAL_CODE: the code alone. DATE_OF_BIRTH: the date alone (no trailing "r.").
  * NIP: with its "PL" when written attached to it. IBAN: the whole number, a Polish
    account number without "PL" included. ID_CARD, PASSPORT: series and number.
  * Everything personal in a sample is labelled, whatever the sample was made for.
  * Look-alike digit strings in neutral text are drawn so that they fail the check digits
    of every identifier: a number that passes them is indistinguishable from the
    identifier itself and would be labelled as one.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import string
from pathlib import Path

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.pl import nip as std_nip
from stdnum.pl import pesel as std_pesel
from stdnum.pl import regon as std_regon

OUT = Path(__file__).with_name("corpus.jsonl")
SEED = 20240605
MARK = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]")

# --- check digits (this file's own code) -----------------------------------------------


def weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False))


def make_pesel(rng: random.Random) -> str:
    year = rng.randint(1935, 2012)
    month = rng.randint(1, 12) + (20 if year >= 2000 else 0)
    base = f"{year % 100:02d}{month:02d}{rng.randint(1, 28):02d}{rng.randint(0, 9999):04d}"
    check = (10 - weighted(base, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)) % 10) % 10
    value = base + str(check)
    assert std_pesel.is_valid(value), value
    return value


def make_nip(rng: random.Random) -> str:
    while True:
        base = str(rng.randint(101, 999)) + "".join(rng.choice(string.digits) for _ in range(6))
        check = weighted(base, (6, 5, 7, 2, 3, 4, 5, 6, 7)) % 11
        if check < 10:
            value = base + str(check)
            assert std_nip.is_valid(value), value
            return value


def make_regon(rng: random.Random, length: int = 9) -> str:
    base = "".join(rng.choice(string.digits) for _ in range(8))
    value = base + str(weighted(base, (8, 9, 2, 3, 4, 5, 6, 7)) % 11 % 10)
    if length == 14:
        more = value + "".join(rng.choice(string.digits) for _ in range(4))
        value = more + str(weighted(more, (2, 4, 8, 5, 0, 9, 7, 3, 6, 1, 2, 4, 8)) % 11 % 10)
    assert std_regon.is_valid(value), value
    return value


def letter_value(char: str) -> int:
    return ord(char) - 55 if char.isalpha() else int(char)


def make_id_card(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
    digits = "".join(rng.choice(string.digits) for _ in range(5))
    partial = weighted_any(letters + "0" + digits, (7, 3, 1, 0, 7, 3, 1, 7, 3))
    value = letters + str(partial % 10) + digits
    assert weighted_any(value, (7, 3, 1, 9, 7, 3, 1, 7, 3)) % 10 == 0
    return value


def make_passport(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(2))
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    partial = weighted_any(letters + "0" + digits, (7, 3, 0, 1, 7, 3, 1, 7, 3))
    value = letters + str(partial % 10) + digits
    assert weighted_any(value, (7, 3, 9, 1, 7, 3, 1, 7, 3)) % 10 == 0
    return value


def weighted_any(value: str, weights: tuple[int, ...]) -> int:
    return sum(letter_value(c) * w for c, w in zip(value, weights, strict=True))


def iban_for(country: str, bban: str) -> str:
    numeric = "".join(str(letter_value(c)) for c in bban + country) + "00"
    value = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    assert std_iban.is_valid(value), value
    return value


def make_iban(rng: random.Random, country: str = "PL") -> str:
    def digits(n: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(n))

    if country == "PL":
        return iban_for("PL", digits(24))
    if country == "DE":
        return iban_for("DE", digits(18))
    if country == "GB":
        bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        return iban_for("GB", bank + digits(14))
    raise ValueError(country)


def luhn_complete(body: str) -> str:
    for check in string.digits:
        if std_luhn.is_valid(body + check):
            return body + check
    raise AssertionError(body)


def make_card(rng: random.Random, scheme: str) -> str:
    def digits(n: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(n))

    if scheme == "visa":
        return luhn_complete("4" + digits(14))
    if scheme == "mastercard":
        return luhn_complete(rng.choice(["51", "52", "53", "54", "55"]) + digits(13))
    if scheme == "amex":
        return luhn_complete(rng.choice(["34", "37"]) + digits(12))
    if scheme == "discover":
        return luhn_complete("6011" + digits(11))
    raise ValueError(scheme)


def spaced(value: str, sizes: tuple[int, ...], sep: str = " ") -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(value[at : at + size])
        at += size
    parts.append(value[at:])
    return sep.join(part for part in parts if part)


def broken(value: str, position: int = -1) -> str:
    """The value with one digit changed (so its check digit no longer fits)."""
    index = position % len(value)
    digit = (int(value[index]) + 1 + index % 3) % 10
    return value[:index] + str(digit) + value[index + 1 :]


# --- phones ------------------------------------------------------------------------------

PL_MOBILE = ("50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88")
PL_AREA = ("12", "22", "58", "61", "71", "42", "81")
US_AREA = ("212", "415", "617", "312", "206", "303", "512", "646")


def valid_phone(number: str, region: str | None) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(number, region))


def make_phone(rng: random.Random, kind: str) -> str:
    while True:
        if kind == "pl_mobile":
            digits = rng.choice(PL_MOBILE) + "".join(rng.choice(string.digits) for _ in range(7))
            style = rng.choice(["+48 ddd ddd ddd", "ddd-ddd-ddd", "ddd ddd ddd", "+48ddddddddd"])
            text = fill(style, digits)
            region = "PL"
        elif kind == "pl_landline":
            digits = (
                rng.choice(PL_AREA)
                + rng.choice("2345678")
                + "".join(rng.choice(string.digits) for _ in range(6))
            )
            style = rng.choice(["(dd) ddd dd dd", "+48 dd ddd dd dd", "dd ddd dd dd"])
            text = fill(style, digits)
            region = "PL"
        elif kind == "us":
            digits = (
                rng.choice(US_AREA)
                + rng.choice("23456789")
                + "".join(rng.choice(string.digits) for _ in range(6))
            )
            style = rng.choice(["(ddd) ddd-dddd", "+1 ddd ddd dddd", "ddd-ddd-dddd"])
            text = fill(style, digits)
            region = "US"
        elif kind == "uk":
            digits = "207946" + "0" + "".join(rng.choice(string.digits) for _ in range(3))
            style = rng.choice(["+44 dd dddd dddd", "0dd dddd dddd"])
            text = fill(style, digits)
            region = "GB"
        else:  # de
            digits = "30" + "".join(rng.choice(string.digits) for _ in range(8))
            text = fill("+49 dd dddddddd", digits)
            region = "DE"
        if valid_phone(text, region):
            return text


def fill(style: str, digits: str) -> str:
    out, it = [], iter(digits)
    for char in style:
        out.append(next(it) if char == "d" else char)
    return "".join(out)


# --- vocabulary --------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.split()


EN_FIRST = words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan "
    "Richard Jessica Thomas Sarah Daniel Karen Matthew Nancy Emily Oliver Charlotte George "
    "Sophie Henry Lucy Jack Emma Harry"
)
EN_RARE_FIRST = words("Thaddeus Ignatius Zebedee Ptolemy Evander Perpetua Cressida Lysander")
EN_LAST = words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Thomas Moore "
    "Martin Jackson Thompson White Harris Clark Lewis Walker Hall Young King Wright Green "
    "Baker Adams Nelson Carter Mitchell O'Connor McDonald"
)
# Polish people in the cases a sentence needs: nominative, genitive, dative, accusative,
# instrumental, locative (written by hand, independently of the detector's rules).
PL_PEOPLE = (
    (
        "Jan Kowalski",
        "Jana Kowalskiego",
        "Janowi Kowalskiemu",
        "Jana Kowalskiego",
        "Janem Kowalskim",
        "Janie Kowalskim",
    ),
    ("Anna Nowak", "Anny Nowak", "Annie Nowak", "Annę Nowak", "Anną Nowak", "Annie Nowak"),
    (
        "Piotr Wiśniewski",
        "Piotra Wiśniewskiego",
        "Piotrowi Wiśniewskiemu",
        "Piotra Wiśniewskiego",
        "Piotrem Wiśniewskim",
        "Piotrze Wiśniewskim",
    ),
    (
        "Katarzyna Wójcik",
        "Katarzyny Wójcik",
        "Katarzynie Wójcik",
        "Katarzynę Wójcik",
        "Katarzyną Wójcik",
        "Katarzynie Wójcik",
    ),
    (
        "Tomasz Kamiński",
        "Tomasza Kamińskiego",
        "Tomaszowi Kamińskiemu",
        "Tomasza Kamińskiego",
        "Tomaszem Kamińskim",
        "Tomaszu Kamińskim",
    ),
    (
        "Magdalena Lewandowska",
        "Magdaleny Lewandowskiej",
        "Magdalenie Lewandowskiej",
        "Magdalenę Lewandowską",
        "Magdaleną Lewandowską",
        "Magdalenie Lewandowskiej",
    ),
    (
        "Paweł Zieliński",
        "Pawła Zielińskiego",
        "Pawłowi Zielińskiemu",
        "Pawła Zielińskiego",
        "Pawłem Zielińskim",
        "Pawle Zielińskim",
    ),
    (
        "Agnieszka Szymańska",
        "Agnieszki Szymańskiej",
        "Agnieszce Szymańskiej",
        "Agnieszkę Szymańską",
        "Agnieszką Szymańską",
        "Agnieszce Szymańskiej",
    ),
    (
        "Marek Woźniak",
        "Marka Woźniaka",
        "Markowi Woźniakowi",
        "Marka Woźniaka",
        "Markiem Woźniakiem",
        "Marku Woźniaku",
    ),
    (
        "Małgorzata Dąbrowska",
        "Małgorzaty Dąbrowskiej",
        "Małgorzacie Dąbrowskiej",
        "Małgorzatę Dąbrowską",
        "Małgorzatą Dąbrowską",
        "Małgorzacie Dąbrowskiej",
    ),
    (
        "Michał Kozłowski",
        "Michała Kozłowskiego",
        "Michałowi Kozłowskiemu",
        "Michała Kozłowskiego",
        "Michałem Kozłowskim",
        "Michale Kozłowskim",
    ),
    (
        "Ewa Jankowska",
        "Ewy Jankowskiej",
        "Ewie Jankowskiej",
        "Ewę Jankowską",
        "Ewą Jankowską",
        "Ewie Jankowskiej",
    ),
    (
        "Krzysztof Mazur",
        "Krzysztofa Mazura",
        "Krzysztofowi Mazurowi",
        "Krzysztofa Mazura",
        "Krzysztofem Mazurem",
        "Krzysztofie Mazurze",
    ),
    (
        "Joanna Krawczyk",
        "Joanny Krawczyk",
        "Joannie Krawczyk",
        "Joannę Krawczyk",
        "Joanną Krawczyk",
        "Joannie Krawczyk",
    ),
    (
        "Andrzej Piotrowski",
        "Andrzeja Piotrowskiego",
        "Andrzejowi Piotrowskiemu",
        "Andrzeja Piotrowskiego",
        "Andrzejem Piotrowskim",
        "Andrzeju Piotrowskim",
    ),
    (
        "Zofia Grabowska",
        "Zofii Grabowskiej",
        "Zofii Grabowskiej",
        "Zofię Grabowską",
        "Zofią Grabowską",
        "Zofii Grabowskiej",
    ),
    (
        "Jerzy Pawlak",
        "Jerzego Pawlaka",
        "Jerzemu Pawlakowi",
        "Jerzego Pawlaka",
        "Jerzym Pawlakiem",
        "Jerzym Pawlaku",
    ),
    (
        "Kasia Michalska",
        "Kasi Michalskiej",
        "Kasi Michalskiej",
        "Kasię Michalską",
        "Kasią Michalską",
        "Kasi Michalskiej",
    ),
    (
        "Bożydar Cieślak",
        "Bożydara Cieślaka",
        "Bożydarowi Cieślakowi",
        "Bożydara Cieślaka",
        "Bożydarem Cieślakiem",
        "Bożydarze Cieślaku",
    ),
    (
        "Eustachy Kołodziej",
        "Eustachego Kołodzieja",
        "Eustachemu Kołodziejowi",
        "Eustachego Kołodzieja",
        "Eustachym Kołodziejem",
        "Eustachym Kołodzieju",
    ),
)
EMAIL_DOMAINS = (
    "example.com",
    "firma.pl",
    "gmail.com",
    "wp.pl",
    "uni.edu",
    "corp.example.org",
    "o2.pl",
)
PL_CITIES = ("Warszawa", "Kraków", "Gdańsk", "Poznań", "Wrocław", "Łódź", "Lublin")
PL_STREETS = (
    "Długa",
    "Marszałkowska",
    "Piękna",
    "Kwiatowa",
    "Lipowa",
    "Mickiewicza",
    "Słowackiego",
    "Jana Pawła II",
    "Armii Krajowej",
    "Grunwaldzka",
    "Ogrodowa",
    "Polna",
    "Leśna",
)
PL_AVENUES = (
    "Jerozolimskie",
    "Niepodległości",
    "Solidarności",
    "Grunwaldzka",
    "Wojska Polskiego",
)
EN_STREETS = (
    "Baker",
    "Main",
    "Elm",
    "Oak",
    "High",
    "Church",
    "Maple",
    "Park",
    "Station",
    "Victoria",
)
EN_STREET_TYPES = ("Street", "St.", "Road", "Avenue", "Ave.", "Lane", "Drive", "Boulevard")
US_PLACES = (
    ("Springfield", "IL"),
    ("New York", "NY"),
    ("Austin", "TX"),
    ("Seattle", "WA"),
    ("Boston", "MA"),
    ("Denver", "CO"),
)
UK_POSTCODES = (
    "SW1A 1AA",
    "EC1A 1BB",
    "W1A 0AX",
    "M1 1AE",
    "B33 8TH",
    "CR2 6XH",
    "NW1 6XE",
    "E14 5AB",
    "LS1 4AP",
)
EN_MONTHS = words(
    "January February March April May June July August September October November December"
)
PL_MONTHS_GEN = words(
    "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada"
    " grudnia"
)


# --- sample construction -----------------------------------------------------------------


def parse(marked: str) -> tuple[str, list[dict[str, object]]]:
    """Text and spans from `[[TYPE|text]]` marks."""
    text, spans, last = [], [], 0
    length = 0
    for match in MARK.finditer(marked):
        before = marked[last : match.start()]
        text.append(before)
        length += len(before)
        value = match.group(2)
        spans.append({"type": match.group(1), "start": length, "end": length + len(value)})
        text.append(value)
        length += len(value)
        last = match.end()
    text.append(marked[last:])
    return "".join(text), spans


def m(type_: str, value: str) -> str:
    return f"[[{type_}|{value}]]"


class Corpus:
    def __init__(self) -> None:
        self.samples: list[dict[str, object]] = []

    def add(self, lang: str, kind: str, marked: str) -> None:
        text, spans = parse(marked)
        assert "[[" not in text and "]]" not in text, marked
        for span in spans:
            value = text[int(str(span["start"])) : int(str(span["end"]))]
            assert value.strip() == value, marked
        self.samples.append(
            {
                "id": f"{lang}-{kind}-{len(self.samples):04d}",
                "lang": lang,
                "kind": kind,
                "text": text,
                "spans": spans,
            }
        )


def en_person(rng: random.Random) -> str:
    first = rng.choice(EN_RARE_FIRST) if rng.random() < 0.15 else rng.choice(EN_FIRST)
    return f"{first} {rng.choice(EN_LAST)}"


def pl_person(rng: random.Random, case: int = 0) -> str:
    return rng.choice(PL_PEOPLE)[case]


def email_for(rng: random.Random, name: str) -> str:
    plain = name.lower().replace("'", "")
    for a, b in zip("ąćęłńóśźż", "acelnoszz", strict=True):
        plain = plain.replace(a, b)
    first, _, last = plain.partition(" ")
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}", last]
    )
    address = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
    return address.upper() if rng.random() < 0.1 else address


def birth_date(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)


def ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 31, 46, 89, 185, 212])
    return ".".join(
        str(x) for x in (first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    )


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        groups[3:6] = ["0", "0", "0"]
    value = ":".join(groups)
    return str(ipaddress.IPv6Address(value)) if rng.random() < 0.7 else value


def positives(c: Corpus, rng: random.Random) -> None:
    P = "positive"
    # EMAIL
    for i in range(24):
        if i % 2:
            name = pl_person(rng)
            e = email_for(rng, name)
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Mój adres e-mail to {m('EMAIL', e)}, proszę o kontakt.",
                        f"Wyślij umowę na {m('EMAIL', e)} do piątku.",
                        f'{{"imie": "{m("PERSON", name)}", "email": "{m("EMAIL", e)}"}}',
                        f"Kontakt: {m('EMAIL', e)}",
                    ]
                ),
            )
        else:
            name = en_person(rng)
            e = email_for(rng, name)
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"You can reach me at {m('EMAIL', e)} any time.",
                        f"Please forward the invoice to <{m('EMAIL', e)}>.",
                        f"From: {m('PERSON', name)} <{m('EMAIL', e)}>",
                        f"Send the report to {m('EMAIL', e)}.",
                    ]
                ),
            )
    # PHONE
    kinds = ["pl_mobile"] * 12 + ["pl_landline"] * 7 + ["us"] * 7 + ["uk"] * 4 + ["de"] * 2
    for kind in kinds:
        p = make_phone(rng, kind)
        if kind.startswith("pl"):
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Zadzwoń do mnie pod numer {m('PHONE', p)} po 16.",
                        f"Mój numer telefonu: {m('PHONE', p)}.",
                        f"tel. {m('PHONE', p)}, e-mail w stopce",
                        f"W razie pytań proszę dzwonić: {m('PHONE', p)}",
                        f"Kontakt telefoniczny {m('PHONE', p)} (biuro).",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"Call me at {m('PHONE', p)} tomorrow.",
                        f"My phone number is {m('PHONE', p)}.",
                        f"Phone: {m('PHONE', p)}",
                        f"You can text {m('PHONE', p)} if the line is busy.",
                    ]
                ),
            )
    for _ in range(4):  # bare digits, labelled
        digits = rng.choice(PL_MOBILE) + "".join(rng.choice(string.digits) for _ in range(7))
        if valid_phone(digits, "PL"):
            c.add("pl", P, f"tel. {m('PHONE', digits)}")
    # PESEL
    for i in range(30):
        value = make_pesel(rng)
        written = [value, spaced(value, (6,)), spaced(value, (6,), "-")][i % 3]
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"PESEL: {m('PESEL', written)}",
                        f"Mój numer PESEL to {m('PESEL', written)}.",
                        f"Pacjent {m('PERSON', pl_person(rng))}, PESEL {m('PESEL', written)}, "
                        "zgłosił się rano.",
                        f"Dane: {m('PERSON', pl_person(rng))}, {m('PESEL', written)}",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"Her PESEL number is {m('PESEL', written)}.",
                        f"PESEL {m('PESEL', written)} belongs to the applicant.",
                        f"Customer id (PESEL): {m('PESEL', written)}",
                    ]
                ),
            )
    # NIP
    for i in range(26):
        value = make_nip(rng)
        written = [
            value,
            spaced(value, (3, 3, 2), "-"),
            spaced(value, (3, 2, 2), "-"),
            "PL" + value,
            spaced(value, (3, 3, 2), " "),
        ][i % 5]
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"NIP: {m('NIP', written)}",
                        f"Faktura na firmę, NIP {m('NIP', written)}.",
                        f"Numer NIP sprzedawcy to {m('NIP', written)}",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"Our VAT number is {m('NIP', written)}.",
                        f"Tax ID: {m('NIP', written)}",
                        f"The supplier (NIP {m('NIP', written)}) is based in Poland.",
                    ]
                ),
            )
    # REGON
    for i in range(20):
        value = make_regon(rng, 14 if i % 4 == 3 else 9)
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [f"REGON: {m('REGON', value)}", f"Numer REGON spółki: {m('REGON', value)}."]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"REGON {m('REGON', value)} is listed in the register.",
                        f"Company REGON: {m('REGON', value)}",
                    ]
                ),
            )
    # ID_CARD
    for i in range(20):
        value = make_id_card(rng)
        written = value if i % 2 else value[:3] + " " + value[3:]
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Seria i numer dowodu osobistego: {m('ID_CARD', written)}",
                        f"Legitymuje się dowodem {m('ID_CARD', written)}.",
                        f"nr dowodu {m('ID_CARD', written)}",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"ID card number: {m('ID_CARD', written)}",
                        f"Identity card {m('ID_CARD', written)} was shown at the desk.",
                    ]
                ),
            )
    # PASSPORT
    for i in range(20):
        value = make_passport(rng)
        written = value if i % 3 else value[:2] + " " + value[2:]
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Numer paszportu: {m('PASSPORT', written)}",
                        f"Paszport {m('PASSPORT', written)} jest ważny do 2030 roku.",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"Passport no. {m('PASSPORT', written)}",
                        f"Her passport number is {m('PASSPORT', written)}.",
                    ]
                ),
            )
    # IBAN
    for i in range(28):
        country = ["PL", "PL", "PL", "DE", "GB"][i % 5]
        value = make_iban(rng, country)
        style = i % 4
        if country == "PL" and style == 2:
            written = spaced(value[2:], (2, 4, 4, 4, 4, 4))  # NRB, no "PL"
        elif country == "PL" and style == 3:
            written = value[2:]
        elif style % 2:
            written = value
        else:
            written = spaced(value, (4, 4, 4, 4, 4, 4, 4, 4))
        if country == "PL" and i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Proszę o przelew na konto {m('IBAN', written)}.",
                        f"Nr rachunku: {m('IBAN', written)}",
                        f"Wpłaty na rachunek {m('IBAN', written)} (mBank).",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"IBAN: {m('IBAN', written)}",
                        f"Please wire the deposit to {m('IBAN', written)} by Friday.",
                        f"Account {m('IBAN', written)}, reference: rent.",
                    ]
                ),
            )
    # CREDIT_CARD
    schemes = ["visa"] * 10 + ["mastercard"] * 8 + ["amex"] * 4 + ["discover"] * 3
    for i, scheme in enumerate(schemes):
        value = make_card(rng, scheme)
        if scheme == "amex":
            written = spaced(value, (4, 6)) if i % 2 else value
        else:
            written = [spaced(value, (4, 4, 4)), spaced(value, (4, 4, 4), "-"), value][i % 3]
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Płatność kartą {m('CREDIT_CARD', written)} została odrzucona.",
                        f"Numer karty: {m('CREDIT_CARD', written)}",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"My card number is {m('CREDIT_CARD', written)}, expiry 04/27.",
                        f"Charge {m('CREDIT_CARD', written)} for the order.",
                        f"Card: {m('CREDIT_CARD', written)}",
                    ]
                ),
            )
    # IP_ADDRESS
    for i in range(20):
        value = ipv4(rng) if i % 3 else ipv6(rng)
        if i % 2:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Logowanie z adresu IP {m('IP_ADDRESS', value)} zostało zablokowane.",
                        f"Serwer stoi pod {m('IP_ADDRESS', value)}.",
                    ]
                ),
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"Failed login from {m('IP_ADDRESS', value)} at night.",
                        f"The client IP was {m('IP_ADDRESS', value)}.",
                        f"ssh admin@{m('IP_ADDRESS', value)} -p 22",
                    ]
                ),
            )
    # DATE_OF_BIRTH
    for i in range(26):
        y, mo, d = birth_date(rng)
        if i % 2:
            written = rng.choice(
                [
                    f"{d:02d}.{mo:02d}.{y}",
                    f"{d} {PL_MONTHS_GEN[mo - 1]} {y}",
                    f"{y}-{mo:02d}-{d:02d}",
                    f"{d}.{mo:02d}.{y}",
                ]
            )
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Urodzona {m('DATE_OF_BIRTH', written)} r. w Krakowie.",
                        f"Data urodzenia: {m('DATE_OF_BIRTH', written)}",
                        f"{m('PERSON', pl_person(rng))} (ur. {m('DATE_OF_BIRTH', written)})",
                        f"Urodził się {m('DATE_OF_BIRTH', written)} w Gdańsku.",
                    ]
                ),
            )
        else:
            written = rng.choice(
                [
                    f"{d} {EN_MONTHS[mo - 1]} {y}",
                    f"{EN_MONTHS[mo - 1]} {d}, {y}",
                    f"{y}-{mo:02d}-{d:02d}",
                    f"{mo:02d}/{d:02d}/{y}" if d > 12 else f"{d:02d}/{mo:02d}/{y}",
                ]
            )
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"She was born on {m('DATE_OF_BIRTH', written)}.",
                        f"Date of birth: {m('DATE_OF_BIRTH', written)}",
                        f"DOB {m('DATE_OF_BIRTH', written)}, male, non-smoker.",
                        f"{m('PERSON', en_person(rng))} (born {m('DATE_OF_BIRTH', written)}) "
                        "joined in 2019.",
                    ]
                ),
            )
    # POSTAL_CODE and ADDRESS
    for i in range(26):
        code = f"{rng.randint(0, 99):02d}-{rng.randint(0, 999):03d}"
        city = rng.choice(PL_CITIES)
        number = str(rng.randint(1, 200)) + rng.choice(["", "", "A", f"/{rng.randint(1, 80)}"])
        style = i % 4
        if style == 0:
            street = f"ul. {rng.choice(PL_STREETS)} {number}"
        elif style == 1:
            street = f"al. {rng.choice(PL_AVENUES)} {number}"
        elif style == 2:
            street = f"ul. {rng.choice(PL_STREETS)} {rng.randint(1, 99)} m. {rng.randint(1, 40)}"
        else:
            street = f"os. {rng.choice(['Tysiąclecia', 'Piastów', 'Kościuszkowskie'])} {number}"
        c.add(
            "pl",
            P,
            rng.choice(
                [
                    f"Adres: {m('ADDRESS', street)}, {m('POSTAL_CODE', code)} {city}",
                    f"Mieszkam przy {m('ADDRESS', street)} w mieście {city}.",
                    f"Proszę wysłać paczkę na {m('ADDRESS', street)}, "
                    f"{m('POSTAL_CODE', code)} {city}.",
                    f"Kod pocztowy {m('POSTAL_CODE', code)}, miejscowość {city}.",
                ]
            ),
        )
    for i in range(22):
        number = str(rng.randint(1, 2500)) + rng.choice(["", "", "B"])
        street = f"{number} {rng.choice(EN_STREETS)} {rng.choice(EN_STREET_TYPES)}"
        if i % 2:
            town, state = rng.choice(US_PLACES)
            zip_code = f"{rng.randint(10000, 99999)}" + (
                f"-{rng.randint(1000, 9999)}" if i % 4 == 1 else ""
            )
            c.add(
                "en",
                P,
                f"Ship it to {m('ADDRESS', street)}, {town}, {state} {m('POSTAL_CODE', zip_code)}.",
            )
        else:
            c.add(
                "en",
                P,
                rng.choice(
                    [
                        f"I live at {m('ADDRESS', street)}, London "
                        f"{m('POSTAL_CODE', rng.choice(UK_POSTCODES))}.",
                        f"Our office moved to {m('ADDRESS', street)} last year.",
                        f"Address: {m('ADDRESS', street)}, Manchester, "
                        f"{m('POSTAL_CODE', rng.choice(UK_POSTCODES))}",
                    ]
                ),
            )
    # PERSON
    for _ in range(26):
        name = en_person(rng)
        last = name.split()[1]
        c.add(
            "en",
            P,
            rng.choice(
                [
                    f"Please schedule a call with {m('PERSON', name)} next week.",
                    f"{m('PERSON', name)} approved the budget yesterday.",
                    f"Dear Mr. {m('PERSON', last)}, thank you for your letter.",
                    f"Dr. {m('PERSON', name)} will see you at noon.",
                    f"Thanks, {m('PERSON', name.split()[0])}! See you soon.",
                    f"The contract was signed by Ms. {m('PERSON', name)}.",
                ]
            ),
        )
    for i in range(30):
        case = i % 6
        person = pl_person(rng, case)
        surname = person.split()[1]
        templates = [
            [
                f"{m('PERSON', person)} przyjdzie jutro o dziewiątej.",
                f"Umowę podpisze {m('PERSON', person)}.",
            ],
            [
                f"To jest samochód {m('PERSON', person)}.",
                f"Nie widziałem dziś {m('PERSON', person)}.",
            ],
            [
                f"Przekaż dokumenty {m('PERSON', person)}.",
                f"Wysłałem wiadomość {m('PERSON', person)}.",
            ],
            [f"Poproś {m('PERSON', person)} o podpis.", f"Znam {m('PERSON', person)} od lat."],
            [
                f"Rozmawiałem z {m('PERSON', person)} o projekcie.",
                f"Spotkanie z {m('PERSON', person)} przełożono.",
            ],
            [
                f"Myślę o {m('PERSON', person)} i o projekcie.",
                f"Mówiliśmy o {m('PERSON', person)} wczoraj.",
            ],
        ][case]
        if i % 5 == 4:
            c.add(
                "pl",
                P,
                rng.choice(
                    [
                        f"Szanowna Pani {m('PERSON', surname)}, dziękujemy za zgłoszenie.",
                        f"Rozmawiałem z panem {m('PERSON', surname)}.",
                    ]
                ),
            )
        else:
            c.add("pl", P, rng.choice(templates))


def negatives(c: Corpus, rng: random.Random) -> None:
    N = "negative"

    def digits(n: int) -> str:
        return str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(n - 1))

    # wrong check digits, labelled as if they were right
    for _ in range(10):
        bad = broken(make_pesel(rng))
        if not std_pesel.is_valid(bad):
            c.add("pl", N, rng.choice([f"PESEL: {bad}", f"Podany PESEL {bad} jest błędny."]))
    for _ in range(10):
        bad = broken(make_nip(rng))
        if not std_nip.is_valid(bad):
            c.add("pl", N, rng.choice([f"NIP {bad}", f"NIP: {spaced(bad, (3, 3, 2), '-')}"]))
    for _ in range(8):
        bad = broken(make_regon(rng))
        if not std_regon.is_valid(bad):
            c.add("pl", N, f"REGON: {bad}")
    for _ in range(8):
        good = make_id_card(rng)
        bad = good[:3] + str((int(good[3]) + 3) % 10) + good[4:]
        c.add("pl", N, rng.choice([f"Dowód osobisty nr {bad}", f"ID card {bad[:3]} {bad[3:]}"]))
    for _ in range(8):
        good = make_passport(rng)
        bad = good[:2] + str((int(good[2]) + 4) % 10) + good[3:]
        c.add("en", N, f"Passport number {bad}")
    for _ in range(8):
        bad = broken(make_iban(rng, "PL"))
        if not std_iban.is_valid(bad):
            c.add(
                "en", N, rng.choice([f"IBAN: {bad}", f"IBAN {spaced(bad, (4, 4, 4, 4, 4, 4, 4))}"])
            )
    for _ in range(8):
        bad = broken(make_card(rng, rng.choice(["visa", "mastercard"])))
        if not std_luhn.is_valid(bad):
            c.add("en", N, rng.choice([f"Card number {spaced(bad, (4, 4, 4))}", f"Card: {bad}"]))
    # numbers that label something else
    for _ in range(6):
        c.add(
            "en",
            N,
            rng.choice(
                [
                    f"Your order #{digits(11)} has shipped.",
                    f"Order no. {digits(10)} is delayed.",
                    f"Invoice {digits(9)} is overdue.",
                ]
            ),
        )
    for _ in range(6):
        c.add(
            "pl",
            N,
            rng.choice(
                [
                    f"Zamówienie nr {digits(10)} zostało wysłane.",
                    f"Numer przesyłki: {digits(20)}",
                    f"Faktura {digits(11)} czeka na zapłatę.",
                ]
            ),
        )
    for _ in range(5):
        c.add(
            "en",
            N,
            rng.choice(
                [
                    f"Tracking number: {digits(22)}",
                    f"Ticket #{digits(9)} was closed.",
                    f"Transaction ID {digits(16)} failed.",
                    f"Reference: {digits(12)}",
                ]
            ),
        )
    # versions, builds
    for text in (
        "Upgrade to version 1.2.3.4 before Monday.",
        "Running Python 3.11.4 on build 10.0.19045.2965.",
        "Zainstaluj wersję 2.10.4.1 z repozytorium.",
        "v4.19.2 fixes the memory leak.",
        "Kernel 6.1.0-18-amd64, glibc 2.36.",
        "Chrome 120.0.6099.129 (Official Build).",
        "Wersja 12.4.0.1822 zawiera poprawki.",
        "Bumped the dependency from 3.2.1 to 3.10.12.",
    ):
        c.add("en" if "Zainstaluj" not in text and "Wersja" not in text else "pl", N, text)
    # dates that are no birth dates
    for _ in range(10):
        y, mo, d = rng.randint(2019, 2025), rng.randint(1, 12), rng.randint(1, 28)
        c.add(
            "en",
            N,
            rng.choice(
                [
                    f"The meeting is on {d:02d}.{mo:02d}.{y} at 10:00.",
                    f"Invoice dated {y}-{mo:02d}-{d:02d}, due in 14 days.",
                    f"Deadline: {EN_MONTHS[mo - 1]} {d}, {y}.",
                    f"Released on {d} {EN_MONTHS[mo - 1]} {y}.",
                ]
            ),
        )
        c.add(
            "pl",
            N,
            rng.choice(
                [
                    f"Termin płatności: {d} {PL_MONTHS_GEN[mo - 1]} {y} r.",
                    f"Spotkanie odbędzie się {d:02d}.{mo:02d}.{y}.",
                    f"Umowa zawarta dnia {y}-{mo:02d}-{d:02d}.",
                ]
            ),
        )
    c.add("en", N, "Born in 1990, she joined the company on 2015-03-01.")
    c.add("pl", N, "Urodziny firmy obchodzimy 12.05.2021, zapraszamy.")
    # amounts
    for text in (
        "Total: 1 234 567 zł brutto.",
        "Kwota 600 123 456 PLN została zaksięgowana.",
        "The budget is $4,111,111.11 for 2025.",
        "Price: EUR 300000 including VAT.",
        "Przychód wyniósł 12 345 678 zł, a koszty 9 876 543 zł.",
        "We raised 15 000 000 USD in the last round.",
        "Wartość: 44 051 401 359 zł.",
        "Revenue grew 12% to 1 234 567 890 EUR.",
    ):
        c.add("pl" if "zł" in text or "Kwota" in text else "en", N, text)
    # timestamps and times
    for text in (
        "Logged at 2024-03-15T10:30:00Z by the scheduler.",
        "The job ran from 10:30:45 to 11:02:13.",
        "timestamp 1710498600 in the event payload",
        '{"created_at": "2024-03-15 10:30:00", "ts": 1710498600123}',
        "Backup z 2024-01-07 03:00:01 zakończony.",
        "epoch 1699999999 marks the cutover",
        "Czas: 12:30:00, 13:45:30.",
        "MAC 00:1A:2B:3C:4D:5E on eth0.",
    ):
        c.add("pl" if "zakończony" in text or "Czas" in text else "en", N, text)

    # look-alike digit strings (wrong check digits for every identifier), codes, hashes
    def lookalike(n: int) -> str:
        while True:
            value = digits(n)
            if not any(
                (
                    len(value) == 11 and std_pesel.is_valid(value),
                    len(value) == 10 and std_nip.is_valid(value),
                    len(value) in (9, 14) and std_regon.is_valid(value),
                    std_luhn.is_valid(value),
                )
            ):
                return value

    for n in (9, 10, 11, 11, 10, 9, 12, 16):
        value = lookalike(n)
        c.add(
            "en",
            N,
            rng.choice(
                [
                    f"The dataset has {value} rows after cleaning.",
                    f"Checksum mismatch: expected {value}.",
                    f"Population counter reached {value} today.",
                ]
            ),
        )
    for text in (
        "ISBN 978-83-01-12345-6 is out of print.",
        "UUID 550e8400-e29b-41d4-a716-446655440000 was reused.",
        "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "Use std::vector<int> and boost::asio::ip::tcp here.",
        "Room 101, floor 3, building B.",
        "The ratio was 3/4 and the score 21-17.",
        "Strony 12-345 omawiają ten problem.",
        "Model RTX 4090 beat the A100 by 12%.",
        "Plan: 2019/2020 vs 2021/2022 results.",
        "Series ABC123456 of the product was recalled.",
    ):
        c.add("pl" if "Strony" in text else "en", N, text)
    # words that look like names
    for text in (
        "May 2024 was warmer than April.",
        "Will you send the file today?",
        "Hello World is the first program.",
        "Dear Customer, your parcel is on its way.",
        "Mark the task as done, please.",
        "W maju pojedziemy nad morze.",
        "Ani jeden test nie przeszedł.",
        "Jan. 5 is the deadline for the report.",
    ):
        c.add("pl" if text.startswith(("W maju", "Ani")) else "en", N, text)


def handwritten(c: Corpus) -> None:
    H = "handwritten"
    en = [
        "Hi, I'm [[PERSON|Sarah Connor]], my email is [[EMAIL|sarah.connor@example.com]] and my"
        " phone is [[PHONE|+1 415 555 0132]].",
        "Patient [[PERSON|John Doe]], DOB [[DATE_OF_BIRTH|1979-11-04]], was admitted on"
        " 2024-02-01.",
        "Ship to [[ADDRESS|221B Baker Street]], London [[POSTAL_CODE|NW1 6XE]]; contact"
        " [[PERSON|Martha Hudson]].",
        "The server at [[IP_ADDRESS|192.168.10.25]] rejected order #12345678901.",
        "Refund card [[CREDIT_CARD|4111 1111 1111 1111]] and wire the rest to [[IBAN|PL61 1090"
        " 1014 0000 0712 1981 2874]].",
        "Mr. [[PERSON|Thompson]] asked whether version 2.4.1 fixes bug 100234.",
        "Contact [[PERSON|Emily Clarke]] at [[PHONE|(212) 555-0147]] or"
        " [[EMAIL|e.clarke@corp.example.org]].",
        "My colleague [[PERSON|Thaddeus]] will join the call.",
        "Please ask [[PERSON|Oliver]] to review the PR before Friday.",
        "Meeting with Dr. [[PERSON|Jane Goodall]] moved to 3 March 2025.",
        "She was born on [[DATE_OF_BIRTH|12 March 1985]] in Leeds.",
        "Login attempts from [[IP_ADDRESS|2001:db8::ff00:42:8329]] and [[IP_ADDRESS|10.0.0.17]].",
        "Invoice 2024/03/117 for [[PERSON|Robert Miller]], amount $1,250.00.",
        "Send the parcel to [[ADDRESS|1600 Pennsylvania Avenue NW]], Washington, DC"
        " [[POSTAL_CODE|20500]].",
        "Our German account is [[IBAN|DE89 3704 0044 0532 0130 00]].",
        "Call the front desk on [[PHONE|+44 20 7946 0958]] if [[PERSON|Lucy]] is out.",
        "The Roman Empire fell in 476, long before version 3.0 shipped.",
        "Victoria Station is closed until 10:30.",
        "Use [[CREDIT_CARD|5500-0000-0000-0004]] for the test payment.",
        "The VAT ID [[NIP|PL5261040828]] appears on the invoice.",
        "Her passport [[PASSPORT|CC7999486]] expires next year.",
        "The applicant, [[PERSON|William Turner]], gave [[EMAIL|wturner@uni.edu]] as contact.",
        "[[PERSON|Kowalski]] said the build 4.2.0 was fine.",
        "Order #4111111111111111 is not a card number, it is an order.",
        "Date of birth: [[DATE_OF_BIRTH|04/07/1990]]; nationality: Polish.",
        "I moved from [[ADDRESS|42 Elm Road]] to [[ADDRESS|7 Park Lane]] in 2020.",
        "Ping [[IP_ADDRESS|8.8.8.8]] and [[IP_ADDRESS|1.1.1.1]] to test DNS.",
        "Attendees: [[PERSON|James Smith]], [[PERSON|Mary Johnson]] and [[PERSON|Charlotte King]].",
        "Hello [[PERSON|David]], the report for Q3 is attached.",
        "Sincerely, [[PERSON|Michael O'Connor]]",
    ]
    pl = [
        "Nazywam się [[PERSON|Jan Kowalski]], PESEL [[PESEL|44051401359]], e-mail"
        " [[EMAIL|jan.kowalski@example.com]].",
        "Proszę przelać środki na konto [[IBAN|61 1090 1014 0000 0712 1981 2874]] do końca"
        " miesiąca.",
        "Pan [[PERSON|Kowalski]] mieszka przy [[ADDRESS|ul. Długiej 5/3]], [[POSTAL_CODE|00-950]]"
        " Warszawa.",
        "Firma XYZ sp. z o.o., NIP [[NIP|123-456-32-18]], REGON [[REGON|123456785]].",
        "Dowód osobisty [[ID_CARD|ABA 300000]] wydany przez prezydenta miasta.",
        "Pani [[PERSON|Anna Nowak]] (ur. [[DATE_OF_BIRTH|3 maja 1990]] r.) prosi o kontakt pod"
        " [[PHONE|600 123 456]].",
        "Zamówienie nr 1234567890 zostało zrealizowane 15.03.2024.",
        "Wyślij to [[PERSON|Annie Nowak]] i [[PERSON|Janowi Kowalskiemu]].",
        "Spotkałem się z [[PERSON|Markiem Woźniakiem]] w sprawie umowy.",
        "Adres korespondencyjny: [[ADDRESS|al. Jerozolimskie 123A]], [[POSTAL_CODE|02-017]]"
        " Warszawa.",
        "Nowy adres: [[ADDRESS|ul. Jana Pawła II 15 m. 4]], [[POSTAL_CODE|31-042]] Kraków.",
        "Tel. kom. [[PHONE|+48 501 234 567]], tel. stacjonarny [[PHONE|(22) 628 45 12]].",
        "Kwota 1 234 567 zł wpłynęła 2024-01-15.",
        "Urodzony [[DATE_OF_BIRTH|12.03.1985]] w Poznaniu, zamieszkały w Gdyni.",
        "Dziękuję, [[PERSON|Kasiu]]! Do zobaczenia jutro.",
        "W załączniku skan paszportu [[PASSPORT|CC 7999486]].",
        "Kontakt do działu kadr: [[EMAIL|kadry@firma.pl]], wew. 245.",
        "Rozmawiałem z panią [[PERSON|Zielińską]] o fakturze FV/2024/03/17.",
        "Dane do faktury: [[PERSON|Tomasz Mazur]], [[ADDRESS|ul. Polna 8]], NIP [[NIP|PL"
        " 526-104-08-28]].",
        "Karta [[CREDIT_CARD|4111-1111-1111-1111]] jest zastrzeżona.",
        "Spotkanie z [[PERSON|Zbyszkiem Nowickim]] o 12:00 w sali 204.",
        "Wersja 2.4.1 działa na serwerze [[IP_ADDRESS|10.20.30.40]].",
        "Na zdjęciu [[PERSON|Agnieszka]] i [[PERSON|Piotr]] z biura w Gdańsku.",
        "Proszę o kontakt z prof. [[PERSON|Janiną Kwiatkowską]].",
        "Osiedle: [[ADDRESS|os. Tysiąclecia 12/34]], [[POSTAL_CODE|40-871]] Katowice.",
        "PESEL [[PESEL|440514 01359]] oraz NIP [[NIP|1234563218]] podano w formularzu.",
        "3 Maja to święto narodowe, urzędy są zamknięte.",
        "Szanowny Panie [[PERSON|Michale]], przesyłam umowę do podpisu.",
        "Przelew z rachunku [[IBAN|PL61109010140000071219812874]] dotarł wczoraj.",
        "[[PERSON|Jan Paweł II]] odwiedził Kraków w 1979 roku.",
    ]
    # Written after the detector, without running it on them first: formats and phrasings
    # it was not shaped on, to keep its figures honest (its misses here are real ones).
    en += [
        "Reach me on [[PHONE|+1-202-555-0173]] or at home.",
        "Write to [[EMAIL|j.smith+newsletter@mail.example.co.uk]] please.",
        "[[ADDRESS|Flat 3, 12 Baker St]], London [[POSTAL_CODE|W1U 3BW]]",
        "DOB: [[DATE_OF_BIRTH|1985/03/12]]",
        "b. [[DATE_OF_BIRTH|3 Feb 1971]], d. 2010",
        "Customer: [[PERSON|SMITH, John]] (ID 882301)",
        "I spoke with [[PERSON|john smith]] yesterday.",
        "Server logs show [[IP_ADDRESS|172.16.254.1]]:8080 and [[[IP_ADDRESS|2001:db8::1]]]:443.",
        "Card ending 4242 was charged $19.99.",
        "Test card [[CREDIT_CARD|4242 4242 4242 4242]] exp 12/34 cvc 123",
        "Send $250 to account [[IBAN|GB29 NWBK 6016 1331 9268 19]].",
        "Patient born 1975 (age 49) complains of chest pain.",
        "Mr and Mrs [[PERSON|Thompson]] arrived late.",
        "Prof. [[PERSON|Alan Turing]]'s notes were digitised.",
        "The address is [[ADDRESS|350 Fifth Avenue]], New York, NY [[POSTAL_CODE|10118]].",
        "Our HQ: [[ADDRESS|One Microsoft Way]], Redmond, WA [[POSTAL_CODE|98052]]",
        "[[PERSON|Jennifer]]'s phone: [[PHONE|(415) 555-2671]].",
        "Meet Dr [[PERSON|Patel]] at 10.",
        "Emails: [[EMAIL|a.b@x.io]], [[EMAIL|c_d@y.co]]",
        "His SSN is 078-05-1120.",
        "Version 192.168.1.1 of the firmware is out.",
        "Tel: [[PHONE|+48 (22) 555 12 34]]",
        "Contact: Ms. [[PERSON|Anne-Marie Dupont]], [[EMAIL|anne-marie.dupont@example.fr]]",
        "[[PERSON|Winston Churchill]] was born on [[DATE_OF_BIRTH|30 November 1874]].",
        "The invoice for Acme Ltd (VAT GB123456789) is attached.",
        "Please call me back, my cell is [[PHONE|212 555 0199]]",
        "[[PERSON|George]] and [[PERSON|Emma Wilson]] signed as witnesses.",
        "Account holder: [[PERSON|Daniel Harris]], sort code 20-00-00.",
        "We met at the conference in May 2023 with [[PERSON|Sophie Turner]] and her team.",
        "Please remove [[PERSON|Karen]] from the mailing list.",
    ]
    pl += [
        "Mój numer to [[PHONE|600123456]], proszę dzwonić po 17.",
        "Nr tel.: [[PHONE|+48-501-234-567]]",
        "[[PERSON|KOWALSKI JAN]], ur. [[DATE_OF_BIRTH|01.02.1980]] w Łodzi",
        "Zamieszkała: [[ADDRESS|ul.Kwiatowa 15/2]], [[POSTAL_CODE|80-180]] Gdańsk",
        "[[ADDRESS|Al. Jana Pawła II 12/5]], [[POSTAL_CODE|00-828]] Warszawa",
        "[[ADDRESS|pl. Wolności 1]], [[POSTAL_CODE|61-738]] Poznań",
        "[[PERSON|Jan]] i [[PERSON|Anna Kowalscy]] mieszkają obok.",
        "[[PERSON|Nowak Anna]], kl. 3b",
        "Przelew: czynsz, odbiorca [[PERSON|Anna Wiśniewska]], rachunek [[IBAN|57 1140 2004 0000"
        " 3002 0123 4567]]",
        "Wiadomość od: [[PERSON|Grzegorz Brzęczyszczykiewicz]]"
        " <[[EMAIL|g.brzeczyszczykiewicz@poczta.onet.pl]]>",
        "Dzwoniła pani [[PERSON|Zosia]] z księgowości.",
        "Spotkanie z dyrektorem [[PERSON|Nowakiem]] o 10:00.",
        "urodzony dnia [[DATE_OF_BIRTH|5 maja 1978]] roku w Radomiu",
        "Data ur.: [[DATE_OF_BIRTH|1990-07-15]]",
        "Seria i nr dowodu: [[ID_CARD|XYZ 712345]]",
        "nr paszportu [[PASSPORT|EA1234567]]",
        "Karta Visa: [[CREDIT_CARD|4532 0151 1283 0366]]",
        "IP klienta: [[IP_ADDRESS|83.12.45.201]], przeglądarka Chrome 120.0.6099.129",
        "Kontakt: [[EMAIL|biuro@firma.com.pl]], fax [[PHONE|22 123 45 67]]",
        "Zgłoszenie nr 2024/05/001234 od [[PERSON|Marii Zielińskiej]]",
        "Lek. med. [[PERSON|Tomasz Lis]] przyjmuje we wtorki.",
        "Zapłacono 1 250,00 zł kartą [[CREDIT_CARD|5105 1051 0510 5100]].",
        "Na [[ADDRESS|Marszałkowskiej 10]] jest sklep.",
        "NIP:[[NIP|6970830165]];REGON:[[REGON|613186094]]",
        "Pacjentka lat 34, PESEL [[PESEL|76031307913]], skierowanie z POZ.",
        "tel. [[PHONE|604 55 66 77]]",
        "Wpłać na [[IBAN|61109010140000071219812874]] tytułem: faktura 12/2024",
        "Mieszka na [[ADDRESS|os. Piastów 22 m 15]].",
        "Numer PESEL dziecka: [[PESEL|44090459913]].",
        "Pozdrawiam serdecznie, [[PERSON|Ola]]",
    ]
    for text in en:
        c.add("en", H, text)
    for text in pl:
        c.add("pl", H, text)


def build() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    corpus = Corpus()
    positives(corpus, rng)
    negatives(corpus, rng)
    handwritten(corpus)
    return corpus.samples


def render(samples: list[dict[str, object]]) -> str:
    return "".join(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in samples)


def main() -> None:
    samples = build()
    OUT.write_text(render(samples), encoding="utf-8")
    print(f"{len(samples)} samples -> {OUT}")


if __name__ == "__main__":
    main()
