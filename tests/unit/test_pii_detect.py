"""PII detection: each type in several spellings (English and Polish context), one
canonical form per value, hard negatives, overlaps, Art. 9 categories, odd inputs."""

from __future__ import annotations

import random
from collections.abc import Collection
from itertools import pairwise

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.pl import nip as std_nip
from stdnum.pl import pesel as std_pesel
from stdnum.pl import regon as std_regon

from extproc import pii_detect
from extproc.pii_detect import ART9_CATEGORIES, ENTITY_TYPES, Finding, detect, detect_art9
from extproc.pii_names import AMBIGUOUS, FIRST_NAMES, NOT_SURNAMES, find_names
from weir import pii_types


def found(text: str, types: Collection[str] | None = None) -> list[tuple[str, str]]:
    return [(f.type, f.text) for f in detect(text, types)]


def canonical(text: str, type_: str) -> str:
    matches = [f for f in detect(text) if f.type == type_]
    assert len(matches) == 1, (text, detect(text))
    return matches[0].canonical


# --- the API ----------------------------------------------------------------------------


def test_the_types_are_the_ones_the_config_schema_knows() -> None:
    assert ENTITY_TYPES is pii_types.ENTITY_TYPES
    assert ART9_CATEGORIES is pii_types.ART9_CATEGORIES
    assert {f.type for f in detect("mail me at a@example.com")} <= set(ENTITY_TYPES)


def test_findings_are_frozen_sorted_and_carry_their_text() -> None:
    text = "Jan Kowalski, PESEL 44051401359, jan@example.com, tel. +48 600 123 456"
    findings = detect(text)
    assert [f.type for f in findings] == ["PERSON", "PESEL", "EMAIL", "PHONE"]
    assert all(text[f.start : f.end] == f.text for f in findings)
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    with pytest.raises(AttributeError):
        findings[0].type = "EMAIL"  # type: ignore[misc]


def test_types_limit_what_is_reported() -> None:
    text = "Jan Kowalski, PESEL 44051401359, jan@example.com"
    assert found(text, {"EMAIL"}) == [("EMAIL", "jan@example.com")]
    assert found(text, ["PESEL", "PERSON"]) == [
        ("PERSON", "Jan Kowalski"),
        ("PESEL", "44051401359"),
    ]
    assert found(text, ()) == []


def test_an_unknown_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="SSN"):
        detect("anything", {"EMAIL", "SSN"})


# --- each type, several spellings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Contact me at jan.kowalski@example.com.", "jan.kowalski@example.com"),
        (
            "Mój e-mail: Anna_Nowak+faktury@firma.com.pl, dziękuję",
            "Anna_Nowak+faktury@firma.com.pl",
        ),
        ('{"email":"j.doe@mail.example.co.uk"}', "j.doe@mail.example.co.uk"),
        ("From: John <JOHN.DOE@EXAMPLE.ORG>", "JOHN.DOE@EXAMPLE.ORG"),
    ],
)
def test_email(text: str, value: str) -> None:
    assert found(text) == [("EMAIL", value)] or ("EMAIL", value) in found(text)


@pytest.mark.parametrize(
    ("text", "value", "e164"),
    [
        ("Zadzwoń: +48 600 123 456", "+48 600 123 456", "+48600123456"),
        ("tel. 600-123-456", "600-123-456", "+48600123456"),
        ("tel. 600123456", "600123456", "+48600123456"),
        ("Biuro: (22) 628 45 12", "(22) 628 45 12", "+48226284512"),
        ("Numer: 0048 600 123 456", "0048 600 123 456", "+48600123456"),
        ("Call me at (212) 555-0147.", "(212) 555-0147", "+12125550147"),
        ("Phone: +1 415 555 0132", "+1 415 555 0132", "+14155550132"),
        ("London office +44 20 7946 0958", "+44 20 7946 0958", "+442079460958"),
        ("UK: 020 7946 0958", "020 7946 0958", "+442079460958"),
        ("Berlin +49 30 12345678", "+49 30 12345678", "+493012345678"),
        ("Tel: +48 (22) 555 12 34", "+48 (22) 555 12 34", "+48225551234"),
        ("Call me (600 123 456) today", "600 123 456", "+48600123456"),
    ],
)
def test_phone(text: str, value: str, e164: str) -> None:
    assert found(text) == [("PHONE", value)]
    assert canonical(text, "PHONE") == e164


