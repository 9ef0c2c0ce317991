"""Weir: an OpenAI-compatible LLM gateway."""
