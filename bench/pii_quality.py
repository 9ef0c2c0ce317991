"""Precision and recall of the PII detectors on the labelled corpus, per entity type.

A finding counts as found (exact) when its type, start and end equal a labelled span's;
the partial figures count a type-equal overlap instead, which shows how much of a miss is
a boundary disagreement rather than a missed value. Run:

    .venv/bin/python bench/pii_quality.py [--corpus tests/pii_corpus/corpus.jsonl] [--errors]

`tests/unit/test_pii_quality.py` holds the checksum-validated types to recall >= 0.99 and
precision >= 0.98 on the corpus, and the others to a sanity floor.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is not a package
    sys.path.insert(0, str(REPO_ROOT))

from extproc.pii_detect import Finding, detect  # noqa: E402
from weir.pii_types import ENTITY_TYPES  # noqa: E402

CORPUS = REPO_ROOT / "tests" / "pii_corpus" / "corpus.jsonl"
CHECKSUM_TYPES = ("PESEL", "NIP", "REGON", "ID_CARD", "PASSPORT", "IBAN", "CREDIT_CARD")


@dataclass(frozen=True, slots=True)
class Span:
    type: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    id: str
    lang: str
    kind: str
    text: str
    spans: tuple[Span, ...]


@dataclass(slots=True)
class Stats:
    gold: int = 0  # labelled spans
    predicted: int = 0  # findings
    exact: int = 0  # findings equal to a labelled span
    gold_overlapped: int = 0  # labelled spans overlapped by a finding of their type
    predicted_overlapping: int = 0  # findings overlapping a labelled span of their type

    @property
    def precision(self) -> float:
        return self.exact / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.exact / self.gold if self.gold else 1.0

    @property
    def partial_precision(self) -> float:
        return self.predicted_overlapping / self.predicted if self.predicted else 1.0

    @property
    def partial_recall(self) -> float:
        return self.gold_overlapped / self.gold if self.gold else 1.0


@dataclass(slots=True)
class Report:
    by_type: dict[str, Stats] = field(default_factory=lambda: {t: Stats() for t in ENTITY_TYPES})
    total: Stats = field(default_factory=Stats)
    errors: list[str] = field(default_factory=list)
    samples: int = 0


def load(path: Path = CORPUS) -> list[Sample]:
    samples: list[Sample] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        spans = tuple(Span(s["type"], s["start"], s["end"]) for s in raw["spans"])
        samples.append(Sample(raw["id"], raw["lang"], raw["kind"], raw["text"], spans))
    return samples


def _overlaps(a: Span | Finding, b: Span | Finding) -> bool:
    return a.type == b.type and a.start < b.end and b.start < a.end


def evaluate(samples: Iterable[Sample]) -> Report:
    report = Report()
    for sample in samples:
        report.samples += 1
        found = detect(sample.text)
        gold = set(sample.spans)
        predicted = {Span(f.type, f.start, f.end) for f in found}
        for span in gold:
            for stats in (report.by_type[span.type], report.total):
                stats.gold += 1
                stats.exact += span in predicted
                stats.gold_overlapped += any(_overlaps(span, p) for p in predicted)
        for span in predicted:
            for stats in (report.by_type[span.type], report.total):
                stats.predicted += 1
                stats.predicted_overlapping += any(_overlaps(span, g) for g in gold)
        for span in sorted(gold - predicted, key=lambda s: s.start):
            report.errors.append(f"MISS {span.type:13} {sample.id}: {_excerpt(sample.text, span)}")
        for span in sorted(predicted - gold, key=lambda s: s.start):
            report.errors.append(f"FALSE {span.type:12} {sample.id}: {_excerpt(sample.text, span)}")
    return report


def _excerpt(text: str, span: Span) -> str:
    return f"{text[span.start : span.end]!r} in {text!r}"


def render(report: Report) -> str:
    lines = [
        f"PII detection quality on {report.samples} samples (exact = type, start and end equal)",
        "",
        f"{'type':<14} {'gold':>5} {'found':>6} {'exact':>6} {'precision':>10} {'recall':>7}"
        f" {'partial P':>10} {'partial R':>10}",
    ]

    def row(name: str, s: Stats) -> str:
        return (
            f"{name:<14} {s.gold:>5} {s.predicted:>6} {s.exact:>6} {s.precision:>10.3f}"
            f" {s.recall:>7.3f} {s.partial_precision:>10.3f} {s.partial_recall:>10.3f}"
        )

    for type_ in ENTITY_TYPES:
        lines.append(row(type_, report.by_type[type_]))
    lines.append(row("all", report.total))
    checksum = Stats()
    for type_ in CHECKSUM_TYPES:
        s = report.by_type[type_]
        checksum.gold += s.gold
        checksum.predicted += s.predicted
        checksum.exact += s.exact
        checksum.gold_overlapped += s.gold_overlapped
        checksum.predicted_overlapping += s.predicted_overlapping
    lines.append(row("checksummed", checksum))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--errors", action="store_true", help="list every miss and false find")
    args = parser.parse_args(argv)
    report = evaluate(load(args.corpus))
    print(render(report))
    if args.errors:
        print()
        print("\n".join(report.errors) or "no errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