@pytest.mark.parametrize(
    "text",
    [
        "PESEL 44051401359",
        "PESEL: 440514 01359",
        "Numer PESEL klienta to 440514-01359.",
        "Her PESEL number is 44051401359.",
        "Dane: Jan Nowak, 44051401359",
    ],
)
def test_pesel(text: str) -> None:
    assert canonical(text, "PESEL") == "44051401359"


@pytest.mark.parametrize(
    "text",
    [
        "NIP 123-456-32-18",
        "NIP: 123-45-63-218",
        "NIP 1234563218",
        "VAT ID PL1234563218",
        "nr VAT: PL 123-456-32-18",
        "Tax ID 123 456 32 18",
    ],
)
def test_nip(text: str) -> None:
    assert canonical(text, "NIP") == "1234563218"


def test_nip_keeps_its_pl_prefix_in_the_span() -> None:
    assert found("VAT ID PL1234563218") == [("NIP", "PL1234563218")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("REGON: 123456785", "123456785"),
        ("Numer REGON spółki 123-456-785", "123456785"),
        ("REGON 12345678512347", "12345678512347"),
    ],
)
def test_regon(text: str, value: str) -> None:
    assert canonical(text, "REGON") == value


def test_regon_needs_its_label() -> None:
    """Every tenth 9-digit number passes REGON's check (and Polish phone numbers have 9
    digits): without the word REGON near it, a bare number is not reported as one."""
    assert "REGON" not in [f.type for f in detect("Numer klienta: 123456785")]
    assert "REGON" not in [f.type for f in detect("We shipped 123456785 units")]


@pytest.mark.parametrize(
    "text",
    [
        "Dowód osobisty ABA300000",
        "seria i numer dowodu: ABA 300000",
        "ID card ABA300000 was shown",
        "nr dowodu aba300000",
    ],
)
def test_id_card(text: str) -> None:
    assert canonical(text, "ID_CARD") == "ABA300000"


@pytest.mark.parametrize(
    "text", ["Passport no. CC7999486", "Paszport CC 7999486 ważny do 2030", "paszport cc7999486"]
)
def test_passport(text: str) -> None:
    assert canonical(text, "PASSPORT") == "CC7999486"


@pytest.mark.parametrize(
    "text",
    [
        "IBAN: PL61 1090 1014 0000 0712 1981 2874",
        "konto PL61109010140000071219812874",
        "Przelew na rachunek 61 1090 1014 0000 0712 1981 2874.",
        "Account 61109010140000071219812874, please.",
    ],
)
def test_polish_iban_with_and_without_country_code(text: str) -> None:
    assert canonical(text, "IBAN") == "PL61109010140000071219812874"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("Send to GB29 NWBK 6016 1331 9268 19 today", "GB29NWBK60161331926819"),
        ("GB29NWBK60161331926819", "GB29NWBK60161331926819"),
    ],
)
def test_foreign_iban(text: str, value: str) -> None:
    assert canonical(text, "IBAN") == value


