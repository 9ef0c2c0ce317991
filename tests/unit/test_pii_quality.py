"""The PII detectors' precision and recall on the labelled corpus (tests/pii_corpus).

Checksum-validated types: recall >= 0.99 and precision >= 0.98 (exact spans). The other
types are held to a sanity floor, recall >= 0.80 and precision >= 0.90: their measured
figures (bench/pii_quality.py) are well above it, and a drop below means a regression
rather than noise. The corpus itself must be what tests/pii_corpus/build.py makes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKSUM_TYPES = ("PESEL", "NIP", "REGON", "ID_CARD", "PASSPORT", "IBAN", "CREDIT_CARD")
OTHER_TYPES = ("EMAIL", "PHONE", "IP_ADDRESS", "DATE_OF_BIRTH", "POSTAL_CODE", "ADDRESS", "PERSON")


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    return _module("pii_quality", REPO / "bench" / "pii_quality.py")


@pytest.fixture(scope="module")
def report(quality: ModuleType) -> object:
    return quality.evaluate(quality.load())


def test_the_corpus_is_what_its_builder_makes() -> None:
    build = _module("pii_corpus_build", REPO / "tests" / "pii_corpus" / "build.py")
    committed = (REPO / "tests" / "pii_corpus" / "corpus.jsonl").read_text(encoding="utf-8")
    assert build.render(build.build()) == committed, "run tests/pii_corpus/build.py"


def test_the_corpus_is_large_and_varied(quality: ModuleType) -> None:
    samples = quality.load()
    assert len(samples) >= 300
    kinds = Counter((s.lang, s.kind) for s in samples)
    for lang in ("en", "pl"):
        for kind in ("positive", "negative", "handwritten"):
            assert kinds[(lang, kind)] >= 25, (lang, kind, kinds)
    labelled = Counter(span.type for s in samples for span in s.spans)
    assert all(labelled[t] >= 20 for t in CHECKSUM_TYPES + OTHER_TYPES), labelled
    for sample in samples:
        for span in sample.spans:
            assert 0 <= span.start < span.end <= len(sample.text)


@pytest.mark.parametrize("type_", CHECKSUM_TYPES)
def test_checksum_validated_types(report: object, type_: str) -> None:
    stats = report.by_type[type_]  # type: ignore[attr-defined]
    assert stats.recall >= 0.99, (type_, stats)
    assert stats.precision >= 0.98, (type_, stats)


@pytest.mark.parametrize("type_", OTHER_TYPES)
def test_other_types_stay_above_a_sanity_floor(report: object, type_: str) -> None:
    stats = report.by_type[type_]  # type: ignore[attr-defined]
    assert stats.recall >= 0.80, (type_, stats)
    assert stats.precision >= 0.90, (type_, stats)


def test_the_report_renders(quality: ModuleType, report: object) -> None:
    table = quality.render(report)
    assert "checksummed" in table and "PERSON" in table
