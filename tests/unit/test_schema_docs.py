"""The README's config reference is rendered from the schemas and is current."""

from __future__ import annotations

from pathlib import Path

from controlplane.schema_docs import render_reference, splice

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_current() -> None:
    text = README.read_text()
    assert splice(text) == text, "the config reference in README.md is stale: run `make docs`"


def test_reference_lists_every_field_with_its_description() -> None:
    reference = render_reference()
    assert "| `spec.baseURL` | string | yes |" in reference
    assert "| `spec.models[].pricing.cachedInput` | number |" in reference
    assert "| `spec.models[].targets[].backend` | string | yes |" in reference
    assert "default `300s`" in reference