def test_iban_stops_where_it_ends() -> None:
    text = "IBAN PL61 1090 1014 0000 0712 1981 2874 1234 is the account"
    assert found(text) == [("IBAN", "PL61 1090 1014 0000 0712 1981 2874")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Card 4111 1111 1111 1111", "4111111111111111"),
        ("card: 4111-1111-1111-1111", "4111111111111111"),
        ("Karta 4111111111111111 zastrzeżona", "4111111111111111"),
        ("Mastercard 5500 0000 0000 0004", "5500000000000004"),
        ("Amex 3782 822463 10005", "378282246310005"),
        ("Discover 6011 1111 1111 1117", "6011111111111117"),
    ],
)
def test_credit_card(text: str, value: str) -> None:
    assert canonical(text, "CREDIT_CARD") == value


@pytest.mark.parametrize(
    ("text", "value", "canonical_form"),
    [
        ("Login from 192.168.10.25 failed", "192.168.10.25", "192.168.10.25"),
        ("Serwer 8.8.8.8:53", "8.8.8.8", "8.8.8.8"),
        ("IPv6 2001:db8::ff00:42:8329 here", "2001:db8::ff00:42:8329", "2001:db8::ff00:42:8329"),
        (
            "full 2001:0DB8:0000:0000:0000:FF00:0042:8329 form",
            "2001:0DB8:0000:0000:0000:FF00:0042:8329",
            "2001:db8::ff00:42:8329",
        ),
        ("link-local fe80::1%eth0 only", "fe80::1%eth0", "fe80::1%eth0"),
        ("loopback ::1 too", "::1", "::1"),
    ],
)
def test_ip_address(text: str, value: str, canonical_form: str) -> None:
    assert found(text) == [("IP_ADDRESS", value)]
    assert canonical(text, "IP_ADDRESS") == canonical_form


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("She was born on 12 March 1985.", "12 March 1985"),
        ("Born March 12th, 1985 in Leeds", "March 12th, 1985"),
        ("Date of birth: 1985-03-12", "1985-03-12"),
        ("DOB 12/03/1985, male", "12/03/1985"),
        ("D.O.B.: 12.03.1985", "12.03.1985"),
        ("Urodzona 12 marca 1985 r. w Krakowie", "12 marca 1985"),
        ("Jan Nowak (ur. 12.03.1985)", "12.03.1985"),
        ("Data urodzenia: 12 III 1985", "12 III 1985"),
        ("urodził się 12.03.1985 w Gdańsku", "12.03.1985"),
    ],
)
def test_date_of_birth(text: str, value: str) -> None:
    assert ("DATE_OF_BIRTH", value) in found(text)
    assert canonical(text, "DATE_OF_BIRTH") == "1985-03-12"


def test_a_us_date_of_birth_reads_month_first_only_when_it_must() -> None:
    assert canonical("DOB: 03/25/1990", "DATE_OF_BIRTH") == "1990-03-25"
    assert canonical("DOB: 04/07/1990", "DATE_OF_BIRTH") == "1990-07-04"  # day first


@pytest.mark.parametrize(
    ("text", "value", "canonical_form"),
    [
        ("ul. Długa 5, 00-950 Warszawa", "00-950", "00950"),
        ("Kod pocztowy 31-042, miejscowość Kraków", "31-042", "31042"),
        ("Springfield, IL 62701", "62701", "62701"),
        ("Boston, MA 02110-1234", "02110-1234", "021101234"),
        ("ZIP code 10001", "10001", "10001"),
        ("221B Baker Street, London NW1 6XE", "NW1 6XE", "NW16XE"),
        ("10 Downing Street, London SW1A 2AA", "SW1A 2AA", "SW1A2AA"),
    ],
)
def test_postal_code(text: str, value: str, canonical_form: str) -> None:
    assert ("POSTAL_CODE", value) in found(text)
    assert canonical(text, "POSTAL_CODE") == canonical_form


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Mieszkam przy ul. Długiej 5/3 w Gdańsku", "ul. Długiej 5/3"),
        ("al. Jerozolimskie 123A, Warszawa", "al. Jerozolimskie 123A"),
        ("pl. Grunwaldzki 2", "pl. Grunwaldzki 2"),
        ("os. Tysiąclecia 12/34", "os. Tysiąclecia 12/34"),
        ("ul. Jana Pawła II 15 m. 4, Kraków", "ul. Jana Pawła II 15 m. 4"),
        ("ul. 3 Maja 7", "ul. 3 Maja 7"),
        ("ul. gen. Władysława Andersa 7", "ul. gen. Władysława Andersa 7"),
        ("ul.Kwiatowa 15/2", "ul.Kwiatowa 15/2"),
        ("I live at 221B Baker Street, London", "221B Baker Street"),
        ("Office: 123 Main St., Springfield", "123 Main St."),
        ("1600 Pennsylvania Avenue NW, Washington", "1600 Pennsylvania Avenue NW"),
        ("350 5th Avenue, Suite 200, New York", "350 5th Avenue, Suite 200"),
        ("Flat 3, 12 Baker St, London", "Flat 3, 12 Baker St"),
    ],
)
def test_address(text: str, value: str) -> None:
    assert ("ADDRESS", value) in found(text)


