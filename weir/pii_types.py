"""The personal-data types Weir knows: shared by the config schema (control plane) and
the detectors (ext_proc), so the two cannot disagree (a test checks the detectors)."""

from __future__ import annotations

from typing import Final

ENTITY_TYPES: Final[tuple[str, ...]] = (
    "EMAIL",
    "PHONE",
    "PESEL",
    "NIP",
    "REGON",
    "ID_CARD",
    "PASSPORT",
    "IBAN",
    "CREDIT_CARD",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "POSTAL_CODE",
    "ADDRESS",
    "PERSON",
)
"""Identifiers and personal details, replaced by tags when anonymised."""

ART9_CATEGORIES: Final[tuple[str, ...]] = (
    "HEALTH",
    "RELIGION",
    "ETHNIC_ORIGIN",
    "POLITICAL_OPINION",
    "TRADE_UNION",
    "SEX_LIFE",
    "GENETIC",
    "BIOMETRIC",
)
"""GDPR Art. 9 special categories: topics, flagged or blocked, never tagged."""

PII_ACTIONS: Final[tuple[str, ...]] = ("anonymize", "block", "flag")
ART9_ACTIONS: Final[tuple[str, ...]] = ("flag", "block", "ignore")

DEFAULT_MAX_SCAN_BYTES: Final = 512 * 1024
"""The most text a PIIPolicy scans per request unless it says otherwise (maxScanBytes):
about a 128k-token context, and at most about 1.5 s of scanning on the slowest text,
well inside Envoy's 5 s ext_proc message timeout."""
