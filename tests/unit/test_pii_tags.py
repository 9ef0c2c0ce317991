"""extproc.pii_tags: consistent tags, exact restoration, streamed pieces split anywhere."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from extproc.pii_tags import StreamRestorer, TagBook, could_be_tag_start


@dataclass(frozen=True)
class F:
    type: str
    start: int
    end: int
    text: str
    canonical: str


def spans(text: str, *items: tuple[str, str, str]) -> list[F]:
    """(type, value, canonical) found in `text`, in order."""
    found, at = [], 0
    for kind, value, canonical in items:
        start = text.index(value, at)
        found.append(F(kind, start, start + len(value), value, canonical))
        at = start + len(value)
    return found


def test_the_same_value_gets_the_same_tag_however_it_is_written() -> None:
    book = TagBook()
    first = "PESEL 44051401359, mail ANNA@x.pl"
    second = "again: 440514 01359 and anna@x.pl, and Jan"
    a = book.anonymize(
        first,
        spans(first, ("PESEL", "44051401359", "44051401359"), ("EMAIL", "ANNA@x.pl", "anna@x.pl")),
    )
    b = book.anonymize(
        second,
        spans(
            second,
            ("PESEL", "440514 01359", "44051401359"),
            ("EMAIL", "anna@x.pl", "anna@x.pl"),
            ("PERSON", "Jan", "jan"),
        ),
    )
    assert a == "PESEL <PESEL_1>, mail <EMAIL_1>"
    assert b == "again: <PESEL_1> and <EMAIL_1>, and <PERSON_1>"
    assert book.restore(b) == "again: 44051401359 and ANNA@x.pl, and Jan"  # first spelling
    assert book.counts == {"PESEL": 1, "EMAIL": 1, "PERSON": 1}


def test_invented_tags_stay_and_json_strings_get_escaped_originals() -> None:
    book = TagBook()
    text = 'Name: Ann "Nan" Lee'
    book.anonymize(text, spans(text, ("PERSON", 'Ann "Nan" Lee', "ann nan lee")))
    assert book.restore("<PERSON_1> and <PERSON_2>") == 'Ann "Nan" Lee and <PERSON_2>'
    assert book.restore_in_json_string('{"who":"<PERSON_1>"}') == '{"who":"Ann \\"Nan\\" Lee"}'


def test_only_a_possible_tag_start_is_held_back() -> None:
    assert could_be_tag_start("<")
    assert could_be_tag_start("<PER")
    assert could_be_tag_start("<PERSON_")
    assert could_be_tag_start("<CREDIT_CARD_1")
    assert not could_be_tag_start("< b")
    assert not could_be_tag_start("<PERSON_1>")
    assert not could_be_tag_start("<person")


BOOK = TagBook(
    originals={"<PERSON_1>": "Jan Kowalski", "<EMAIL_1>": "jan@example.com"},
)
ANSWER = "Dear <PERSON_1>, we wrote to <EMAIL_1>; <PERSON_2> is unknown. 3 < 4 <PER"


@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=12))
def test_split_anywhere_the_stream_restores_exactly(cuts: list[int]) -> None:
    points = sorted({0, len(ANSWER), *cuts})
    pieces = [ANSWER[a:b] for a, b in itertools.pairwise(points)]
    restorer = StreamRestorer(BOOK)
    out = []
    seen = ""
    for piece in pieces:
        out.append(restorer.feed(piece))
        seen += piece
        held = restorer.held
        # Nothing but the shortest tail that may still become a tag is ever held back.
        assert seen.endswith(held)
        assert not held or (held.startswith("<") and could_be_tag_start(held))
        assert "<" not in held[1:]
    assert "".join(out) + restorer.flush() == BOOK.restore(ANSWER)