def test_address_canonical_drops_punctuation_and_case() -> None:
    assert canonical("ul. Długa 5 / 3", "ADDRESS") == canonical("UL. Długa 5/3", "ADDRESS")


@pytest.mark.parametrize(
    ("text", "value", "canonical_form"),
    [
        ("Please call Anna Nowak today.", "Anna Nowak", "ANNA NOWAK"),
        ("Wyślij to Annie Nowak.", "Annie Nowak", "ANNA NOWAK"),
        ("Nie widziałem Anny Nowak.", "Anny Nowak", "ANNA NOWAK"),
        ("Poproś Annę Kowalską o podpis.", "Annę Kowalską", "ANNA KOWALSKA"),
        ("Umowa Jana Kowalskiego leży na biurku.", "Jana Kowalskiego", "JAN KOWALSKI"),
        ("Przekaż to Janowi Kowalskiemu.", "Janowi Kowalskiemu", "JAN KOWALSKI"),
        ("Rozmawiałem z Markiem Woźniakiem.", "Markiem Woźniakiem", "MAREK WOŹNIAK"),
        ("Dr. Jane Doe will see you.", "Jane Doe", "JANE DOE"),
        ("Dear Mr. Smith, thank you.", "Smith", "SMITH"),
        ("Spotkałem się z panem Kowalskim.", "Kowalskim", "KOWALSKI"),
        ("Szanowna Pani Nowak,", "Nowak", "NOWAK"),
        ("John F. Kennedy spoke.", "John F. Kennedy", "JOHN KENNEDY"),
        ("Anna Maria Nowak signed.", "Anna Maria Nowak", "ANNA MARIA NOWAK"),
        ("Maria Skłodowska-Curie", "Maria Skłodowska-Curie", "MARIA SKŁODOWSKA-CURIE"),
        ("Contact Mary O'Connor.", "Mary O'Connor", "MARY O'CONNOR"),
        ("prof. dr hab. Jan Nowak", "Jan Nowak", "JAN NOWAK"),
        ("JAN KOWALSKI, ul. Polna 8", "JAN KOWALSKI", "JAN KOWALSKI"),
        ("Thanks, Emily!", "Emily", "EMILY"),
        ("Dziękuję, Kasiu!", "Kasiu", "KASIA"),
    ],
)
def test_person(text: str, value: str, canonical_form: str) -> None:
    assert ("PERSON", value) in found(text)
    assert canonical(text, "PERSON") == canonical_form


@pytest.mark.parametrize(
    "text",
    [
        "May 2024 was warm.",
        "Will you send it?",
        "Mark the task as done.",
        "Hello World",
        "Dear Customer,",
        "Jan. 5 is the deadline.",
        "Ani jeden test nie przeszedł.",
        "The Roman Empire fell.",
        "W maju pojedziemy nad morze.",
    ],
)
def test_words_that_look_like_names_are_no_person(text: str) -> None:
    assert "PERSON" not in [f.type for f in detect(text)]


