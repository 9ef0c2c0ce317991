"""Scanning a chat request for personal data: the size limit comes before any scanning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extproc.pii_request import (
    ANONYMIZE,
    FLAG,
    PiiScanTooLarge,
    PiiSettings,
    copy_messages,
    scan,
    text_bytes,
)

EMAIL = "jan.kowalski@example.com"


def settings(limit: int) -> PiiSettings:
    return PiiSettings("limited", ANONYMIZE, None, True, FLAG, True, limit)


def test_text_is_counted_in_utf8_bytes_across_every_slot() -> None:
    messages: list[Any] = [
        {"role": "system", "content": "ab"},
        {"role": "user", "content": [{"type": "text", "text": "łł"}, {"type": "image_url"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": json.dumps({"a": 1})}}],
        },
    ]
    assert text_bytes(messages, 1000) == 2 + 4 + len('{"a": 1}')


def test_a_request_over_the_limit_is_refused_before_anything_is_scanned() -> None:
    calls: list[str] = []

    def detector(text: str, types: object) -> list[Any]:
        calls.append(text)
        return []

    messages = [{"role": "user", "content": f"{EMAIL} " + "ł" * 60}]  # 25 + 120 bytes
    with pytest.raises(PiiScanTooLarge) as refused:
        scan(copy_messages(messages), settings(144), detector)
    assert refused.value.status == 413
    assert refused.value.code == "pii_scan_too_large"
    assert "144 bytes" in refused.value.message and "'limited'" in refused.value.message
    assert EMAIL not in refused.value.message
    assert calls == []


def test_a_request_at_the_limit_is_scanned_and_tagged() -> None:
    messages = [{"role": "user", "content": f"{EMAIL} " + "ł" * 60}]
    working = copy_messages(messages)
    found = scan(working, settings(145))
    assert found.counts() == {"EMAIL": 1}
    assert working[0]["content"].startswith("<EMAIL_1> ")