def test_the_gazetteer_holds_polish_inflected_forms() -> None:
    for form in ("Anna", "Anny", "Annie", "Annę", "Anną", "Jana", "Janowi", "Janem", "Janie"):
        assert form in FIRST_NAMES, form
    assert FIRST_NAMES["Annie"].lemma == "Anna"
    assert FIRST_NAMES["Pawła"].lemma == "Paweł"
    assert FIRST_NAMES["Markiem"].lemma == "Marek"
    assert FIRST_NAMES["Jerzego"].lemma == "Jerzy"
    assert FIRST_NAMES["Kasię"].lemma == "Kasia"
    assert FIRST_NAMES["Oldze"].lemma == "Olga"
    assert len(FIRST_NAMES) > 1000
    assert "Jan" in AMBIGUOUS and "Mark" in AMBIGUOUS
    assert "Street" in NOT_SURNAMES


def test_names_are_found_in_order_without_overlap() -> None:
    names = find_names("Anna Nowak, Mr. Smith i pan Kowalski oraz Jan Maria Rokita.")
    assert [n[2] for n in names] == ["ANNA NOWAK", "SMITH", "KOWALSKI", "JAN MARIA ROKITA"]
    assert all(a[1] <= b[0] for a, b in pairwise(names))


# --- one value, several spellings, one canonical form ---------------------------------------


@pytest.mark.parametrize(
    ("type_", "spellings"),
    [
        ("PESEL", ["PESEL 44051401359", "PESEL 440514 01359", "PESEL 440514-01359"]),
        ("NIP", ["NIP 123-456-32-18", "NIP 1234563218", "NIP PL1234563218", "NIP 123-45-63-218"]),
        (
            "IBAN",
            [
                "IBAN PL61 1090 1014 0000 0712 1981 2874",
                "IBAN PL61109010140000071219812874",
                "konto 61 1090 1014 0000 0712 1981 2874",
                "konto 61109010140000071219812874",
            ],
        ),
        (
            "CREDIT_CARD",
            ["card 4111 1111 1111 1111", "card 4111-1111-1111-1111", "card 4111111111111111"],
        ),
        (
            "PHONE",
            ["tel. +48 600 123 456", "tel. 600-123-456", "tel. 0048600123456", "tel. 600123456"],
        ),
        ("EMAIL", ["mail Jan.Kowalski@Example.COM", "mail jan.kowalski@example.com"]),
        ("ID_CARD", ["dowód ABA300000", "dowód ABA 300000", "dowód aba300000"]),
        (
            "DATE_OF_BIRTH",
            ["born 12 March 1985", "born 1985-03-12", "ur. 12.03.1985", "ur. 12 marca 1985"],
        ),
        ("IP_ADDRESS", ["ip 2001:db8::1", "ip 2001:0db8:0000:0000:0000:0000:0000:0001"]),
        ("POSTAL_CODE", ["London SW1A 1AA", "postcode SW1A1AA"]),
        ("PERSON", ["Jan Kowalski", "Jana Kowalskiego", "Janowi Kowalskiemu", "Janem Kowalskim"]),
    ],
)
def test_the_same_value_written_differently_has_one_canonical_form(
    type_: str, spellings: list[str]
) -> None:
    assert len({canonical(text, type_) for text in spellings}) == 1


# --- hard negatives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "PESEL 44051401358",  # wrong check digit
        "PESEL 44053201359",  # no 32nd day
        "NIP 123-456-32-19",
        "REGON 123456786",
        "Dowód osobisty ABA300001",
        "Passport CC7999487",
        "IBAN PL61 1090 1014 0000 0712 1981 2875",
        "konto 61 1090 1014 0000 0712 1981 2875",
        "Card 4111 1111 1111 1112",
        "Card 1234 5678 9012 3456",
        "IP 256.1.1.1 and 10.0.0.0.1",
    ],
)
def test_wrong_check_digits_are_nothing(text: str) -> None:
    assert detect(text) == [], detect(text)


@pytest.mark.parametrize(
    "text",
    [
        "Your order #12345678901 has shipped.",
        "Order no. 1234563218 is late.",  # a valid NIP, labelled as an order
        "order #44051401359",  # a valid PESEL, labelled as an order
        "Invoice 4111111111111111 paid",  # a valid card, labelled as an invoice
        "Zamówienie nr 1234563218 wysłane.",
        "Numer przesyłki: 00340434161234567890",
        "Tracking number: 9400111899223344556677",
        "Ticket #600123456 closed",
        "Transaction ID 4111111111111111 failed",
        "timestamp 1710498600 in the payload",
    ],
)
def test_numbers_labelled_as_something_else_are_nothing(text: str) -> None:
    assert detect(text) == [], detect(text)


@pytest.mark.parametrize(
    "text",
    [
        "Upgrade to version 1.2.3.4 on Monday.",
        "Python 3.11.4 on build 10.0.19045.2965",
        "Chrome 120.0.6099.129 (Official Build)",
        "v2.10.4 fixes the leak",
        "The meeting is on 12.03.2024 at 10:00.",
        "Invoice dated 2024-01-15, due in 14 days.",
        "Termin płatności: 15 marca 2024 r.",
        "Born in 1990, she joined on 2015-03-01.",
        "Total: 1 234 567 zł brutto.",
        "Kwota 600 123 456 PLN",
        "Price: $4,111,111.11",
        "Wartość: 44 051 401 359 zł",
        "Logged at 2024-03-15T10:30:00Z",
        "The job ran from 10:30:45 to 11:02:13.",
        "MAC 00:1A:2B:3C:4D:5E",
        "Use std::vector and boost::asio::ip::tcp",
        "UUID 550e8400-e29b-41d4-a716-446655440000",
        "ISBN 978-83-01-12345-6",
        "The ratio was 3/4, the score 21-17, pages 12-345.",
        "Plan 2019/2020 vs 2021/2022",
        "His SSN is 078-05-1120.",
        "Series ABC123456 was recalled.",
        "Price EUR 300000 including VAT",
        "We counted 600123456 requests",  # a valid Polish mobile number, unlabelled, ungrouped
    ],
)
def test_look_alikes_are_nothing(text: str) -> None:
    assert detect(text) == [], detect(text)


# --- overlaps -------------------------------------------------------------------------------


def test_a_pesel_is_not_also_a_phone() -> None:
    text = "PESEL 44051401359"
    assert found(text) == [("PESEL", "44051401359")]
    assert found(text, {"PHONE"}) == []


def test_an_iban_is_not_also_a_card_or_a_nip() -> None:
    text = "IBAN PL61 1090 1014 0000 0712 1981 2874"
    assert found(text) == [("IBAN", "PL61 1090 1014 0000 0712 1981 2874")]
    assert found(text, {"CREDIT_CARD", "NIP", "PHONE", "REGON"}) == []


def test_a_street_named_after_a_person_is_an_address() -> None:
    text = "ul. Jana Pawła II 15, Kraków"
    assert found(text) == [("ADDRESS", "ul. Jana Pawła II 15")]
    assert found(text, {"PERSON"}) == []


def test_an_email_is_not_also_a_name() -> None:
    assert found("Anna.Nowak@example.com") == [("EMAIL", "Anna.Nowak@example.com")]


def test_a_date_of_birth_is_not_also_a_phone() -> None:
    assert found("DOB 12 03 1985", {"PHONE"}) == []


def test_several_findings_in_one_text_do_not_overlap() -> None:
    text = (
        "Jan Kowalski (ur. 12.03.1985), PESEL 44051401359, ul. Długa 5/3, 00-950 Warszawa, "
        "tel. +48 600 123 456, konto PL61 1090 1014 0000 0712 1981 2874, IP 10.1.2.3, "
        "karta 4111 1111 1111 1111, NIP 123-456-32-18, dowód ABA 300000, jan@example.com"
    )
    findings = detect(text)
    assert [f.type for f in findings] == [
        "PERSON",
        "DATE_OF_BIRTH",
        "PESEL",
        "ADDRESS",
        "POSTAL_CODE",
        "PHONE",
        "IBAN",
        "IP_ADDRESS",
        "CREDIT_CARD",
        "NIP",
        "ID_CARD",
        "EMAIL",
    ]
    assert all(a.end <= b.start for a, b in pairwise(findings))


# --- Art. 9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("He was diagnosed with diabetes last year.", "HEALTH"),
        ("Ma cukrzycę i bierze insulinę.", "HEALTH"),
        ("Pacjentka jest w ciąży.", "HEALTH"),
        ("She is a practising Catholic.", "RELIGION"),
        ("Jest katolikiem i chodzi do kościoła.", "RELIGION"),
        ("He is of Roma origin.", "ETHNIC_ORIGIN"),
        ("Ankieta pyta o pochodzenie etniczne.", "ETHNIC_ORIGIN"),
        ("He is a member of the Labour Party.", "POLITICAL_OPINION"),
        ("Ma lewicowe poglądy polityczne.", "POLITICAL_OPINION"),
        ("She is a trade union member.", "TRADE_UNION"),
        ("Należy do związku zawodowego od lat.", "TRADE_UNION"),
        ("He came out as gay.", "SEX_LIFE"),
        ("Jej orientacja seksualna to prywatna sprawa.", "SEX_LIFE"),
        ("The BRCA1 genetic test was positive.", "GENETIC"),
        ("Badania genetyczne wykazały mutację genu.", "GENETIC"),
        ("Unlock with a fingerprint scan or facial recognition.", "BIOMETRIC"),
        ("Pobrano odciski palców i skan tęczówki.", "BIOMETRIC"),
    ],
)
def test_art9_categories(text: str, category: str) -> None:
    assert category in {f.type for f in detect_art9(text)}


def test_art9_findings_are_whole_words_and_carry_their_text() -> None:
    text = "He disabled the feature, ran a genetic algorithm and fixed a race condition."
    assert detect_art9(text) == []
    text = "Chorobę wykryto wcześnie; choroby przewlekłe"
    findings = detect_art9(text)
    assert [(f.type, f.text) for f in findings] == [("HEALTH", "Chorobę"), ("HEALTH", "choroby")]
    assert findings[0].canonical == "chorobę"
    assert all(text[f.start : f.end] == f.text for f in findings)


def test_art9_prefers_the_longest_term() -> None:
    findings = detect_art9("Wykryto chorobę genetyczną.")
    assert [(f.type, f.text) for f in findings] == [("GENETIC", "chorobę genetyczną")]


def test_art9_case_sensitive_terms() -> None:
    assert [f.type for f in detect_art9("Diagnosed with AIDS in 1999")] == ["HEALTH", "HEALTH"]
    assert detect_art9("The tool aids developers") == []


# --- odd inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\t",
        "0",
        "+",
        "(",
        "@",
        "::",
        "+(",
        "@@@",
        "a@b",
        "ul.",
        "9" * 5000,
        "+48 " * 500,
        "1-" * 2000,
        "(1) " * 1000,
        "İstanbul İİİ 44051401359",  # lower() changes the length of "İ"
        "\ud800 lone surrogate 44051401359",
        "emoji 😀 jan@example.com 😀",
        "\x00PESEL\x0044051401359\x00",
        "שלום 44051401359 مرحبا",
    ],
)
def test_odd_inputs_do_not_crash(text: str) -> None:
    for findings in (detect(text), detect_art9(text)):
        for finding in findings:
            assert isinstance(finding, Finding)
            assert text[finding.start : finding.end] == finding.text


def test_offsets_hold_when_lower_casing_changes_the_length() -> None:
    text = "İİİ ul. Długa 5, urodzony 12.03.1985, PESEL 44051401359, Jana Kowalskiego"
    assert found(text) == [
        ("ADDRESS", "ul. Długa 5"),
        ("DATE_OF_BIRTH", "12.03.1985"),
        ("PESEL", "44051401359"),
        ("PERSON", "Jana Kowalskiego"),
    ]
    assert [f.text for f in detect_art9("İİİ cukrzyca")] == ["cukrzyca"]


def test_a_large_text() -> None:
    text = ("Jan Kowalski, PESEL 44051401359, tel. 600 123 456. " + "lorem ipsum " * 50) * 200
    findings = detect(text)
    assert len([f for f in findings if f.type == "PESEL"]) == 200
    assert all(a.end <= b.start for a, b in pairwise(findings))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 -./()+#@:abAB PLESuląę\n,"), max_size=120))
def test_any_text_gives_well_formed_findings(text: str) -> None:
    findings = detect(text)
    assert all(text[f.start : f.end] == f.text and f.type in ENTITY_TYPES for f in findings)
    assert all(a.end <= b.start for a, b in pairwise(findings))
    assert all(f.type in ART9_CATEGORIES for f in detect_art9(text))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_unicode_text_is_safe(text: str) -> None:
    findings = detect(text)
    assert all(text[f.start : f.end] == f.text for f in findings)
    assert all(text[f.start : f.end] == f.text for f in detect_art9(text))


# --- the check digits agree with python-stdnum and phonenumbers -------------------------------


def _digits(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(size))


def test_own_check_digits_agree_with_stdnum() -> None:
    rng = random.Random(11)
    for _ in range(20000):
        value = _digits(rng, 11)
        assert pii_detect._pesel_ok(value) == std_pesel.is_valid(value), value
        value = _digits(rng, 10)
        assert pii_detect._nip_ok(value) == std_nip.is_valid(value), value
        value = _digits(rng, 9)
        assert pii_detect._regon_ok(value) == std_regon.is_valid(value), value
        value = _digits(rng, 14)
        assert pii_detect._regon_ok(value) == std_regon.is_valid(value), value
        value = _digits(rng, rng.randint(12, 19))
        assert pii_detect._luhn_ok(value) == std_luhn.is_valid(value), value
        value = "PL" + _digits(rng, 26)
        assert pii_detect._iban_ok(value) == std_iban.is_valid(value), value


def test_valid_pesels_of_every_century_pass() -> None:
    for value in ("02070803628", "02270803624", "02470803620", "02670803626", "02870803622"):
        assert std_pesel.is_valid(value) and pii_detect._pesel_ok(value), value


def test_phone_validation_agrees_with_phonenumbers_parse() -> None:
    rng = random.Random(12)
    codes = ["48", "1", "44", "49", "33", "39", "420", "380", "7", "86", "91", "353", ""]
    for _ in range(5000):
        digits = rng.choice(codes) + _digits(rng, rng.randint(7, 11))
        expected = None
        try:
            parsed = phonenumbers.parse("+" + digits, None)
            if phonenumbers.is_valid_number(parsed):
                expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            pass
        assert pii_detect._international(digits) == expected, digits


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=30),
    st.integers(0, 240),
    st.integers(1, 40),
)
def test_the_overlap_index_agrees_with_a_pass_over_every_candidate(
    spans: list[tuple[int, int]], start: int, size: int
) -> None:
    found = pii_detect._Found()
    for at, length in spans:
        found.append(pii_detect._Candidate(at, at + length, "EMAIL", ""))
    expected = any(at < start + size and start < at + length for at, length in spans)
    assert found.overlaps(start, start + size) == expected
